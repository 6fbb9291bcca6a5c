"""The Velero objects the platform files: names, labels and typed Backups and Restores.

Plain data, no Airflow: the DAGs (through `release.k8s.velero`) and the sandbox, which puts the
backups an environment that has been running would hold, build them the same way. `Backup` and
`Restore` hold the spec fields we set (the CRDs in the sandbox check them as an API server
would); `VeleroObject` reads back the status fields we judge a backup or restore on.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Literal

from pydantic import Field, field_validator

from release.domain.config import PlatformConfig
from release.k8s.objects import ApiObject, Manifest, ObjectMeta, ReadMeta
from release.k8s.pods import label_value

GROUP, VERSION = "velero.io", "v1"
PLURALS = {"Backup": "backups", "Restore": "restores"}
# Phases after which Velero never touches the object again (Backup and Restore alike).
TERMINAL = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
RUN_ID_ANNOTATION = "release-platform/run-id"
MANAGED_BY = {"app.kubernetes.io/managed-by": "release-platform"}


def object_name(prefix: str, env: str, at: datetime, run_id: str) -> str:
    """`<prefix>-<env>-<UTC stamp>-<run hash>`: sortable by time, unique per run, a valid label value."""
    stamp = at.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:6]
    room = 63 - len(prefix) - len(stamp) - len(digest) - 3
    return f"{prefix}-{env[:room].rstrip('-')}-{stamp}-{digest}"


def _metadata(name: str, namespace: str, env: str, dag_id: str, run_id: str) -> ObjectMeta:
    return ObjectMeta(
        name=name, namespace=namespace,
        labels={**MANAGED_BY, "release-platform/env": env, "release-platform/dag": label_value(dag_id),
                "release-platform/run": label_value(run_id)},
        # Labels cannot hold every run id verbatim; the annotation can, and proves ownership on retry.
        annotations={RUN_ID_ANNOTATION: run_id},
    )


# -- what the platform writes ------------------------------------------------------------------


class BackupSpec(Manifest):
    included_namespaces: list[str]
    ttl: str = Field(description="how long Velero keeps it, as a Go duration: 720h0m0s")
    storage_location: str
    snapshot_volumes: bool


class RestoreSpec(Manifest):
    backup_name: str
    included_namespaces: list[str]
    namespace_mapping: dict[str, str]
    restore_pvs: bool = Field(alias="restorePVs")  # Velero's spelling, not camelCase
    excluded_resources: list[str]
    include_cluster_resources: bool


class Backup(Manifest):
    api_version: Literal["velero.io/v1"] = f"{GROUP}/{VERSION}"
    kind: Literal["Backup"] = "Backup"
    metadata: ObjectMeta
    spec: BackupSpec


class Restore(Manifest):
    api_version: Literal["velero.io/v1"] = f"{GROUP}/{VERSION}"
    kind: Literal["Restore"] = "Restore"
    metadata: ObjectMeta
    spec: RestoreSpec


def new_backup(config: PlatformConfig, env: str, *, name: str, dag_id: str, run_id: str) -> Backup:
    """The nightly Backup of `env`: its namespaces, kept as long as the environment says."""
    b = config.environments[env].backup
    return Backup(
        metadata=_metadata(name, b.velero_namespace, env, dag_id, run_id),
        spec=BackupSpec(included_namespaces=config.backup_namespaces(env), ttl=f"{config.backup_ttl_days(env) * 24}h0m0s",
                        storage_location=b.storage_location, snapshot_volumes=b.snapshot_volumes),
    )


def new_restore(config: PlatformConfig, env: str, *, name: str, backup: str, mapping: dict[str, str],
            dag_id: str, run_id: str) -> Restore:
    """The drill's Restore of `backup` into scratch namespaces (`mapping`: live -> copy)."""
    b = config.environments[env].backup
    return Restore(
        metadata=_metadata(name, b.velero_namespace, env, dag_id, run_id),
        spec=RestoreSpec(
            backup_name=backup, included_namespaces=sorted(mapping), namespace_mapping=dict(mapping),
            restore_pvs=b.snapshot_volumes,
            # The copy runs beside the live environment: it must not answer for prod's hostnames
            # or run prod's scheduled work.
            excluded_resources=list(b.drill_excluded_resources),
            # A drill copy must not take over cluster-wide objects of the live environment.
            include_cluster_resources=False,
        ),
    )


def backup_manifest(config: PlatformConfig, env: str, *, name: str, dag_id: str, run_id: str) -> dict:
    """`new_backup(...)` as the dict the API takes."""
    return new_backup(config, env, name=name, dag_id=dag_id, run_id=run_id).to_api()


def restore_manifest(config: PlatformConfig, env: str, *, name: str, backup: str, mapping: dict[str, str],
                     dag_id: str, run_id: str) -> dict:
    """`new_restore(...)` as the dict the API takes."""
    return new_restore(config, env, name=name, backup=backup, mapping=mapping, dag_id=dag_id, run_id=run_id).to_api()


# -- what the platform reads back --------------------------------------------------------------


class Progress(ApiObject):
    total_items: int = 0
    items_backed_up: int | None = None  # a Backup's
    items_restored: int | None = None  # a Restore's

    @property
    def done(self) -> int:
        return self.items_backed_up if self.items_backed_up is not None else (self.items_restored or 0)


class VeleroObjectStatus(ApiObject):
    """What Velero writes of a Backup's or Restore's progress (the same fields for both)."""

    phase: str = "New"  # no status yet: Velero has not picked it up
    start_timestamp: str | None = None
    completion_timestamp: str | None = None
    progress: Progress = Progress()
    errors: int = 0
    warnings: int = 0
    failure_reason: str | None = None
    validation_errors: list[str] = []

    @field_validator("phase", mode="before")
    @classmethod
    def _new_until_set(cls, value: object) -> object:
        return value or "New"

    @field_validator("progress", mode="before")
    @classmethod
    def _no_progress_yet(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("errors", "warnings", mode="before")
    @classmethod
    def _zero_when_null(cls, value: object) -> object:
        return 0 if value is None else value

    @field_validator("validation_errors", mode="before")
    @classmethod
    def _none_when_null(cls, value: object) -> object:
        return [] if value is None else value

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL


class VeleroObject(ApiObject):
    """A Backup or Restore as the API returns it."""

    kind: Literal["Backup", "Restore"]
    metadata: ReadMeta
    status: VeleroObjectStatus = VeleroObjectStatus()

    @field_validator("status", mode="before")
    @classmethod
    def _no_status_yet(cls, value: object) -> object:
        return {} if value is None else value

    @classmethod
    def of(cls, obj: object) -> VeleroObject:
        """Read `obj`; a malformed one is a MalformedObject naming it and the field."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        kind = obj.get("kind") if isinstance(obj, dict) else None
        return cls.read(obj, f"Velero {kind or 'object'} {name or '(no name)'}")
