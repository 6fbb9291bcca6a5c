"""The approval step of promote and rollback: only people who may approve a run are asked.

The environment's approvers, minus whoever triggered the run, are the HITL request's
`assigned_users`, so Airflow itself refuses the requester's answer (403) and the request stays
open for another approver. A run whose only approver is its requester fails at once, naming
why, instead of waiting for nobody (an empty `assigned_users` would let anyone answer). A
rejection or no answer in time fails the task, so the run that deployed nothing is failed, and
records who rejected it as the run's outcome.

Approvals that cannot be skipped: once answered, the approval task hands over Airflow's own HITL
record of its answer (who answered, with what, when: the resume event the API server built from
the HITL detail when the approver answered) as the XCom `hitl_record`. Whatever then writes to an environment that
needs approval calls `require_approval` right before it commits: the approval task of THIS run
must have succeeded and have handed over a record that chose "Approve", answered by an allowed
approver other than the user who triggered the run. A task marked "success" by hand in the UI
never ran, so it handed over nothing, and the write is refused.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.exceptions import HITLRejectException
from airflow.providers.standard.operators.hitl import ApprovalOperator

from release.flows import outcome

RECORD_KEY = "hitl_record"


class ApprovalMissing(ValueError):
    """No valid approval record for this run: the write must not happen."""


def approval_task(env: str) -> str:
    return f"approve_{env.replace('-', '_')}"


def own_record(ti, event: dict[str, Any]) -> dict:
    """Airflow's HITL record of the running approval task as it resumed: the API server packed
    the answer from its HITL detail row into this task's resume event when the approver
    answered (`HITLDetail.as_resume_event_payload`). The execution API gives a task no route to
    re-read the row (the task supervisor does not serve `GetHITLDetailResponse`; only the
    triggerer does), so the event is the record this task can read."""
    user = event.get("responded_by_user") or {}
    at = event.get("responded_at")
    return {"run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index, "ti_id": str(ti.id),
            "try_number": ti.try_number, "response_received": bool(event.get("chosen_options")),
            "responded_by": {"id": user.get("id"), "name": user.get("name")} if user else None,
            "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
            "chosen_options": list(event.get("chosen_options") or [])}


def require_approval(context, env: str, approvers: list[str], action: str = "change",
                     approved_in: tuple[str, str] | None = None) -> str:
    """Check, from inside the task about to write to `env`, that the run holding the approval
    (this run, or `approved_in` = (dag_id, run_id) of the run that asked for the change) was
    approved; return the approver's name, or raise ApprovalMissing saying what is missing.

    The requester is the user who triggered that run, as Airflow recorded it (never a param or a
    plan); `approvers` come from the platform config. Reads that run's task states and the record
    its approval task handed over (see the module's doc for what this can and cannot prove)."""
    ti = context["ti"]
    if approved_in is None:
        dag_id, run_id, run = ti.dag_id, ti.run_id, context["dag_run"]
    else:
        from airflow.sdk.execution_time.comms import _fetch_dag_run

        dag_id, run_id = approved_in
        run = _fetch_dag_run(dag_id=dag_id, run_id=run_id)
    task_id = approval_task(env)
    requester = getattr(run, "triggering_user_name", None) or ""
    if not requester:
        raise ApprovalMissing(f"approval: this run has no triggering user, so no one can approve its {action} to {env}")
    state = ti.get_task_states(dag_id=dag_id, task_ids=[task_id], run_ids=[run_id]).get(run_id, {}).get(task_id)
    if state != "success":
        raise ApprovalMissing(f"approval: {task_id} of this run is {state or 'not run'}, not approved; "
                              f"a {action} to {env} needs an approval answered in Airflow")
    record = ti.xcom_pull(task_ids=task_id, key=RECORD_KEY, dag_id=dag_id, run_id=run_id, map_indexes=-1)
    if not isinstance(record, dict) or record.get("run_id") != run_id or record.get("task_id") != task_id:
        raise ApprovalMissing(f"approval: {task_id} of this run recorded no answer (was it marked success by hand?); "
                              f"a {action} to {env} needs an approval answered in Airflow")
    responder = (record.get("responded_by") or {}).get("name") or ""
    if not record.get("response_received") or record.get("chosen_options") != ["Approve"]:
        raise ApprovalMissing(f"approval: {task_id} was answered {record.get('chosen_options')!r}"
                              f"{f' by {responder}' if responder else ''}, not \"Approve\"")
    if responder == requester:
        raise ApprovalMissing(f"four-eyes: {responder} requested this {action} and cannot approve it")
    if responder not in approvers:
        raise ApprovalMissing(f"four-eyes: {responder!r} is not an approver for {env}; allowed: {', '.join(approvers)}")
    return responder


def approvers_for(approvers: list[str], requester: str | None) -> list[str]:
    return [a for a in approvers if a != requester]


class ApprovalByOthers(ApprovalOperator):
    """ApprovalOperator for `approvers` other than the run's requester; Reject fails it."""

    def __init__(self, *, approvers: list[str], action: str = "run", **kwargs: Any):
        from release.k8s.operators import INFRASTRUCTURE_RETRIES

        kwargs.setdefault("fail_on_reject", True)
        # A rejection, no answer in time or a requester who is the only approver fail at once
        # (AirflowFailException). Any other failure is the platform's: Airflow's defer race can
        # fail the task when an answer comes within a second of the request; the retry, seconds
        # later, asks again instead of failing the run.
        kwargs = INFRASTRUCTURE_RETRIES | kwargs
        super().__init__(assigned_users=[{"id": a, "name": a} for a in approvers], **kwargs)
        self.approvers = list(approvers)
        self.action = action

    def execute(self, context):
        requester = getattr(context["dag_run"], "triggering_user_name", None)
        others = approvers_for(self.approvers, requester)
        if not others:
            outcome.refuse(context["ti"], f"approval: {requester} requested this {self.action} and is its only "
                                          f"approver ({', '.join(self.approvers) or 'none configured'}); "
                                          "another approver must be configured")
        # Assigned users are per run: the requester is never among them.
        self.assigned_users = [{"id": a, "name": a} for a in others]
        self.log.info("Waiting for one of %s (requested by %s)", ", ".join(others), requester)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]):
        ti = context["ti"]
        if "error" not in event:
            # Airflow's record, not the trigger's event, is what the write checks (require_approval).
            ti.xcom_push(key=RECORD_KEY, value=own_record(ti, event))
        if "error" in event:
            what = "no answer in time" if event.get("error_type") == "timeout" else f"approval failed: {event['error']}"
            requester = getattr(context["dag_run"], "triggering_user_name", None)
            outcome.fail(ti, f"not approved: {what} from {', '.join(approvers_for(self.approvers, requester))}")
        try:
            return super().execute_complete(context=context, event=event)
        except HITLRejectException:
            who = (event.get("responded_by_user") or {}).get("name") or "an approver"
            outcome.fail(ti, f"rejected by {who}")
