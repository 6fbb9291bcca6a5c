"""The simulated node and controllers: a kubelet, Argo CD and Velero, driven by a scenario.

Each reacts to objects the way its real counterpart does, only faster and by the
scenario's rules: the kubelet walks a pod Pending -> Running -> Succeeded/Failed and
writes its logs; Argo CD syncs an Application when asked; Velero runs Backups and
Restores to a terminal phase and leaves its results file in the backup storage, laid
out as Velero lays it out in the bucket; like Velero, it fails the validation of a Restore
whose backup it does not hold. A smoke-test pod that no pod rule names runs the real checker
(release.tools.smoke.check) against the scenario's simulated services.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.scenario import PodBehaviour, Scenario
from sandbox.store import NotFound, merge_patch, now

if TYPE_CHECKING:
    from sandbox.server import SandboxCluster

log = logging.getLogger(__name__)


def _ts() -> datetime:
    return datetime.now(timezone.utc)


SMOKE_COMMAND = ["python", "-m", "release.tools.smoke"]
# The sandbox does not wait out a smoke test's intervals: each second of them takes a millisecond.
SMOKE_TIME_SCALE = 0.001


def run_smoke(scenario: Scenario, args: list[str]) -> PodBehaviour:
    """What the pod `python -m release.tools.smoke ARGS` does against the scenario's `http` rules:
    the real checker's attempt lines, exit code and JSON summary."""
    from urllib.parse import urlsplit

    from release.tools import smoke

    def refuse(message: str):
        raise ValueError(message)

    parser = smoke.parser()
    parser.error = refuse  # a bad argument ends the pod as the CLI would (exit 2), not the server
    try:
        options = parser.parse_args(args)
    except ValueError as e:
        return PodBehaviour(exit_code=2, logs=[f"{parser.prog}: error: {e}"], duration_seconds=0.05)

    def fetch(url: str, timeout: float) -> int:
        parts = urlsplit(url)
        return scenario.http_status(parts.hostname or "", parts.path or "/")

    lines: list[str] = []
    result = smoke.check(options.urls, options.expect_status, options.retries, options.interval, options.timeout,
                         fetch=fetch, sleep=lambda seconds: time.sleep(seconds * SMOKE_TIME_SCALE), log=lines.append)
    if not result.passed:
        lines.append(result.failure())
    return PodBehaviour(exit_code=0 if result.passed else 1, logs=lines,
                        termination_message=smoke.termination_message(result),
                        duration_seconds=scenario.default_pod.duration_seconds,
                        schedule_seconds=scenario.default_pod.schedule_seconds)


class Kubelet:
    node = "sandbox-node"

    def __init__(self, cluster: SandboxCluster):
        self.cluster = cluster
        self.logs: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        self.finished: set[tuple[str, str]] = set()  # containers terminated; log followers stop here

    def _status(self, ns: str, name: str, status: dict, metadata: dict | None = None) -> dict | None:
        pods = self.cluster.resource("pods")
        try:
            return self.cluster.store.patch(
                pods, ns, name, lambda p: merge_patch(p, {"status": status, **({"metadata": metadata} if metadata else {})})
            )
        except NotFound:
            return None  # deleted meanwhile: a real kubelet stops caring too

    def _event(self, pod: dict, reason: str, message: str, kind: str = "Normal") -> None:
        self.cluster.record_event(pod, reason, message, kind, component="kubelet")

    async def run(self, pod: dict) -> None:
        try:
            await self._run(pod)
        except Exception:  # noqa: BLE001 - a crashed simulation must not kill the server
            log.exception("sandbox kubelet failed on pod %s", pod["metadata"]["name"])

    async def behaviour(self, pod: dict) -> PodBehaviour:
        """A pod rule that names the pod decides; else a smoke-test pod runs the real checker;
        else the scenario's default."""
        scenario = self.cluster.scenario
        rule = scenario.pod_rule(pod)
        if rule is not None:
            return rule
        container = pod["spec"]["containers"][0]
        if container.get("command") == SMOKE_COMMAND:
            return await asyncio.to_thread(run_smoke, scenario, list(container.get("args") or []))
        return scenario.default_pod

    async def _run(self, pod: dict) -> None:
        b: PodBehaviour = await self.behaviour(pod)
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        images = {c["name"]: c.get("image", "") for c in pod["spec"]["containers"]}
        self.logs[(ns, name)] = []
        outcome = b.resolved_outcome
        await asyncio.sleep(b.schedule_seconds)

        if outcome == "never_scheduled":
            message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available."
            self._status(ns, name, {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                    "message": message, "lastTransitionTime": now()}]})
            self._event(pod, "FailedScheduling", message, "Warning")
            return

        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}
        if self._status(ns, name, {"conditions": [scheduled], "hostIP": "10.0.0.1"}, None) is None:
            return
        self.cluster.store.patch(self.cluster.resource("pods"), ns, name, lambda p: merge_patch(p, {"spec": {"nodeName": self.node}}))
        self._event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {self.node}")

        if outcome == "image_pull_backoff":
            image = next(iter(images.values()))
            waiting = [{"name": c, "image": images[c], "imageID": "", "ready": False, "restartCount": 0, "started": False,
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{images[c]}"'}}}
                       for c in containers]
            self._status(ns, name, {"phase": "Pending", "containerStatuses": waiting})
            self._event(pod, "Failed", f'Failed to pull image "{image}": rpc error: code = NotFound desc = manifest unknown', "Warning")
            self._event(pod, "BackOff", f'Back-off pulling image "{image}"', "Warning")
            return

        started = now()
        running = [{"name": c, "image": images[c], "imageID": f"{images[c]}", "ready": True, "restartCount": 0,
                    "started": True, "state": {"running": {"startedAt": started}}} for c in containers]
        for c in containers:
            self._event(pod, "Pulled", f'Container image "{images[c]}" already present on machine')
            self._event(pod, "Started", f"Started container {c}")
        if self._status(ns, name, {"phase": "Running", "startTime": started, "podIP": "10.42.0.10",
                                   "containerStatuses": running,
                                   "conditions": [scheduled, {"type": "Ready", "status": "True", "lastTransitionTime": started}]}) is None:
            return

        step = b.duration_seconds / (len(b.logs) + 1)
        for line in b.logs:
            await asyncio.sleep(step)
            self.logs[(ns, name)].append((_ts(), line))
        await asyncio.sleep(step)
        self.cluster.place_artifacts(pod, b)

        finished = now()
        if outcome == "evicted":
            status = {"phase": "Failed", "reason": "Evicted",
                      "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
                      "containerStatuses": [self._terminated(c, images[c], 137, "ContainerStatusUnknown", started, finished, None)
                                            for c in containers]}
            self._event(pod, "Evicted", status["message"], "Warning")
        else:
            exit_code = 137 if outcome == "oom_killed" else b.exit_code
            reason = {"oom_killed": "OOMKilled"}.get(outcome, "Completed" if exit_code == 0 else "Error")
            phase = "Succeeded" if exit_code == 0 and outcome == "succeeded" else "Failed"
            status = {"phase": phase, "containerStatuses": [
                self._terminated(c, images[c], exit_code, reason, started, finished, b.termination_message if i == 0 else None)
                for i, c in enumerate(containers)]}
        status["conditions"] = [scheduled, {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished}]
        self.finished.add((ns, name))
        self._status(ns, name, status)

    @staticmethod
    def _terminated(name, image, exit_code, reason, started, finished, message) -> dict:
        term = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": finished}
        if message:
            term["message"] = message
        return {"name": name, "image": image, "imageID": image, "ready": False, "restartCount": 0, "started": False,
                "state": {"terminated": term}}


class ArgoCD:
    def __init__(self, cluster: SandboxCluster):
        self.cluster = cluster
        self.synced_generation: dict[tuple[str, str], int] = {}

    def wants_sync(self, app: dict) -> bool:
        key = (app["metadata"]["namespace"], app["metadata"]["name"])
        return bool(app.get("operation", {}).get("sync") is not None) or \
            app["metadata"].get("generation", 1) != self.synced_generation.get(key)

    async def run(self, app: dict) -> None:
        try:
            await self._run(app)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001
            log.exception("sandbox Argo CD failed on %s", app["metadata"]["name"])

    async def _run(self, app: dict) -> None:
        res = self.cluster.resource("applications")
        ns, name = app["metadata"]["namespace"], app["metadata"]["name"]
        self.synced_generation[(ns, name)] = app["metadata"].get("generation", 1)
        rule = self.cluster.scenario.application_rule(app)
        source = app.get("spec", {}).get("source") or (app.get("spec", {}).get("sources") or [{}])[0]
        revision = (app.get("operation") or {}).get("sync", {}).get("revision") or source.get("targetRevision") or "HEAD"
        started = now()
        self.cluster.store.patch(res, ns, name, lambda a: merge_patch(a, {"status": {
            "sync": {"status": "OutOfSync", "revision": (a.get("status", {}).get("sync") or {}).get("revision")},
            "health": {"status": "Progressing"},
            "operationState": {"phase": "Running", "startedAt": started, "message": "sync in progress",
                               "operation": a.get("operation") or {"sync": {"revision": revision}}},
        }}))
        await asyncio.sleep(rule.delay_seconds)
        ok = rule.sync == "Synced"
        message = rule.message or ("successfully synced (all tasks run)" if ok else "one or more objects failed to apply")

        def finish(a: dict) -> dict:
            a = merge_patch(a, {"status": {
                "sync": {"status": rule.sync, "revision": revision},
                "health": {"status": rule.health, **({"message": rule.message} if rule.message else {})},
                "reconciledAt": now(),
                "operationState": {"phase": "Succeeded" if ok else "Failed", "message": message, "startedAt": started,
                                   "finishedAt": now(), "syncResult": {"revision": revision}},
                "history": [*(a.get("status", {}).get("history") or []),
                            {"id": len(a.get("status", {}).get("history") or []), "revision": revision, "deployedAt": now()}],
            }})
            a.pop("operation", None)  # Argo CD clears the request once it has acted on it
            return a

        self.cluster.store.patch(res, ns, name, finish)


class Velero:
    def __init__(self, cluster: SandboxCluster):
        self.cluster = cluster

    async def run(self, obj: dict) -> None:
        try:
            await self._run(obj)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001
            log.exception("sandbox Velero failed on %s", obj["metadata"]["name"])

    async def _run(self, obj: dict) -> None:
        kind = obj["kind"]
        res = self.cluster.resource("backups" if kind == "Backup" else "restores")
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        rule = self.cluster.scenario.velero_rule(kind, obj)
        store = self.cluster.store
        store.patch(res, ns, name, lambda o: merge_patch(o, {"status": {"phase": "New"}}))
        if kind == "Restore" and (problem := self._missing_backup(ns, obj)):
            # Velero's restore controller refuses to start: no backup, nothing to restore.
            store.patch(res, ns, name, lambda o: merge_patch(o, {"status": {
                "phase": "FailedValidation", "validationErrors": [problem], "completionTimestamp": now()}}))
            return
        await asyncio.sleep(rule.delay_seconds / 3)
        start = _ts()
        progress = {"totalItems": rule.items, "itemsBackedUp" if kind == "Backup" else "itemsRestored": 0}
        in_progress = {"phase": "InProgress", "startTimestamp": now(), "progress": progress}
        if kind == "Backup":
            ttl = _parse_duration(obj.get("spec", {}).get("ttl") or "720h")
            in_progress |= {"expiration": (start + ttl).strftime("%Y-%m-%dT%H:%M:%SZ"), "version": 1,
                            "formatVersion": "1.1.0"}
        store.patch(res, ns, name, lambda o: merge_patch(o, {"status": in_progress}))
        if rule.stuck:
            return
        await asyncio.sleep(rule.delay_seconds * 2 / 3)
        done = {"itemsBackedUp" if kind == "Backup" else "itemsRestored": rule.items if rule.phase != "Failed" else 0}
        final = {"phase": rule.phase, "completionTimestamp": now(), "progress": {"totalItems": rule.items, **done},
                 "errors": len(rule.errors), "warnings": len(rule.warnings)}
        if rule.failure_reason or rule.phase == "Failed":
            final["failureReason"] = rule.failure_reason or "; ".join(rule.errors) or "unknown failure"
        self._write_results(kind, name, rule.errors, rule.warnings)
        if kind == "Restore" and rule.phase != "Failed":
            for target in (obj.get("spec", {}).get("namespaceMapping") or {}).values():
                self.cluster.ensure_namespace(target, labels={"velero.io/restore-name": name})
        store.patch(res, ns, name, lambda o: merge_patch(o, {"status": final}))

    def _missing_backup(self, ns: str, restore: dict) -> str | None:
        """The validation error Velero gives a Restore whose backup it cannot find, else None."""
        backup = (restore.get("spec") or {}).get("backupName") or ""
        try:
            self.cluster.store.get(self.cluster.resource("backups"), ns, backup)
        except NotFound:
            return f'Error retrieving backup: backups.velero.io "{backup}" not found'
        return None

    def completed_backup(self, manifest: dict, *, completed: datetime, items: int) -> dict:
        """Put a Backup in the cluster as Velero leaves one that completed at `completed`, with its
        (empty) results file in the storage: a backup made before the sandbox started. The
        manifest is validated against Velero's CRD like any created object."""
        from sandbox import validation

        validation.validate_crd(manifest)
        spec = manifest.get("spec") or {}
        started = completed - timedelta(minutes=1)
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        status = {"phase": "Completed", "version": 1, "formatVersion": "1.1.0",
                  "startTimestamp": started.strftime(stamp), "completionTimestamp": completed.strftime(stamp),
                  "expiration": (started + _parse_duration(spec.get("ttl") or "720h")).strftime(stamp),
                  "progress": {"totalItems": items, "itemsBackedUp": items}, "errors": 0, "warnings": 0}
        created = self.cluster.store.create(self.cluster.resource("backups"), manifest["metadata"]["namespace"],
                                            {**manifest, "status": status}, created_at=status["startTimestamp"])
        self._write_results("Backup", created["metadata"]["name"], [], [])
        return created

    @staticmethod
    def storage_key(target_kind: str, name: str) -> str:
        """Where Velero keeps a backup's or restore's files in the bucket."""
        return {
            "BackupResults": f"backups/{name}/{name}-results.gz",
            "BackupLog": f"backups/{name}/{name}-logs.gz",
            "RestoreResults": f"restores/{name}/restore-{name}-results.gz",
            "RestoreLog": f"restores/{name}/restore-{name}-logs.gz",
        }.get(target_kind, f"other/{target_kind}/{name}")

    async def download(self, obj: dict) -> None:
        """Answer a DownloadRequest with a link to the file, as `velero ... describe --details` uses."""
        target = obj["spec"]["target"]
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        url = self.cluster.storage_url(self.storage_key(target["kind"], target["name"]))
        expires = (_ts() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {"phase": "Processed", "downloadURL": url, "expiration": expires}
        try:
            self.cluster.store.patch(self.cluster.resource("downloadrequests"), ns, name,
                                     lambda o: merge_patch(o, {"status": status}))
        except NotFound:
            pass

    def _write_results(self, kind: str, name: str, errors: list[str], warnings: list[str]) -> None:
        """The results file Velero uploads to the backup location (what `velero ... describe --details` reads)."""
        root = self.cluster.backup_storage_dir
        if root is None:
            return
        path = root / self.storage_key(f"{kind}Results", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"errors": {"velero": errors} if errors else {}, "warnings": {"velero": warnings} if warnings else {}}
        path.write_bytes(gzip.compress(json.dumps(body).encode()))


def _parse_duration(text: str) -> timedelta:
    """Go durations as Velero's ttl uses them: 720h0m0s, 168h, 30m."""
    import re

    total = timedelta()
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text):
        total += {"h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1),
                  "ms": timedelta(milliseconds=1)}[unit] * float(value)
    return total


def copy_artifact(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
