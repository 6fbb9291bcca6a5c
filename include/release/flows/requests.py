"""What promote and rollback share: plan in `validate`, approve where the environment says so,
hand the change set over to `deploy-<env>`.

    validate -> ... -> needs_approval -> approve_<env> | no_approval -> hand_over
"""

from __future__ import annotations

from datetime import timedelta

from release.domain.config import load_config
from release.domain.gates import PromotionError
from release.domain.plan_models import Promotion, Rollback
from release.domain.registry_file import RegistryFileError
from release.flows import xcoms
from release.flows.outcome import fail_task, refuse_task

# Runs of promote (and rollback) at once: each waits for its approval or its turn in deploy-<env>.
MAX_ACTIVE_REQUESTS = 16


VALIDATE = xcoms.VALIDATE  # the task id of the planner; its XCom is the plan (release.domain.plan_models)
APPROVAL_KEYS = ("subject", "body")


def plan_of(context) -> Promotion | Rollback | None:
    """The plan `validate` recorded for this run (None if it recorded none)."""
    return xcoms.plan(context["ti"])


def run_planner(planner, context) -> Promotion | Rollback:
    """The `validate` task of promote and rollback: plan from the params, the config and the
    registry, as the user who triggered the run; a refusal fails the run naming the param. The
    task returns it as JSON (`model_dump(mode="json")`), its XCom; `plan_of` reads it back typed."""
    from release.gitops.registry import Registry

    config = load_config()
    requester = getattr(context["dag_run"], "triggering_user_name", None) or ""
    try:
        plan = planner(dict(context["params"]), config, Registry.from_config(config).snapshot(), requester)
    except PromotionError as exc:
        refuse_task(str(exc))
    except RegistryFileError as exc:  # a hand edit broke the registry: fix or revert it by a commit
        fail_task(f"cannot read the registry: {exc}")
    print(f"{plan.subject}\n{plan.body}")
    # What an approver reads, as XComs of their own: approve_<env> takes them by reference (XComArg).
    for key in APPROVAL_KEYS:
        context["ti"].xcom_push(key=key, value=getattr(plan, key))
    return plan


def task_needs_approval(**context) -> str:
    plan = plan_of(context)
    return f"approve_{plan.to_env.replace('-', '_')}" if plan.needs_approval(load_config()) else "no_approval"


def change_set(kind: str):
    """What `hand_over` gives deploy-<env>: the validated plan's exact digests, its requester and
    reason, and this run (whose approval and plan deploy-<env> reads from Airflow itself)."""
    def build(context) -> dict:
        ti = context["ti"]
        plan = plan_of(context)
        if not plan:
            refuse_task(f"{kind}: validate recorded no plan for this run (was it marked success by hand?)")
        return {"kind": kind, "env": plan.to_env, **({"from_env": plan.from_env} if kind == "promotion" else {}),
                "items": [{"service": i.service, "version": i.version, "image": i.image} for i in plan.items],
                "requester": plan.requester, "reason": plan.reason,
                "caller": {"dag_id": ti.dag_id, "run_id": ti.run_id}}
    return build


def approval_task(env_name: str, env, action: str, validate):
    """`approve_<env>`: the env's approvers other than the requester decide on the plan `validate`
    made (its subject and body); promote and rollback share it."""
    from release.flows.approval import ApprovalByOthers

    return ApprovalByOthers(
        task_id=f"approve_{env_name.replace('-', '_')}",
        subject=validate.output["subject"], body=validate.output["body"],
        approvers=env.approval.approvers, action=action,
        response_timeout=timedelta(minutes=env.approval.response_timeout_minutes))
