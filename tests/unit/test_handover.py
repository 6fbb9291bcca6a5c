"""hand_over: one deploy run per calling run, whatever retries; ends with the deploy run's outcome."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from release.flows.handover import HandOver, handover_run_id

CHANGE = {"kind": "promotion", "env": "prod", "from_env": "staging", "items": [], "requester": "alice", "reason": "r",
          "caller": {"dag_id": "promote", "run_id": "manual__1"}}


class TI(SimpleNamespace):
    def __init__(self, existing: str | None = None, outcomes: dict | None = None):
        super().__init__(dag_id="promote", run_id="manual__1", task_id="hand_over", pushed={}, existing=existing,
                         outcomes=outcomes or {})

    def get_dag(self, dag_id):
        return SimpleNamespace(is_paused=False)

    def get_dagrun_state(self, dag_id, run_id):
        if self.existing is None:
            raise RuntimeError("DagRun not found")
        return self.existing

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def xcom_pull(self, task_ids, key, dag_id, run_id, map_indexes):
        return self.outcomes.get((dag_id, run_id, task_ids, key))


def operator() -> HandOver:
    return HandOver(change_set=lambda context: dict(CHANGE))


def test_the_first_try_triggers_the_environments_deploy_run_under_the_callers_id():
    from airflow.sdk.exceptions import DagRunTriggerException

    ti = TI()
    with pytest.raises(DagRunTriggerException) as exc:
        operator().execute({"ti": ti})
    assert exc.value.trigger_dag_id == "deploy-prod"
    assert exc.value.dag_run_id == handover_run_id("promote", "manual__1") == "promote.manual__1"
    assert exc.value.conf == {"change": CHANGE} and exc.value.wait_for_completion and exc.value.deferrable


@pytest.mark.parametrize("state", ["queued", "running", "success", "failed"])
def test_a_retry_waits_for_the_deploy_run_it_started_and_never_starts_another(state):
    from airflow.providers.standard.triggers.external_task import DagStateTrigger
    from airflow.sdk.exceptions import TaskDeferred

    ti = TI(existing=state)
    with pytest.raises(TaskDeferred) as exc:
        operator().execute({"ti": ti})
    trigger = exc.value.trigger
    assert isinstance(trigger, DagStateTrigger)
    assert (trigger.dag_id, trigger.run_ids) == ("deploy-prod", ["promote.manual__1"])
    assert ti.pushed["trigger_run_id"] == "promote.manual__1"  # the "Triggered DAG" link still opens it


def event(state: str) -> tuple:
    return ("airflow.providers.standard.triggers.external_task.DagStateTrigger",
            {"dag_id": "deploy-prod", "run_ids": ["promote.manual__1"], "promote.manual__1": state})


def test_the_caller_ends_with_the_deploy_runs_outcome_linked():
    from airflow.sdk.exceptions import AirflowFailException

    said = {("deploy-prod", "promote.manual__1", "report", "outcome"): "deployed service-a 1.1 to prod, commit abc"}
    ti = TI(outcomes=said)
    result = operator().execute_complete({"ti": ti}, event("success"))
    assert result == {"deploy_dag_id": "deploy-prod", "deploy_run_id": "promote.manual__1", "state": "success"}
    assert ti.pushed["outcome"] == "deployed service-a 1.1 to prod, commit abc (deploy-prod run promote.manual__1)"

    said = {("deploy-prod", "promote.manual__1", "report", "outcome"): "refused: nothing was written to the environment: x"}
    ti = TI(outcomes=said)
    with pytest.raises(AirflowFailException, match="^refused: nothing was written to the environment: x "
                                                   r"\(deploy-prod run promote.manual__1\)$"):
        operator().execute_complete({"ti": ti}, event("failed"))
    ti = TI()  # a deploy run that recorded nothing (failed before its report) still fails the caller
    with pytest.raises(AirflowFailException, match="deploy-prod run failed"):
        operator().execute_complete({"ti": ti}, event("failed"))


def test_an_approval_fails_for_good_only_when_a_person_decided_so():
    """Rejections, timeouts and a lone requester fail without retry (AirflowFailException); a
    failure of the platform's own (the defer race when an answer comes within a second) is retried
    seconds later, asking again, instead of failing the run."""
    from datetime import timedelta

    from release.flows.approval import ApprovalByOthers

    approve = ApprovalByOthers(task_id="approve_prod", subject="s", approvers=["alice", "bob"])
    assert approve.retries == 2 and approve.retry_delay <= timedelta(seconds=5)
