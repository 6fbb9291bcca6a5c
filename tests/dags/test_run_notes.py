"""The run-note mechanism promote, rollback and the pipelines share (release.flows.outcome and the
release_run_notes listener), on a small DAG run with dag.test()."""

from __future__ import annotations

from datetime import datetime

from tests.helpers import run_dag_test


def build(dag_id: str, second_fails: bool):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    def deploy(**context):
        from release.flows import outcome

        outcome.record(context["ti"], "deployed x 1.0 to dev")

    def check(**context):
        if second_fails:
            raise RuntimeError("the check broke")

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        PythonOperator(task_id="deploy", python_callable=deploy) >> PythonOperator(task_id="check", python_callable=check)
    return dag


def note_of(dag_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).one()
        return run.state, run.note


def test_a_run_note_is_its_outcome_then_what_failed_and_a_persons_note_stays(airflow_db):
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.utils.session import create_session

    from release.flows.outcome import write_note

    run_dag_test(build("notes-green", second_fails=False))
    assert note_of("notes-green") == ("success", "deployed x 1.0 to dev")

    run_dag_test(build("notes-red", second_fails=True))  # the failing task recorded nothing
    assert note_of("notes-red") == ("failed", "deployed x 1.0 to dev; then check failed (see the task log)")

    with create_session() as session:  # someone writes their own note; a later state change keeps it
        run = session.query(DagRun).filter(DagRun.dag_id == "notes-red").one()
        run.dag_run_note = DagRunNote(content="looked into it: flaky check", user_id="bob")
    with create_session() as session:
        assert write_note(session.query(DagRun).filter(DagRun.dag_id == "notes-red").one()) is None
    assert note_of("notes-red") == ("failed", "looked into it: flaky check")
