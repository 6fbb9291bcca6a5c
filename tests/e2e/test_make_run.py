"""`make run` for real, started as a script or CI would start it (in the background: stdin not a
terminal, SIGINT ignored): airflow standalone comes up healthy on a non-default port with the
project's DAGs, runs a whole sandbox pipeline to dev through that port, and a signal to make's
process group stops every process of the run within seconds — even when make and its script
are killed outright while stopping. A port in use is refused before anything starts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from tests.helpers import secret_leaks

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port != 8080
    return port


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def call(url: str, token: str | None = None, body: dict | None = None, method: str | None = None,
         timeout: float = 10) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, headers=headers, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"detail": exc.read().decode(errors="replace")}


def trigger(base: str, token: str, dag_id: str, conf: dict) -> tuple[int, dict]:
    """POST a DAG run, as the README's curl does. SQLite (make run's database) can refuse a
    transaction that read before another process's write landed ("database is locked" at once,
    whatever the lock wait): Airflow answers 500 "Database error" and nothing was created, so a
    user tries again, and so does this, at most twice, saying so."""
    for attempt in range(3):
        status, body = call(f"{base}/api/v2/dags/{dag_id}/dagRuns", token, method="POST",
                            body={"logical_date": None, "conf": conf}, timeout=90)
        if status != 500 or "Database error" not in str(body):
            return status, body
        print(f"trigger of {dag_id}: 500 Database error (SQLite busy), try {attempt + 1}")
        time.sleep(2)
    return status, body


def get(url: str, token: str | None = None, timeout: float = 30) -> tuple[int, dict]:
    return call(url, token, timeout=timeout)


def token(base: str, home: Path) -> str:
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    status, body = call(f"{base}/auth/token", body={"username": "admin", "password": password})
    assert status in (200, 201), body
    return body["access_token"]


def describe(process):
    try:
        return " ".join(process.cmdline()[:4])
    except psutil.Error:
        return f"pid {process.pid}"


class MakeRun:
    """`make run PORT=<port>` started like a background job of a script: its own process group,
    stdin not a terminal, SIGINT ignored (what bash does to `cmd &` without job control)."""

    def __init__(self, tmp_path: Path, port: int):
        self.tmp_path, self.port = tmp_path, port
        self.home = tmp_path / "airflow"
        self.data = tmp_path / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.pop("KUBECONFIG", None)
        self.env |= {"AIRFLOW_HOME": str(self.home), "RELEASE_DATA_DIR": str(self.data),
                     "AIRFLOW__CORE__PARALLELISM": "4",
                     "HOME": str(tmp_path)}  # no ~/.kube/config: no real cluster, so sandbox mode
        self.log_path = tmp_path / "run.log"
        self.base = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"], cwd=ROOT, env=self.env,
            stdin=subprocess.DEVNULL, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text()[-tail:]

    def explain(self, answer) -> str:
        """An API answer, with the API server's log lines about it: a 500 only names an error id."""
        said = re.findall(r"look for ID (\w+)", str(answer))
        lines = self.log_path.read_text().splitlines()
        at = next((n for n, line in enumerate(lines) if said and said[0] in line), len(lines))
        return f"{answer}\n" + "\n".join(lines[at:at + 40])

    def processes(self) -> dict[int, psutil.Process]:
        """make's process tree, and every process anywhere with this run's AIRFLOW_HOME (a
        process that left the tree, e.g. in a session of its own, still carries it)."""
        found = {}
        try:
            found = {p.pid: p for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        for p in psutil.process_iter():
            try:
                if p.pid not in found and p.environ().get("AIRFLOW_HOME") == str(self.home):
                    found[p.pid] = p
            except psutil.Error:
                continue
        return {pid: p for pid, p in found.items() if _alive(p)}

    def wait_healthy(self, deadline_s: float = 300) -> float:
        deadline = time.monotonic() + deadline_s
        health = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                status, health = get(f"{self.base}/api/v2/monitor/health", timeout=5)
                if status == 200 and all(health.get(k, {}).get("status") == "healthy"
                                         for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")):
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(2)
        pytest.fail(f"not healthy in time: {health}\n{self.log()}")

    def stop(self, sig: int, kill_after: str | None = None) -> tuple[float, list[str]]:
        """Send `sig` to make's process group; with `kill_after`, SIGKILL the group as soon as
        the log shows that text (make and run.sh die mid-stop). Returns the seconds until no
        process of the run is left, and the processes still left after 60 s."""
        started = self.processes()
        names = {pid: describe(p) for pid, p in started.items()}
        t0 = time.monotonic()
        os.killpg(self.proc.pid, sig)
        if kill_after:
            while kill_after not in self.log() and time.monotonic() - t0 < 30:
                time.sleep(0.1)
            assert kill_after in self.log(), self.log()
            os.killpg(self.proc.pid, signal.SIGKILL)
        left = list(started.values())
        while time.monotonic() - t0 < 60:
            psutil.wait_procs(left, timeout=0.2)
            left = [p for p in started.values() if _alive(p)]
            left += [p for pid, p in self.processes().items() if pid not in started]
            if not left and self.proc.poll() is not None:
                break
        elapsed = time.monotonic() - t0
        for p in left:
            p.kill()
        self.proc.wait(timeout=10)
        return elapsed, [names.get(p.pid) or describe(p) for p in left]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def call_text(url: str, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_run(base: str, auth: str, dag_id: str, run_id: str, timeout_s: float) -> str | None:
    """The run's final state (success or failed), None if it had none within `timeout_s`."""
    deadline, state = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            _, body = get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", auth, timeout=30)
        except OSError:  # a busy machine: the API server answers late, not never
            continue
        state = body.get("state")
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    return state


def _task_states(base: str, auth: str, dag_id: str, run_id: str) -> list:
    _, tis = get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100", auth)
    return [(t["task_id"], t.get("map_index"), t["state"], t.get("try_number")) for t in tis.get("task_instances", [])]


@pytest.mark.timeout(1500)
def test_make_run_runs_a_pipeline_on_its_port_and_sigterm_stops_everything(tmp_path):
    port = free_port()
    run = MakeRun(tmp_path, port)
    base = run.base
    try:
        healthy_after = run.wait_healthy()
        print(f"\nhealthy after {healthy_after:.0f} s")

        auth = token(base, run.home)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, dags = get(f"{base}/api/v2/dags", auth, timeout=30)
            if "umbrella-chart" in {d["dag_id"] for d in dags.get("dags", [])}:
                break
            time.sleep(2)
        else:
            pytest.fail(f"the project's DAGs never appeared: {dags}")
        _, errors = get(f"{base}/api/v2/importErrors", auth)
        assert errors["total_entries"] == 0, errors
        out = run.log_path.read_text()
        assert f"http://localhost:{port}" in out and "simple_auth_manager_passwords.json.generated" in out
        assert (run.data / "gitops.git" / "HEAD").exists()
        # Airflow's default SQLite file, written by four processes at once, is journaled in WAL
        # mode (readers never block a writer) and writers wait up to 60 s for a lock.
        with sqlite3.connect(run.home / "airflow.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

        # Sandbox mode is said plainly: on the console and in the UI's title.
        assert "SANDBOX MODE" in out and "nothing real is built or deployed" in out
        _, ui = get(f"{base}/ui/config", auth)
        assert "SANDBOX" in ui["instance_name"], ui
        kubeconfig = run.home / "sandbox" / "kubeconfig"
        from kubernetes import client, config

        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        assert "apps-prod" in [n.metadata.name for n in core.list_namespace().items]

        # In sandbox mode nothing is paused, and the console says so.
        assert "Paused: nothing" in out
        _, dags = get(f"{base}/api/v2/dags?limit=100", auth)
        paused = [d["dag_id"] for d in dags["dags"] if d["is_paused"]]
        assert paused == [], paused

        # A whole pipeline run, triggered over REST as the README says, reaches dev through the
        # execution API on this port (tasks default to localhost:8080 otherwise).
        t0 = time.monotonic()
        status, dag_run = trigger(base, auth, "service-a-pipeline", {"commit": COMMIT, "ref": "refs/tags/v1.2.0"})
        assert status == 200, run.explain(dag_run)
        run_id = dag_run["dag_run_id"]
        url = f"{base}/api/v2/dags/service-a-pipeline/dagRuns/{run_id}"
        deadline = time.monotonic() + 900  # generous: a deferral race can cost a 5-minute retry
        state = None
        while time.monotonic() < deadline:
            try:
                _, body = get(url, auth, timeout=30)
            except OSError:  # a busy machine: the API server answers late, not never
                continue
            state = body.get("state")
            if state in ("success", "failed"):
                break
            time.sleep(3)
        states = _task_states(base, auth, "service-a-pipeline", run_id)
        assert state == "success", f"pipeline run {state!r} after {time.monotonic() - t0:.0f} s: {states}"
        print(f"pipeline run succeeded after {time.monotonic() - t0:.0f} s")
        # The pipeline handed its digest to deploy-dev, which the real scheduler ran: that run
        # made the change, and the pipeline's note names it.
        deploy_run = f"service-a-pipeline.{run_id}"
        _, deployed = get(f"{base}/api/v2/dags/deploy-dev/dagRuns/{deploy_run}", auth)
        assert deployed.get("state") == "success", (deployed, _task_states(base, auth, "deploy-dev", deploy_run))
        assert deployed["note"].startswith("deployed service-a 1.2.0 to dev, commit "), deployed
        _, pipeline = get(url, auth)
        assert pipeline["note"] == f"{deployed['note']} (deploy-dev run {deploy_run})", pipeline
        shown = subprocess.run([sys.executable, "-m", "release", "registry", "show", "--env", "dev"],
                               env=run.env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        row = next(line for line in shown.splitlines() if "service-a" in line)
        assert "1.2.0" in row, shown

        # A signed push to the webhook receiver on Airflow's API server (the README's sandbox
        # walk-through) starts release-dispatch; a path no service owns keeps it to one quick run.
        pushed = subprocess.run([sys.executable, "-m", "release", "github", "send-test-push", "--path", "docs/index.md",
                                 "--url", f"{base}/release/webhooks/github"],
                                env=run.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0 and pushed.stdout.startswith("201 triggered"), (pushed.stdout, pushed.stderr)
        _, dispatched = get(f"{base}/api/v2/dags/release-dispatch/dagRuns", auth)
        [webhook_run] = [r for r in dispatched["dag_runs"] if r["dag_run_id"].startswith("github__")]
        assert webhook_run["conf"]["changed_paths"] == ["docs/index.md"], webhook_run
        shown = subprocess.run([sys.executable, "-m", "release", "github", "state"], env=run.env, cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "example-org/app (GitHub stand-in http://127.0.0.1:" in shown.stdout, shown
        # What GitHub shows of the pipeline run above: its stages on the commit, dev's deployment, the SARIF.
        shown = subprocess.run([sys.executable, "-m", "release", "github", "state", "--format", "json"], env=run.env,
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        app = json.loads(shown.stdout)["example-org/app"]
        latest = {s["context"]: s["state"] for s in app["statuses"] if s["sha"] == COMMIT}
        assert latest == {f"release/service-a/{stage}": "success" for stage in (
            "verify", "build", "scan-gate", "chart-validation", "deploy-dev", "smoke")}, latest
        dev = [d for d in app["deployments"] if d["environment"] == "dev" and d["ref"] == COMMIT]
        assert [s["state"] for s in dev[-1]["statuses"]] == ["in_progress", "success"], app["deployments"]
        assert [u["ref"] for u in app["sarifs"] if u["commit_sha"] == COMMIT] == ["refs/tags/v1.2.0"], app["sarifs"]
        # A promotion to staging (no approval there), then the Releases view in a real browser:
        # log in, open Releases from the navigation, see the matrix, open the service page.
        status, promote = trigger(base, auth, "promote", {"services": ["service-a"], "from_env": "dev",
                                                          "to_env": "staging", "reason": "e2e: the Releases view shows it"})
        assert status == 200, run.explain(promote)
        promoted = wait_run(base, auth, "promote", promote["dag_run_id"], 600)
        assert promoted == "success", (promoted, _task_states(base, auth, "promote", promote["dag_run_id"]))
        assert get(f"{base}/release/api/matrix", None)[0] == 401  # release state only for logged-in users
        status, metrics = call_text(f"{base}/release/metrics", auth)
        assert status == 200 and 'release_deployments_total{action="deploy",env="staging",outcome="deployed",' \
                                  'service="service-a"} 1.0' in metrics, metrics[:2000]
        _, plugins = get(f"{base}/api/v2/plugins", auth)
        views = [v for p in plugins["plugins"] for v in p.get("external_views", [])]
        assert {"name": "Releases", "href": "/release/ui/", "url_route": "releases", "destination": "nav"}.items() <= \
            next(v for v in views if v["name"] == "Releases").items(), views
        from tests.e2e.browser import chromium, log_in, releases_walkthrough

        shots = tmp_path / "screenshots"
        with chromium(tmp_path) as driver:
            log_in(driver, base, "admin", json.loads((run.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"])
            seen = releases_walkthrough(driver, base, "service-a", {"dev": "1.2.0", "staging": "1.2.0"}, shots)
        assert "promotion" in seen["history"] and "deployment" in seen["history"] and seen["timeline"], seen
        print(f"screenshots of the Releases view: {shots}")

        # No secret on the console or in a task log of that run: not the users' generated
        # passwords (the console names their file), the API token, nor the cluster's token.
        passwords = json.loads((run.home / "simple_auth_manager_passwords.json.generated").read_text())
        secrets = {f"{user}'s password": password for user, password in passwords.items()}
        secrets |= {"API token": auth, "cluster token": yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"],
                    "webhook secret": json.loads((run.data / "sandbox" / "github.json").read_text())["webhook_secret"]}
        found = secret_leaks(secrets, "the console", run.log_path.read_text())
        task_logs = [p for p in (run.home / "logs").rglob("*") if p.is_file()]
        assert any("service-a-pipeline" in str(p) for p in task_logs), task_logs
        for path in task_logs:
            found += secret_leaks(secrets, f"task log {path.relative_to(run.home)}", path.read_text(errors="replace"))
        assert not found, found
    finally:
        if run.proc.poll() is None:
            # What `kill -TERM -<pgid>` from a script or a service manager does. The job
            # ignores SIGINT, as a background job does: SIGTERM must be enough, and quick.
            stop_s, left = run.stop(signal.SIGTERM)
            print(f"stopped by SIGTERM to make's group in {stop_s:.1f} s")
        else:
            stop_s, left = 0, []
    assert left == [], f"still running after SIGTERM: {left}"
    assert stop_s < 30, f"stopping took {stop_s:.0f} s\n{run.log()}"
    assert port_is_free(port)
    assert "Stopped." in run.log()


@pytest.mark.timeout(300)
def test_sigint_to_a_background_make_stops_it_even_if_make_is_killed_while_stopping(tmp_path):
    """SIGINT reaches a `make run` started in the background (which inherits SIGINT ignored),
    and killing make's group outright while it stops still leaves nothing: the supervisors of
    the sandbox and of Airflow outlive the script to finish the job."""
    port = free_port()
    run = MakeRun(tmp_path, port)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # Airflow's parts and the sandbox are up
            assert run.proc.poll() is None, run.log()
            names = " ".join(describe(p) for p in run.processes().values())
            if "release sandbox" in names and "scheduler" in names and "api-server" in names:
                break
            time.sleep(1)
        else:
            pytest.fail(f"never started: {names}\n{run.log()}")
    finally:
        stop_s, left = run.stop(signal.SIGINT, kill_after="Stopping the platform...")
        print(f"\nstopped by SIGINT, then SIGKILL to make's group, in {stop_s:.1f} s")
    assert left == [], f"still running: {left}"
    assert stop_s < 30
    assert port_is_free(port)


def test_a_port_in_use_is_refused_at_once_and_nothing_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "RELEASE_DATA_DIR": str(tmp_path / "data")}
        t0 = time.monotonic()
        done = subprocess.run(["make", "--no-print-directory", "run", f"PORT={port}"], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - t0
    assert done.returncode != 0
    assert f"port {port} is already in use" in done.stderr and "make run PORT=" in done.stderr, done.stderr
    assert elapsed < 10, elapsed
    assert not (tmp_path / "airflow").exists() and not (tmp_path / "data").exists()
