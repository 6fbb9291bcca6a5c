"""DAG tests: the deploy-<env> runs a hand-over starts are executed as the scheduler would.

`dag.test()` runs one DAG run. When a pipeline, promote or rollback run reaches `hand_over`, it
triggers a `deploy-<env>` run (through Airflow's execution API, as in production) and defers on
Airflow's DagStateTrigger, which `dag.test()` runs inline until the deploy run finishes. Nothing
would ever run that deploy run, so these fixtures stand in for the scheduler and the
dag-processor, and nothing else:

- before a `hand_over` task runs, `dags/deploy.py` is parsed with the config of the moment and
  written to the metadata database, as the dag-processor would (a test may have changed the
  config);
- when the DagStateTrigger starts waiting, the scheduler's own queued -> running step
  (`SchedulerJobRunner._start_queued_dagruns`, which honours `max_active_runs` and trigger
  order) starts the deploy run, and `dag.test()`'s task loop executes it (nested: the caller's
  loop is waiting in the trigger meanwhile, so the two never run tasks at once). Then the real
  trigger sees the finished run and the caller resumes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def sync_deploy_dags():
    """Parse dags/deploy.py now and write its DAGs to the metadata database, unpaused."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(DAGS / "deploy.py"))
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id.in_(list(bag.dags))).values(is_paused=False))
    return bag


def start_queued(dag_id: str) -> None:
    """The scheduler's queued -> running step, once."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.utils.session import create_session

    with create_session() as session:
        SchedulerJobRunner(job=Job())._start_queued_dagruns(session)


def run_state(dag_id: str, run_id: str) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        return str(run.state) if run else None


def run_started_run(dag, run_id: str):
    """Execute a run the scheduler started with dag.test()'s own loop."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    def the_started_run(**kwargs):
        session = kwargs["session"]
        dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        assert dr is not None and dr.state == "running", f"{run_id} of {dag.dag_id} was not started by the scheduler"
        dr.dag = kwargs["dag"]
        return dr

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dagrun_module, "get_or_create_dagrun", the_started_run)
        return dag.test()


def execute_deploy_run(dag_id: str, run_id: str) -> None:
    """Start (as the scheduler) and execute one queued deploy run."""
    import time

    if run_state(dag_id, run_id) != "queued":
        return  # finished already (a retried hand-over waits for the run it started)
    deadline = time.monotonic() + 30
    while run_state(dag_id, run_id) == "queued":
        start_queued(dag_id)
        assert time.monotonic() < deadline, f"the scheduler never started {dag_id} {run_id}"
        if run_state(dag_id, run_id) == "queued":
            time.sleep(0.2)
    run_started_run(sync_deploy_dags().get_dag(dag_id), run_id)


class DeployRuns(list):
    """The (dag_id, run_id) of the deploy runs executed, in order. A test that wants to decide
    itself when deploy runs start sets `on_handover`: it is then called with (dag_id, run_id)
    instead, in the waiting caller's place (the run stays queued until the test starts it)."""

    on_handover = None


@pytest.fixture(autouse=True)
def deploy_runs(monkeypatch):
    """Hand-overs in DAG tests reach a deploy-<env> run that really runs (see the module doc)."""
    import airflow.sdk.definitions.dag as dag_module
    from airflow.providers.standard.triggers.external_task import DagStateTrigger

    executed = DeployRuns()
    run_task, run_trigger = dag_module._run_task, dag_module._run_inline_trigger

    def run_task_after_sync(*, ti, task, run_triggerer=False):
        if ti.task_id == "hand_over":
            sync_deploy_dags()
        return run_task(ti=ti, task=task, run_triggerer=run_triggerer)

    def run_trigger_with_deploys(trigger, task_sdk_ti):
        if isinstance(trigger, DagStateTrigger) and trigger.dag_id.startswith("deploy-"):
            for run_id in trigger.run_ids or []:
                if run_state(trigger.dag_id, run_id) != "queued":
                    continue
                if executed.on_handover is not None:
                    executed.on_handover(trigger.dag_id, run_id)
                else:
                    execute_deploy_run(trigger.dag_id, run_id)
                executed.append((trigger.dag_id, run_id))
        return run_trigger(trigger, task_sdk_ti)

    monkeypatch.setattr(dag_module, "_run_task", run_task_after_sync)
    monkeypatch.setattr(dag_module, "_run_inline_trigger", run_trigger_with_deploys)
    yield executed


@pytest.fixture
def meanwhile(monkeypatch):
    """(condition, job) pairs: the next time a dag.test() loop idles (waiting for a person's answer,
    say) while `condition()` holds, `job()` runs there, once, in the main thread, as if another
    worker ran it while that run waits."""
    import sys
    import time

    from airflow.sdk.definitions.dag import DAG

    pending: list = []
    loop, sleep = DAG.test.__code__, time.sleep

    def idle(seconds):
        in_loop = sys._getframe(1).f_code is loop
        if pending and in_loop and pending[0][0]():
            pending.pop(0)[1]()
            return
        sleep(min(seconds, 0.1) if in_loop else seconds)

    monkeypatch.setattr(time, "sleep", idle)
    return pending


def deploy_result(dag_id: str, run_id: str) -> tuple[str, str | None, dict[str, str]]:
    """A deploy run's state, note and task states (a mapped task's as `task[i]`), as the
    metadata database (and so the UI) holds them."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
        tasks = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
                 for ti in run.get_task_instances(session=session)}
        return str(run.state), run.note, tasks


def deploy_xcom(dag_id: str, run_id: str, task_id: str, map_index: int = -1):
    """What a task of a deploy run returned (one mapped task instance with `map_index`)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id,
                                              XComModel.task_id == task_id, XComModel.map_index == map_index,
                                              XComModel.key == "return_value").one_or_none()
        return None if row is None else XComModel.deserialize_value(row)
