"""Say in every Kubernetes task's log when the cluster behind it is the sandbox.

`make run` without a real cluster sets RELEASE_SANDBOX; a task that talks to
Kubernetes then starts its log with that notice, so nobody mistakes a simulated
deployment for a real one.
"""

from __future__ import annotations

import os

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class SandboxNotice:
    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        label = os.environ.get("RELEASE_SANDBOX")
        task = getattr(task_instance, "task", None)
        if label and task is not None and hasattr(task, "kubernetes_conn_id"):
            # The task's own logger: whatever routes the task's log routes this line too.
            task.log.warning("%s (connection %s)", label, task.kubernetes_conn_id)


class SandboxNoticePlugin(AirflowPlugin):
    name = "release_sandbox_notice"
    listeners = [SandboxNotice()]
