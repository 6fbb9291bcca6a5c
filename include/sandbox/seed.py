"""What the clusters of a platform that has been running already hold when the sandbox starts.

`python -m release sandbox` (which `make run` starts) calls `prepare` after the cluster is up
and before it writes the kubeconfig, so nothing reaches the sandbox before it is complete:

- every environment's Argo CD Application, as the GitOps repository's ApplicationSet creates it;
- with the scenario's `prior_backups`, one Completed Velero backup of every environment the
  platform backs up, made as `velero-backups` makes them, finished some hours before.

Why seed backups rather than let the restore drill wait for one: a real environment that has
been running holds last night's backups, and the sandbox stands for such an environment. When
`make run` unpauses the nightly DAGs, `velero-backups` and `velero-restore-drill` start at once
(their latest scheduled run); the drill restores last night's backup, as it would in production.
A drill that waited for a backup in progress would hide the finding that matters in a real
cluster: no backup to restore is a failure, and the drill says so loudly (a scenario without
`prior_backups` shows it). The seeded backups say what they are in an annotation.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from release.domain.config import PlatformConfig
from sandbox.server import SandboxCluster

PRIOR_RUN_ID = "sandbox-prior-backups"  # the run id the seeded backups carry (no Airflow run made them)
SEEDED_ANNOTATION = "release-platform/sandbox"


def prior_backup_manifests(config: PlatformConfig, completed: datetime) -> list[dict]:
    """One `velero-backups` Backup manifest per environment the platform backs up."""
    from release.domain.backups import BACKUPS_DAG_ID, backup_envs
    from release.k8s.velero_objects import backup_manifest, object_name

    manifests = []
    for env in backup_envs(config, None):
        name = object_name("release", env, completed, PRIOR_RUN_ID)
        manifest = backup_manifest(config, env, name=name, dag_id=BACKUPS_DAG_ID, run_id=PRIOR_RUN_ID)
        manifest["metadata"]["annotations"][SEEDED_ANNOTATION] = (
            "put in place by the sandbox scenario (prior_backups): a backup the environment holds from before")
        manifests.append(manifest)
    return manifests


def prepare(cluster: SandboxCluster, config: PlatformConfig, now: datetime | None = None) -> list[str]:
    """Bring a started sandbox to what the platform's clusters hold; returns the seeded backups' names."""
    for env in config.env_order:
        cluster.call(cluster.ensure_application, *config.argocd_application(env), env)
    prior = cluster.scenario.prior_backups
    if prior is None:
        return []
    completed = (now or datetime.now(timezone.utc)) - timedelta(hours=prior.hours_ago)
    names = []
    for manifest in prior_backup_manifests(config, completed):
        cluster.call(cluster.ensure_namespace, manifest["metadata"]["namespace"])
        created = cluster.call(lambda m=manifest: cluster.velero.completed_backup(m, completed=completed, items=prior.items))
        names.append(created["metadata"]["name"])
    return names
