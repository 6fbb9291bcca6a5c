"""pytest fixtures for the sandbox cluster (enable with `pytest_plugins = ["sandbox.pytest_plugin"]`).

- `sandbox`: a fresh cluster for one test, with a kubeconfig on disk, an Airflow
  `kubernetes` connection `k8s_sandbox` (and one per configured environment's connection
  id) pointing at it, and `.scenario` / `.requests` to steer and inspect it.
- `sandbox_session`: one cluster for a whole session, for tests that only read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.server import SandboxCluster

CONN_ID = "k8s_sandbox"


def _connect(cluster: SandboxCluster, directory: Path, setenv) -> None:
    from release.domain.config import load_config

    cluster.kubeconfig_path = cluster.write_kubeconfig(directory / "kubeconfig")
    cluster.conn_id = CONN_ID
    conn_ids = {CONN_ID: "default"}
    try:
        for env in load_config().environments.values():
            conn_ids[env.kubernetes_conn_id] = env.namespace
    except Exception:  # noqa: BLE001 - a test of a broken config still gets its sandbox
        pass
    for conn_id, namespace in conn_ids.items():
        cluster.call(cluster.ensure_namespace, namespace)
        setenv(f"AIRFLOW_CONN_{conn_id.upper()}", SandboxCluster.airflow_connection(cluster.kubeconfig_path, namespace))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    cluster = SandboxCluster(artifacts_dir=tmp_path / "artifacts", backup_storage_dir=tmp_path / "backup-storage")
    monkeypatch.delenv("KUBECONFIG", raising=False)  # the operator refuses a connection and KUBECONFIG together
    cluster.start()
    _connect(cluster, tmp_path, monkeypatch.setenv)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sandbox")
    cluster = SandboxCluster(artifacts_dir=directory / "artifacts", backup_storage_dir=directory / "backup-storage").start()
    _connect(cluster, directory, os.environ.__setitem__)
    try:
        yield cluster
    finally:
        cluster.stop()
