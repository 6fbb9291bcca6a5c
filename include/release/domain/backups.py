"""Backups and restore drills as data: which environments, the records they leave, what a drill proved.

Every backup and every drill leaves a record (JSON, one file each) in the artifact store
under `velero/`, where `python -m release backups` and a dashboard can read them without
cluster access. The DAGs are in `release.flows.backups`.

What the DAGs' tasks hand each other is typed here too: the Velero object a task created
(`BackupStarted`, `RestoreStarted`: what the Velero sensor waits for), and the records. They
travel through XCom as `model_dump(mode="json")`, keys = field names, and are read back with
`model_validate`, so a task given something else fails naming the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter

from release.domain.config import PlatformConfig
from release.domain.values import Strict

BACKUPS_DAG_ID = "velero-backups"
DRILL_DAG_ID = "velero-restore-drill"
# Task ids that mean something outside their DAG: a failure alert tells a failed backup or drill by
# them (release.flows.notify.classify). The DAG builders name their tasks with these.
BACKUP_GROUP = "backup"  # velero-backups: the group mapped over the environments
DRILL_GROUP_PREFIX = "drill_"  # velero-restore-drill: one group per environment, drill_<env>
DRILL_REPORT = "report"  # ... whose failure is the drill's


def drill_group(env: str) -> str:
    return f"{DRILL_GROUP_PREFIX}{env}"


def drilled_env(task_id: str) -> str | None:
    """The environment whose drill a task id belongs to ('drill_prod.report' -> 'prod'), else None."""
    group = task_id.split(".", 1)[0]
    return group.removeprefix(DRILL_GROUP_PREFIX) if "." in task_id and group.startswith(DRILL_GROUP_PREFIX) else None


class BackupStarted(Strict):
    """A Backup the platform created: where it is (cluster connection, Velero namespace, name)
    and which environment it backs up."""

    kubernetes_conn_id: str
    kind: Literal["Backup"] = "Backup"
    namespace: str
    name: str
    env: str


class RestoreStarted(Strict):
    """A drill's Restore: where it is, the backup it restores, each live namespace -> its scratch
    copy, when it was requested (recovery time is measured from here) and where the smoke tests
    call the restored services."""

    kubernetes_conn_id: str
    kind: Literal["Restore"] = "Restore"
    namespace: str
    name: str
    env: str
    backup: str
    mapping: dict[str, str]
    started: str  # UTC ISO-8601
    scratch: str


# What the Velero sensor waits for: either, told apart by `kind`.
VeleroTarget = Annotated[Union[BackupStarted, RestoreStarted], Field(discriminator="kind")]
VELERO_TARGET: TypeAdapter[BackupStarted | RestoreStarted] = TypeAdapter(VeleroTarget)


class BackupRecord(Strict):
    env: str
    name: str
    phase: str
    started: str | None
    completed: str | None
    items_backed_up: int
    items_total: int
    errors: int
    warnings: int
    error_messages: list[str]
    warning_messages: list[str]
    timed_out: bool
    run_id: str
    recorded_at: str


class DrillRecord(Strict):
    env: str
    backup: str | None
    restore: str | None
    namespaces: dict[str, str]  # live namespace -> scratch copy
    restored: bool
    restore_phase: str | None
    smoke_passed: bool
    smoke: dict[str, str]  # service -> task state
    recovery_seconds: float | None  # restore requested -> smoke tests done
    problems: list[str]
    run_id: str
    recorded_at: str = Field(default_factory=lambda: now_text())


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def records_dir(config: PlatformConfig, kind: str) -> Path:
    return config.artifacts_dir() / "velero" / kind


def write_record(config: PlatformConfig, kind: str, record: BackupRecord | DrillRecord, name: str) -> Path:
    """One JSON file per backup or drill, replaced atomically (a reader never sees half a file)."""
    folder = records_dir(config, kind) / record.env
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(record.model_dump(mode="json"), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def read_records(config: PlatformConfig, kind: str, env: str | None = None) -> list[dict]:
    """Records oldest first (by when they were written)."""
    root = records_dir(config, kind)
    paths = root.glob(f"{env}/*.json" if env else "*/*.json")
    records = [json.loads(p.read_text()) for p in paths]
    return sorted(records, key=lambda r: (r["recorded_at"], r.get("name") or r.get("restore") or ""))


def backup_envs(config: PlatformConfig, requested: list | None) -> list[str]:
    """The environments to back up: those asked for (validated), else every enabled one."""
    enabled = [e for e in config.env_order if config.environments[e].backup.enabled]
    if not requested:
        return enabled
    unknown = [e for e in requested if e not in enabled]
    if unknown:
        raise ValueError(f"environments: {', '.join(map(repr, unknown))} cannot be backed up; allowed values: {', '.join(enabled)}")
    return [e for e in enabled if e in requested]


def scratch_namespace(namespace: str) -> str:
    """The fixed name a drill restores `namespace` into. Fixed, so the cluster grants the
    platform delete on exactly these names (deploy/clusters/); drills never overlap."""
    return f"drill-{namespace[:57].rstrip('-')}"


def drill_mapping(config: PlatformConfig, env: str) -> dict[str, str]:
    """Each namespace a drill of `env` restores -> the scratch namespace it is restored into."""
    return {ns: scratch_namespace(ns) for ns in config.backup_namespaces(env)}


def drill_smoke_namespace(config: PlatformConfig, env: str) -> str:
    """Where a drill's smoke tests call the restored services: the copy of the environment's own
    namespace, else of the first namespace restored."""
    mapping = drill_mapping(config, env)
    return mapping.get(config.environments[env].namespace) or next(iter(mapping.values()))


def newest_completed(backups: list[dict], env: str) -> dict | None:
    """The newest Completed backup this platform made of `env` (Velero may hold others too)."""
    ours = [b for b in backups
            if (b["metadata"].get("labels") or {}).get("release-platform/env") == env
            and (b.get("status") or {}).get("phase") == "Completed"]
    return max(ours, key=lambda b: b["status"].get("completionTimestamp") or "", default=None)


def drill_verdict(env: str, restore: RestoreStarted | None, restored_phase: str | None, smoke: dict[str, str],
                  run_id: str, finished: datetime) -> DrillRecord:
    """What the drill proved. `restore` is what the restore task started (None when it failed);
    `restored_phase` the phase the wait saw pass (None when the wait failed)."""
    problems = []
    if restore is None:
        problems.append("the restore was never started")
    elif restored_phase is None:
        problems.append(f"restore {restore.name} did not complete (see the wait task's log)")
    failed = sorted(s for s, state in smoke.items() if state != "success")
    if failed:
        problems.append(f"smoke tests did not pass against the restored copy: {', '.join(failed)}")
    recovery = None
    if restore and restored_phase and not failed:
        started = datetime.fromisoformat(restore.started.replace("Z", "+00:00"))
        recovery = round((finished - started).total_seconds(), 1)
    return DrillRecord(
        env=env, backup=restore.backup if restore else None, restore=restore.name if restore else None,
        namespaces=restore.mapping if restore else {}, restored=restored_phase is not None,
        restore_phase=restored_phase, smoke_passed=not failed and bool(smoke), smoke=smoke,
        recovery_seconds=recovery, problems=problems, run_id=run_id,
    )
