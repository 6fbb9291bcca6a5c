"""Sandbox mode for `make run`: a simulated cluster only when no real one is configured.

A real cluster counts as configured when there is a kubeconfig (KUBECONFIG or
~/.kube/config) or any environment's Airflow `kubernetes` connection exists, as an
AIRFLOW_CONN_* variable or in the metadata database. Production never reaches here.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

from release.domain.config import PlatformConfig
from sandbox.server import SANDBOX_LABEL, SandboxCluster

INSTANCE_NAME = "Release platform: SANDBOX (simulated cluster, nothing is really built or deployed)"


def _db_connections(conn_ids: list[str]) -> list[str]:
    try:
        from airflow.models import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            return [c for (c,) in session.query(Connection.conn_id).filter(Connection.conn_id.in_(conn_ids))]
    except Exception:  # noqa: BLE001 - no database yet means no connections yet
        return []


def real_cluster_reason(config: PlatformConfig, environ: Mapping[str, str] = os.environ, home: Path | None = None,
                        check_database: bool = True) -> str | None:
    """Why a real cluster is configured, or None when there is none."""
    if environ.get("KUBECONFIG"):
        return f"KUBECONFIG is set ({environ['KUBECONFIG']})"
    kube = (home or Path.home()) / ".kube" / "config"
    if kube.exists():
        return f"{kube} exists"
    conn_ids = [e.kubernetes_conn_id for e in config.environments.values()]
    for conn_id in conn_ids:
        if environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
            return f"AIRFLOW_CONN_{conn_id.upper()} is set"
    if check_database and (found := _db_connections(conn_ids)):
        return f"Airflow connection(s) {', '.join(found)} exist"
    return None


def sandbox_environment(config: PlatformConfig, kubeconfig: Path) -> dict[str, str]:
    """The variables that point every environment's connection at the sandbox and label it."""
    env = {
        f"AIRFLOW_CONN_{e.kubernetes_conn_id.upper()}": SandboxCluster.airflow_connection(kubeconfig, e.namespace)
        for e in config.environments.values()
    }
    env["RELEASE_SANDBOX"] = SANDBOX_LABEL
    from sandbox.github.mode import sandbox_github_environment

    # the GitHub stand-in, when the sandbox started one
    env.update(sandbox_github_environment(config, in_database=_db_connections))
    env["AIRFLOW__API__INSTANCE_NAME"] = INSTANCE_NAME
    return env


def shell_exports(variables: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in variables.items())

