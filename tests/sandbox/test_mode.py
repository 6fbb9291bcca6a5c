"""Sandbox mode: only without a real cluster, and labelled wherever a person looks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import SANDBOX_LABEL
from sandbox.mode import INSTANCE_NAME, real_cluster_reason, sandbox_environment
from tests.helpers import run_dag_test
from tests.sandbox.test_pod_operator import pod_dag

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("environ,kube_file,expected", [
    ({}, False, None),
    ({"KUBECONFIG": "/etc/kube/prod"}, False, "KUBECONFIG is set (/etc/kube/prod)"),
    ({}, True, ".kube/config exists"),
    ({"AIRFLOW_CONN_K8S_PROD": "kubernetes://?extra__kubernetes__in_cluster=True"}, False, "AIRFLOW_CONN_K8S_PROD is set"),
])
def test_real_cluster_detection(tmp_path, config, environ, kube_file, expected):
    if kube_file:
        (tmp_path / ".kube").mkdir()
        (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    reason = real_cluster_reason(config, environ, home=tmp_path, check_database=False)
    assert (reason is None) if expected is None else (expected in reason)


def test_connections_in_the_database_count_as_a_real_cluster(airflow_db, tmp_path, config):
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection(conn_id="k8s_staging", conn_type="kubernetes"))
    try:
        assert real_cluster_reason(config, {}, home=tmp_path) == "Airflow connection(s) k8s_staging exist"
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "k8s_staging").delete()
    assert real_cluster_reason(config, {}, home=tmp_path) is None


def test_sandbox_environment_points_every_environment_at_the_sandbox(tmp_path, config):
    env = sandbox_environment(config, tmp_path / "kubeconfig")
    for e in config.environments.values():
        conn = json.loads(env[f"AIRFLOW_CONN_{e.kubernetes_conn_id.upper()}"])
        assert conn["conn_type"] == "kubernetes" and conn["extra"]["namespace"] == e.namespace
        assert conn["extra"]["kube_config_path"] == str(tmp_path / "kubeconfig")
        assert SANDBOX_LABEL in conn["description"]
    assert env["AIRFLOW__API__INSTANCE_NAME"] == INSTANCE_NAME and "SANDBOX" in INSTANCE_NAME


def test_cluster_status_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "KUBECONFIG"))} | {"HOME": str(tmp_path)}
    none = subprocess.run([sys.executable, "-m", "release", "cluster", "status"], env=env, capture_output=True, text=True)
    assert (none.returncode, none.stdout.strip()) == (3, "no cluster configured")
    real = subprocess.run([sys.executable, "-m", "release", "cluster", "status"], env=env | {"KUBECONFIG": "/k"},
                          capture_output=True, text=True)
    assert real.returncode == 0 and "KUBECONFIG" in real.stdout


@pytest.fixture
def notice_listener():
    """Airflow loads the plugin from plugins/ (AIRFLOW__CORE__PLUGINS_FOLDER) into the task runner."""
    from airflow.sdk.listener import get_listener_manager

    assert "SandboxNotice" in {type(p).__name__ for p in get_listener_manager().pm.get_plugins()}


@pytest.mark.parametrize("sandboxed", [True, False])
def test_kubernetes_task_logs_carry_the_sandbox_label(airflow_db, sandbox, notice_listener, monkeypatch, capfd, sandboxed):
    if sandboxed:
        monkeypatch.setenv("RELEASE_SANDBOX", SANDBOX_LABEL)
    else:
        monkeypatch.delenv("RELEASE_SANDBOX", raising=False)
    dagrun = run_dag_test(pod_dag(f"sandbox-label-{sandboxed}", deferrable=False, tasks={"deploy": {}}))
    assert dagrun.state == "success"
    captured = capfd.readouterr()
    assert (SANDBOX_LABEL in captured.out + captured.err) is sandboxed
