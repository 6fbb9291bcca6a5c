"""Airflow 3.3's defer race, replayed against the real pod operator and the sandbox cluster.

The sequence (apache/airflow#66374, #67287, #71580, #72716): a pod step defers; its pod is
already done, so the trigger fires at once and the triggerer puts the task instance back to
`scheduled` to resume; the executor's report that the worker *exited* (the deferral, "success")
is processed only now, by the scheduler's own code, which finds the same try queued or running,
logs "finished with state success, but the task instance's state attribute is ..." and fails
the try. The retry used to find the finished pod, delete it "to handle rerun" and run the step
again. Here each moment at which the stale event can land is replayed deterministically, and the
step must have run once, its result being the task's XCom.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.helpers import run_dag_test

DIGEST = "sha256:" + "5a1d" * 16
RESULT = f'{{"containerimage.digest": "{DIGEST}"}}'


class DeferRace:
    """Runs dag.test()'s tasks the way the scheduler, executor and triggerer would, and lets the
    executor's stale "success" of one task's deferral exit be processed at a chosen moment:

    - "queued": after the trigger fired and the task was queued to resume, before a worker starts it;
    - "reading_logs": while the resumed try reads the pod's logs (the supervisor then gets 409 on
      its heartbeat and terminates the task, which runs its on_kill);
    - "after_cleanup": after the resumed try deleted the succeeded pod (it then pushes its XCom and
      reports success, which the API server refuses).
    """

    def __init__(self, task_id: str, when: str, map_index: int = -1):
        self.task_id, self.when, self.map_index = task_id, when, map_index
        self.pending = None  # the TaskInstanceKey whose deferral exit the executor reported, unprocessed
        self.fired: list[str] = []
        self.refused: list[str] = []

    # what the scheduler does with the stale event: its own code, unchanged
    def stale_success(self) -> None:
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.models.dagbag import DBDagBag
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        key, self.pending = self.pending, None
        executor = _Executor({key: (TaskInstanceState.SUCCESS, None)})
        with create_session() as session:
            SchedulerJobRunner.process_executor_events(executor=executor, job_id=None,
                                                       scheduler_dag_bag=DBDagBag(), session=session)
        self.fired.append(key.task_id)

    def at(self, moment: str) -> bool:
        return self.pending is not None and self.when == moment

    def run_task(self, *, ti, task, run_triggerer: bool = False):
        """dag.test()'s `_run_task`, with the real triggerer hand-over and the executor's event."""
        from uuid import UUID

        from airflow.models.trigger import Trigger
        from airflow.sdk._shared.module_loading import import_string
        from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceSDK
        from airflow.sdk.definitions.dag import _run_inline_trigger
        from airflow.sdk.execution_time.comms import DeferTask
        from airflow.sdk.execution_time.supervisor import run_task_in_process
        from airflow.sdk.serde import deserialize
        from airflow.utils.state import TaskInstanceState

        result = None
        while True:
            ti.set_state(TaskInstanceState.QUEUED)  # the scheduler hands it to the executor
            ti.refresh_from_db()
            if self.at("queued") and ti.next_method is not None and ti.key.primary == self.pending.primary:
                self.stale_success()
            sdk_ti = TaskInstanceSDK(id=UUID(str(ti.id)), task_id=ti.task_id, dag_id=ti.dag_id, run_id=ti.run_id,
                                     try_number=ti.try_number, map_index=ti.map_index,
                                     dag_version_id=UUID(str(ti.dag_version_id)))
            result = None
            try:
                result = run_task_in_process(ti=sdk_ti, task=task)  # the worker
            except Exception as exc:  # noqa: BLE001 - a worker the API server turns away
                self.refused.append(f"{ti.task_id}: {exc}")
            ti.refresh_from_db()
            if ti.state == TaskInstanceState.DEFERRED and result is not None and isinstance(result.msg, DeferTask):
                if (ti.task_id, ti.map_index) == (self.task_id, self.map_index) and not self.fired:
                    self.pending = ti.key  # the worker exited: "success" waits in the executor's buffer
                trigger = import_string(result.msg.classpath)(**deserialize(result.msg.trigger_kwargs))
                event = _run_inline_trigger(trigger, sdk_ti)
                Trigger.submit_event(ti.trigger_id, event)  # the triggerer: back to scheduled, with the event
                continue
            return result


class _Executor:
    """The executor as the scheduler sees it when the race hits: an event for a key it no
    longer tracks."""

    def __init__(self, events):
        self.events = events

    def get_event_buffer(self, dag_ids=None):
        events, self.events = self.events, {}
        return events

    def has_task(self, ti) -> bool:
        return False

    def send_callback(self, request) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalExecutor(parallelism=32)"


@pytest.fixture
def race(monkeypatch, request):
    """Replays the race in every dag.test() of the test; the moment comes from the test's param."""
    import airflow.sdk.definitions.dag as dag_module

    from release.k8s.operators import ReleasePodOperator

    when, map_index = request.param if isinstance(request.param, tuple) else (request.param, -1)
    replay = DeferRace("build", when, map_index)
    monkeypatch.setattr(dag_module, "_run_task", replay.run_task)

    write_logs = ReleasePodOperator._write_logs
    process_pod_deletion = ReleasePodOperator.process_pod_deletion

    def _write_logs(self, pod, *args, **kwargs):
        if replay.at("reading_logs"):
            replay.stale_success()
            self.on_kill()  # the supervisor's SIGTERM on its heartbeat's 409
        return write_logs(self, pod, *args, **kwargs)

    def _process_pod_deletion(self, pod, *args, **kwargs):
        deleted = process_pod_deletion(self, pod, *args, **kwargs)
        if deleted and replay.at("after_cleanup"):
            replay.stale_success()
        return deleted

    monkeypatch.setattr(ReleasePodOperator, "_write_logs", _write_logs)
    monkeypatch.setattr(ReleasePodOperator, "process_pod_deletion", _process_pod_deletion)
    return replay


def build_dag(dag_id: str, mapped: int = 0):
    from airflow.sdk import DAG, task

    from release.k8s.pods import PodStep, mapped_pod_kwargs, pod_operator

    step = PodStep(step="build", image="registry.local:5000/tools/buildkit@sha256:" + "2" * 64, args=["build", "."])
    fast = dict(namespace="default", kubernetes_conn_id="k8s_sandbox", poll_interval=0.2,
                startup_check_interval_seconds=0.2, retry_delay=timedelta(seconds=1))
    with DAG(dag_id, start_date=datetime(2026, 1, 1), schedule=None, catchup=False) as dag:
        if mapped:
            @task
            def platforms():
                return [mapped_pod_kwargs(step, service="service-a", commit="a" * 40, args=["build", f"--arch={i}"])
                        for i in range(mapped)]

            pod_operator("build", step, expand_kwargs=platforms(), **fast)
            return dag
        build = pod_operator("build", step, service="service-a", commit="a" * 40, **fast)

        @task
        def sign(result):
            return result["containerimage.digest"]

        sign(build.output)
    return dag


def xcom(dagrun, task_id):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dagrun.run_id, dag_ids=dagrun.dag_id, task_ids=task_id,
                                                 key="return_value")).first()
        return None if row is None else XComModel.deserialize_value(row)


def tries(dagrun) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in dagrun.get_task_instances()}


# The pod is done before the task has finished deferring: no schedule time, no run time.
INSTANT_BUILD = {"pods": [{"match": {"labels": {"release-platform/step": "build"}}, "duration_seconds": 0,
                           "schedule_seconds": 0, "logs": ["#9 exporting to image"], "termination_message": RESULT}]}


@pytest.mark.parametrize("race", ["queued", "reading_logs", "after_cleanup"], indirect=True)
def test_a_try_failed_by_the_defer_race_takes_the_succeeded_pods_result(airflow_db, sandbox, race, capfd):
    import json

    from airflow.models.log import Log
    from airflow.utils.session import create_session

    sandbox.scenario = INSTANT_BUILD
    dagrun = run_dag_test(build_dag(f"defer-race-{race.when.replace('_', '-')}"))

    # The race happened: the scheduler failed try 1 on the stale event, and the task retried.
    assert race.fired == ["build"]
    with create_session() as session:
        mismatch = [row.extra for row in session.query(Log).filter(Log.dag_id == dagrun.dag_id, Log.event == "state mismatch")]
    assert len(mismatch) == 1 and "finished with state success, but the task instance's state attribute is" in mismatch[0]
    assert tries(dagrun) == {"build": ("success", 2), "sign": ("success", 1)}
    # ...and nothing ran twice: one pod was ever created, and its result is the task's XCom.
    assert [r.status for r in sandbox.seen("POST", "/pods")] == [201]
    assert xcom(dagrun, "build") == json.loads(RESULT)
    assert xcom(dagrun, "sign") == DIGEST
    assert sandbox.list("pods", "default") == []  # delete_succeeded_pod, once the result is safe
    out = capfd.readouterr().out
    taken = out.index("already succeeded for this task (try 1)")
    assert "#9 exporting to image" in out[taken:]  # the pod's log is in the retry's task log
    # Where the result came from: the pod while it is still there, else what try 1 recorded.
    recorded = "its result was recorded: taking it" in out
    assert recorded == (race.when == "after_cleanup")
    assert ("Keeping pod" in out) == (race.when == "reading_logs")  # the kill left the succeeded pod alone


@pytest.mark.parametrize("race", [("queued", 1)], indirect=True)
def test_each_mapped_pod_is_its_own_result(airflow_db, sandbox, race):
    """Taking a result goes by run, task and map index: the retried map index takes its own pod's
    result, not its sibling's, and the sibling is not touched."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    sandbox.scenario = {"pods": [{"match": {"labels": {"map_index": str(i)}}, "duration_seconds": 0,
                                  "schedule_seconds": 0, "termination_message": f'{{"arch": {i}}}'} for i in range(2)]}
    dagrun = run_dag_test(build_dag("defer-race-mapped", mapped=2))
    assert race.fired == ["build"]
    builds = {ti.map_index: (ti.state, ti.try_number) for ti in dagrun.get_task_instances() if ti.task_id == "build"}
    assert builds == {0: ("success", 1), 1: ("success", 2)}
    assert [r.status for r in sandbox.seen("POST", "/pods")] == [201, 201]
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dagrun.run_id, dag_ids=dagrun.dag_id, task_ids="build",
                                                  key="return_value", map_indexes=[0, 1])).all()
        assert {r.map_index: XComModel.deserialize_value(r) for r in rows} == {0: {"arch": 0}, 1: {"arch": 1}}


def test_a_cleared_step_runs_again(airflow_db, sandbox):
    """Taking an earlier result is for retries only: a step cleared by hand (Airflow's own clear)
    after it succeeded runs again, in the same run."""
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from release.k8s.operators import RESULT_KEY

    sandbox.scenario = INSTANT_BUILD
    dag = build_dag("defer-race-cleared")
    dagrun = run_dag_test(dag)
    assert tries(dagrun)["build"] == ("success", 1)
    with create_session() as session:
        query = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dagrun.run_id, task_id="build")
        clear_task_instances(query.all(), session)
    with create_session() as session:
        ti = query.with_session(session).one()
        ti.try_number += 1  # what the scheduler does when it schedules the cleared task
        ti.state = TaskInstanceState.SCHEDULED
    with create_session() as session:
        ti = query.with_session(session).one()
        _run_task(ti=ti, task=dag.task_dict["build"], run_triggerer=True)
    assert tries(dagrun)["build"] == ("success", 2)
    assert [r.status for r in sandbox.seen("POST", "/pods")] == [201, 201]
    from airflow.models.task_state_store import TaskStateStoreModel

    with create_session() as session:
        record = session.query(TaskStateStoreModel).filter_by(dag_id=dag.dag_id, key=RESULT_KEY).one()
        assert '"try_number": 2' in record.value


def test_a_failed_pod_is_not_taken_as_a_result(airflow_db, sandbox):
    """An infrastructure failure still retries and runs a new pod; a tool's "no" still fails at once."""
    sandbox.scenario = {"pods": [{"match": {"labels": {"release-platform/step": "build"}}, "outcome": "evicted",
                                  "duration_seconds": 0}]}
    dagrun = run_dag_test(build_dag("defer-race-evicted"))
    assert tries(dagrun)["build"] == ("failed", 3)
    assert [r.status for r in sandbox.seen("POST", "/pods")] == [201, 201, 201]


def test_step_retries_wait_seconds_not_minutes():
    from release.k8s.pods import PodStep, pod_operator

    op = pod_operator("x", PodStep(step="x", image="i@sha256:" + "0" * 64, args=[]), namespace="default",
                      kubernetes_conn_id="k8s_sandbox", service="s", commit="c")
    assert op.retries == 2 and op.retry_delay == timedelta(seconds=5)
    assert op.retry_exponential_backoff == 2.0 and op.max_retry_delay <= timedelta(seconds=30)


def test_waits_that_can_meet_the_race_retry_in_seconds_too():
    """The Argo CD sync wait, the Velero waits and the freeze wait defer like the pod steps, so
    a stale event can fail a try of theirs whose wait is already over: they retry, briefly."""
    from release.k8s.argocd import ApplicationSyncedSensor
    from release.k8s.operators import FreezeEndSensor
    from release.k8s.velero import VeleroSensor

    waits = [ApplicationSyncedSensor(task_id="a", kubernetes_conn_id="k", namespace="n", application="a", revision="r"),
             VeleroSensor(task_id="v", target={}, timeout_minutes=1),
             FreezeEndSensor(task_id="f", target_time="2026-01-01T00:00:00+00:00")]
    for wait in waits:
        assert (wait.retries, wait.retry_delay) == (2, timedelta(seconds=5)), wait.task_id
        assert wait.max_retry_delay <= timedelta(seconds=30), wait.task_id


def test_a_freeze_that_has_ended_is_not_waited_for():
    """No freeze (gate_freeze hands over the current time) or one that has ended: the sensor
    returns at once instead of deferring, so there is no deferral for the race to strike."""
    from airflow.sdk.exceptions import TaskDeferred

    from release.k8s.operators import FreezeEndSensor

    passed = FreezeEndSensor(task_id="wait_freeze", target_time=(datetime.now().astimezone() - timedelta(seconds=1)).isoformat())
    assert passed.execute({}) is None
    frozen = FreezeEndSensor(task_id="wait_freeze", target_time=(datetime.now().astimezone() + timedelta(hours=1)).isoformat())
    with pytest.raises(TaskDeferred):
        frozen.execute({})
