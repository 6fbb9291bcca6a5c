"""Argo CD: ask an Application to sync a revision, and wait until it is Synced there and Healthy.

The platform never turns on automated sync: a deploy is a registry commit followed by
an explicit sync request for exactly that commit, so nothing reaches a cluster that did
not pass the gates. Waiting happens in the triggerer (a deferrable sensor), so a slow
rollout holds no worker slot.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from pydantic import field_validator

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from release.domain import deadlines
from release.domain.values import Strict
from release.k8s.objects import ApiObject, MalformedObject, Manifest

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"


# -- the Application, typed: what we write (a sync request) and what we read back -------------


class SyncStrategy(Manifest):
    hook: dict = {}  # run the sync hooks, as `argocd app sync` does by default


class SyncRequest(Manifest):
    revision: str
    sync_strategy: SyncStrategy = SyncStrategy()


class Initiator(Manifest):
    username: str


class Operation(Manifest):
    """`operation`: a request for Argo CD to act, which it clears once it has."""

    initiated_by: Initiator
    sync: SyncRequest


class SyncPatch(Manifest):
    """The merge patch that asks an Application to sync one revision."""

    operation: Operation


class SyncStatus(ApiObject):
    status: str | None = None  # Synced, OutOfSync, Unknown
    revision: str | None = None


class HealthStatus(ApiObject):
    status: str | None = None  # Healthy, Progressing, Degraded, Suspended, Missing, Unknown
    message: str | None = None


class OperationState(ApiObject):
    phase: str | None = None  # Running, Succeeded, Failed, Error, Terminating
    message: str | None = None


class ApplicationStatus(ApiObject):
    sync: SyncStatus = SyncStatus()
    health: HealthStatus = HealthStatus()
    operation_state: OperationState = OperationState()

    @field_validator("sync", "health", "operation_state", mode="before")
    @classmethod
    def _empty_when_null(cls, value: object) -> object:
        return {} if value is None else value


class PendingSync(ApiObject):
    revision: str | None = None


class PendingOperation(ApiObject):
    sync: PendingSync | None = None


class Application(ApiObject):
    """An Argo CD Application as the API returns it: the fields the platform waits on."""

    status: ApplicationStatus = ApplicationStatus()
    operation: PendingOperation | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _no_status_yet(cls, value: object) -> object:
        return {} if value is None else value

    def pending(self, revision: str) -> bool:
        """Our sync request for `revision` is still there: Argo CD has not picked it up yet."""
        return bool(self.operation and self.operation.sync and self.operation.sync.revision == revision)


class AppState(Strict):
    """What the wait judges an Application on, flattened for the verdict and the log."""

    sync: str | None
    revision: str | None
    health: str | None
    operation_phase: str | None
    message: str | None

    @classmethod
    def of(cls, app: Application | dict) -> AppState:
        if not isinstance(app, Application):
            app = Application.read(app, "Argo CD Application")
        status = app.status
        return cls(
            sync=status.sync.status,
            revision=status.sync.revision,
            health=status.health.status,
            operation_phase=status.operation_state.phase,
            message=status.health.message or status.operation_state.message,
        )

    def verdict(self, revision: str, pending_request: bool) -> str | None:
        """'success', 'failed', or None to keep waiting."""
        if pending_request:
            return None  # Argo CD has not picked the request up yet
        if self.sync == "Synced" and self.revision == revision and self.health == "Healthy":
            return "success"
        if self.operation_phase in ("Failed", "Error") or self.health == "Degraded":
            return "failed"
        return None

    def describe(self) -> str:
        return (f"sync={self.sync} revision={(self.revision or '-')[:12]} health={self.health} "
                f"operation={self.operation_phase}" + (f" ({self.message})" if self.message else ""))


def request_sync(kubernetes_conn_id: str, namespace: str, application: str, revision: str) -> dict:
    """Ask Argo CD to sync `application` to `revision` (what `argocd app sync --revision` does)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    api = KubernetesHook(conn_id=kubernetes_conn_id).custom_object_client
    body = SyncPatch(operation=Operation(initiated_by=Initiator(username="release-platform"),
                                         sync=SyncRequest(revision=revision)))
    return api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, application, body.to_api())


class ApplicationSyncedTrigger(BaseTrigger):
    """Polls the Application until it is Synced at `revision` and Healthy, or `deadline` passes.

    `deadline` is wall-clock time (epoch seconds, UTC), fixed when the wait starts and carried in
    `serialize()`: a triggerer that restarts re-creates the trigger from its serialized kwargs and
    keeps the original deadline instead of starting the timeout over.
    """

    def __init__(self, kubernetes_conn_id: str, namespace: str, application: str, revision: str,
                 timeout_seconds: float, poll_interval: float = 5.0, deadline: float | None = None):
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.application = application
        self.revision = revision
        self.timeout_seconds = timeout_seconds
        self.poll_interval = poll_interval
        # A trigger serialized before deadlines were carried gets one now, once.
        self.deadline = float(deadline) if deadline is not None else deadlines.after(timeout_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.ApplicationSyncedTrigger", {
            "kubernetes_conn_id": self.kubernetes_conn_id, "namespace": self.namespace, "application": self.application,
            "revision": self.revision, "timeout_seconds": self.timeout_seconds, "poll_interval": self.poll_interval,
            "deadline": self.deadline})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client as async_client

        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        state = None
        while deadlines.wall_clock() < self.deadline:
            async with hook.get_conn() as api:
                app = await async_client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.application)
            try:
                read = Application.read(app, f"Argo CD Application {self.namespace}/{self.application}")
            except MalformedObject as exc:
                yield TriggerEvent({"status": "failed", "state": str(exc)})
                return
            state = AppState.of(read)
            verdict = state.verdict(self.revision, read.pending(self.revision))
            if verdict:
                yield TriggerEvent({"status": verdict, "state": state.describe()})
                return
            # Never sleep past the deadline: the timeout is reported when it is due.
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - deadlines.wall_clock())))
        yield TriggerEvent({"status": "timeout", "state": state.describe() if state else "never read",
                            "deadline": self.deadline})


class ApplicationSyncedSensor(BaseSensorOperator):
    """Waits (deferred) until an Argo CD Application is Synced at `revision` and Healthy."""

    template_fields = ("kubernetes_conn_id", "namespace", "application", "revision", "timeout_seconds")
    ui_color = "#ffe8cc"

    def __init__(self, *, kubernetes_conn_id: str, namespace: str, application: str, revision: str,
                 timeout_seconds: float = 900, poll_interval: float = 5.0, **kwargs: Any):
        from release.k8s.operators import INFRASTRUCTURE_RETRIES

        # A retry (the defer race failing a try whose sync was already seen) waits again, briefly;
        # a timeout or a failed sync fails at once (AirflowFailException).
        super().__init__(**(INFRASTRUCTURE_RETRIES | kwargs))
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.application = application
        self.revision = revision
        self.timeout_seconds = timeout_seconds
        self.poll_interval = poll_interval

    def execute(self, context) -> None:
        if not self.revision:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"no revision to wait for on {self.namespace}/{self.application}")
        # The deadline is fixed here, once, in wall-clock time: a triggerer restart does not move it.
        timeout = float(self.timeout_seconds)
        self.defer(
            trigger=ApplicationSyncedTrigger(self.kubernetes_conn_id, self.namespace, self.application,
                                             self.revision, timeout, self.poll_interval,
                                             deadline=deadlines.after(timeout)),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        where = f"Argo CD Application {self.namespace}/{self.application} at {self.revision[:12]}"
        if event["status"] == "success":
            self.log.info("%s is Synced and Healthy: %s", where, event["state"])
            return event["state"]
        if event["status"] == "timeout":
            due = f" (deadline {deadlines.utc_text(event['deadline'])})" if event.get("deadline") else ""
            raise AirflowFailException(
                f"{where} not Synced and Healthy within {float(self.timeout_seconds):.0f}s{due}: {event['state']}")
        raise AirflowFailException(f"{where} failed to sync: {event['state']}")
