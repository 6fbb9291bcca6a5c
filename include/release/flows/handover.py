"""Hand a change set to `deploy-<env>` and wait for it, deferred: no worker is held.

Pipelines, promotions and rollbacks end with a `hand_over` task. It triggers the environment's
`deploy-<env>` with the change set as the run's `change` param, under a run id made from the
calling run (`<dag_id>.<run_id>`), so a retry of `hand_over` finds the run it already started
and waits for that one: a change is never handed over twice. The wait happens in the triggerer
(Airflow's DagStateTrigger). When the deploy run finishes, `hand_over` ends the same way, with
the deploy run's message (linked: the task's "Triggered DAG" button opens that run), which
becomes the calling run's note.
"""

from __future__ import annotations

from typing import Any, Callable

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

from release.flows import outcome, xcoms


def deploy_dag_id(env: str) -> str:
    return f"deploy-{env}"


def handover_run_id(dag_id: str, run_id: str) -> str:
    """The deploy run's id: one per calling run, so a retried hand-over finds it again."""
    return f"{dag_id}.{run_id}"[:250]


class HandOver(TriggerDagRunOperator):
    """Trigger `deploy-<env>` with the change set `change_set(context)` builds, wait deferred,
    and end with the deploy run's outcome."""

    ui_color = "#e0ecff"

    def __init__(self, *, change_set: Callable[[dict], dict], also: Callable[[dict], str | None] | None = None,
                 **kwargs: Any):
        kwargs.setdefault("task_id", "hand_over")
        # trigger_dag_id is set in execute, from the change set's env ("deploy-<env>").
        super().__init__(trigger_dag_id="deploy-", wait_for_completion=True, deferrable=True, poke_interval=1,
                         allowed_states=["success"], failed_states=["failed"], **kwargs)
        self.change_set = change_set
        self.also = also  # more for the message (context -> one line, or None): promote's changes

    def execute(self, context):
        from airflow.providers.standard.triggers.external_task import DagStateTrigger

        change = self.change_set(context)
        ti = context["ti"]
        self.trigger_dag_id = deploy_dag_id(change["env"])
        self.trigger_run_id = handover_run_id(ti.dag_id, ti.run_id)
        self.conf = {"change": change}
        self._warn_if_paused(ti)
        if self._existing_state(ti) is None:
            self.log.info("Handing %s over to %s (run %s)", change.get("kind"), self.trigger_dag_id, self.trigger_run_id)
            return super().execute(context)  # triggers the run, then defers until it finishes
        # A retry of this task: the deploy run exists already; wait for it, never start another.
        self.log.info("%s run %s exists already: waiting for it", self.trigger_dag_id, self.trigger_run_id)
        ti.xcom_push(key="trigger_run_id", value=self.trigger_run_id)
        self.defer(trigger=DagStateTrigger(dag_id=self.trigger_dag_id, states=["success", "failed"],
                                           execution_dates=None, run_ids=[self.trigger_run_id],
                                           poll_interval=self.poke_interval),
                   method_name="execute_complete")

    def _warn_if_paused(self, ti) -> None:
        """A paused deploy-<env> holds every change to its environment in its queue (a way to stop
        all changes to prod for a while); say so, so nobody waits without knowing why."""
        try:
            paused = ti.get_dag(self.trigger_dag_id).is_paused
        except Exception:  # noqa: BLE001 - an older execution API: the run simply waits
            return
        if paused:
            self.log.warning("%s is paused: this change waits in its queue until someone unpauses %s",
                             self.trigger_dag_id, self.trigger_dag_id)

    def _existing_state(self, ti) -> str | None:
        try:
            return ti.get_dagrun_state(dag_id=self.trigger_dag_id, run_id=self.trigger_run_id)
        except Exception:  # noqa: BLE001 - the execution API answers an unknown run with an error
            return None

    def execute_complete(self, context, event):
        _, data = event
        run_id = data["run_ids"][0]
        dag_id = data.get("dag_id") or self.trigger_dag_id
        state = data.get(run_id)
        ti = context["ti"]
        said = xcoms.deploy_outcome(ti, dag_id, run_id)
        message = f"{said or f'{dag_id} run {state}'} ({dag_id} run {run_id})"
        extra = self.also(context) if self.also else None
        if extra:
            message = f"{message}; {extra}"
        if state != "success":
            outcome.fail(ti, message)
        outcome.record(ti, message)
        return {"deploy_dag_id": dag_id, "deploy_run_id": run_id, "state": state}
