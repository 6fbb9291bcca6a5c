"""Deferred waits keep their deadline when the triggerer restarts.

A restarted triggerer re-creates each trigger from the kwargs stored in the trigger's row. These
tests do exactly that (Airflow's own encryption and decoding of the row), against the sandbox
cluster, with the wall clock moved forward to stand for the time the triggerer was down: the
re-created wait must time out at the deadline set when the wait began, not start its timeout over.
"""

from __future__ import annotations

import asyncio

import pytest

from release.domain import deadlines


def restarted(trigger):
    """What a restarted triggerer runs: the trigger made anew from its stored row."""
    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string
    from airflow.serialization.decoders import smart_decode_trigger_kwargs

    row = Trigger.from_object(trigger)
    kwargs = {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(row.encrypted_kwargs).items()}
    return import_string(row.classpath)(**kwargs)


def first_event(trigger, within: float):
    """The trigger's first event, or TimeoutError if it sends none within `within` real seconds
    (the triggerer being killed while the wait is still on)."""
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first(), within))


@pytest.fixture
def clock(monkeypatch):
    """The wall clock the deadlines are kept in, which a test can move forward."""
    real = deadlines.wall_clock
    offset = [0.0]
    monkeypatch.setattr(deadlines, "wall_clock", lambda: real() + offset[0])

    def forward(seconds: float) -> None:
        offset[0] += seconds

    return forward


def deferred(operator, context=None):
    """The trigger an operator defers with, as its worker would hand it to the triggerer."""
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferral:
        operator.execute(context or {})
    return deferral.value.trigger


def test_argocd_wait_times_out_at_its_original_deadline_after_a_triggerer_restart(sandbox, clock):
    from airflow.sdk.exceptions import AirflowFailException

    from release.k8s.argocd import ApplicationSyncedSensor

    sandbox.call(sandbox.ensure_application, "argocd", "umbrella-prod", "prod")  # never synced at this revision
    sensor = ApplicationSyncedSensor(task_id="converge", kubernetes_conn_id=sandbox.conn_id, namespace="argocd",
                                     application="umbrella-prod", revision="4b825dc642cb" * 3, timeout_seconds=3600,
                                     poll_interval=0.05)
    started = deadlines.wall_clock()
    trigger = deferred(sensor)
    deadline = trigger.serialize()[1]["deadline"]
    assert started + 3600 <= deadline <= deadlines.wall_clock() + 3600

    with pytest.raises(TimeoutError):  # the wait is on when the triggerer dies
        first_event(trigger, within=0.5)
    again = restarted(trigger)
    clock(deadline - deadlines.wall_clock() - 1)  # it comes back a second before the hour is up
    assert again.deadline == deadline
    event = first_event(again, within=10)  # a timeout started over would wait another hour
    assert event["status"] == "timeout" and event["deadline"] == deadline
    assert deadlines.wall_clock() >= deadline

    with pytest.raises(AirflowFailException) as failure:
        sensor.execute_complete({}, event)
    message = str(failure.value)
    assert f"not Synced and Healthy within 3600s (deadline {deadlines.utc_text(deadline)})" in message
    assert "argocd/umbrella-prod" in message and "health=Missing" in message


def test_an_argocd_trigger_stored_before_deadlines_were_carried_gets_one_once(clock):
    from release.k8s.argocd import ApplicationSyncedTrigger

    old_style = {"kubernetes_conn_id": "k", "namespace": "argocd", "application": "umbrella-dev", "revision": "r",
                 "timeout_seconds": 900.0, "poll_interval": 5.0}
    trigger = ApplicationSyncedTrigger(**old_style)
    deadline = trigger.serialize()[1]["deadline"]
    assert deadline == pytest.approx(deadlines.wall_clock() + 900, abs=5)
    clock(600)
    assert restarted(trigger).deadline == deadline  # from then on it is carried


def test_velero_wait_times_out_at_its_original_deadline_after_a_triggerer_restart(sandbox, config, clock):
    from airflow.sdk.exceptions import AirflowFailException

    from release.k8s import velero

    sandbox.scenario = {"backups": [{"stuck": True, "delay_seconds": 0.05}]}
    manifest = velero.backup_manifest(config, "prod", name="prod-stuck", dag_id="velero-backups", run_id="r1")
    created = velero.create(sandbox.conn_id, manifest)
    target = {"kubernetes_conn_id": sandbox.conn_id, "kind": "Backup",
              "namespace": created["metadata"]["namespace"], "name": created["metadata"]["name"], "env": "prod"}
    sensor = velero.VeleroSensor(task_id="wait_backup", target=target, timeout_minutes=60, poll_interval=0.05)
    trigger = deferred(sensor)
    deadline = trigger.serialize()[1]["deadline"]

    with pytest.raises(TimeoutError):
        first_event(trigger, within=0.5)
    again = restarted(trigger)
    clock(deadline - deadlines.wall_clock() - 1)
    assert again.deadline == deadline
    event = first_event(again, within=10)
    assert event == {"status": "timeout", "phase": "InProgress"}
    assert deadlines.wall_clock() >= deadline

    with pytest.raises(AirflowFailException, match=r"prod-stuck is stuck: still InProgress after 60 minutes"):
        sensor.execute_complete({}, event)
