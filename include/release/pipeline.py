"""`<service>-pipeline`: commit -> tested, built, scanned, signed image running in dev.

    validate -> verify -> build -> image_ref -> sbom, scan -> scan_sarif, scan_gate
             -> chart_validate (alongside the build)
    is_release (skips the rest in PR mode) -> sign, attest_sbom -> deploy_dev -> wait_dev -> smoke_dev
    rollback_dev follows a successful deploy_dev once wait_dev and smoke_dev are done; if one of
    them failed it puts dev back and fails the run (a run stopped before the deploy never reaches it).
    The run's note says what it did (release.outcome): deployed, refused, rolled back, or PR mode.

With the `helm` deploy strategy a pod replaces the Argo CD sync, and the rollback's deploy is
a pod too, so the rollback is three tasks:
    deploy_dev -> helm_dev -> smoke_dev
    rollback_dev (if helm_dev or smoke_dev failed) -> helm_rollback_dev -> rolled_back_dev (fails the run)

The DAG object is built here from the config; the callables import what they need when
they run, so parsing a DAG file stays cheap.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from release.config import PlatformConfig

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REF_RE = re.compile(r"^refs/(heads|tags)/[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$|^refs/pull/[0-9]{1,9}/(head|merge)$")


class ParamError(ValueError):
    pass


def validate_params(params: dict) -> dict:
    """The run's params, checked before anything is built; errors name the param."""
    commit, ref, pr = params.get("commit"), params.get("ref"), params.get("pr")
    if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
        raise ParamError(f"commit: {str(commit)[:80]!r} is not a full commit id (40 lowercase hex characters)")
    if not isinstance(ref, str) or ".." in ref or not REF_RE.fullmatch(ref):
        raise ParamError(f"ref: {str(ref)[:80]!r} is not a ref; allowed forms: refs/heads/<branch>, refs/tags/<tag>, refs/pull/<n>/head")
    if pr is not None and (isinstance(pr, bool) or not isinstance(pr, int) or not 1 <= pr <= 10**9):
        raise ParamError(f"pr: {str(pr)[:80]!r} is not a pull request number (a positive integer) or null")
    paths = params.get("changed_paths") or []
    if not isinstance(paths, list) or not all(isinstance(p, str) and len(p) < 4096 for p in paths):
        raise ParamError("changed_paths: must be a list of repository paths")
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    version = tag.removeprefix("v") if tag else f"sha-{commit[:12]}"
    return {"commit": commit, "ref": ref, "pr": pr, "version": version, "release": pr is None}


def scan_policy_for(config: PlatformConfig, service: str, env: str):
    from release.scan import ScanPolicy, merge_policies

    policy = merge_policies(ScanPolicy(), config.pipelines.scan_policy)
    policy = merge_policies(policy, config.environments[env].scan_policy)
    return merge_policies(policy, config.services[service].scan_policy)


# -- task callables ---------------------------------------------------------------------


def _fail(message: str):
    """Fail the running task with `message`, recorded as the run's outcome."""
    from release import outcome

    outcome.fail_task(message)


def task_validate(params: dict) -> dict:
    try:
        return validate_params(params)
    except ParamError as exc:
        _fail(f"refused: {exc}")


def task_image_ref(service: str, build_result: Any) -> str:
    from release.config import load_config
    from release.registry import DIGEST_RE

    digest = (build_result or {}).get("containerimage.digest") if isinstance(build_result, dict) else None
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        _fail(f"build: the build reported no image digest (containerimage.digest); got {str(build_result)[:200]!r}")
    return f"{load_config().services[service].image}@{digest}"


def task_scan_gate(service: str, commit: str) -> dict:
    import json

    from release.config import load_config
    from release.scan import ScanReportError, evaluate_report, utc_today

    config = load_config()
    env = config.env_order[0]
    report_path = config.artifacts_dir() / service / commit / "trivy.json"
    try:
        report = json.loads(report_path.read_text())
        summary = evaluate_report(report, scan_policy_for(config, service, env), utc_today())
    except (OSError, ValueError, ScanReportError) as exc:
        _fail(f"scan-gate: cannot read the Trivy report {report_path}: {exc}")
    print(summary.describe())
    if not summary.passed:
        _fail(f"refused: scan-gate: {service} {commit[:12]} is blocked: {summary.describe()}")
    return summary.to_dict()


def task_chart_validate(service: str) -> list[str]:
    from release.charts import validate_service_chart
    from release.config import load_config
    from release.registry import Registry

    config = load_config()
    with Registry.from_config(config).store.checkout() as tree:
        checked = validate_service_chart(tree, config, service)
    print(f"{service} chart renders, lints and validates for: {', '.join(checked)}")
    return checked


def task_deploy(service: str, env: str, facts: dict, image_ref: str, scan_summary: dict, run_id: str, by: str) -> dict:
    from release.argocd import request_sync
    from release.config import load_config
    from release.pods import ARTIFACTS_MOUNT
    from release.registry import DeployRequest, Registry

    config = load_config()
    evidence = {
        "commit": facts["commit"], "ref": facts["ref"],
        "scan": {k: v for k, v in scan_summary.items() if k != "findings"} | {"findings": scan_summary.get("findings", [])},
        "sbom": f"{ARTIFACTS_MOUNT}/{service}/{facts['commit']}/sbom.spdx.json",
        "signature": {"signed": True, "key": f"secret {config.environments[env].namespace}/{config.pipelines.cosign_key_secret}"},
    }
    result = Registry.from_config(config).record_deployment(
        env, [DeployRequest(service, facts["version"], image_ref, evidence)], by=by, run_id=run_id,
        reason=f"pipeline of {facts['ref']}")
    namespace, application = config.argocd_application(env)
    if config.environments[env].deploy_strategy == "argocd":
        request_sync(config.environments[env].kubernetes_conn_id, namespace, application, result.sha)
        print(f"Asked Argo CD {namespace}/{application} to sync {result.sha}")
    else:
        print(f"Recorded in commit {result.sha}; helm_{env} deploys exactly that commit")
    return {"gitops_commit": result.sha, "version": facts["version"], "image": image_ref}


def failed_rollout_step(ti, strategy: str, rollout_task: str, smoke_task: str) -> str:
    """Which step after a deploy failed: the smoke test, or the rollout before it. Read from the
    task states: a rollout step can fail after doing its work (a scheduler race may fail a sensor
    that already saw the sync), and then it was not the smoke test that failed."""
    from release import outcome

    if smoke_task in outcome.failed_tasks({"ti": ti}, [rollout_task, smoke_task]):
        return "smoke test"
    return "helm upgrade" if strategy == "helm" else "Argo CD sync"


def task_rollback(service: str, env: str, run_id: str, failed_step: str, deploy: dict | None) -> dict:
    """Put `env` back on the previous version in one commit. With Argo CD, sync it, wait and fail
    the run here; with helm, return the commit for the helm_rollback pod (rolled_back fails the run)."""
    from release.argocd import request_sync, wait_synced
    from release.config import load_config
    from release.registry import NoRollbackTarget, Registry

    config = load_config()
    version = (deploy or {}).get("version", "?")
    what = f"{service} {version}: the {failed_step} in {env} failed"
    try:
        result = Registry.from_config(config).record_rollback(
            env, [service], by="release-platform", run_id=run_id, reason=f"automatic rollback: {what}", outcome="failed")
    except NoRollbackTarget as exc:
        _fail(f"{what}; no earlier version to roll back to ({exc})")
    if config.environments[env].deploy_strategy == "helm":
        # helm --atomic has already undone its own failed upgrade; deploying the rollback commit
        # makes the cluster follow the GitOps repository again, whatever failed.
        print(f"{what}; recorded the rollback in commit {result.sha}; helm_rollback_{env} deploys it")
        return {"gitops_commit": result.sha, "what": what}
    namespace, application = config.argocd_application(env)
    conn_id = config.environments[env].kubernetes_conn_id
    request_sync(conn_id, namespace, application, result.sha)
    state = wait_synced(conn_id, namespace, application, result.sha, config.environments[env].argocd.sync_timeout_minutes * 60, 0.2)
    restored = Registry.from_config(config).state(env)[service]
    _fail(f"{what}; rolled {env} back to {restored.version} ({restored.image}) in commit {result.sha[:12]}: {state.describe()}")


def task_rolled_back(service: str, env: str, rollback: dict) -> None:
    """The end of a helm rollback: the earlier version runs again, and the run fails naming why."""
    from release.config import load_config
    from release.registry import Registry

    restored = Registry.from_config(load_config()).state(env)[service]
    _fail(f"{rollback['what']}; rolled {env} back to {restored.version} ({restored.image}) in commit "
          f"{rollback['gitops_commit'][:12]}: helm upgrade --atomic --wait succeeded")


# -- the DAG ------------------------------------------------------------------------------


def _rollout_doc(config: PlatformConfig, env: str) -> str:
    if config.environments[env].deploy_strategy == "helm":
        return "deploys exactly that GitOps commit with `helm upgrade --install --atomic --wait`"
    return "waits for Argo CD to roll it out"


def pipeline_doc(config: PlatformConfig, service: str) -> str:
    s = config.services[service]
    return f"""
### {service}: commit to dev

Builds `{s.path}` of the application repository at `commit` for {", ".join(s.platforms)},
scans and signs the image, validates its chart, records it in the GitOps registry for
**{config.env_order[0]}**, {_rollout_doc(config, config.env_order[0])}, and smoke-tests it. A failed
rollout or smoke test rolls {config.env_order[0]} back to the previous version and fails the run.

With `pr` set (PR mode) it stops after the scan gate and chart validation: nothing is
signed, deployed or written to the registry, and the run is green with a note saying so. Runs
queue one at a time per service. A run's note says what it did (deployed, refused, rolled back).
"""


def build_pipeline_dag(config: PlatformConfig, service: str):
    from airflow.providers.standard.operators.python import PythonOperator, ShortCircuitOperator
    from airflow.sdk import DAG, Param

    from release import steps
    from release.argocd import ApplicationSyncedSensor
    from release.assets import REGISTRY
    from release.notify import on_failure
    from release.pods import pod_operator

    env = config.env_order[0]
    environment = config.environments[env]
    pods = {"service": service, "commit": steps.COMMIT, "namespace": environment.namespace,
            "kubernetes_conn_id": environment.kubernetes_conn_id}
    with DAG(
        dag_id=f"{service}-pipeline",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},  # task log, plus Slack / e-mail if configured
        max_active_runs=1,  # deploys of one service never interleave; later runs queue
        tags=["release", "pipeline", service],
        doc_md=pipeline_doc(config, service),
        params={
            "commit": Param("", type="string", description="full commit id (40 hex)"),
            "ref": Param("refs/heads/main", type="string", description="refs/heads/<branch>, refs/tags/<tag> or refs/pull/<n>/head"),
            "pr": Param(None, type=["null", "integer"], description="pull request number: set for PR mode"),
            "changed_paths": Param([], type="array", description="informational"),
        },
        render_template_as_native_obj=False,
    ) as dag:
        validate = PythonOperator(task_id="validate", python_callable=_validate_from_context)
        verify = pod_operator("verify", steps.verify(config, service), **pods)
        build = pod_operator("build", steps.build(config, service), pool="builds", **pods)
        image_ref = PythonOperator(task_id="image_ref", python_callable=_image_ref_from_context(service))
        sbom = pod_operator("sbom", steps.sbom(config, service), **pods)
        scan = pod_operator("scan", steps.scan(config, service), **pods)
        scan_sarif = pod_operator("scan_sarif", steps.scan_sarif(config, service), **pods)
        scan_gate = PythonOperator(task_id="scan_gate", python_callable=task_scan_gate,
                                   op_kwargs={"service": service, "commit": steps.COMMIT})
        chart_validate = PythonOperator(task_id="chart_validate", python_callable=task_chart_validate,
                                        op_kwargs={"service": service})
        is_release = ShortCircuitOperator(task_id="is_release", python_callable=_is_release,
                                          doc_md="PR mode (pr set) stops here: nothing signed or deployed.")
        sign = pod_operator("sign", steps.sign(config, service), **pods)
        attest = pod_operator("attest_sbom", steps.attest_sbom(config, service), **pods)
        deploy = PythonOperator(task_id=f"deploy_{env}", python_callable=_deploy_from_context(service, env), outlets=[REGISTRY])
        helm = environment.deploy_strategy == "helm"
        if helm:
            wait = pod_operator(f"helm_{env}", steps.helm_deploy(config, env, _gitops_commit_of(f"deploy_{env}")),
                                pool=steps.helm_pool(env), **pods)
        else:
            wait = ApplicationSyncedSensor(
                task_id=f"wait_{env}", kubernetes_conn_id=environment.kubernetes_conn_id,
                namespace=config.argocd_application(env)[0], application=config.argocd_application(env)[1],
                revision=_gitops_commit_of(f"deploy_{env}"),
                timeout_seconds=environment.argocd.sync_timeout_minutes * 60, poll_interval=1.0)
        smoke = pod_operator(f"smoke_{env}", steps.smoke(config, service, env), **pods)
        record_smoke = PythonOperator(task_id=f"record_smoke_{env}", python_callable=_record_smoke(service, env),
                                      outlets=[REGISTRY])
        # Runs only once the deploy succeeded and its rollout and smoke test are done (it skips
        # unless one of them failed): a run stopped before the deploy never reaches it.
        rollback = PythonOperator(task_id=f"rollback_{env}",
                                  python_callable=_rollback_from_context(service, env, wait.task_id, environment.deploy_strategy),
                                  trigger_rule="all_done_min_one_success", outlets=[REGISTRY])

        validate >> [verify, chart_validate]
        verify >> build >> image_ref >> [sbom, scan]
        scan >> [scan_sarif, scan_gate]
        [scan_gate, sbom, chart_validate] >> is_release >> sign >> attest >> deploy >> wait >> smoke >> record_smoke
        [deploy, wait, smoke] >> rollback
        if helm:
            helm_rollback = pod_operator(
                f"helm_rollback_{env}",
                steps.helm_deploy(config, env, _gitops_commit_of(f"rollback_{env}"), step=f"helm-rollback-{env}"),
                pool=steps.helm_pool(env), **pods)
            rolled_back = PythonOperator(task_id=f"rolled_back_{env}", python_callable=_rolled_back_from_context(service, env))
            rollback >> helm_rollback >> rolled_back
    return dag


def _gitops_commit_of(task_id: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['gitops_commit'] }}}}"


# Callables that read what they need from the task context (params, XComs, run id).

def _validate_from_context(**context) -> dict:
    return task_validate(dict(context["params"]))


def _image_ref_from_context(service: str):
    def image_ref(**context) -> str:
        return task_image_ref(service, context["ti"].xcom_pull(task_ids="build"))
    return image_ref


def _is_release(**context) -> bool:
    from release import outcome

    params = context["params"]
    if params.get("pr") is None:
        return True
    outcome.record(context["ti"], f"PR mode (PR #{params['pr']}): {context['dag'].dag_id.removesuffix('-pipeline')} "
                                  f"at {str(params.get('commit'))[:12]} built, scanned and its chart validated; "
                                  "nothing signed, deployed or recorded, by design")
    return False


def _deploy_from_context(service: str, env: str):
    def deploy(**context) -> dict:
        from release.registry import USER_RE

        ti = context["ti"]
        by = getattr(context["dag_run"], "triggering_user_name", None) or "release-platform"
        return task_deploy(service, env, ti.xcom_pull(task_ids="validate"), ti.xcom_pull(task_ids="image_ref"),
                           ti.xcom_pull(task_ids="scan_gate"), context["run_id"],
                           by if USER_RE.fullmatch(by) else "release-platform")
    return deploy


def _record_smoke(service: str, env: str):
    def record_smoke(**context) -> None:
        """The promotion's smoke gate reads this: a passed smoke test for exactly this version."""
        from datetime import timezone

        from release.config import load_config
        from release.registry import Registry

        from release import outcome

        deployed = context["ti"].xcom_pull(task_ids=f"deploy_{env}")
        version = deployed["version"]
        evidence = {"passed": True, "run_id": context["run_id"], "at": datetime.now(timezone.utc).isoformat()}
        Registry.from_config(load_config()).record_evidence(env, {service: {"version": version, "smoke": evidence}},
                                                           by="release-platform", run_id=context["run_id"])
        commit = context["ti"].xcom_pull(task_ids="validate")["commit"]
        outcome.record(context["ti"], f"deployed {service} {version} to {env}, commit {commit[:12]} "
                                      f"(GitOps commit {deployed['gitops_commit'][:12]})")
    return record_smoke


def _rollback_from_context(service: str, env: str, rollout_task: str, strategy: str):
    def rollback(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from release import outcome

        ti = context["ti"]
        if not ti.xcom_pull(task_ids=f"deploy_{env}"):
            raise AirflowSkipException("nothing was deployed, so there is nothing to roll back")
        if not outcome.failed_tasks(context, [rollout_task, f"smoke_{env}"]):
            raise AirflowSkipException(f"the rollout and smoke test in {env} passed: nothing to roll back")
        failed_step = failed_rollout_step(ti, strategy, rollout_task, f"smoke_{env}")
        return task_rollback(service, env, context["run_id"], failed_step, ti.xcom_pull(task_ids=f"deploy_{env}"))
    return rollback


def _rolled_back_from_context(service: str, env: str):
    def rolled_back(**context) -> None:
        task_rolled_back(service, env, context["ti"].xcom_pull(task_ids=f"rollback_{env}"))
    return rolled_back
