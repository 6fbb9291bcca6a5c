"""Show each pipeline stage on GitHub: commit statuses, the PR comment, SARIF uploads.

Task events (running, success, failed) reach release.flows.github_report in the process that
ran the task, after Airflow decided the task's state; it reports the ones GitHub shows, never
raises and does nothing when GitHub is off. Deployments are reported by deploy-<env> itself
(release.flows.github_deployments).
"""

from __future__ import annotations

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


def _report(task_instance, event: str, error=None) -> None:
    if not hasattr(task_instance, "get_template_context"):
        return  # a state change outside the task (a mark in the UI): nothing ran to report on
    from release.flows.github_report import on_task_event

    on_task_event(task_instance, event, error)


class GitHubReporter:
    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        _report(task_instance, "running")

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        _report(task_instance, "success")

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        _report(task_instance, "failed", error)


class ReleaseGitHubPlugin(AirflowPlugin):
    name = "release_github"
    listeners = [GitHubReporter()]
