"""`promote`: move the exact digests one environment runs to the next, through gates.

    validate -> gate_smoke, gate_scan, gate_freeze -> wait_freeze, verify_signatures
      -> needs_approval -> approve_<env> -> four_eyes_<env> | no_approval
      -> deploy -> rollout -> wait_synced | helm_<env> -> smoke -> record_smoke
      -> rollback (if the rollout or smoke failed) -> rollout_rollback -> wait_rollback | helm_rollback_<env>
      -> smoke_after_rollback -> report

`rollout` picks how to_env deploys a commit: an Argo CD sync and the sensor (`argocd`), or
that environment's helm pod (`helm`, one per such environment, built when the DAG is parsed).

Everything a user typed is checked by `validate` before anything is written or any pod
is created. Runs queue one at a time, so promotions never interleave.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

from release.config import PlatformConfig
from release.registry import MAX_REASON, USER_RE, VERSION_RE

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class PromotionError(ValueError):
    pass


def _plain(param: str, value: Any, pattern: re.Pattern, allowed: str) -> str:
    if not isinstance(value, str) or len(value) > 128 or not pattern.fullmatch(value):
        raise PromotionError(f"{param}: {str(value)[:80]!r} is not allowed; allowed: {allowed}")
    return value


def plan_promotion(params: dict, config: PlatformConfig, state, requester: str) -> dict:
    """Check every param against the config and the registry; return what will happen."""
    envs = config.env_order
    from_env = _plain("from_env", params.get("from_env"), NAME_RE, ", ".join(envs[:-1]))
    to_env = _plain("to_env", params.get("to_env"), NAME_RE, ", ".join(envs[1:]))
    if from_env not in envs[:-1]:
        raise PromotionError(f"from_env: {from_env!r} is not allowed; allowed: {', '.join(envs[:-1])}")
    expected = config.next_env(from_env)
    if to_env != expected:
        raise PromotionError(f"to_env: {to_env!r} is not allowed from {from_env}; allowed: {expected} "
                             "(promotion goes one environment forward; use the rollback DAG to go back)")
    names = params.get("services")
    if not isinstance(names, list) or not names or len(names) > 1000:
        raise PromotionError('services: must be a list of service names, or ["*"]')
    running = state.current(from_env)
    if names == ["*"]:
        names = [s for s in config.services_in(from_env) if s in running]
        if not names:
            raise PromotionError(f"services: nothing runs in {from_env} to promote")
    allowed = ", ".join(config.services_in(from_env))
    for name in names:
        _plain("services", name, NAME_RE, allowed)
        if name not in config.services_in(from_env) or name not in config.services_in(to_env):
            raise PromotionError(f"services: {name!r} is not a service of {from_env} and {to_env}; allowed: {allowed}")
        if name not in running:
            raise PromotionError(f"services: {name!r} does not run in {from_env}")
    if len(set(names)) != len(names):
        raise PromotionError("services: a service is named twice")
    version = params.get("version")
    if version is not None:
        _plain("version", version, VERSION_RE, "a version such as 1.4.2")
        if len(names) != 1:
            raise PromotionError("version: only allowed when promoting a single service")
    reason = params.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise PromotionError(f"reason: at most {MAX_REASON} characters on one line")
    approval = config.environments[to_env].approval
    if approval.required and not reason.strip():
        raise PromotionError(f"reason: required for a promotion to {to_env}")
    if not USER_RE.fullmatch(requester or ""):
        raise PromotionError(f"the run was triggered by {requester!r}, which is not a user name the registry can record")

    items = []
    for name in names:
        current = running[name]
        if version is not None and version != current.version:
            entry = state.deployed_versions(from_env, name).get(version)
            if entry is None:
                deployed = ", ".join(reversed(list(state.deployed_versions(from_env, name)))) or "none"
                raise PromotionError(f"version: {version!r} of {name} was never successfully deployed in {from_env}; "
                                     f"allowed: {deployed}")
            item = {"version": entry.version, "image": entry.image, "evidence": entry.evidence}
        else:
            item = {"version": current.version, "image": current.image, "evidence": current.evidence}
        target = state.current(to_env).get(name)
        items.append({"service": name, **item, "replaces": target.version if target else None,
                      "replaces_image": target.image if target else None})
    namespace, application = config.argocd_application(to_env)
    env = config.environments[to_env]
    return {
        "from_env": from_env, "to_env": to_env, "requester": requester, "reason": reason,
        "items": items, "services": names,
        "needs_approval": approval.required, "approvers": approval.approvers,
        "kubernetes_conn_id": env.kubernetes_conn_id, "namespace": env.namespace,
        "deploy_strategy": env.deploy_strategy,
        "argocd_namespace": namespace, "argocd_application": application,
        "sync_timeout_seconds": env.argocd.sync_timeout_minutes * 60,
        "smoke_args": smoke_args(config, names, to_env),
        "verify_args": ["verify", "--key", "/cosign/cosign.pub", "--insecure-ignore-tlog=true", "--output", "json",
                        *[i["image"] for i in items]],
    }


def smoke_args(config: PlatformConfig, services: list[str], env: str) -> list[str]:
    from release import steps

    args: list[str] = []
    for i, service in enumerate(services):
        step_args = steps.smoke(config, service, env).args
        args += step_args if i == 0 else [a for a in step_args if a.startswith("http") or a in ("--output", "/dev/null")]
    return args


def describe(plan: dict, run_url: str = "") -> tuple[str, str]:
    """Subject and body an approver can decide on."""
    names = ", ".join(plan["services"])
    subject = f"Promote {names} from {plan['from_env']} to {plan['to_env']}?"
    lines = [f"Requested by **{plan['requester']}**: {plan['reason'] or '(no reason given)'}", ""]
    for i in plan["items"]:
        scan = (i["evidence"].get("scan") or {})
        counts = ", ".join(f"{k} {v}" for k, v in (scan.get("counts") or {}).items() if v) or "no findings"
        lines.append(f"- **{i['service']}** {i['replaces'] or '(not deployed)'} -> **{i['version']}**  ")
        lines.append(f"  `{i['image']}`  ")
        lines.append(f"  scan: {counts}; smoke in {plan['from_env']}: "
                     f"{'passed' if (i['evidence'].get('smoke') or {}).get('passed') else 'not recorded'}")
    if run_url:
        lines += ["", f"[The run]({run_url})"]
    return subject, "\n".join(lines)


# -- gates ----------------------------------------------------------------------------------


def gate_smoke(plan: dict) -> list[str]:
    failed = [f"{i['service']} {i['version']}" for i in plan["items"] if not (i["evidence"].get("smoke") or {}).get("passed")]
    if failed:
        raise PromotionError(f"gate smoke: no passed smoke test in {plan['from_env']} is recorded for: {', '.join(failed)}")
    return [f"{i['service']} {i['version']}: smoke passed in {plan['from_env']} ({i['evidence']['smoke'].get('run_id')})"
            for i in plan["items"]]


def gate_scan(plan: dict, config: PlatformConfig, today: date) -> list[str]:
    from release.pipeline import scan_policy_for
    from release.scan import ScanReportError, reevaluate

    evidence, problems = [], []
    for i in plan["items"]:
        scan = i["evidence"].get("scan")
        if not scan:
            problems.append(f"{i['service']} {i['version']}: no scan summary recorded")
            continue
        policy = scan_policy_for(config, i["service"], plan["to_env"])
        rescan = i["evidence"].get("rescan") or {}
        if rescan.get("summary"):
            # The nightly re-scan judged the same digest with a newer vulnerability database: its
            # findings supersede the pipeline's, re-judged here so an allow entry added since counts.
            what = f"{i['service']} {i['version']}: the nightly re-scan of {rescan.get('scanned_at', 'an earlier night')}"
            try:
                summary = reevaluate(rescan["summary"], policy, today)
            except ScanReportError as exc:
                problems.append(f"{what} recorded an unusable summary: {exc}")
                continue
            if summary.passed:
                evidence.append(f"{what} under {plan['to_env']}'s policy: {summary.describe()}")
            else:
                problems.append(f"{what} found blocking CVEs under {plan['to_env']}'s policy: "
                                f"{', '.join(summary.blocking)} ({summary.describe()})")
            continue
        if rescan.get("passed") is False:
            problems.append(f"{i['service']} {i['version']}: the nightly re-scan found blocking CVEs: "
                            f"{', '.join(rescan.get('blocking', []))}")
            continue
        try:
            summary = reevaluate(scan, policy, today)
        except ScanReportError as exc:
            problems.append(f"{i['service']} {i['version']}: the recorded scan summary is unusable: {exc}")
            continue
        line = f"{i['service']} {i['version']} under {plan['to_env']}'s policy: {summary.describe()}"
        (evidence if summary.passed else problems).append(line)
    if problems:
        raise PromotionError("gate scan: " + "; ".join(problems))
    return evidence


def gate_freeze(config: PlatformConfig, to_env: str, now: datetime) -> str | None:
    """The end of an active freeze to wait for, None if there is none; fails if the policy says so."""
    env = config.environments[to_env]
    window = env.active_freeze(now)
    if window is None:
        return None
    if env.freeze_policy == "fail":
        raise PromotionError(f"gate freeze: {to_env} is frozen until {window.end.isoformat()} ({window.reason})")
    return window.end.isoformat()


def check_four_eyes(plan: dict, response: dict | None) -> str:
    responder = ((response or {}).get("responded_by_user") or {}).get("name")
    if not response or (response.get("chosen_options") or [None])[0] != "Approve":
        raise PromotionError("approval: not approved")
    if responder == plan["requester"]:
        raise PromotionError(f"four-eyes: {responder} requested this {plan.get('action', 'promotion')} and cannot approve it; "
                             f"another approver ({', '.join(a for a in plan['approvers'] if a != responder)}) must")
    if responder not in plan["approvers"]:
        raise PromotionError(f"four-eyes: {responder!r} is not an approver for {plan['to_env']}; "
                             f"allowed: {', '.join(plan['approvers'])}")
    return responder


# -- task callables --------------------------------------------------------------------------


def _fail(message: str):
    """Fail the running task with `message`, recorded as the run's outcome."""
    from release import outcome

    outcome.fail_task(message)


def _refuse(message: str):
    _fail(f"refused: {message}")


def _plan(context) -> dict:
    return context["ti"].xcom_pull(task_ids="validate")


def _config():
    from release.config import load_config

    return load_config()


def run_planner(planner, context) -> dict:
    """The `validate` task of promote and rollback: plan from the params, the config and the
    registry, as the user who triggered the run; a refusal fails the run naming the param."""
    from release.registry import Registry

    config = _config()
    requester = getattr(context["dag_run"], "triggering_user_name", None) or ""
    try:
        plan = planner(dict(context["params"]), config, Registry.from_config(config).snapshot(), requester)
    except PromotionError as exc:
        _refuse(str(exc))
    print(f"{plan['subject']}\n{plan['body']}")
    return plan


def _plan_with_description(params, config, state, requester) -> dict:
    plan = plan_promotion(params, config, state, requester)
    plan["subject"], plan["body"] = describe(plan)
    return plan


def task_validate(**context) -> dict:
    return run_planner(_plan_with_description, context)


def task_gate_smoke(**context) -> list[str]:
    try:
        lines = gate_smoke(_plan(context))
    except PromotionError as exc:
        _refuse(str(exc))
    print("\n".join(lines))
    return lines


def task_gate_scan(**context) -> list[str]:
    from release.scan import utc_today

    try:
        lines = gate_scan(_plan(context), _config(), utc_today())
    except PromotionError as exc:
        _refuse(str(exc))
    print("\n".join(lines))
    return lines


def task_gate_freeze(**context) -> str:
    plan = _plan(context)
    now = datetime.now(timezone.utc)
    try:
        end = gate_freeze(_config(), plan["to_env"], now)
    except PromotionError as exc:
        _refuse(str(exc))
    print(f"{plan['to_env']} is frozen until {end}: waiting" if end else f"no deploy freeze active for {plan['to_env']}")
    return end or now.isoformat()


def task_needs_approval(**context) -> str:
    plan = _plan(context)
    return f"approve_{plan['to_env'].replace('-', '_')}" if plan["needs_approval"] else "no_approval"


def task_four_eyes(env_task: str):
    def four_eyes(**context) -> str:
        plan = _plan(context)
        try:
            approver = check_four_eyes(plan, context["ti"].xcom_pull(task_ids=env_task))
        except PromotionError as exc:
            _refuse(str(exc))
        print(f"approved by {approver}; requested by {plan['requester']}")
        return approver
    return four_eyes


def task_deploy(**context) -> dict:
    """One GitOps commit of the plan, after checking, here, that the approval the target
    environment needs was given in this run (check_write_allowed)."""
    from release.registry import DeployRequest, Registry

    plan = _plan(context)
    approved_by = check_write_allowed(context, plan, "promotion")
    requests = [DeployRequest(i["service"], i["version"], i["image"],
                              {**i["evidence"], "promoted_from": plan["from_env"], "smoke": None,
                               **({"approved_by": approved_by} if approved_by else {})})
                for i in plan["items"]]
    result = Registry.from_config(_config()).record_deployment(
        plan["to_env"], requests, by=plan["requester"], run_id=context["run_id"], reason=plan["reason"])
    print(f"one commit {result.sha} for {', '.join(plan['services'])} in {plan['to_env']}; {roll_out(plan, result.sha)}")
    return {"gitops_commit": result.sha, "approved_by": approved_by}


def check_write_allowed(context, plan: dict | None, action: str) -> str | None:
    """Right before a commit to the plan's environment: who approved it (None where the config
    needs no approval for this kind of change); refuses the task, writing nothing, when the
    approval the config asks for was not given in this run (release.approval.require_approval)."""
    from release.approval import ApprovalMissing, require_approval

    if not plan:
        _refuse(f"{action}: validate recorded no plan for this run (was it marked success by hand?)")
    requester = getattr(context["dag_run"], "triggering_user_name", None) or ""
    if plan.get("requester") != requester:
        _refuse(f"{action}: the plan names {plan.get('requester')!r} as requester, but {requester!r} triggered this run")
    config = _config()
    env = plan["to_env"]
    if env not in config.environments:
        _refuse(f"{action}: {env!r} is not an environment of the platform config")
    approval = config.environments[env].approval
    if not (approval.required_for_rollback if action == "rollback" else approval.required):
        return None
    try:
        return require_approval(context, env, approval.approvers, action)
    except ApprovalMissing as exc:
        _refuse(f"nothing was written to {env}: {exc}")


def roll_out(plan: dict, sha: str) -> str:
    """Start deploying commit `sha` to the plan's environment; says what happens next.
    Argo CD is asked to sync; for helm the pod the `rollout` branch picks does everything."""
    if plan["deploy_strategy"] == "helm":
        return "helm upgrade of that commit follows"
    from release.argocd import request_sync

    request_sync(plan["kubernetes_conn_id"], plan["argocd_namespace"], plan["argocd_application"], sha)
    return "sync requested"


def task_rollout(argocd_task: str, helm_task: str):
    """Branch to the task that rolls the commit out: the Argo CD sensor, or to_env's helm pod."""
    def rollout(**context) -> str:
        plan = _plan(context)
        if plan["deploy_strategy"] == "helm":
            return f"{helm_task}_{plan['to_env'].replace('-', '_')}"
        return argocd_task
    return rollout


def task_record_smoke(**context) -> None:
    from release.registry import Registry

    plan = _plan(context)
    evidence = {"passed": True, "run_id": context["run_id"], "at": datetime.now(timezone.utc).isoformat()}
    Registry.from_config(_config()).record_evidence(
        plan["to_env"], {i["service"]: {"version": i["version"], "smoke": evidence} for i in plan["items"]},
        by=plan["requester"], run_id=context["run_id"])


def task_rollback(**context) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from release.pipeline import failed_rollout_step
    from release.registry import Registry

    plan, ti = _plan(context), context["ti"]
    if not ti.xcom_pull(task_ids="deploy"):
        raise AirflowSkipException("nothing was deployed, so there is nothing to roll back")
    step = failed_rollout_step(ti, plan["deploy_strategy"], "wait_synced", "smoke")
    what = f"the {step} of {', '.join(plan['services'])} in {plan['to_env']} failed"
    registry = Registry.from_config(_config())
    first_time = [i["service"] for i in plan["items"] if i["replaces"] is None]
    to_restore = [i["service"] for i in plan["items"] if i["replaces"] is not None]
    sha = None
    if to_restore:
        sha = registry.record_rollback(plan["to_env"], to_restore, by="release-platform", run_id=context["run_id"],
                                       reason=f"automatic rollback: {what}", outcome="failed").sha
        print(f"rollback commit {sha}; {roll_out(plan, sha)}")
    print(f"{what}; restoring {', '.join(to_restore) or 'nothing'}"
          + (f"; {', '.join(first_time)} had no earlier version in {plan['to_env']}" if first_time else ""))
    result = {"what": what, "gitops_commit": sha or "", "restored": to_restore}
    if sha is None:  # nothing to sync or smoke-test again; the report still fails the run
        ti.xcom_push(key="return_value", value=result)
        raise AirflowSkipException(f"{what}; no earlier version to restore")
    return result


ROLLBACK_TASKS = ("rollout_rollback", "wait_rollback", "helm_rollback_", "smoke_after_rollback")


def task_report(**context) -> None:
    """The run's one leaf, so the run's state is its verdict: success only if the promotion was
    deployed and nothing failed; its outcome (release.outcome) becomes the run's note."""
    from airflow.sdk.exceptions import AirflowFailException

    from release import outcome
    from release.registry import Registry

    ti = context["ti"]
    plan, deployed, rolled = _plan(context), ti.xcom_pull(task_ids="deploy"), ti.xcom_pull(task_ids="rollback")
    failed = outcome.failed_tasks(context)
    if rolled:
        now = Registry.from_config(_config()).state(plan["to_env"])
        restored = ", ".join(f"{s} {now[s].version}" for s in rolled["restored"] if s in now)
        first_time = [i["service"] for i in plan["items"] if i["service"] not in rolled["restored"]]
        message = rolled["what"]
        if restored:
            message += f"; rolled {plan['to_env']} back to {restored} (commit {rolled['gitops_commit'][:12]})"
        if first_time:
            message += f"; no earlier version of {', '.join(first_time)} in {plan['to_env']} to roll back to"
        broken = [t for t in failed if t.startswith(ROLLBACK_TASKS)]
        _fail(message + (f"; the rollback failed too at {', '.join(broken)}" if broken else ""))
    if not deployed:
        why = outcome.recorded(context, failed)
        if why:  # the task that stopped the run said why; that stays the run's note
            raise AirflowFailException(f"nothing was deployed: {why}")
        _fail(f"nothing was deployed: {', '.join(failed) or 'an earlier task'} failed (see its log)")
    what = ", ".join(f"{i['service']} {i['version']}" for i in plan["items"])
    line = (f"deployed {what} to {plan['to_env']}, commit {deployed['gitops_commit'][:12]}"
            + (f", approved by {deployed['approved_by']}" if deployed.get("approved_by") else ""))
    if failed:
        _fail(f"{line}, but {', '.join(failed)} failed")
    print(outcome.record(ti, line))


# -- the DAG -----------------------------------------------------------------------------------

DOC = """
### Promote a release one environment forward

Trigger with `services` (names, or `["*"]` for everything `from_env` runs), `from_env`,
`to_env` (the next environment), optionally `version` (default: what `from_env` runs) and
`reason` (required where approval is). The exact digests `from_env` runs move forward:

1. **validate** every param against the config and the registry, before anything happens;
2. **gates**, each with its evidence in the log: smoke passed in `from_env`, the scan summary
   passes `to_env`'s policy (re-evaluated), `cosign verify` on every digest, no deploy freeze;
3. **approval** where `to_env` requires it (prod): the approvers other than the requester are
   asked in *Required actions* (Airflow refuses the requester's answer); a rejection or no answer
   in time deploys nothing;
4. **deploy**: one GitOps commit for all services, an Argo CD sync (or, where `to_env` uses the
   `helm` strategy, `helm upgrade --install --atomic --wait` of exactly that commit), smoke tests;
5. a failed rollout or smoke test **rolls back** every promoted service in one commit, deployed
   the same way, and fails the run.

`report` decides the run's colour: green only when the promotion was deployed and nothing
failed. A refused, rejected, frozen-out or failed promotion is red, and the run's note says what
happened ("deployed ... to prod, commit ...", "refused: ...", "rejected by bob", "... rolled back").

Promotions run **one at a time, whatever their environments** (`max_active_runs=1`): a later
one waits in *queued*, in trigger order, until the running one has finished; none is dropped
and two never interleave. The price: a run parked at an approval (up to the environment's
`response_timeout_minutes`) or waiting out a deploy freeze holds back every other promotion,
to any environment; answer it, or mark it failed, to let the queue move. Airflow has no lock per
environment that spans a whole run (pools count single tasks and never an approval wait).
"""


def reason_help(config: PlatformConfig) -> str:
    gated = [e for e in config.env_order[1:] if config.environments[e].approval.required]
    return f"why; required for a promotion to {' or '.join(gated)}" if gated else "why (optional)"


def synced_sensor(task_id: str, plan: str, commit_of: str, conn: str):
    """Wait for the plan's Application to be Synced at the commit task `commit_of` made, and
    Healthy, within the target environment's `argocd.sync_timeout_minutes` (`plan` is the
    Jinja expression of the validated plan; promote and rollback share this)."""
    from release.argocd import ApplicationSyncedSensor

    return ApplicationSyncedSensor(
        task_id=task_id, kubernetes_conn_id=conn,
        namespace="{{ %s['argocd_namespace'] }}" % plan, application="{{ %s['argocd_application'] }}" % plan,
        revision="{{ ti.xcom_pull(task_ids='%s')['gitops_commit'] }}" % commit_of,
        timeout_seconds="{{ %s['sync_timeout_seconds'] }}" % plan, poll_interval=1.0)


def build_promote_dag(config: PlatformConfig):
    from datetime import timedelta

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param

    from release.approval import ApprovalByOthers
    from release.assets import REGISTRY
    from release.notify import on_failure
    from release.operators import FreezeEndSensor
    from release.pods import PodStep, SecretVolume, pod_operator

    plan = "ti.xcom_pull(task_ids='validate')"
    with DAG(
        dag_id="promote",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},  # task log, plus Slack / e-mail if configured
        max_active_runs=1,  # one promotion at a time, to any env: later ones queue (see DOC and the README)
        tags=["release", "promotion"],
        doc_md=DOC,
        render_template_as_native_obj=True,
        params={
            "services": Param(["*"], type="array", items={"type": "string", "enum": ["*", *config.services]},
                              description="services to promote, or * for all"),
            "from_env": Param(config.env_order[0], type="string", enum=config.env_order[:-1]),
            "to_env": Param(config.env_order[1] if len(config.env_order) > 1 else "", type="string", enum=config.env_order[1:]),
            "version": Param(None, type=["null", "string"], description="default: what from_env runs"),
            # Nullable, so the trigger form accepts it empty; validate insists where approval is required.
            "reason": Param("", type=["null", "string"], maxLength=MAX_REASON, description=reason_help(config)),
        },
    ) as dag:
        validate = PythonOperator(task_id="validate", python_callable=task_validate)
        smoke_gate = PythonOperator(task_id="gate_smoke", python_callable=task_gate_smoke)
        scan_gate = PythonOperator(task_id="gate_scan", python_callable=task_gate_scan)
        freeze_gate = PythonOperator(task_id="gate_freeze", python_callable=task_gate_freeze)
        wait_freeze = FreezeEndSensor(task_id="wait_freeze", target_time="{{ ti.xcom_pull(task_ids='gate_freeze') }}")
        conn = "{{ %s['kubernetes_conn_id'] }}" % plan
        pods = {"service": "promote", "commit": "promotion", "namespace": "{{ %s['namespace'] }}" % plan,
                "kubernetes_conn_id": conn}
        verify = pod_operator("verify_signatures", PodStep(
            "verify-signatures", config.pipelines.tools.cosign, args=[],
            secret_volumes=(SecretVolume(config.pipelines.cosign_key_secret, "/cosign"),)), **pods)
        verify.arguments = "{{ %s['verify_args'] }}" % plan
        needs_approval = BranchPythonOperator(task_id="needs_approval", python_callable=task_needs_approval)
        no_approval = EmptyOperator(task_id="no_approval")
        deploy = PythonOperator(task_id="deploy", python_callable=task_deploy,
                                outlets=[REGISTRY], trigger_rule="none_failed_min_one_success")
        for env_name, env in config.environments.items():
            if not env.approval.required:
                continue
            key = env_name.replace("-", "_")
            approve = ApprovalByOthers(
                task_id=f"approve_{key}",
                subject="{{ %s['subject'] }}" % plan,
                body="{{ %s['body'] }}" % plan,
                approvers=env.approval.approvers, action="promotion",
                response_timeout=timedelta(minutes=env.approval.response_timeout_minutes),
            )
            four_eyes = PythonOperator(task_id=f"four_eyes_{key}", python_callable=task_four_eyes(f"approve_{key}"))
            needs_approval >> approve >> four_eyes >> deploy
        def synced(task_id: str, commit_of: str):
            return synced_sensor(task_id, plan, commit_of, conn)

        wait = synced("wait_synced", "deploy")
        # The smoke tests follow whichever rollout the branch picked (the other is skipped).
        smoke = pod_operator("smoke", PodStep("smoke", config.pipelines.tools.curl, args=[]),
                             trigger_rule="none_failed_min_one_success", **pods)
        smoke.arguments = "{{ %s['smoke_args'] }}" % plan
        record_smoke = PythonOperator(task_id="record_smoke", python_callable=task_record_smoke, outlets=[REGISTRY])
        rollback = PythonOperator(task_id="rollback", python_callable=task_rollback, trigger_rule="one_failed",
                                  outlets=[REGISTRY])
        wait_rollback = synced("wait_rollback", "rollback")
        smoke_after = pod_operator("smoke_after_rollback", PodStep("smoke-after-rollback", config.pipelines.tools.curl, args=[]),
                                   trigger_rule="none_failed_min_one_success", **pods)
        smoke_after.arguments = "{{ %s['smoke_args'] }}" % plan
        report = PythonOperator(task_id="report", python_callable=task_report, trigger_rule="all_done")
        rollout = BranchPythonOperator(task_id="rollout", python_callable=task_rollout("wait_synced", "helm"))
        rollout_rollback = BranchPythonOperator(task_id="rollout_rollback",
                                                python_callable=task_rollout("wait_rollback", "helm_rollback"))
        helm_envs = [e for e in config.env_order[1:] if config.environments[e].deploy_strategy == "helm"]
        helm = [helm_pod(config, e, "helm", "deploy", "promote", "promotion") for e in helm_envs]
        helm_rollback = [helm_pod(config, e, "helm_rollback", "rollback", "promote", "promotion") for e in helm_envs]

        validate >> [smoke_gate, scan_gate, freeze_gate, verify]
        freeze_gate >> wait_freeze
        [smoke_gate, scan_gate, wait_freeze, verify] >> needs_approval >> no_approval >> deploy
        deploy >> rollout >> [wait, *helm] >> smoke >> record_smoke
        [wait, *helm, smoke] >> rollback >> rollout_rollback >> [wait_rollback, *helm_rollback] >> smoke_after >> report
        record_smoke >> report
    return dag


def helm_pod(config: PlatformConfig, env: str, task: str, commit_of: str, service: str, commit: str):
    """`<task>_<env>`: the helm pod that deploys the GitOps commit task `commit_of` wrote to `env`
    (promote and rollback pick it at run time; its namespace, connection and pool are env's)."""
    from release import steps
    from release.pods import pod_operator

    environment = config.environments[env]
    step = steps.helm_deploy(config, env, "{{ ti.xcom_pull(task_ids='%s')['gitops_commit'] }}" % commit_of,
                             step=f"{task.replace('_', '-')}-{env}")
    return pod_operator(f"{task}_{env.replace('-', '_')}", step, service=service, commit=commit,
                        namespace=environment.namespace, kubernetes_conn_id=environment.kubernetes_conn_id,
                        pool=steps.helm_pool(env))
