"""The Velero objects the platform files: names, labels and manifests of Backups and Restores.

Plain data, no Airflow: the DAGs (through `release.k8s.velero`) and the sandbox, which puts the
backups an environment that has been running would hold, build them the same way.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from release.domain.config import PlatformConfig
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


def _metadata(name: str, namespace: str, env: str, dag_id: str, run_id: str) -> dict:
    return {
        "name": name, "namespace": namespace,
        "labels": {**MANAGED_BY, "release-platform/env": env, "release-platform/dag": label_value(dag_id),
                   "release-platform/run": label_value(run_id)},
        # Labels cannot hold every run id verbatim; the annotation can, and proves ownership on retry.
        "annotations": {RUN_ID_ANNOTATION: run_id},
    }


def backup_manifest(config: PlatformConfig, env: str, *, name: str, dag_id: str, run_id: str) -> dict:
    b = config.environments[env].backup
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Backup",
        "metadata": _metadata(name, b.velero_namespace, env, dag_id, run_id),
        "spec": {
            "includedNamespaces": config.backup_namespaces(env),
            "ttl": f"{config.backup_ttl_days(env) * 24}h0m0s",
            "storageLocation": b.storage_location,
            "snapshotVolumes": b.snapshot_volumes,
        },
    }


def restore_manifest(config: PlatformConfig, env: str, *, name: str, backup: str, mapping: dict[str, str],
                     dag_id: str, run_id: str) -> dict:
    b = config.environments[env].backup
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Restore",
        "metadata": _metadata(name, b.velero_namespace, env, dag_id, run_id),
        "spec": {
            "backupName": backup,
            "includedNamespaces": sorted(mapping),
            "namespaceMapping": dict(mapping),
            "restorePVs": b.snapshot_volumes,
            # The copy runs beside the live environment: it must not answer for prod's hostnames
            # or run prod's scheduled work.
            "excludedResources": list(b.drill_excluded_resources),
            # A drill copy must not take over cluster-wide objects of the live environment.
            "includeClusterResources": False,
        },
    }
