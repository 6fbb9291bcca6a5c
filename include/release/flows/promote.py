"""`promote`: move the exact digests one environment runs to the next, through gates.

    validate -> gate_smoke, gate_scan, gate_freeze -> wait_freeze, verify_signatures
      -> needs_approval -> approve_<env> | no_approval -> hand_over (to deploy-<to_env>)

Everything a user typed is checked by `validate` before anything is written or any pod is
created. The gates and the approval happen here, before the change joins the queue: an
approval parked for hours holds back nothing else. `hand_over` (release.flows.handover) gives the
change set to `deploy-<to_env>`, which applies changes to that environment one at a time and
checks the change again itself (release.flows.deploy), and ends with its outcome.
"""

from __future__ import annotations

from datetime import datetime, timezone

from release.domain.config import PlatformConfig, load_config
from release.domain.gates import PromotionError, gate_freeze, gate_scan, gate_smoke
from release.domain.plan_models import Promotion
from release.domain.plans import describe, plan_promotion
from release.domain.values import MAX_REASON
from release.flows.outcome import refuse_task
from release.flows.requests import MAX_ACTIVE_REQUESTS, VALIDATE, approval_task, change_set, plan_of, run_planner, task_needs_approval


# -- task callables --------------------------------------------------------------------------


def _plan_with_description(params, config, state, requester) -> Promotion:
    from release.github.changes import describe_changes

    plan = plan_promotion(params, config, state, requester)
    subject, body = describe(plan)
    return describe_changes(config, plan.model_copy(update={"subject": subject, "body": body}))  # the commits and PRs being approved, where GitHub is on


def _changes_line(context) -> str | None:
    """What the run's note adds to the deploy's message: the commits and PRs promoted."""
    plan = plan_of(context)
    return plan.changes if isinstance(plan, Promotion) else None


VERIFY_ARGS = "verify_args"  # the XCom of validate that verify_signatures runs with


def task_validate(**context) -> dict:
    from release.k8s import steps

    plan = run_planner(_plan_with_description, context)
    context["ti"].xcom_push(key=VERIFY_ARGS, value=steps.verify_signatures_args([i.image for i in plan.items]))
    return plan.model_dump(mode="json")


def task_gate_smoke(**context) -> list[str]:
    try:
        lines = gate_smoke(plan_of(context))
    except PromotionError as exc:
        refuse_task(str(exc))
    print("\n".join(lines))
    return lines


def task_gate_scan(**context) -> list[str]:
    from release.domain.scan import utc_today

    try:
        lines = gate_scan(plan_of(context), load_config(), utc_today())
    except PromotionError as exc:
        refuse_task(str(exc))
    print("\n".join(lines))
    return lines


def task_gate_freeze(**context) -> str:
    plan = plan_of(context)
    now = datetime.now(timezone.utc)
    try:
        end = gate_freeze(load_config(), plan.to_env, now)
    except PromotionError as exc:
        refuse_task(str(exc))
    print(f"{plan.to_env} is frozen until {end}: waiting" if end else f"no deploy freeze active for {plan.to_env}")
    return end or now.isoformat()


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


def build_promote_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param

    from release.flows.handover import HandOver
    from release.flows.notify import on_failure
    from release.k8s.operators import FreezeEndSensor
    from release.k8s import steps
    from release.k8s.pods import pod_operator

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
        # The environment a template names (the verify pod's namespace and connection), read
        # from the config this DAG was built from.
        user_defined_macros={"environment": config.environments.__getitem__},
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
        validate = PythonOperator(task_id=VALIDATE, python_callable=task_validate)
        smoke_gate = PythonOperator(task_id="gate_smoke", python_callable=task_gate_smoke)
        scan_gate = PythonOperator(task_id="gate_scan", python_callable=task_gate_scan)
        freeze_gate = PythonOperator(task_id="gate_freeze", python_callable=task_gate_freeze)
        wait_freeze = FreezeEndSensor(task_id="wait_freeze", target_time=freeze_gate.output)
        verify = pod_operator("verify_signatures", steps.verify_signatures(config), service="promote", commit="promotion",
                              namespace="{{ environment(params.to_env).namespace }}",
                              kubernetes_conn_id="{{ environment(params.to_env).kubernetes_conn_id }}")
        verify.arguments = validate.output[VERIFY_ARGS]
        needs_approval = BranchPythonOperator(task_id="needs_approval", python_callable=task_needs_approval)
        no_approval = EmptyOperator(task_id="no_approval")
        hand_over = HandOver(change_set=change_set("promotion"), trigger_rule="none_failed_min_one_success",
                             also=_changes_line)

        validate >> [smoke_gate, scan_gate, freeze_gate, verify]
        freeze_gate >> wait_freeze
        [smoke_gate, scan_gate, wait_freeze, verify] >> needs_approval >> no_approval >> hand_over
        for env_name, env in config.environments.items():
            if env.approval.required:
                needs_approval >> approval_task(env_name, env, "promotion", validate) >> hand_over
    return dag
