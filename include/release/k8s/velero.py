"""Velero through the Kubernetes API: the Backup and Restore objects the platform files,
how far they got, what Velero said about them, and a deferrable wait for the end.

The platform talks to Velero the way the `velero` CLI does: it creates `velero.io/v1`
objects in the Velero namespace, reads their status, and fetches the results file
(errors and warnings per namespace) through a DownloadRequest, which Velero answers
with a pre-signed link into the backup storage. No bucket credentials reach Airflow.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from release.domain import deadlines
from release.domain.backups import VELERO_TARGET, BackupStarted, RestoreStarted, VeleroTarget
from release.domain.values import Strict
from release.k8s.velero_objects import (  # noqa: F401 - the names callers import from here
    GROUP, MANAGED_BY, PLURALS, RUN_ID_ANNOTATION, TERMINAL, VERSION, Backup, Restore, VeleroObject, backup_manifest,
    object_name, restore_manifest,
)


class VeleroError(RuntimeError):
    pass


class VeleroStatus(Strict):
    """How far a Backup or Restore got, flattened for logs and the records the DAGs keep."""

    kind: str
    name: str
    phase: str
    started: str | None
    completed: str | None
    items_total: int
    items_done: int
    errors: int
    warnings: int
    failure_reason: str | None
    validation_errors: list[str]

    @classmethod
    def of(cls, obj: dict) -> VeleroStatus:
        """`obj` as the API returned it; MalformedObject (naming the field) if Velero's fields are not as we read them."""
        read = VeleroObject.of(obj)
        status = read.status
        return cls(
            kind=read.kind, name=read.metadata.name, phase=status.phase,
            started=status.start_timestamp, completed=status.completion_timestamp,
            items_total=status.progress.total_items, items_done=status.progress.done,
            errors=status.errors, warnings=status.warnings,
            failure_reason=status.failure_reason, validation_errors=list(status.validation_errors),
        )

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def describe(self) -> str:
        text = (f"{self.kind} {self.name}: {self.phase}, {self.items_done}/{self.items_total} items, "
                f"{self.errors} errors, {self.warnings} warnings")
        if self.failure_reason:
            text += f"; failure reason: {self.failure_reason}"
        if self.validation_errors:
            text += f"; validation errors: {'; '.join(self.validation_errors)}"
        return text

    def to_dict(self) -> dict:
        return self.model_dump()


@dataclass(frozen=True)
class Results:
    """Velero's results file, flattened to readable lines ('namespace apps-prod: ...')."""

    errors: list[str]
    warnings: list[str]

    @classmethod
    def parse(cls, data: dict) -> Results:
        def flatten(section: dict | None) -> list[str]:
            section = section or {}
            lines = [f"velero: {m}" for m in section.get("velero") or []]
            lines += [f"cluster: {m}" for m in section.get("cluster") or []]
            for ns, messages in sorted((section.get("namespaces") or {}).items()):
                lines += [f"namespace {ns}: {m}" for m in messages]
            return lines

        return cls(errors=flatten(data.get("errors")), warnings=flatten(data.get("warnings")))


# -- the API calls ---------------------------------------------------------------------------


def _custom_objects(conn_id: str):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=conn_id).custom_object_client


def create(conn_id: str, manifest: Backup | Restore | dict) -> dict:
    """Create the object and return it as the cluster has it.

    A retried task finds the object its earlier try made: still running, it is adopted. A
    cleared run finds a finished one: a fresh object is made under a numbered name, so a
    re-run really backs up (or restores) again. An object of another run is never touched.
    A dict is checked against the typed model first, so a wrong field fails here, not in Velero.
    """
    from kubernetes.client.exceptions import ApiException

    if isinstance(manifest, dict):
        manifest = (Backup if manifest.get("kind") == "Backup" else Restore).model_validate(manifest)
    api = _custom_objects(conn_id)
    meta, plural = manifest.metadata, PLURALS[manifest.kind]
    ours = meta.annotations[RUN_ID_ANNOTATION]
    for attempt in range(1, 10):
        name = meta.name if attempt == 1 else f"{meta.name[:60]}-{attempt}"
        body = manifest.model_copy(update={"metadata": meta.model_copy(update={"name": name})}).to_api()
        try:
            return api.create_namespaced_custom_object(GROUP, VERSION, meta.namespace, plural, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        found = api.get_namespaced_custom_object(GROUP, VERSION, meta.namespace, plural, name)
        existing = VeleroObject.of(found)
        owner = existing.metadata.annotations.get(RUN_ID_ANNOTATION)
        if owner != ours:
            raise VeleroError(f"{manifest.kind} {meta.namespace}/{name} already exists and belongs to run {owner!r}")
        if not existing.status.terminal:
            return found
    raise VeleroError(f"{manifest.kind} {meta.namespace}/{meta.name}: this run made 9 already; start a new run")


def list_ours(conn_id: str, kind: str, namespace: str, env: str) -> list[dict]:
    """The Backups (or Restores) this platform made of `env`."""
    selector = ",".join(f"{k}={v}" for k, v in {**MANAGED_BY, "release-platform/env": env}.items())
    return _custom_objects(conn_id).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], label_selector=selector)["items"]


def read(conn_id: str, kind: str, namespace: str, name: str) -> dict:
    return _custom_objects(conn_id).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)


def fetch_results(conn_id: str, kind: str, namespace: str, name: str, timeout_seconds: float = 60) -> Results | None:
    """Velero's errors and warnings for a backup or restore (what `velero describe --details` shows).

    None when Velero did not answer in time or there is no results file (e.g. a backup that
    never started); callers still have the counts from the status.
    """
    from kubernetes.client.exceptions import ApiException

    api = _custom_objects(conn_id)
    # The API server picks a unique name: a second request for the same object never collides.
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DownloadRequest",
            "metadata": {"generateName": "release-results-", "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": {"target": {"kind": f"{kind}Results", "name": name}}}
    created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "downloadrequests", body)
    request_name = created["metadata"]["name"]
    try:
        deadline = time.monotonic() + timeout_seconds
        url = None
        while time.monotonic() < deadline:
            status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "downloadrequests", request_name).get("status") or {}
            if status.get("phase") == "Processed" and status.get("downloadURL"):
                url = status["downloadURL"]
                break
            time.sleep(0.5)
        if url is None or not url.startswith(("https://", "http://")):
            return None
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a link Velero signed, http(s) only
                return Results.parse(json.loads(gzip.decompress(response.read())))
        except Exception:  # noqa: BLE001 - 404 (never ran), a cut download, a file in an unknown shape
            # The details are a courtesy; the verdict rests on the status counts and phase.
            return None
    finally:
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "downloadrequests", request_name)
        except ApiException:
            pass  # Velero garbage-collects expired requests itself


# -- waiting ---------------------------------------------------------------------------------


class VeleroOutcome(Strict):
    """How a Backup or Restore ended, as the sensor judged it: the object it waited for, its final
    status, whether the wait ran out first, and Velero's own errors and warnings (empty when
    there were none or Velero did not hand its results over). The sensor's XCom is this, as JSON."""

    target: VeleroTarget
    status: VeleroStatus
    timed_out: bool
    errors: list[str]
    warnings: list[str]


class VeleroPhaseTrigger(BaseTrigger):
    """Polls a Backup or Restore until it reaches a terminal phase or the deadline passes."""

    def __init__(self, kubernetes_conn_id: str, kind: str, namespace: str, name: str, deadline: float,
                 poll_interval: float = 10.0):
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.deadline = deadline  # epoch seconds: survives a triggerer restart unlike a monotonic clock
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.VeleroPhaseTrigger", {
            "kubernetes_conn_id": self.kubernetes_conn_id, "kind": self.kind, "namespace": self.namespace,
            "name": self.name, "deadline": self.deadline, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client as async_client

        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        phase = None
        while deadlines.wall_clock() < self.deadline:
            async with hook.get_conn() as api:
                obj = await async_client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURALS[self.kind], self.name)
            phase = VeleroObject.of(obj).status.phase
            if phase in TERMINAL:
                yield TriggerEvent({"status": "terminal", "phase": phase})
                return
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - deadlines.wall_clock())))
        yield TriggerEvent({"status": "timeout", "phase": phase})


class VeleroSensor(BaseSensorOperator):
    """Waits (deferred) for a Backup or Restore; `Completed` passes, anything else fails.

    `target` is what the creating task returned (a `BackupStarted` or `RestoreStarted`, as JSON:
    usually that task's XComArg). On failure the task log lists Velero's own errors and warnings,
    fetched from its results. Subclasses record the outcome in `on_outcome`.
    """

    template_fields = ("target",)
    ui_color = "#e0f0ff"

    def __init__(self, *, target: Any, timeout_minutes: float, poll_interval: float = 10.0, **kwargs: Any):
        from release.k8s.operators import INFRASTRUCTURE_RETRIES

        super().__init__(**(INFRASTRUCTURE_RETRIES | kwargs))  # see ApplicationSyncedSensor
        self.target = target
        self.timeout_minutes = timeout_minutes
        self.poll_interval = poll_interval

    def waited_for(self) -> BackupStarted | RestoreStarted:
        """The rendered `target`, checked: a creating task that returned something else fails here,
        naming the field."""
        return VELERO_TARGET.validate_python(self.target)

    def execute(self, context) -> dict:
        t = self.waited_for()
        obj = VeleroObject.of(read(t.kubernetes_conn_id, t.kind, t.namespace, t.name))
        if obj.status.terminal:  # already over (a retry, or a fast Velero): no need to defer
            return self.execute_complete(context, {"status": "terminal"})
        # The clock starts when the object was created, so a retried wait does not restart it.
        created = obj.metadata.creation_timestamp
        start = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else deadlines.wall_clock()
        self.defer(
            trigger=VeleroPhaseTrigger(t.kubernetes_conn_id, t.kind, t.namespace, t.name,
                                       start + self.timeout_minutes * 60, self.poll_interval),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        t = self.waited_for()
        status = VeleroStatus.of(read(t.kubernetes_conn_id, t.kind, t.namespace, t.name))
        results = None
        if status.terminal and (status.errors or status.warnings or status.phase != "Completed"):
            results = fetch_results(t.kubernetes_conn_id, t.kind, t.namespace, t.name)
        # Finished between the trigger's last look and this read: judge the phase, not the clock.
        timed_out = event["status"] == "timeout" and not status.terminal
        outcome = VeleroOutcome(target=t, status=status, timed_out=timed_out,
                                errors=results.errors if results else [], warnings=results.warnings if results else [])
        self.log.info("%s", status.describe())
        for line in outcome.errors:
            self.log.error("Velero error: %s", line)
        for line in outcome.warnings:
            self.log.warning("Velero warning: %s", line)
        self.on_outcome(outcome, context)
        if outcome.timed_out:
            raise AirflowFailException(
                f"{t.kind} {t.namespace}/{t.name} is stuck: still {status.phase} after "
                f"{self.timeout_minutes:g} minutes ({status.items_done}/{status.items_total} items)")
        if status.phase != "Completed":
            listed = "; ".join(outcome.errors[:10]) or status.failure_reason or "see the Velero logs"
            raise AirflowFailException(f"{t.kind} {t.namespace}/{t.name} ended {status.phase}: "
                                       f"{status.errors} errors, {status.warnings} warnings: {listed}")
        return outcome.model_dump(mode="json")

    def on_outcome(self, outcome: VeleroOutcome, context) -> None:
        """Called with the final outcome, pass or fail, before the task is judged."""
