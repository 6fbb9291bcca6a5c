"""`make run` for real: airflow standalone comes up healthy with the project's DAGs, and
Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def token(base: str, home: Path) -> str:
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    req = urllib.request.Request(f"{base}/auth/token", data=json.dumps({"username": "admin", "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


def describe(process):
    try:
        return " ".join(process.cmdline()[:4])
    except psutil.Error:
        return f"pid {process.pid}"


def test_make_run_serves_a_healthy_ui_and_stops_cleanly(tmp_path):
    port = free_port()
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("KUBECONFIG", None)
    env |= {"AIRFLOW_HOME": str(home), "RELEASE_DATA_DIR": str(tmp_path / "data"), "AIRFLOW__CORE__PARALLELISM": "2",
            "HOME": str(tmp_path)}  # no ~/.kube/config: no real cluster, so sandbox mode
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        health = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                status, health = get(f"{base}/api/v2/monitor/health")
                if status == 200 and all(health.get(k, {}).get("status") == "healthy"
                                         for k in ("metadatabase", "scheduler", "dag_processor")):
                    break
            except OSError:
                pass
            time.sleep(2)
        else:
            pytest.fail(f"not healthy in time: {health}\n{(tmp_path / 'run.log').read_text()[-3000:]}")

        auth = token(base, home)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, dags = get(f"{base}/api/v2/dags", auth)
            if "umbrella-chart" in {d["dag_id"] for d in dags.get("dags", [])}:
                break
            time.sleep(2)
        else:
            pytest.fail(f"the project's DAGs never appeared: {dags}")
        _, errors = get(f"{base}/api/v2/importErrors", auth)
        assert errors["total_entries"] == 0, errors
        out = (tmp_path / "run.log").read_text()
        assert f"http://localhost:{port}" in out and "simple_auth_manager_passwords.json.generated" in out
        assert (tmp_path / "data" / "gitops.git" / "HEAD").exists()

        # Sandbox mode is said plainly: on the console and in the UI's title.
        assert "SANDBOX MODE" in out and "nothing real is built or deployed" in out
        _, ui = get(f"{base}/ui/config", auth)
        assert "SANDBOX" in ui["instance_name"], ui
        kubeconfig = home / "sandbox" / "kubeconfig"
        from kubernetes import client, config

        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        assert "apps-prod" in [n.metadata.name for n in core.list_namespace().items]
    finally:
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        started = {c.pid: describe(c) for c in children}
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(timeout=90)
        finally:
            # Two seconds' grace for the kernel to finish tearing down what was killed.
            _, alive = psutil.wait_procs(children, timeout=2)
            alive = [c for c in alive if c.status() != psutil.STATUS_ZOMBIE]
            for c in alive:
                c.kill()
    assert alive == [], f"still running after Ctrl-C: {[started.get(c.pid) for c in alive]}"
