"""promote: at most one promotion at a time; later ones queue, none dropped, none interleaved.

The guarantee comes from the DAG's `max_active_runs=1`, which only the scheduler enforces
(`dag.test()` creates its run already RUNNING and never asks), so this test puts the real
scheduling decision in the loop instead of calling `dag.test()` twice:

1. both promotions are triggered through the real Core REST API (as the UI does, as `alice`),
   which creates them QUEUED, one after the other;
2. a thread plays the scheduler: every 0.2 s it calls `SchedulerJobRunner._start_queued_dagruns`,
   the scheduler loop's own queued -> running step (FIFO by `run_after`, capped by the DAG's
   `max_active_runs`), and records both runs' states after each pass;
3. once the scheduler has started a run, the main thread executes it with `dag.test()`'s own
   task loop (local task runner, in-process triggerer for the deferrable Argo CD sensor, the
   sandbox cluster for pods). `dag.test()` only ever creates a new run, so its run factory
   (`airflow.models.dagrun.get_or_create_dagrun`, the hook the `as_user` fixture also uses)
   is pointed at the run the scheduler started; it refuses a run that is not RUNNING.

If the scheduler let the second promotion start early (max_active_runs > 1, or no limit),
the thread sees it RUNNING next to the first and the test fails; if it dropped it, the
second never runs and the registry misses it.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.dags.test_promote import DAGS, release, world  # noqa: F401 - world is a fixture shared with the promotion tests

SERVICE = "service-a"


def sync_and_unpause() -> None:
    """Write dags/promote.py to the metadata database, as the dag-processor would, and unpause
    it (DAGs start paused, and the scheduler starts no run of a paused DAG)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(DAGS / "promote.py")), "dags-folder", None)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "promote").values(is_paused=False))


def trigger(conf: dict, user: str = "alice") -> str:
    """Trigger `promote` through the Core REST API as `user`; returns the (queued) run's id."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    resp = client.post("/api/v2/dags/promote/dagRuns", json={"logical_date": None, "conf": conf},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "queued", resp.json()
    return resp.json()["dag_run_id"]


def promote_runs() -> dict[str, str]:
    """run_id -> state of every run of `promote` in the metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == "promote"))
        return {run_id: str(state) for run_id, state in rows}


class Scheduler(threading.Thread):
    """The scheduler's queued -> running decision, made every 0.2 s; `seen` holds both runs'
    states after each pass."""

    def __init__(self, run_ids: list[str]):
        super().__init__(daemon=True)
        self.run_ids, self.seen, self.error = run_ids, [], None
        self.done = threading.Event()

    def run(self) -> None:
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.utils.session import create_session

        try:
            runner = SchedulerJobRunner(job=Job())
            while not self.done.is_set():
                with create_session() as session:
                    runner._start_queued_dagruns(session)
                now = promote_runs()
                self.seen.append(tuple(now[r] for r in self.run_ids))
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_running(self, run_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while promote_runs()[run_id] != "running":
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"the scheduler never started {run_id}: {self.seen[-5:]}"
            time.sleep(0.1)


def run_started_run(dag, run_id: str):
    """Execute the run the scheduler started with dag.test()'s own loop (see the module docstring)."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    def the_started_run(**kwargs):
        session = kwargs["session"]
        dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        assert dr is not None and dr.state == "running", f"{run_id} was not started by the scheduler"
        dr.dag = kwargs["dag"]
        return dr

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dagrun_module, "get_or_create_dagrun", the_started_run)
        return dag.test()


def task_windows(dagrun) -> tuple:
    tis = dagrun.get_task_instances()
    return min(t.start_date for t in tis if t.start_date), max(t.end_date for t in tis if t.end_date)


def test_two_promotions_to_one_env_queue_and_both_land_in_order(world, config):
    from airflow.dag_processing.dagbag import DagBag

    world.record_deployment("dev", [release(config, SERVICE, "1.2", "4")], by="alice", run_id="r3")
    sync_and_unpause()
    assert not [s for s in promote_runs().values() if s in ("queued", "running")], "a promote run is left over"

    # triggered together: both are queued before the scheduler looks
    first = trigger({"services": [SERVICE], "from_env": "dev", "to_env": "staging", "version": "1.1", "reason": "first"})
    second = trigger({"services": [SERVICE], "from_env": "dev", "to_env": "staging", "version": "1.2", "reason": "second"})
    dag = DagBag(dag_folder=str(DAGS / "promote.py")).get_dag("promote")
    time.sleep(1.1)  # SQLite compares run_after with a whole-second now(): let both be due at the first pass
    scheduler = Scheduler([first, second])
    scheduler.start()
    try:
        scheduler.wait_running(first)
        run1 = run_started_run(dag, first)
        scheduler.wait_running(second)
        run2 = run_started_run(dag, second)
    finally:
        scheduler.done.set()
        scheduler.join(timeout=30)
    assert scheduler.error is None, scheduler.error

    # the scheduler started the first-triggered run and held the second back the whole time
    assert scheduler.seen[0] == ("running", "queued"), scheduler.seen  # its first decision, with both due
    while_first_ran = [s for s in scheduler.seen if s[0] == "running"]
    assert len(while_first_ran) >= 3, scheduler.seen  # it really looked, repeatedly, during the first run
    assert all(s == ("running", "queued") for s in while_first_ran), scheduler.seen
    assert all(s[1] in ("queued", "running", "success") for s in scheduler.seen), scheduler.seen  # never dropped
    assert ("success", "running") in scheduler.seen

    # both completed, one after the other
    assert (str(run1.state), str(run2.state)) == ("success", "success")
    first_tasks, second_tasks = task_windows(run1), task_windows(run2)
    assert run2.start_date >= run1.end_date and second_tasks[0] >= first_tasks[1], (run1.end_date, run2.start_date)

    # the registry shows both deployments, in trigger order, each on top of the one before
    story = [(e.previous_version, e.version, e.action, e.outcome, e.run_id, e.by, e.reason)
             for e in world.history(env="staging", service=SERVICE)]
    assert story[-2:] == [("1.0", "1.1", "deploy", "deployed", first, "alice", "first"),
                          ("1.1", "1.2", "deploy", "deployed", second, "alice", "second")], story
    now = world.state("staging")[SERVICE]
    assert (now.version, now.run_id, now.image) == ("1.2", second, world.state("dev")[SERVICE].image)
