"""The one way the nightly DAGs are scheduled: a cron from the config, in UTC, no catchup
(a missed night is not worth three backups at once), one run at a time, loud on failure."""

from __future__ import annotations

from datetime import datetime


def nightly_dag(dag_id: str, cron: str, doc_md: str, tags: list[str], **kwargs):
    from airflow.sdk import DAG
    from airflow.timetables.trigger import CronTriggerTimetable

    from release.flows.notify import on_failure

    return DAG(
        dag_id=dag_id,
        schedule=CronTriggerTimetable(cron, timezone="UTC"),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["release", "nightly", *tags],
        doc_md=doc_md,
        default_args={"on_failure_callback": on_failure()},
        **kwargs,
    )
