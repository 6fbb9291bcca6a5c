"""Changes to one environment queue in its deploy-<env>; an approval parks nothing else.

`deploy-<env>`'s `max_active_runs=1` is enforced only by the scheduler (`dag.test()` creates its
run already RUNNING and never asks), so these tests put the scheduler's own queued -> running
decision (`SchedulerJobRunner._start_queued_dagruns`, FIFO by `run_after`, capped by
`max_active_runs`) in the loop, and execute each run it starts with `dag.test()`'s task loop.
Tasks run in the main thread only (the task runner installs signal handlers), so "at the same
time" is arranged by running one run inside another's wait (tests/dags/conftest.py:
`meanwhile`, `deploy_runs.on_handover`).
"""

from __future__ import annotations

import threading
import time

from tests.dags.conftest import deploy_result, run_started_run, sync_deploy_dags
from tests.dags.test_promote import (PROD, as_user, hitl_open, last_run, promote, release,  # noqa: F401 - shared fixtures
                                    world)
from tests.dags.test_rollback import rollback
from tests.helpers import answer_approval

SERVICE = "service-a"


def runs_of(dag_id: str) -> dict[str, str]:
    """run_id -> state of every run of `dag_id` in the metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id))
        return {run_id: str(state) for run_id, state in rows}


class Scheduler(threading.Thread):
    """The scheduler's queued -> running decision, made every 0.2 s; `seen` holds the watched
    runs' states after each pass."""

    def __init__(self, dag_id: str, run_ids: list[str]):
        super().__init__(daemon=True)
        self.dag_id, self.run_ids, self.seen, self.error = dag_id, run_ids, [], None
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
                now = runs_of(self.dag_id)
                self.seen.append(tuple(now[r] for r in self.run_ids))
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_running(self, run_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while runs_of(self.dag_id)[run_id] != "running":
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"the scheduler never started {run_id}: {self.seen[-5:]}"
            time.sleep(0.1)


def test_a_staging_promotion_completes_while_a_prod_promotion_waits_for_approval(world, config, as_user,
                                                                                 deploy_runs, meanwhile):
    world.record_deployment("staging", [release(config, SERVICE, "1.1", "3")], by="alice", run_id="r3")
    world.record_deployment("dev", [release(config, "service-b", "2.1", "5")], by="alice", run_id="r4")
    seen = {}

    def promote_to_staging():  # runs while the prod promotion waits for bob
        seen["staging"], _ = promote({"services": ["service-b"], "from_env": "dev", "to_env": "staging", "reason": "r"})
        seen["staging_run"] = last_run("promote")
        seen["prod_still_waiting"] = hitl_open("promote", "approve_prod")
        seen["deploys"] = list(deploy_runs)
        threading.Thread(target=lambda: seen.update(bob=answer_approval("promote", "approve_prod", "bob"))).start()

    meanwhile.append((lambda: hitl_open("promote", "approve_prod"), promote_to_staging))
    states, _ = promote(PROD)

    assert seen["staging"]["hand_over"] == "success" and seen["staging_run"][0] == "success", seen
    assert seen["prod_still_waiting"] is True  # the staging change went through while prod's approval was open
    assert [d for d, _ in seen["deploys"]] == ["deploy-staging"]  # and nothing was queued for prod yet
    assert seen["bob"]["status"] == 200 and states["hand_over"] == "success", (states, seen)
    assert [d for d, _ in deploy_runs] == ["deploy-staging", "deploy-prod"]
    assert world.state("staging")["service-b"].version == "2.1" and world.state("prod")[SERVICE].version == "1.1"


def test_a_promotion_and_a_rollback_to_prod_apply_in_trigger_order_and_never_interleave(world, config, as_user,
                                                                                       deploy_runs, sandbox):
    """prod runs a 1.0 then 1.1; alice promotes staging's 1.2 to prod (bob approves) and, while
    that change waits its turn, rolls prod back to 1.0. deploy-prod starts the promotion first and
    holds the rollback back until the promotion has finished; the rollback then applies on top of it."""
    for version, char in (("1.0", "1"), ("1.1", "3")):
        world.record_deployment("prod", [release(config, SERVICE, version, char)], by="alice", run_id=f"p{version}")
    world.record_deployment("staging", [release(config, SERVICE, "1.2", "4")], by="alice", run_id="s1.2")
    sync_deploy_dags()
    queued: list[str] = []
    result = {}

    def both_queued_then_schedule(dag_id: str, run_id: str) -> None:
        queued.append(run_id)
        if len(queued) == 1:  # the promotion handed over; now the rollback is triggered and hands over too
            result["rollback"] = rollback({"env": "prod", "to_version": "1.0", "reason": "1.2 misbehaves"})
            return
        assert [runs_of(dag_id)[r] for r in queued] == ["queued", "queued"]  # both wait in prod's queue
        scheduler = Scheduler(dag_id, list(queued))
        time.sleep(1.1)  # SQLite compares run_after with a whole-second now(): let both be due at the first pass
        scheduler.start()
        try:
            dag = sync_deploy_dags().get_dag(dag_id)
            scheduler.wait_running(queued[0])
            result["first"] = run_started_run(dag, queued[0])
            scheduler.wait_running(queued[1])
            result["second"] = run_started_run(dag, queued[1])
        finally:
            scheduler.done.set()
            scheduler.join(timeout=30)
        assert scheduler.error is None, scheduler.error
        result["seen"] = scheduler.seen

    deploy_runs.on_handover = both_queued_then_schedule
    approvals = threading.Thread(target=lambda: result.update(
        bob=answer_approval("promote", "approve_prod", "bob")))
    approvals.start()
    states, _ = promote({"services": [SERVICE], "from_env": "staging", "to_env": "prod", "reason": "release 1.2"})
    approvals.join()

    promotion, rollback_run = queued
    assert promotion.startswith("promote.") and rollback_run.startswith("rollback."), queued
    seen = result["seen"]
    assert seen[0] == ("running", "queued"), seen  # first decision, with both due: the promotion, triggered first
    while_first_ran = [s for s in seen if s[0] == "running"]
    assert len(while_first_ran) >= 3 and all(s == ("running", "queued") for s in while_first_ran), seen
    assert ("success", "running") in seen  # the rollback started only after the promotion had finished

    first, second = result["first"], result["second"]
    assert (str(first.state), str(second.state)) == ("success", "success")
    assert second.start_date >= first.end_date
    assert states["hand_over"] == "success" and result["rollback"]["hand_over"] == "success", (states, result)

    # the GitOps commits are in trigger order, each on top of the one before
    story = [(e.previous_version, e.version, e.action, e.outcome) for e in world.history(env="prod", service=SERVICE)]
    assert story[-2:] == [("1.1", "1.2", "deploy", "rolled_back"), ("1.2", "1.0", "rollback", "deployed")], story
    assert world.state("prod")[SERVICE].version == "1.0"
    # each smoke test tested its own change: the pods carry the GitOps commit they test, in order
    smoke = [(p["metadata"]["labels"]["release-platform/commit"], p["metadata"]["labels"]["run_id"])
             for p in sandbox.received("pods") if p["metadata"]["labels"].get("dag_id") == "deploy-prod"
             and p["metadata"]["labels"].get("task_id") == "smoke"]
    commits = [deploy_result("deploy-prod", r) for r in queued]
    assert [r for _, r in smoke] == [label(promotion), label(rollback_run)], smoke
    assert all(state == "success" for state, _, _ in commits)
    assert smoke[0][0] != smoke[1][0]
    state, note = last_run("rollback")
    assert state == "success" and note.startswith(f"rolled {SERVICE} in prod back from 1.2 to 1.0"), note


def label(run_id: str) -> str:
    """The run_id label KubernetesPodOperator puts on a pod (a label-safe form of the run id)."""
    from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

    return make_safe_label_value(run_id)
