"""The fault suite: the real stack of `make run`, one injected fault per scenario, and figures.

    python bench/faults.py                 # every scenario, in order: b c a d e f (about 30 minutes)
    python bench/faults.py --only b,a      # some of them (a runs its own setup)
    make chaos                             # the same as the first line

One `make run` (scheduler, triggerer, dag-processor, API server under `airflow standalone`, and
the sandbox cluster) is started on a free port with its own Airflow home and data folder, and
stopped at the end, whatever happened. The scenarios run on it one after the other; each sets
the sandbox's scenario it needs through the sandbox's own API (PUT /_sandbox/scenario) and
waits for its runs within a bound. Scenarios:

  a. the scheduler SIGKILLed while a promotion to prod waits for approval, then started again:
     the approval is still answerable and the run completes with one commit;
  b. the API server answering 5xx and 429 to pod creates and reads, watches dropped, and the
     build pod evicted mid-build: each step is retried, no pod is left running, none runs twice;
  c. the triggerer SIGKILLed while deploy-dev's Argo CD sync wait is deferred, then started
     again: the wait resumes and the run completes (and whether its timeout starts over);
  d. pushes to the GitOps repository rejected because someone else pushed meanwhile (a hook in
     the repository lets a side clone's push land while the platform's push is received, three
     times): retried, both changes kept;
  e. `registry/versions.yaml` broken by a hand edit committed to the GitOps repository (invalid
     YAML, a duplicate key, a wrong type): the next pipeline's deploy refuses and writes nothing;
     `registry show` and the umbrella-chart DAG report it;
  f. a writer that pushes to the GitOps branch all the time: the platform's push gives up within
     its bound, the promotion fails saying so, nothing is half-written.

Per scenario it prints: injected, completed, failed (with the run's note), writes lost (a run
that succeeded but whose deployment is missing from the registry history: must be 0), duplicate
deployments (two history entries for one run, environment, service and version, or two pods for
one task try: must be 0) and orphan pods (pods still running in the sandbox after the runs
ended: must be 0). The exit status is 1 when a must-be-0 figure is not 0 or a scenario did not
end as it should.

`airflow standalone` does not restart a part that died: after a SIGKILL the suite starts a
replacement (`airflow scheduler`, `airflow triggerer`) with the killed process's environment,
and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # tests.e2e.test_make_run, for its REST call
BASE_SCENARIO = ROOT / "include" / "sandbox" / "scenarios" / "make-run.yaml"
API_FAULTS = BASE_SCENARIO.parent / "api-faults.yaml"  # scenario b's faults, shared with its short test
ORDER = "bcadef"


class Timeout(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commit(n: int) -> str:
    return f"{n:x}".rjust(40, "c")


# -- the stack -----------------------------------------------------------------------------------


class Stack:
    """`make run PORT=<port>` with its own AIRFLOW_HOME and data folder, in a session of its own."""

    def __init__(self, workdir: Path, port: int):
        self.workdir, self.port = workdir, port
        self.home, self.data = workdir / "airflow", workdir / "data"
        self.base = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.pop("KUBECONFIG", None)
        self.env |= {"AIRFLOW_HOME": str(self.home), "RELEASE_DATA_DIR": str(self.data),
                     "AIRFLOW__CORE__PARALLELISM": "4",
                     "HOME": str(workdir)}  # no ~/.kube/config: sandbox mode
        self.log_path = workdir / "make-run.log"
        self.proc: subprocess.Popen | None = None
        self.replacements: list[subprocess.Popen] = []
        self._tokens: dict[str, str] = {}
        self._sandbox: tuple[str, str] | None = None

    # lifecycle
    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={self.port}"], cwd=ROOT, env=self.env,
            stdin=subprocess.DEVNULL, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_healthy(self, timeout: float = 420, parts=("metadatabase", "scheduler", "dag_processor", "triggerer")) -> float:
        t0 = time.monotonic()
        health: dict = {}
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"make run exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                status, health = self.call("GET", "/api/v2/monitor/health", user=None, timeout=5)
                if status == 200 and all(health.get(k, {}).get("status") == "healthy" for k in parts):
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(2)
        raise Timeout(f"not healthy within {timeout:.0f} s: {health}")

    def wait_dags(self, wanted=("umbrella-chart", "promote", "deploy-prod", "service-c-pipeline"), timeout: float = 240) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                _, dags = self.call("GET", "/api/v2/dags?limit=100", timeout=30)
                have = {d["dag_id"]: d for d in dags.get("dags", [])}
                if all(w in have and not have[w]["is_paused"] for w in wanted):
                    return
            except OSError:
                pass
            time.sleep(2)
        raise Timeout(f"the platform's DAGs were not there and unpaused within {timeout:.0f} s")

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("AIRFLOW_HOME") == str(self.home):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def stop(self) -> list[str]:
        """Stop make's group and every replacement this suite started; returns what was left."""
        for proc in self.replacements:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc in [*self.replacements, *([self.proc] if self.proc else [])]:
            try:
                proc.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        left = []
        for p in self.processes():  # anything of this stack's that outlived its parent
            try:
                left.append(" ".join(p.cmdline()[:3]))
                p.kill()
            except psutil.Error:
                pass
        for proc in self.replacements:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        return left

    # Airflow's REST API
    def token(self, user: str) -> str:
        if user not in self._tokens:
            password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())[user]
            status, body = self.call("POST", "/auth/token", user=None, body={"username": user, "password": password})
            if status not in (200, 201):
                raise RuntimeError(f"no token for {user}: {status} {body}")
            self._tokens[user] = body["access_token"]
        return self._tokens[user]

    def call(self, method: str, path: str, user: str | None = "admin", body=None, timeout: float = 30) -> tuple[int, dict]:
        from tests.e2e.test_make_run import call  # the e2e test's REST call: JSON in and out, errors as (status, detail)

        return call(self.base + path, self.token(user) if user else None, body, method, timeout)

    def get(self, path: str, default=None, user: str = "admin"):
        """GET that rides out a busy API server: None after 3 failed tries."""
        for _ in range(3):
            try:
                status, body = self.call("GET", path, user=user)
                if status == 200:
                    return body
            except OSError:
                time.sleep(2)
        return default

    def trigger(self, dag_id: str, conf: dict, user: str = "alice") -> str:
        status, body = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", user=user,
                                 body={"logical_date": None, "conf": conf})
        if status != 200:
            raise RuntimeError(f"triggering {dag_id} as {user}: {status} {body}")
        return body["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", default={}) or {}

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        t0 = time.monotonic()
        body: dict = {}
        while time.monotonic() - t0 < timeout:
            body = self.run(dag_id, run_id)
            if body.get("state") in ("success", "failed"):
                return body
            time.sleep(3)
        return body | {"state": f"{body.get('state')} after {timeout:.0f} s (timed out)"}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200", default={}) or {}
        return body.get("task_instances", [])

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        return next((t["state"] for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id), None)

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...], timeout: float) -> str | None:
        t0 = time.monotonic()
        state = None
        while time.monotonic() - t0 < timeout:
            state = self.task_state(dag_id, run_id, task_id)
            if state in states:
                return state
            if self.run(dag_id, run_id).get("state") in ("success", "failed"):
                return state
            time.sleep(2)
        raise Timeout(f"{dag_id} {task_id} was {state}, not {'/'.join(states)}, within {timeout:.0f} s")

    # the sandbox cluster
    def sandbox(self, method: str, path: str, body=None) -> dict:
        if self._sandbox is None:
            kubeconfig = yaml.safe_load((self.home / "sandbox" / "kubeconfig").read_text())
            self._sandbox = (kubeconfig["clusters"][0]["cluster"]["server"], kubeconfig["users"][0]["user"]["token"])
        url, token = self._sandbox
        req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def set_scenario(self, **changes) -> None:
        scenario = yaml.safe_load(BASE_SCENARIO.read_text()) | changes
        scenario["base_dir"] = str(BASE_SCENARIO.parent)
        self.sandbox("PUT", "/_sandbox/scenario", scenario)

    def requests(self) -> list[dict]:
        return self.sandbox("GET", "/_sandbox/requests")["requests"]

    def pods(self) -> list[dict]:
        return self.sandbox("GET", "/api/v1/pods")["items"]

    # Airflow's parts
    def part(self, name: str) -> psutil.Process | None:
        for p in self.processes():
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if len(cmd) >= 2 and cmd[-1] == name and any(c.endswith("/airflow") or c == "airflow" for c in cmd[:-1]):
                return p
        return None

    def kill(self, name: str) -> tuple[dict, int]:
        """SIGKILL Airflow's `name` and its children at once, as when its container dies;
        returns its environment (for a replacement) and how many processes were killed."""
        p = self.part(name)
        if p is None:
            raise RuntimeError(f"no running airflow {name}")
        env = p.environ()
        tree = [p, *p.children(recursive=True)]
        for q in tree:
            try:
                q.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(tree, timeout=10)
        return env, len(tree)

    def restart(self, name: str, env: dict) -> subprocess.Popen:
        proc = subprocess.Popen(["airflow", name], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=open(self.workdir / f"{name}-replacement.log", "a"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.replacements.append(proc)
        return proc

    # the GitOps repository
    @property
    def gitops(self) -> Path:
        return self.data / "gitops.git"

    def git(self, *args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> str:
        env = {**self.env, **(env or {}), "GIT_AUTHOR_NAME": "someone", "GIT_AUTHOR_EMAIL": "someone@example.com",
               "GIT_COMMITTER_NAME": "someone", "GIT_COMMITTER_EMAIL": "someone@example.com"}
        base = ["git"] if cwd else ["git", f"--git-dir={self.gitops}"]
        done = subprocess.run([*base, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def history(self) -> list[dict]:
        text = self.git("show", "main:registry/history.yaml", check=False)
        try:
            return (yaml.safe_load(text) or {}).get("entries") or []
        except yaml.YAMLError:
            return []

    def tip(self) -> str:
        return self.git("rev-parse", "main").strip()

    def release_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "release", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "\n".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*.log"))) if folder.exists() else ""


# -- figures -------------------------------------------------------------------------------------


@dataclass
class Expected:
    """A run whose success means these deployments were recorded with its run id."""

    dag_id: str
    run_id: str
    items: list[tuple[str, str, str]]  # (env, service, version)
    should: str = "success"  # what the scenario expects of it


@dataclass
class Result:
    name: str
    title: str
    injected: list[str] = field(default_factory=list)
    runs: list[Expected] = field(default_factory=list)
    states: dict[str, dict] = field(default_factory=dict)
    completed: int = 0
    failed: list[str] = field(default_factory=list)
    writes_lost: int = 0
    duplicates: int = 0
    orphans: int = 0
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def check(self, what: str, ok: bool) -> bool:
        self.checks.append((what, bool(ok)))
        return ok

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.writes_lost or self.duplicates or self.orphans) and \
            all(ok for _, ok in self.checks)


def platform_dag(dag_id: str) -> bool:
    """A DAG whose pods and deployments the figures count (not the nightly ones)."""
    return dag_id.endswith("-pipeline") or dag_id in ("promote", "rollback") or dag_id.startswith("deploy-")


def measure(stack: Stack, result: Result, since: float) -> None:
    """Fill the figures of `result` from its runs, the registry history and the sandbox."""
    for exp in result.runs:
        run = stack.run(exp.dag_id, exp.run_id)
        state, note = run.get("state"), (run.get("note") or "").strip()
        result.states[f"{exp.dag_id} {exp.run_id}"] = {"state": state, "note": note}
        if state == "success":
            result.completed += 1
        elif state == "failed":
            result.failed.append(f"{exp.dag_id}: {note or '(no note)'}")
        else:
            result.failed.append(f"{exp.dag_id}: still {state}")
        result.check(f"{exp.dag_id} run {exp.should}", state == exp.should)
    history = stack.history()
    for exp in result.runs:
        if result.states[f"{exp.dag_id} {exp.run_id}"]["state"] != "success":
            continue
        for env, service, version in exp.items:
            if not any(e.get("run_id") == exp.run_id and (e.get("env"), e.get("service"), str(e.get("version"))) ==
                       (env, service, version) and e.get("action") == "deploy" for e in history):
                result.writes_lost += 1
                result.notes.append(f"write lost: {service} {version} in {env} by {exp.dag_id} {exp.run_id}")
    run_ids = {exp.run_id for exp in result.runs}
    seen = Counter((e.get("run_id"), e.get("env"), e.get("service"), str(e.get("version")), e.get("action"))
                   for e in history if e.get("run_id") in run_ids)
    for key, n in seen.items():
        if n > 1:
            result.duplicates += n - 1
            result.notes.append(f"duplicate history entries: {n} x {key}")
    # Pods: one created per task try (retries make new tries, never a second pod in one try).
    created = Counter()
    for r in stack.requests():
        labels = r.get("labels") or {}
        if r["method"] == "POST" and r["path"].endswith("/pods") and r["status"] == 201 and r["at"] >= since \
                and platform_dag(labels.get("dag_id", "")):
            created[(labels.get("dag_id"), labels.get("task_id"), labels.get("run_id"), labels.get("map_index", "-1"),
                     labels.get("try_number"))] += 1
    for key, n in created.items():
        if n > 1:
            result.duplicates += n - 1
            result.notes.append(f"{n} pods for one task try: {key}")
    for pod in stack.pods():
        labels = pod["metadata"].get("labels") or {}
        dag = labels.get("dag_id", "")
        if pod.get("status", {}).get("phase") in ("Running", "Pending") and platform_dag(dag):
            result.orphans += 1
            result.notes.append(f"orphan pod {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                                f"({dag} {labels.get('task_id')})")


def wait_quiet(stack: Stack, runs: list[Expected], timeout: float) -> None:
    """Wait until every run of the scenario and its deploy runs ended."""
    t0 = time.monotonic()
    for exp in runs:
        stack.wait_run(exp.dag_id, exp.run_id, max(5, timeout - (time.monotonic() - t0)))
    # the deploy runs end before their callers, but a failed caller may leave one behind
    for exp in runs:
        deploy = next((t for t in stack.task_instances(exp.dag_id, exp.run_id) if t["task_id"] == "hand_over"), None)
        if deploy:
            for env in ("dev", "staging", "prod"):
                body = stack.run(f"deploy-{env}", f"{exp.dag_id}.{exp.run_id}")
                if body.get("state") not in (None, "success", "failed"):
                    stack.wait_run(f"deploy-{env}", f"{exp.dag_id}.{exp.run_id}", max(5, timeout - (time.monotonic() - t0)))
    time.sleep(2)  # a pod the last try deleted is gone within a moment


# -- scenarios -----------------------------------------------------------------------------------

PIPELINE_TIMEOUT = 600
PROMOTE_TIMEOUT = 600


def version_in(stack: Stack, env: str, service: str) -> str | None:
    text = stack.git("show", "main:registry/versions.yaml", check=False)
    try:
        entry = ((yaml.safe_load(text) or {}).get("environments", {}).get(env) or {}).get(service) or {}
    except (yaml.YAMLError, AttributeError):
        return None
    return str(entry["version"]) if "version" in entry else None


def pipeline(stack: Stack, service: str, version: str, n: int) -> Expected:
    run_id = stack.trigger(f"{service}-pipeline", {"commit": _commit(n), "ref": f"refs/tags/v{version}"})
    return Expected(f"{service}-pipeline", run_id, [("dev", service, version)])


def promote(stack: Stack, service: str, from_env: str, to_env: str, reason: str = "fault suite") -> Expected:
    version = version_in(stack, from_env, service)
    run_id = stack.trigger("promote", {"services": [service], "from_env": from_env, "to_env": to_env, "reason": reason})
    return Expected("promote", run_id, [(to_env, service, version or "?")])


def ensure(stack: Stack, result: Result, service: str, env: str, version: str, n: int) -> None:
    """Setup: `service` runs in `env` (dev, or staging via dev), without faults."""
    if version_in(stack, "dev", service) is None:
        exp = pipeline(stack, service, version, n)
        run = stack.wait_run(exp.dag_id, exp.run_id, PIPELINE_TIMEOUT)
        result.notes.append(f"setup: {exp.dag_id} {run.get('state')}: {run.get('note')}")
    if env == "staging" and version_in(stack, "staging", service) is None:
        exp = promote(stack, service, "dev", "staging")
        run = stack.wait_run(exp.dag_id, exp.run_id, PROMOTE_TIMEOUT)
        result.notes.append(f"setup: promote to staging {run.get('state')}: {run.get('note')}")
    if version_in(stack, env, service) is None:
        raise RuntimeError(f"setup failed: {service} does not run in {env}")


def scenario_a(stack: Stack, result: Result) -> None:
    ensure(stack, result, "service-a", "staging", "1.2.0", 1)
    stack.set_scenario()
    since = time.time()
    commits_before = int(stack.git("rev-list", "--count", "main"))
    exp = promote(stack, "service-a", "staging", "prod", reason="fault suite: scheduler killed during approval")
    result.runs.append(exp)
    hitl = f"/api/v2/dags/promote/dagRuns/{exp.run_id}/taskInstances/approve_prod/-1/hitlDetails"
    t0 = time.monotonic()
    while stack.get(hitl, user="bob") is None:
        if time.monotonic() - t0 > PROMOTE_TIMEOUT or stack.run("promote", exp.run_id).get("state") in ("success", "failed"):
            raise Timeout("the promotion never waited for approval")
        time.sleep(2)
    env, n = stack.kill("scheduler")
    result.injected.append(f"SIGKILL to the scheduler and its {n - 1} executor processes while approve_prod waited")
    time.sleep(5)
    stack.restart("scheduler", env)
    result.notes.append("airflow standalone did not restart the scheduler: a replacement `airflow scheduler` was started")
    stack.wait_healthy(timeout=240, parts=("scheduler",))
    status, body = stack.call("PATCH", hitl, user="bob", body={"chosen_options": ["Approve"], "params_input": {}})
    result.check(f"bob's approval answered after the restart (HTTP {status})", status == 200)
    if status != 200:
        result.notes.append(f"approval refused: {status} {str(body)[:300]}")
    wait_quiet(stack, result.runs, PROMOTE_TIMEOUT)
    commits = int(stack.git("rev-list", "--count", "main")) - commits_before
    prod = [e for e in stack.history() if e.get("run_id") == exp.run_id and e.get("env") == "prod"]
    result.check(f"one registry commit for the prod promotion ({len(prod)} history entries)", len(prod) == 1)
    result.notes.append(f"GitOps commits during the promotion: {commits} (the deployment, then its smoke evidence)")
    measure(stack, result, since)


def scenario_b(stack: Stack, result: Result) -> None:
    faults = yaml.safe_load(API_FAULTS.read_text())
    base = yaml.safe_load(BASE_SCENARIO.read_text())
    stack.set_scenario(pods=[*faults["pods"], *base["pods"]], faults=faults["faults"])
    since = time.time()
    exp = pipeline(stack, "service-a", "1.2.0", 2)
    result.runs.append(exp)
    wait_quiet(stack, result.runs, PIPELINE_TIMEOUT)
    reqs = [r for r in stack.requests() if r["at"] >= since]
    errors = Counter(r["status"] for r in reqs if r["status"] in (429, 500, 503))
    dropped = sum(1 for r in reqs if r["watch"] and r["path"].endswith("/events"))
    result.injected.append(", ".join(f"{n} x HTTP {s}" for s, n in sorted(errors.items())) +
                           f" on pod create/read/log; {min(dropped, 3)} event watches dropped at once")
    evicted = [p for p in stack.pods() if p.get("status", {}).get("reason") == "Evicted"]
    result.injected.append(f"{len(evicted)} build pod evicted mid-build (try 1)")
    tries = {t["task_id"]: t.get("try_number") for t in stack.task_instances(exp.dag_id, exp.run_id)}
    result.notes.append("task tries: " + ", ".join(f"{k} {v}" for k, v in sorted(tries.items()) if v and v > 1))
    result.check("the evicted build was retried", (tries.get("build") or 0) >= 2)
    stack.set_scenario()
    measure(stack, result, since)


TRIGGERS_SQL = """
import json
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
with create_session() as session:
    for t in session.query(Trigger).all():
        if "ApplicationSynced" in t.classpath:
            print(json.dumps({"id": t.id, "created": str(t.created_date), "triggerer_id": t.triggerer_id,
                              "kwargs": {k: str(v) for k, v in (t.kwargs or {}).items()}}))
"""


def sync_triggers(env: dict) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", TRIGGERS_SQL], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def scenario_c(stack: Stack, result: Result) -> None:
    delay = 20
    stack.set_scenario(applications=[{"delay_seconds": delay}])
    since = time.time()
    exp = pipeline(stack, "service-b", "2.0.0", 3)
    result.runs.append(exp)
    deploy_run = f"{exp.dag_id}.{exp.run_id}"
    t0 = time.monotonic()
    while stack.task_state("deploy-dev", deploy_run, "converge") != "deferred":
        if time.monotonic() - t0 > PIPELINE_TIMEOUT or stack.run(exp.dag_id, exp.run_id).get("state") in ("success", "failed"):
            raise Timeout("deploy-dev's converge never waited deferred")
        time.sleep(1)
    deferred_at = time.monotonic()
    time.sleep(3)
    env, n = stack.kill("triggerer")
    killed_at = time.monotonic()
    before = sync_triggers(env)
    result.injected.append(f"SIGKILL to the triggerer ({n} processes) {killed_at - deferred_at:.0f} s into "
                           f"deploy-dev's {delay} s Argo CD sync wait")
    stack.restart("triggerer", env)
    result.notes.append("airflow standalone did not restart the triggerer: a replacement `airflow triggerer` was started")
    stack.wait_healthy(timeout=240, parts=("triggerer",))
    state = stack.wait_task("deploy-dev", deploy_run, "converge", ("success", "failed", "up_for_retry"), PIPELINE_TIMEOUT)
    converged_at = time.monotonic()
    result.notes.append(f"converge {state} {converged_at - deferred_at:.0f} s after it deferred "
                        f"({converged_at - killed_at:.0f} s after the kill; the Application syncs {delay} s after the request)")
    after = sync_triggers(env)
    kwargs = (after or before or [{}])[-1].get("kwargs", {})
    absolute = sorted(k for k in kwargs if any(w in k for w in ("deadline", "started", "since", "until")))
    if absolute:
        result.notes.append(f"timeout: the trigger carries a wall-clock deadline ({', '.join(f'{k}={kwargs[k]}' for k in absolute)}): "
                            "a restart does not start it over")
    else:
        result.notes.append(f"timeout restarted: the trigger's serialized arguments hold only timeout_seconds="
                            f"{kwargs.get('timeout_seconds', '?')} and its deadline is time.monotonic() in the "
                            "process that runs it, so the restarted triggerer counts the full timeout again")
    result.check("the sync wait resumed after the restart", state == "success")
    wait_quiet(stack, result.runs, PIPELINE_TIMEOUT)
    stack.set_scenario()
    measure(stack, result, since)


# Installed in the GitOps repository for scenario d: while the platform's push is received, and
# before its branch update, someone else's push lands (a real push from a side clone), so the
# platform's update finds the branch moved and is rejected. Only the first LIMIT pushes that are
# not the side clone's own. Runs with the pusher's environment (file:// pushes run receive-pack
# locally); the side push leaves the quarantine receive-pack keeps the incoming objects in.
SIDE_HOOK = """#!/usr/bin/env bash
[ -n "${RELEASE_CHAOS_SIDE:-}" ] && exit 0
count_file="$(pwd)/chaos-side-pushes"
n=$(cat "$count_file" 2>/dev/null || echo 0)
[ "$n" -ge %(limit)d ] && exit 0
n=$((n + 1)); echo "$n" > "$count_file"
cd %(side)s && env -u GIT_DIR -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
  RELEASE_CHAOS_SIDE=1 bash -c "git pull -q --rebase origin main && mkdir -p notes && echo $n > notes/side-$n.txt \
  && git add notes && git commit -qm 'someone else pushed meanwhile ($n)' && git push -q origin HEAD:main" >> %(log)s 2>&1
exit 0
"""


def side_clone(stack: Stack, name: str) -> Path:
    side = stack.workdir / name
    shutil.rmtree(side, ignore_errors=True)
    stack.git("clone", "--quiet", str(stack.gitops), str(side), cwd=stack.workdir)
    for key, value in (("user.name", "someone"), ("user.email", "someone@example.com")):  # the hook commits as them
        stack.git("config", key, value, cwd=side)
    return side


def scenario_d(stack: Stack, result: Result) -> None:
    ensure(stack, result, "service-b", "dev", "2.0.0", 4)
    stack.set_scenario()
    since = time.time()
    side, limit = side_clone(stack, "side-clone-d"), 3
    hook = stack.gitops / "hooks" / "pre-receive"
    hook.write_text(SIDE_HOOK % {"limit": limit, "side": side, "log": stack.workdir / "side-pushes.log"})
    hook.chmod(0o755)
    (stack.gitops / "chaos-side-pushes").unlink(missing_ok=True)
    try:
        exp = promote(stack, "service-b", "dev", "staging", reason="fault suite: concurrent pushes")
        result.runs.append(exp)
        deploy_run = f"{exp.dag_id}.{exp.run_id}"
        stack.wait_task("deploy-staging", deploy_run, "apply", ("success", "failed", "upstream_failed"), PROMOTE_TIMEOUT)
    finally:
        hook.unlink(missing_ok=True)
    side_pushes = int((stack.gitops / "chaos-side-pushes").read_text()) if (stack.gitops / "chaos-side-pushes").exists() else 0
    lost = stack.task_log("deploy-staging", deploy_run, "apply").count("lost the race")
    result.injected.append(f"{side_pushes} pushes from a side clone landed while the platform's push was received; "
                           f"the platform's push was rejected {lost} time(s)")
    wait_quiet(stack, result.runs, PROMOTE_TIMEOUT)
    tree = stack.git("ls-tree", "-r", "--name-only", "main").split()
    kept = [n for n in range(1, side_pushes + 1) if f"notes/side-{n}.txt" in tree]
    result.check(f"someone else's changes kept ({len(kept)}/{side_pushes})", side_pushes and len(kept) == side_pushes)
    result.check(f"the platform's push was rejected and retried ({lost} time(s))", lost >= 1)
    measure(stack, result, since)


def scenario_f(stack: Stack, result: Result) -> None:
    """A writer that never lets go of the branch: the platform gives up within its bound, says so
    plainly, and writes nothing."""
    ensure(stack, result, "service-c", "dev", "3.1.0", 20)
    stack.set_scenario()
    since = time.time()
    side = side_clone(stack, "side-clone-f")
    exp = promote(stack, "service-c", "dev", "staging", reason="fault suite: the branch never free")
    exp.should, exp.items = "failed", []
    result.runs.append(exp)
    deploy_run = f"{exp.dag_id}.{exp.run_id}"
    pushed, stop = [0], threading.Event()
    env = {"RELEASE_CHAOS_SIDE": "1"}

    def hog() -> None:
        while not stop.is_set():
            n = pushed[0] + 1
            (side / "notes").mkdir(exist_ok=True)
            (side / "notes" / f"hog-{n}.txt").write_text(f"{n}\n")
            stack.git("add", "notes", cwd=side)
            stack.git("commit", "--quiet", "-m", f"a busy writer ({n})", cwd=side)
            if stack.git("push", "--quiet", "origin", "HEAD:main", cwd=side, check=False, env=env) == "":
                pushed[0] = n
            else:
                stack.git("pull", "--quiet", "--rebase", "origin", "main", cwd=side, check=False)
            stop.wait(0.05)

    thread = threading.Thread(target=hog, daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        state = stack.wait_task("deploy-staging", deploy_run, "apply", ("success", "failed", "upstream_failed"), PROMOTE_TIMEOUT)
    finally:
        stop.set()
        thread.join(60)
    result.injected.append(f"a side clone pushed {pushed[0]} commits, one every ~0.1 s, for {time.monotonic() - t0:.0f} s")
    wait_quiet(stack, result.runs, PROMOTE_TIMEOUT)
    lost = stack.task_log("deploy-staging", deploy_run, "apply").count("lost the race")
    note = (stack.run("promote", exp.run_id).get("note") or "").strip()
    result.notes.append(f"apply {state} after {lost} rejected pushes")
    result.check("the promotion failed saying the push was given up", "push" in note.lower())
    mine = [e for e in stack.history() if e.get("run_id") == exp.run_id]
    result.check(f"nothing half-written ({len(mine)} history entries of the run)", not mine)
    tree = stack.git("ls-tree", "-r", "--name-only", "main").split()
    result.check("the busy writer's changes all kept", all(f"notes/hog-{n}.txt" in tree for n in range(1, pushed[0] + 1)))
    measure(stack, result, since)


BREAKS = {
    "invalid YAML": lambda text: text.replace("environments:", "environments: [", 1),
    "duplicate key": lambda text: text.replace("environments:\n", "environments:\n  dev: {}\n", 1),
    "wrong type": lambda text: _wrong_type(text),
}


def _wrong_type(text: str) -> str:
    """The first deployment's version as a mapping instead of a string."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip().startswith("version:") and i > 0:
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}version: {{major: 1}}\n"
            break
    return "".join(lines)


def scenario_e(stack: Stack, result: Result) -> None:
    ensure(stack, result, "service-a", "dev", "1.2.0", 1)  # a deployment to break the type of
    stack.set_scenario()
    since = time.time()
    side = stack.workdir / "side-clone-e"
    for n, (kind, breaking) in enumerate(BREAKS.items()):
        shutil.rmtree(side, ignore_errors=True)
        stack.git("clone", "--quiet", str(stack.gitops), str(side), cwd=stack.workdir)
        path = side / "registry" / "versions.yaml"
        good = path.read_text()
        path.write_text(breaking(good))
        stack.git("commit", "--quiet", "-am", f"hand edit: {kind}", cwd=side)
        stack.git("push", "--quiet", "origin", "HEAD:main", cwd=side)
        broken_tip = stack.tip()
        result.injected.append(f"versions.yaml: {kind}")
        shown = stack.release_cli("registry", "show")
        said = " ".join((shown.stderr if shown.returncode else "").split())
        result.notes.append(f"[{kind}] registry show exit {shown.returncode}" + (f": {said[:300]}" if said else ""))
        exp = pipeline(stack, "service-c", f"3.0.{n}", 10 + n)
        exp.should = "failed"
        result.runs.append(exp)
        wait_quiet(stack, [exp], PIPELINE_TIMEOUT)
        deploy = stack.run("deploy-dev", f"{exp.dag_id}.{exp.run_id}")
        note = (deploy.get("note") or stack.run(exp.dag_id, exp.run_id).get("note") or "").strip()
        error = error_of(stack.task_log("deploy-dev", f"{exp.dag_id}.{exp.run_id}", "apply"))
        result.notes.append(f"[{kind}] deploy-dev {deploy.get('state')}, note: {note[:300]}")
        result.notes.append(f"[{kind}] apply's error: {error[:400]}")
        result.check(f"[{kind}] the run's note names registry/versions.yaml", "versions.yaml" in note)
        result.check(f"[{kind}] ... and the line", "line" in note)
        umbrella = stack.trigger("umbrella-chart", {}, user="admin")
        # Its first try is what reports it; its retries (5 minutes apart) would say the same again.
        state = stack.wait_task("umbrella-chart", umbrella, "reconcile", ("up_for_retry", "failed", "success"), 300)
        said = error_of(stack.task_log("umbrella-chart", umbrella, "reconcile"))
        if stack.run("umbrella-chart", umbrella).get("state") not in ("success", "failed"):
            stack.call("PATCH", f"/api/v2/dags/umbrella-chart/dagRuns/{umbrella}", body={"state": "failed"})
        result.notes.append(f"[{kind}] umbrella-chart reconcile try 1 {state}: {said[:300]}")
        result.check(f"[{kind}] umbrella-chart reports it, naming the file", state in ("up_for_retry", "failed")
                     and "versions.yaml" in said)
        result.check(f"[{kind}] nothing written after the hand edit", stack.tip() == broken_tip)
        # Put the file back by hand, as its owner would, for what follows.
        stack.git("pull", "--quiet", "--rebase", "origin", "main", cwd=side, check=False)
        path.write_text(good)
        stack.git("commit", "--quiet", "-am", f"undo the hand edit ({kind})", cwd=side)
        stack.git("push", "--quiet", "origin", "HEAD:main", cwd=side)
    measure(stack, result, since)


def error_of(log: str) -> str:
    """The error a task log ends with (its exception's text), else its last error line."""
    found = ""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for detail in entry.get("error_detail") or []:
            found = f"{detail.get('exc_type')}: {detail.get('exc_value')}"
        if not found and entry.get("level") == "error":
            found = str(entry.get("event"))
    return " ".join(found.split())


SCENARIOS = {
    "a": ("scheduler killed while a prod promotion waits for approval", scenario_a),
    "b": ("5xx/429 bursts, dropped watches, build pod evicted", scenario_b),
    "c": ("triggerer killed during deploy-dev's Argo CD sync wait", scenario_c),
    "d": ("GitOps pushes rejected: someone else pushed meanwhile", scenario_d),
    "e": ("registry/versions.yaml broken by a hand edit", scenario_e),
    "f": ("GitOps branch never free: a writer pushing all the time", scenario_f),
}


# -- report --------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    rows = ["| scenario | injected | completed | failed (run note) | writes lost | duplicate deployments | orphan pods | as expected |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        failed = "; ".join(r.failed) or "none"
        if r.error:
            failed = f"suite error: {r.error}; {failed}"
        rows.append(f"| {r.name}. {r.title} | {'; '.join(r.injected) or '-'} | {r.completed}/{len(r.runs)} | "
                    f"{failed.replace('|', '/')} | {r.writes_lost} | {r.duplicates} | {r.orphans} | "
                    f"{'yes' if r.ok else 'NO: ' + '; '.join(dict.fromkeys(w for w, ok in r.checks if not ok)).replace('|', '/')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=ORDER, help=f"scenarios to run, e.g. a,b (default: all, in the order {','.join(ORDER)})")
    parser.add_argument("--port", type=int, default=0, help="the API server's port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (logs, Airflow home, GitOps repo)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.replace(",", "") if s in SCENARIOS]
    if not wanted or len(wanted) != len(args.only.replace(",", "")):
        parser.error(f"--only: choose from {', '.join(SCENARIOS)}; got {args.only!r}")
    wanted = [s for s in ORDER if s in wanted]
    if shutil.which("airflow", path=str(ROOT / ".venv" / "bin")) is None:
        parser.error("no .venv: run `make install-dev` first")
    os.environ["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"

    # SIGTERM (a CI timeout, `timeout`) stops the stack too: it ends main() through its `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="release-chaos-"))
    stack = Stack(workdir, args.port or _free_port())
    results: list[Result] = []
    t_start = time.monotonic()
    print(f"fault suite: make run on port {stack.port}, folder {workdir}", flush=True)
    try:
        stack.start()
        print(f"healthy after {stack.wait_healthy():.0f} s", flush=True)
        stack.wait_dags()
        for name in wanted:
            title, fn = SCENARIOS[name]
            result = Result(name, title)
            print(f"\n== {name}. {title}", flush=True)
            t0 = time.monotonic()
            try:
                fn(stack, result)
            except Exception as exc:  # noqa: BLE001 - a scenario that broke is a figure, not the end
                result.error = f"{type(exc).__name__}: {exc}"
                try:
                    measure(stack, result, 0)
                except Exception as again:  # noqa: BLE001
                    result.notes.append(f"could not measure: {again}")
            result.seconds = time.monotonic() - t0
            results.append(result)
            for what, ok in result.checks:
                print(f"   [{'ok' if ok else 'FAILED'}] {what}")
            for note in result.notes:
                print(f"   - {note}")
            print(f"   {'as expected' if result.ok else 'NOT as expected'} ({result.seconds:.0f} s)"
                  + (f": {result.error}" if result.error else ""), flush=True)
    finally:
        left = stack.stop()
        if left:
            print(f"still running after stop, killed: {left}")
    print(f"\nFigures ({time.monotonic() - t_start:.0f} s in all; `make chaos`):\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ok": r.ok} for r in results], indent=2))
    if args.keep or not all(r.ok for r in results):
        print(f"\nlogs and state kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
