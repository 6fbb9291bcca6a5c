"""A run's outcome in one line: recorded by the task that decides it, shown as the run's note.

Tasks cannot write their DAG run's note (the task SDK has no route for it, and tasks may not
touch the metadata database). So the task that decides what a run did records it as the XCom
`outcome` (`record`; `fail` and `refuse` record it and fail the task), and the listener in
`plugins/release_run_notes.py`, which runs where the run's state is decided (the scheduler, or
`dag.test()`), writes the newest recorded outcome as the run's note when the run finishes
(`write_note`). A failed run that recorded nothing gets a note naming its failed tasks. A note
a person wrote is never replaced.

A DAG whose runs must say what they did ends in a leaf that fails unless the run really did its
work (`failed_tasks` tells it what failed): a run's state comes from its leaf tasks only.
"""

from __future__ import annotations

from typing import Any, NoReturn

KEY = "outcome"
MAX_NOTE = 1000  # the dag_run_note column's size


def record(ti, text: str) -> str:
    """Record `text` as the run's outcome (the newest recorded outcome becomes the note)."""
    text = " ".join(str(text).split())[:MAX_NOTE]
    ti.xcom_push(key=KEY, value=text)
    return text


def fail(ti, text: str) -> NoReturn:
    """Record `text` as the run's outcome and fail this task with it, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(record(ti, text))


def fail_task(message: str) -> NoReturn:
    """`fail` for the task running now (its task instance taken from Airflow's context); outside
    a task (a callable under a unit test) it only raises."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    try:
        ti = get_current_context()["ti"]
    except Exception:  # noqa: BLE001 - no task is running
        raise AirflowFailException(message) from None
    fail(ti, message)


def refuse_task(message: str) -> NoReturn:
    """`refuse` for the task running now."""
    fail_task(f"refused: {message}")


def refuse(ti, message: str) -> NoReturn:
    """Bad input or a closed gate: the run stops here, deploying nothing."""
    fail(ti, f"refused: {message}")


def failed_tasks(context: dict[str, Any], task_ids: list[str] | None = None) -> list[str]:
    """The tasks of this run (or of `task_ids`) that failed, other than the calling one."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(t for t, state in states.items() if state == "failed" and t != ti.task_id)


def recorded(context: dict[str, Any], task_ids: list[str]) -> str | None:
    """The outcome one of `task_ids` recorded (the first of them that did)."""
    ti = context["ti"]
    return next((o for o in (ti.xcom_pull(task_ids=t, key=KEY) for t in task_ids) if o), None)


# -- the scheduler's side (the listener) -------------------------------------------------------


def note_for(dag_run, session) -> str | None:
    """The note a finished run should carry: its newest recorded outcome; for a failed run
    that recorded none, which tasks failed."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    row = session.execute(
        select(XComModel).where(XComModel.dag_run_id == dag_run.id, XComModel.key == KEY)
        .order_by(XComModel.timestamp.desc()).limit(1)).scalar_one_or_none()
    note = str(XComModel.deserialize_value(row) or "") if row is not None else ""
    failed = []
    if dag_run.state == "failed":
        failed = list(session.scalars(select(TaskInstance.task_id).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id,
            TaskInstance.state == "failed").order_by(TaskInstance.task_id)))
    if note and failed and row.task_id not in failed:
        # What the run did so far (a deploy, say), then what failed without saying why.
        note = f"{note}; then {', '.join(failed)} failed (see the task log)"
    elif not note and dag_run.state == "failed":
        note = f"failed: {', '.join(failed)} failed (see the task log)" if failed else "failed"
    return note[:MAX_NOTE] or None


def write_note(dag_run) -> str | None:
    """Set the finished run's note from its outcome; returns the note written, if any."""
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:  # not expected: the scheduler and the API pass an attached run
        from airflow.utils.session import create_session

        with create_session() as session:
            return _write(session.merge(dag_run), session)
    return _write(dag_run, session)


def _write(dag_run, session) -> str | None:
    existing = dag_run.dag_run_note
    if existing is not None and existing.user_id:
        return None  # a person's note stays
    note = note_for(dag_run, session)
    if note:
        dag_run.note = note
        session.flush()
    return note
