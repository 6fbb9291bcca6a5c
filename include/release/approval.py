"""The approval step of promote and rollback: only people who may approve a run are asked.

The environment's approvers, minus whoever triggered the run, are the HITL request's
`assigned_users`, so Airflow itself refuses the requester's answer (403) and the request stays
open for another approver. A run whose only approver is its requester fails at once, naming
why, instead of waiting for nobody (an empty `assigned_users` would let anyone answer). A
rejection or no answer in time fails the task, so the run that deployed nothing is failed, and
records who rejected it as the run's outcome.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.exceptions import HITLRejectException
from airflow.providers.standard.operators.hitl import ApprovalOperator

from release import outcome


def approvers_for(approvers: list[str], requester: str | None) -> list[str]:
    return [a for a in approvers if a != requester]


class ApprovalByOthers(ApprovalOperator):
    """ApprovalOperator for `approvers` other than the run's requester; Reject fails it."""

    def __init__(self, *, approvers: list[str], action: str = "run", **kwargs: Any):
        kwargs.setdefault("fail_on_reject", True)
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
        if "error" in event:
            what = "no answer in time" if event.get("error_type") == "timeout" else f"approval failed: {event['error']}"
            requester = getattr(context["dag_run"], "triggering_user_name", None)
            outcome.fail(ti, f"not approved: {what} from {', '.join(approvers_for(self.approvers, requester))}")
        try:
            return super().execute_complete(context=context, event=event)
        except HITLRejectException:
            who = (event.get("responded_by_user") or {}).get("name") or "an approver"
            outcome.fail(ti, f"rejected by {who}")
