"""`<service>-pipeline`: commit -> tested, built, scanned, signed image running in dev.

    validate -> verify -> build -> image_ref -> sbom, scan -> scan_sarif, scan_gate
             -> chart_validate (alongside the build)
    is_release (skips the rest in PR mode) -> sign, attest_sbom -> hand_over (to deploy-<first env>)

`hand_over` (release.flows.handover) gives the new digest to the first environment's `deploy-<env>`,
which commits it, rolls it out, smoke-tests it, rolls back on a failure, in turn with every
other change to that environment, and the run ends with its outcome. Nothing after a failed
`validate` runs. The run's note says what it did (release.flows.outcome): deployed, refused, rolled
back, or PR mode.

The DAG object is built here from the config; the callables import what they need when
they run, so parsing a DAG file stays cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from release.domain.config import PlatformConfig
from release.domain.gates import scan_policy_for
from release.domain.plans import ParamError, pipeline_requester, validate_params
from release.flows import xcoms
from release.flows.outcome import fail_task


# -- task callables ---------------------------------------------------------------------


def task_validate(params: dict) -> dict:
    """The checked params, `PipelineFacts` as JSON: later tasks read them (release.flows.xcoms)."""
    try:
        return validate_params(params).model_dump(mode="json")
    except ParamError as exc:
        fail_task(f"refused: {exc}")


def task_image_ref(service: str, build_result: Any) -> str:
    from release.domain.config import load_config
    from release.domain.registry import DIGEST_RE

    digest = (build_result or {}).get("containerimage.digest") if isinstance(build_result, dict) else None
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        fail_task(f"build: the build reported no image digest (containerimage.digest); got {str(build_result)[:200]!r}")
    return f"{load_config().services[service].image}@{digest}"


def task_scan_gate(service: str, commit: str) -> dict:
    import json

    from release.domain.config import load_config
    from release.domain.scan import ScanReportError, evaluate_report, utc_today

    config = load_config()
    env = config.env_order[0]
    report_path = config.artifacts_dir() / service / commit / "trivy.json"
    try:
        report = json.loads(report_path.read_text())
        summary = evaluate_report(report, scan_policy_for(config, service, env), utc_today())
    except (OSError, ValueError, ScanReportError) as exc:
        fail_task(f"scan-gate: cannot read the Trivy report {report_path}: {exc}")
    print(summary.describe())
    if not summary.passed:
        fail_task(f"refused: scan-gate: {service} {commit[:12]} is blocked: {summary.describe()}")
    return summary.to_dict()


def task_chart_validate(service: str) -> list[str]:
    from release.gitops.charts import validate_service_chart
    from release.domain.config import load_config
    from release.gitops.registry import Registry

    config = load_config()
    with Registry.from_config(config).store.checkout() as tree:
        checked = validate_service_chart(tree, config, service)
    print(f"{service} chart renders, lints and validates for: {', '.join(checked)}")
    return checked


def change_set(service: str):
    """What `hand_over` gives deploy-<first env>: the digest this run built and scanned. The
    deploy run reads the scan and the digest from this run's own records again, not from here."""
    def build(context) -> dict:
        from release.domain.config import load_config

        ti = context["ti"]
        facts = xcoms.pipeline_facts(ti)
        return {"kind": "pipeline", "env": load_config().env_order[0],
                "items": [{"service": service, "version": facts.version, "image": xcoms.image_ref(ti)}],
                "requester": pipeline_requester(getattr(context["dag_run"], "triggering_user_name", None)),
                "reason": f"pipeline of {facts.ref}", "caller": {"dag_id": ti.dag_id, "run_id": ti.run_id}}
    return build


# -- the DAG ------------------------------------------------------------------------------


def pipeline_doc(config: PlatformConfig, service: str) -> str:
    s = config.services[service]
    env = config.env_order[0]
    return f"""
### {service}: commit to {env}

Builds `{s.path}` of the application repository at `commit` for {", ".join(s.platforms)},
scans and signs the image and validates its chart, then **hands the new digest over to
`deploy-{env}`**, which records it in the GitOps registry, rolls it out, smoke-tests it and, if
the rollout or smoke test fails, rolls {env} back to the previous version. This run waits for it
(deferred) and ends with its outcome; `hand_over`'s "Triggered DAG" link opens that run.

With `pr` set (PR mode) it stops after the scan gate and chart validation: nothing is
signed, deployed or written to the registry, and the run is green with a note saying so. Runs
queue one at a time per service. A run's note says what it did (deployed, refused, rolled back).
"""


def build_pipeline_dag(config: PlatformConfig, service: str):
    from airflow.providers.standard.operators.python import PythonOperator, ShortCircuitOperator
    from airflow.sdk import DAG, Param

    from release.k8s import steps
    from release.flows.handover import HandOver
    from release.flows.notify import on_failure
    from release.k8s.pods import pod_operator

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
        max_active_runs=1,  # builds of one service take turns; later runs queue
        tags=["release", "pipeline", service],
        doc_md=pipeline_doc(config, service),
        params={
            "commit": Param("", type="string", description="full commit id (40 hex)"),
            "ref": Param("refs/heads/main", type="string", description="refs/heads/<branch>, refs/tags/<tag> or refs/pull/<n>/head"),
            "pr": Param(None, type=["null", "integer"], description="pull request number: set for PR mode"),
            "changed_paths": Param([], type="array", description="informational"),
            "commit_time": Param(None, type=["null", "string"],
                                 description="when the commit was made (ISO-8601 with zone): DORA's change lead time starts there"),
        },
        render_template_as_native_obj=False,
    ) as dag:
        validate = PythonOperator(task_id=xcoms.VALIDATE, python_callable=_validate_from_context)
        verify = pod_operator("verify", steps.verify(config, service), **pods)
        build = pod_operator(xcoms.BUILD, steps.build(config, service), pool="builds", **pods)
        image_ref = PythonOperator(task_id=xcoms.IMAGE_REF, python_callable=_image_ref_from_context(service))
        # The image this run built, by reference: the steps after it sbom, scan, sign and attest it.
        built = image_ref.output
        sbom = pod_operator("sbom", steps.sbom(config, service, built), **pods)
        scan = pod_operator("scan", steps.scan(config, service, built), **pods)
        scan_sarif = pod_operator("scan_sarif", steps.scan_sarif(config, service), **pods)
        scan_gate = PythonOperator(task_id=xcoms.SCAN_GATE, python_callable=task_scan_gate,
                                   op_kwargs={"service": service, "commit": steps.COMMIT})
        chart_validate = PythonOperator(task_id=xcoms.CHART_VALIDATE, python_callable=task_chart_validate,
                                        op_kwargs={"service": service})
        is_release = ShortCircuitOperator(task_id="is_release", python_callable=_is_release,
                                          doc_md="PR mode (pr set) stops here: nothing signed or deployed.")
        sign = pod_operator(xcoms.SIGNING[0], steps.sign(config, service, built), **pods)
        attest = pod_operator(xcoms.SIGNING[1], steps.attest_sbom(config, service, built), **pods)
        hand_over = HandOver(change_set=change_set(service), doc_md=f"deploy-{env} commits, rolls out and smoke-tests.")

        validate >> [verify, chart_validate]
        verify >> build >> image_ref >> [sbom, scan]
        scan >> [scan_sarif, scan_gate]
        [scan_gate, sbom, chart_validate] >> is_release >> sign >> attest >> hand_over
    return dag


# Callables that read what they need from the task context (params, XComs, run id).

def _validate_from_context(**context) -> dict:
    return task_validate(dict(context["params"]))


def _image_ref_from_context(service: str):
    def image_ref(**context) -> str:
        return task_image_ref(service, xcoms.build_result(context["ti"]))
    return image_ref


def _is_release(**context) -> bool:
    from release.flows import outcome

    params = context["params"]
    if params.get("pr") is None:
        return True
    outcome.record(context["ti"], f"PR mode (PR #{params['pr']}): {context['dag'].dag_id.removesuffix('-pipeline')} "
                                  f"at {str(params.get('commit'))[:12]} built, scanned and its chart validated; "
                                  "nothing signed, deployed or recorded, by design")
    return False

