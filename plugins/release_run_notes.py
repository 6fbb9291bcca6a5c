"""Every finished run's note says what it did (see release.flows.outcome).

The task that decides a run's outcome records it; this listener, called where the run's state
is decided (the scheduler, the API when someone marks a run, `dag.test()`), writes it as the
run's note, shown in the UI and as `note` in the REST API.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


class RunNotes:
    @hookimpl
    def on_dag_run_success(self, dag_run, msg: str):
        self._write(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run, msg: str):
        self._write(dag_run)

    @staticmethod
    def _write(dag_run) -> None:
        from release.flows.outcome import write_note

        try:
            note = write_note(dag_run)
        except Exception:  # a note is worth less than the scheduler loop that called us
            log.exception("could not write the note of %s", dag_run)
            return
        if note:
            log.info("note of %s %s: %s", dag_run.dag_id, dag_run.run_id, note)


class ReleaseRunNotesPlugin(AirflowPlugin):
    name = "release_run_notes"
    listeners = [RunNotes()]
