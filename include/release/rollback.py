"""`rollback`: put one service in one environment back on an earlier version, as a new commit.

    validate -> needs_approval -> approve_<env> -> four_eyes_<env> | no_approval
      -> apply -> rollout -> wait_synced | helm_<env> (the `helm` deploy strategy) -> smoke -> record_smoke
"""

from __future__ import annotations

from datetime import datetime, timezone

from release.config import PlatformConfig
from release.promote import (NAME_RE, PromotionError, _plain, check_write_allowed, helm_pod, roll_out, run_planner, synced_sensor, task_four_eyes,
                             task_rollout)
from release.registry import MAX_REASON, USER_RE, VERSION_RE, NoRollbackTarget


def plan_rollback(params: dict, config: PlatformConfig, state, requester: str) -> dict:
    envs = config.env_order
    env = _plain("env", params.get("env"), NAME_RE, ", ".join(envs))
    if env not in envs:
        raise PromotionError(f"env: {env!r} is not allowed; allowed: {', '.join(envs)}")
    running = state.current(env)
    service = _plain("service", params.get("service"), NAME_RE, ", ".join(running) or "none")
    if service not in running:
        raise PromotionError(f"service: {service!r} does not run in {env}; allowed: {', '.join(running) or 'none'}")
    to_version = params.get("to_version")
    if to_version is not None:
        _plain("to_version", to_version, VERSION_RE, "a version such as 1.4.2")
    reason = params.get("reason") or ""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise PromotionError(f"reason: required, at most {MAX_REASON} characters on one line")
    if not USER_RE.fullmatch(requester or ""):
        raise PromotionError(f"the run was triggered by {requester!r}, which is not a user name the registry can record")
    current = running[service]
    try:
        if to_version is None:
            target = state.rollback_target(env, service)
        else:
            target = state.deployed_versions(env, service).get(to_version)
            if target is None or to_version == current.version:
                allowed = [v for v in reversed(list(state.deployed_versions(env, service))) if v != current.version]
                raise NoRollbackTarget(f"to_version: {to_version!r} was never successfully deployed to {env} "
                                       f"before {current.version}; allowed: {', '.join(allowed) or 'none'}")
    except NoRollbackTarget as exc:
        raise PromotionError(str(exc)) from None
    approval = config.environments[env].approval
    namespace, application = config.argocd_application(env)
    from release.promote import smoke_args

    return {
        "action": "rollback", "env": env, "to_env": env, "service": service, "services": [service], "requester": requester, "reason": reason,
        "from_version": current.version, "to_version": target.version, "image": target.image,
        "items": [{"service": service, "version": target.version}],
        "needs_approval": approval.required_for_rollback, "approvers": approval.approvers,
        "kubernetes_conn_id": config.environments[env].kubernetes_conn_id, "namespace": config.environments[env].namespace,
        "deploy_strategy": config.environments[env].deploy_strategy,
        "argocd_namespace": namespace, "argocd_application": application,
        "sync_timeout_seconds": config.environments[env].argocd.sync_timeout_minutes * 60,
        "smoke_args": smoke_args(config, [service], env),
        "subject": f"Roll {service} in {env} back from {current.version} to {target.version}?",
        "body": f"Requested by **{requester}**: {reason}\n\n`{current.image}` -> `{target.image}`",
    }


def task_validate(**context) -> dict:
    return run_planner(plan_rollback, context)


def task_needs_approval(**context) -> str:
    plan = context["ti"].xcom_pull(task_ids="validate")
    return f"approve_{plan['env'].replace('-', '_')}" if plan["needs_approval"] else "no_approval"


def task_apply(**context) -> dict:
    from release import outcome
    from release.config import load_config
    from release.registry import Registry

    plan = context["ti"].xcom_pull(task_ids="validate")
    approved_by = check_write_allowed(context, plan, "rollback")  # None: no approval needed
    result = Registry.from_config(load_config()).record_rollback(
        plan["env"], [plan["service"]], by=plan["requester"], run_id=context["run_id"], reason=plan["reason"],
        to_version=plan["to_version"], outcome="rolled_back", approved_by=approved_by)
    print(f"rolled {plan['service']} in {plan['env']} back to {plan['to_version']} in commit {result.sha}; "
          f"{roll_out(plan, result.sha)}")
    # Until the smoke test passes, this is what the run did (a failed rollout adds what failed).
    outcome.record(context["ti"], _rolled_back(plan, result.sha))
    return {"gitops_commit": result.sha, "approved_by": approved_by}


def _rolled_back(plan: dict, sha: str) -> str:
    return (f"rolled {plan['service']} in {plan['env']} back from {plan['from_version']} to {plan['to_version']}, "
            f"commit {sha[:12]}")


def task_record_smoke(**context) -> None:
    from release import outcome
    from release.config import load_config
    from release.registry import Registry

    plan = context["ti"].xcom_pull(task_ids="validate")
    evidence = {"passed": True, "run_id": context["run_id"], "at": datetime.now(timezone.utc).isoformat()}
    Registry.from_config(load_config()).record_evidence(
        plan["env"], {plan["service"]: {"version": plan["to_version"], "smoke": evidence}},
        by=plan["requester"], run_id=context["run_id"])
    applied = context["ti"].xcom_pull(task_ids="apply")
    approved_by = applied.get("approved_by")  # checked against Airflow's approval record by apply
    outcome.record(context["ti"], _rolled_back(plan, applied["gitops_commit"])
                   + "; smoke test passed" + (f"; approved by {approved_by}" if approved_by else ""))


DOC = """
### Roll a service back

Trigger with `service`, `env`, optionally `to_version` (default: the newest earlier version
that was successfully deployed there and never rolled back) and `reason`. The target must
have been deployed in that environment before. Where the environment's policy says so
(`approval.required_for_rollback`), another approver confirms first (four-eyes). One commit
puts the exact earlier digest back; Argo CD syncs it (or, for an environment with the `helm`
deploy strategy, `helm upgrade --install --atomic --wait` deploys exactly that commit) and the
smoke test runs. History shows the replaced version as `rolled_back`, with the reason.
The run's note says what it did ("rolled service-a in prod back from 1.2.0 to 1.1.0, commit ...;
smoke test passed", "refused: ...", "rejected by bob"); a run that rolled nothing back is failed.
"""


def build_rollback_dag(config: PlatformConfig):
    from datetime import timedelta

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param

    from release.approval import ApprovalByOthers
    from release.assets import REGISTRY
    from release.notify import on_failure
    from release.pods import PodStep, pod_operator

    plan = "ti.xcom_pull(task_ids='validate')"
    conn = "{{ %s['kubernetes_conn_id'] }}" % plan
    with DAG(
        dag_id="rollback",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},  # task log, plus Slack / e-mail if configured
        max_active_runs=1,
        tags=["release", "rollback"],
        doc_md=DOC,
        render_template_as_native_obj=True,
        params={
            "service": Param(next(iter(config.services)), type="string", enum=list(config.services)),
            "env": Param(config.env_order[0], type="string", enum=config.env_order),
            "to_version": Param(None, type=["null", "string"], description="default: the previous version"),
            "reason": Param("", type="string", minLength=1, maxLength=MAX_REASON),
        },
    ) as dag:
        validate = PythonOperator(task_id="validate", python_callable=task_validate)
        needs_approval = BranchPythonOperator(task_id="needs_approval", python_callable=task_needs_approval)
        no_approval = EmptyOperator(task_id="no_approval")
        apply = PythonOperator(task_id="apply", python_callable=task_apply, outlets=[REGISTRY],
                               trigger_rule="none_failed_min_one_success")
        for env_name, env in config.environments.items():
            if not env.approval.required_for_rollback:
                continue
            key = env_name.replace("-", "_")
            approve = ApprovalByOthers(
                task_id=f"approve_{key}", subject="{{ %s['subject'] }}" % plan, body="{{ %s['body'] }}" % plan,
                approvers=env.approval.approvers, action="rollback",
                response_timeout=timedelta(minutes=env.approval.response_timeout_minutes))
            needs_approval >> approve >> PythonOperator(task_id=f"four_eyes_{key}",
                                                        python_callable=task_four_eyes(f"approve_{key}")) >> apply
        wait = synced_sensor("wait_synced", plan, "apply", conn)
        # The smoke test follows whichever rollout the branch picked (the other is skipped).
        smoke = pod_operator("smoke", PodStep("smoke", config.pipelines.tools.curl, args=[]), service="rollback",
                             commit="rollback", namespace="{{ %s['namespace'] }}" % plan, kubernetes_conn_id=conn,
                             trigger_rule="none_failed_min_one_success")
        smoke.arguments = "{{ %s['smoke_args'] }}" % plan
        record = PythonOperator(task_id="record_smoke", python_callable=task_record_smoke, outlets=[REGISTRY])
        rollout = BranchPythonOperator(task_id="rollout", python_callable=task_rollout("wait_synced", "helm"))
        helm = [helm_pod(config, e, "helm", "apply", "rollback", "rollback")
                for e in config.env_order if config.environments[e].deploy_strategy == "helm"]
        validate >> needs_approval >> no_approval >> apply >> rollout >> [wait, *helm] >> smoke >> record
    return dag
