"""`promote`: move the exact digests one environment runs to the next, through gates.

    validate -> gate_smoke, gate_scan, gate_freeze -> wait_freeze, verify_signatures
      -> needs_approval -> approve_<env> | no_approval -> hand_over (to deploy-<to_env>)

Everything a user typed is checked by `validate` before anything is written or any pod is
created. The gates and the approval happen here, before the change joins the queue: an
approval parked for hours holds back nothing else. `hand_over` (release.handover) gives the
change set to `deploy-<to_env>`, which applies changes to that environment one at a time and
checks the change again itself (release.deploy), and ends with its outcome.
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
                      "replaces_image": target.image if target else None,
                      "replaces_commit": (target.evidence or {}).get("commit") if target else None})
    env = config.environments[to_env]
    return {
        "kind": "promotion", "from_env": from_env, "to_env": to_env, "requester": requester, "reason": reason,
        "items": items, "services": names,
        "needs_approval": approval.required, "approvers": approval.approvers,
        "kubernetes_conn_id": env.kubernetes_conn_id, "namespace": env.namespace,
        "verify_args": ["verify", "--key", "/cosign/cosign.pub", "--insecure-ignore-tlog=true", "--output", "json",
                        *[i["image"] for i in items]],
    }


def describe(plan: dict, run_url: str = "") -> tuple[str, str]:
    """Subject and body an approver can decide on."""
    names = ", ".join(plan["services"])
    subject = f"Promote {names} from {plan['from_env']} to {plan['to_env']}?"
    lines = [f"Requested by **{plan['requester']}**: {plan['reason'] or '(no reason given)'}", ""]
    for i in plan["items"]:
        scan = _recorded(i, "scan")
        counts = ", ".join(f"{k} {v}" for k, v in _mapping(scan.get("counts")).items() if v) or "no findings"
        lines.append(f"- **{i['service']}** {i['replaces'] or '(not deployed)'} -> **{i['version']}**  ")
        lines.append(f"  `{i['image']}`  ")
        lines.append(f"  scan: {counts if scan else 'not recorded'}; smoke in {plan['from_env']}: "
                     f"{'passed' if _smoke_passed(i) else 'not recorded'}")
    if run_url:
        lines += ["", f"[The run]({run_url})"]
    return subject, "\n".join(lines)


# -- gates ----------------------------------------------------------------------------------


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _recorded(item: dict, key: str) -> dict:
    """The evidence record `key` of a plan item; empty when missing or not a record (a hand edit)."""
    return _mapping(_mapping(item.get("evidence")).get(key))


def _smoke_passed(item: dict) -> bool:
    return _recorded(item, "smoke").get("passed") is True


def gate_smoke(plan: dict) -> list[str]:
    failed = [f"{i['service']} {i['version']}" for i in plan["items"] if not _smoke_passed(i)]
    if failed:
        raise PromotionError(f"gate smoke: no passed smoke test in {plan['from_env']} is recorded for: {', '.join(failed)}")
    return [f"{i['service']} {i['version']}: smoke passed in {plan['from_env']} ({_recorded(i, 'smoke').get('run_id')})"
            for i in plan["items"]]


def gate_scan(plan: dict, config: PlatformConfig, today: date) -> list[str]:
    from release.pipeline import scan_policy_for
    from release.scan import ScanReportError, reevaluate

    evidence, problems = [], []
    for i in plan["items"]:
        scan = _mapping(i.get("evidence")).get("scan")
        if not scan:
            problems.append(f"{i['service']} {i['version']}: no scan summary recorded")
            continue
        policy = scan_policy_for(config, i["service"], plan["to_env"])
        rescan = _mapping(i.get("evidence")).get("rescan") or {}
        if not isinstance(rescan, dict):
            problems.append(f"{i['service']} {i['version']}: the recorded nightly re-scan is not a record: {str(rescan)[:80]!r}")
            continue
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
            blocking = rescan.get("blocking")
            ids = ", ".join(map(str, blocking)) if isinstance(blocking, list) else repr(blocking)
            problems.append(f"{i['service']} {i['version']}: the nightly re-scan found blocking CVEs: {ids}")
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
    from release.registry_file import RegistryFileError

    try:
        plan = planner(dict(context["params"]), config, Registry.from_config(config).snapshot(), requester)
    except PromotionError as exc:
        _refuse(str(exc))
    except RegistryFileError as exc:  # a hand edit broke the registry: fix or revert it by a commit
        _fail(f"cannot read the registry: {exc}")
    print(f"{plan['subject']}\n{plan['body']}")
    return plan


def _plan_with_description(params, config, state, requester) -> dict:
    from release.github.changes import describe_changes

    plan = plan_promotion(params, config, state, requester)
    plan["subject"], plan["body"] = describe(plan)
    return describe_changes(config, plan)  # the commits and PRs being approved, where GitHub is on


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


def _changes_line(context) -> str | None:
    """What the run's note adds to the deploy's message: the commits and PRs promoted."""
    return (context["ti"].xcom_pull(task_ids="validate") or {}).get("changes")


def change_set(kind: str):
    """What `hand_over` gives deploy-<env>: the validated plan's exact digests, its requester and
    reason, and this run (whose approval and plan deploy-<env> reads from Airflow itself)."""
    def build(context) -> dict:
        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="validate")
        if not plan:
            _refuse(f"{kind}: validate recorded no plan for this run (was it marked success by hand?)")
        return {"kind": kind, "env": plan["to_env"], **({"from_env": plan["from_env"]} if kind == "promotion" else {}),
                "items": [{"service": i["service"], "version": i["version"], "image": i["image"]} for i in plan["items"]],
                "requester": plan["requester"], "reason": plan["reason"],
                "caller": {"dag_id": ti.dag_id, "run_id": ti.run_id}}
    return build


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
4. **hand_over** the change set to `deploy-<to_env>` and wait for it (deferred): it checks the
   change again (digests, gates, the approval recorded in this run), makes one GitOps commit,
   rolls it out, smoke-tests each service with its own settings, and on a failed rollout or smoke
   test rolls every promoted service back in one commit. Its "Triggered DAG" link opens that run.

The run is green only when the promotion was deployed. A refused, rejected, frozen-out or
failed promotion is red, and the run's note says what happened ("deployed ... to prod, commit
...", "refused: ...", "rejected by bob", "... rolled back").

Promotions to different environments run side by side; changes to one environment apply one at
a time, in the order they were handed over, in `deploy-<env>`. A run parked at an approval
holds back nothing: it joins its environment's queue only once approved.
"""


def reason_help(config: PlatformConfig) -> str:
    gated = [e for e in config.env_order[1:] if config.environments[e].approval.required]
    return f"why; required for a promotion to {' or '.join(gated)}" if gated else "why (optional)"


# Runs of promote (and rollback) at once: each waits for its approval or its turn in deploy-<env>.
MAX_ACTIVE_REQUESTS = 16


def build_promote_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param

    from release.handover import HandOver
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
        max_active_runs=MAX_ACTIVE_REQUESTS,  # the environment's deploy-<env> serialises the changes
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
        verify = pod_operator("verify_signatures", PodStep(
            "verify-signatures", config.pipelines.tools.cosign, args=[],
            secret_volumes=(SecretVolume(config.pipelines.cosign_key_secret, "/cosign"),)),
            service="promote", commit="promotion", namespace="{{ %s['namespace'] }}" % plan,
            kubernetes_conn_id="{{ %s['kubernetes_conn_id'] }}" % plan)
        verify.arguments = "{{ %s['verify_args'] }}" % plan
        needs_approval = BranchPythonOperator(task_id="needs_approval", python_callable=task_needs_approval)
        no_approval = EmptyOperator(task_id="no_approval")
        hand_over = HandOver(change_set=change_set("promotion"), trigger_rule="none_failed_min_one_success",
                             also=_changes_line)

        validate >> [smoke_gate, scan_gate, freeze_gate, verify]
        freeze_gate >> wait_freeze
        [smoke_gate, scan_gate, wait_freeze, verify] >> needs_approval >> no_approval >> hand_over
        for env_name, env in config.environments.items():
            if env.approval.required:
                needs_approval >> approval_task(env_name, env, "promotion", plan) >> hand_over
    return dag


def approval_task(env_name: str, env, action: str, plan: str):
    """`approve_<env>`: the env's approvers other than the requester decide on the plan (the Jinja
    expression `plan` gives its subject and body); promote and rollback share it."""
    from datetime import timedelta

    from release.approval import ApprovalByOthers

    return ApprovalByOthers(
        task_id=f"approve_{env_name.replace('-', '_')}",
        subject="{{ %s['subject'] }}" % plan, body="{{ %s['body'] }}" % plan,
        approvers=env.approval.approvers, action=action,
        response_timeout=timedelta(minutes=env.approval.response_timeout_minutes))
