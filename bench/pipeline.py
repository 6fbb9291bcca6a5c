"""The real stack of `make run`, timed: pipelines, a promotion and an approved prod promotion.

Starts `make run` as the end-to-end test does (tests/e2e/test_make_run.py: a free port, its own
Airflow home and data folder in a temporary directory, sandbox mode; scheduler, triggerer,
dag-processor and API server of `airflow standalone`), waits until the API answers, every DAG
is parsed and unpaused and the nightly runs that start with it have finished, then drives it
only over REST, as alice and bob would:

1. `service-a-pipeline` (a release tag) and its `deploy-dev` run;
2. `service-b-pipeline` and `service-c-pipeline` at once, so all three run in dev;
3. `promote` of the three from dev to staging, and its `deploy-staging` run;
4. `promote` from staging to prod by alice, approved by bob through the HITL REST API.

For 1 and 3 (the calling run and its deploy run together) it prints the run's wall time, its
critical path (the longest chain of simulated work in make run's sandbox scenario,
include/sandbox/scenarios/make-run.yaml: each pod's schedule and run time, the Argo CD
Application's sync delay for `converge`; the mapped smoke pods run side by side), their ratio,
the scheduling overhead per task (from the end of its latest upstream, or its run's start, to its
start: median and max), and the five largest gaps among those and the hand-over's own: calling
run's hand_over -> deploy run created -> started (queued behind other changes to the environment)
-> ... -> deploy run's end -> hand_over's end; and how much of the tasks' run time their worker
processes spent parsing the DAG file (from the task logs). For 4 it prints the
time from bob's answer (when the PATCH returned) to the GitOps commit in `deploy-prod` (the end of
its `apply`, and the registry's `deployed_at`, which has whole seconds) and to the end of the
promote run. Then it stops the stack with SIGTERM, as the test does, and prints a summary table.
Nothing is asserted about timing; it exits non-zero only if a run does not succeed.

    .venv/bin/python bench/pipeline.py [--keep]     # 13-17 minutes on a busy 2-core machine
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

# How the end-to-end test starts, calls and stops `make run`: one way, kept in one place.
from tests.e2e.test_make_run import MakeRun, call, free_port  # noqa: E402

SCENARIO = ROOT / "include" / "sandbox" / "scenarios" / "make-run.yaml"
SERVICES = ("service-a", "service-b", "service-c")
COMMITS = {s: f"{i:x}" * 40 for i, s in zip((10, 11, 12), SERVICES)}
REF = "refs/tags/v1.2.0"
POLL = 0.25  # seconds between REST polls of a run's state


# -- what the DAGs are: task graph and simulated work ---------------------------------------

@dataclass
class Task:
    upstream: list[str]
    work: float  # seconds of simulated work: a pod's schedule and run time, an Argo CD sync
    kind: str  # pod, sync, approval, hand_over, other


def dag_model(home: Path, dag_ids: list[str]) -> dict[str, dict[str, Task]]:
    """The task graphs of `dag_ids`, parsed from dags/ in this process (a throw-away Airflow home,
    set before Airflow is imported), each task with its simulated work under the scenario."""
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    })
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sandbox import Scenario

    scenario = Scenario.load(SCENARIO)
    dags = {}
    for name in ("service_pipelines.py", "deploy.py", "promote.py"):
        dags |= DagBag(dag_folder=str(ROOT / "dags" / name)).dags
    model: dict[str, dict[str, Task]] = {}
    for dag_id in dag_ids:
        tasks = {}
        for task in dags[dag_id].tasks:
            cls = getattr(task, "operator_class", None) or type(task)  # a mapped task names its class
            cls_name = cls if isinstance(cls, str) else cls.__name__
            is_pod = (issubclass(cls, KubernetesPodOperator) if isinstance(cls, type)
                      else "PodOperator" in cls_name)
            if is_pod:
                labels = getattr(task, "labels", None) or getattr(task, "partial_kwargs", {}).get("labels") or {}
                pod = {"metadata": {"labels": {**labels, "task_id": task.task_id}},
                       "spec": {"containers": [{"image": str(getattr(task, "image", "") or "")}]}}
                behaviour = scenario.pod_behaviour(pod)  # smoke pods: the default pod's times
                work, kind = behaviour.schedule_seconds + behaviour.duration_seconds, "pod"
            elif cls_name == "ApplicationSyncedSensor":
                app = {"metadata": {"name": task.application, "namespace": task.namespace}}
                work, kind = scenario.application_rule(app).delay_seconds, "sync"
            elif cls_name == "HandOver":
                work, kind = 0.0, "hand_over"
            elif "Approval" in cls_name or "HITL" in cls_name:
                work, kind = 0.0, "approval"
            else:
                work, kind = 0.0, "other"
            tasks[task.task_id] = Task(sorted(task.upstream_task_ids), work, kind)
        model[dag_id] = tasks
    return model


# -- the stack over REST ---------------------------------------------------------------------

def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def load() -> str:
    """The machine's load: the numbers mean little on a machine busy with other work."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def now() -> datetime:
    return datetime.now(timezone.utc)


class Api:
    def __init__(self, base: str, home: Path):
        self.base = base
        self.passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        self.tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self.tokens:
            status, body = call(f"{self.base}/auth/token", body={"username": user, "password": self.passwords[user]})
            if status not in (200, 201):
                raise SystemExit(f"cannot log in as {user}: {status} {body}")
            self.tokens[user] = body["access_token"]
        return self.tokens[user]

    def request(self, path: str, user: str = "admin", body: dict | None = None, method: str | None = None) -> dict:
        for attempt in range(5):  # a busy 2-core machine answers late, not never
            try:
                status, answer = call(f"{self.base}{path}", self.token(user), body=body, method=method, timeout=30)
                break
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(1)
        if status >= 300:
            raise SystemExit(f"{method or 'GET'} {path} as {user}: {status} {answer}")
        return answer

    def trigger(self, dag_id: str, conf: dict, user: str = "alice") -> str:
        run = self.request(f"/api/v2/dags/{dag_id}/dagRuns", user, {"logical_date": None, "conf": conf}, "POST")
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.request(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait(self, dag_id: str, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(POLL)
        raise SystemExit(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]


def wait_ready(api: Api, dag_ids: list[str], timeout: float = 300) -> None:
    """Every DAG the bench uses is parsed and unpaused, and no file failed to import."""
    deadline = time.monotonic() + timeout
    missing = dag_ids
    while time.monotonic() < deadline:
        dags = {d["dag_id"]: d for d in api.request("/api/v2/dags?limit=1000")["dags"]}
        missing = [d for d in dag_ids if d not in dags or dags[d]["is_paused"]]
        if not missing:
            errors = api.request("/api/v2/importErrors")
            if errors["total_entries"]:
                raise SystemExit(f"import errors: {errors}")
            return
        time.sleep(1)
    raise SystemExit(f"never parsed and unpaused: {missing}")


def wait_quiet(api: Api, timeout: float) -> tuple[float, list[str]]:
    """Wait until no DAG run is queued or running (the nightly DAGs run once when `make run`
    unpauses them): the measured runs then have the stack to themselves."""
    t0 = time.monotonic()
    busy: list[str] = []
    while time.monotonic() - t0 < timeout:
        runs = api.request("/api/v2/dags/~/dagRuns?state=queued&state=running&limit=100")["dag_runs"]
        busy = sorted({r["dag_id"] for r in runs})
        if not busy:
            break
        time.sleep(1)
    return time.monotonic() - t0, busy


# -- analysis --------------------------------------------------------------------------------

@dataclass
class Measured:
    name: str
    wall: float  # the calling run: start to end
    critical: float
    gaps: list[tuple[float, str]]  # (seconds, what)
    beyond: list[tuple[float, str]]  # (run time beyond its simulated work, task)
    retried: list[str]
    states: dict[str, str] = field(default_factory=dict)
    load1: float = 0.0  # the machine's 1-minute load average when the run ended
    run_time: float = 0.0  # all task instances' run times (start to end), added up
    workers: dict[str, float] = field(default_factory=dict)  # from the task logs: worker_time()

    @property
    def task_gaps(self) -> list[float]:
        return [g for g, what in self.gaps if not what.startswith("(")]


def _label(ti: dict) -> str:
    return ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")


def _ends(tis: list[dict]) -> dict[str, datetime]:
    """Task id -> when its last instance (of a mapped task: its last pod) ended."""
    ends: dict[str, datetime] = {}
    for ti in tis:
        end = ts(ti["end_date"])
        if end and (ti["task_id"] not in ends or end > ends[ti["task_id"]]):
            ends[ti["task_id"]] = end
    return ends


ATTEMPT_LOG = re.compile(r"attempt=\d+\.log")


def worker_time(logs: Path, dag_id: str, run_id: str, task_id: str = "*",
                after: datetime | None = None) -> dict[str, float]:
    """Where the task instances of one run spent their run time, from their task logs: every
    task start, and every resume after a deferral, is a new worker process that parses the DAG
    file first ("Filling up the DagBag" -> "Worker startup parse complete"); a deferred task
    waits from "Pausing task as DEFERRED" to its next worker's "Pre Execute" (hand_over's wait is
    its deploy run, measured on its own)."""
    out = {"parse": 0.0, "parses": 0, "deferred": 0.0}
    for path in (logs / f"dag_id={dag_id}" / f"run_id={run_id}").glob(f"task_id={task_id}/**/attempt=*.log"):
        if not ATTEMPT_LOG.fullmatch(path.name):
            continue  # the triggerer's part of a deferred task's log
        filling = paused = None
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
                when, what = ts(event["timestamp"]), str(event.get("event", ""))
            except (ValueError, KeyError, TypeError):
                continue
            if what.startswith("Filling up the DagBag"):
                filling = when
            elif what == "Worker startup parse complete" and filling and (after is None or filling >= after):
                out["parse"] += (when - filling).total_seconds()
                out["parses"] += 1
                filling = None
            elif what.startswith("Pausing task as DEFERRED"):
                paused = when
            elif what == "::group::Pre Execute" and paused and "task_id=hand_over" not in path.parts:
                out["deferred"] += (when - paused).total_seconds()
                paused = None
    return out


def longest(model: dict[str, Task], work: dict[str, float]) -> float:
    """The longest chain of work through a task graph."""
    finish: dict[str, float] = {}

    def through(task_id: str) -> float:
        if task_id not in finish:
            finish[task_id] = work[task_id] + max((through(u) for u in model[task_id].upstream), default=0.0)
        return finish[task_id]

    return max(through(t) for t in model)


def analyse(name: str, model: dict[str, dict[str, Task]], caller: tuple[dict, list[dict]],
            deploy: tuple[dict, list[dict]]) -> Measured:
    """The calling run and the deploy run it handed over to, as one chain of work."""
    (crun, ctis), (drun, dtis) = caller, deploy
    cmodel, dmodel = model[crun["dag_id"]], model[drun["dag_id"]]
    ran = {(r["dag_id"], ti["task_id"]) for r, tis in (caller, deploy) for ti in tis
           if ti["state"] == "success" and ti["start_date"]}
    dwork = {t: task.work if (drun["dag_id"], t) in ran else 0.0 for t, task in dmodel.items()}
    deploy_critical = longest(dmodel, dwork)
    cwork = {t: (deploy_critical if task.kind == "hand_over" else task.work) if (crun["dag_id"], t) in ran else 0.0
             for t, task in cmodel.items()}
    critical = longest(cmodel, cwork)

    gaps, beyond = [], []
    for run, tis, tasks, work in ((crun, ctis, cmodel, cwork), (drun, dtis, dmodel, dwork)):
        ends = _ends(tis)
        origin = ts(run["start_date"])
        for ti in tis:
            start, end = ts(ti["start_date"]), ts(ti["end_date"])
            if start is None:
                continue
            ups = [ends[u] for u in tasks[ti["task_id"]].upstream if u in ends]
            ref = max(ups) if ups else origin
            note = " (skipped)" if ti["state"] == "skipped" else ""
            note += f" (try {ti['try_number']}: from the first try's upstream)" if (ti["try_number"] or 0) > 1 else ""
            gaps.append(((start - ref).total_seconds(), f"{run['dag_id']}:{_label(ti)}{note}"))
            kind = tasks[ti["task_id"]].kind
            if end and ti["state"] == "success" and kind not in ("hand_over", "approval"):
                beyond.append(((end - start).total_seconds() - work[ti["task_id"]], f"{run['dag_id']}:{_label(ti)}"))
        last = max(ends.values())
        gaps.append(((ts(run["end_date"]) - last).total_seconds(), f"({run['dag_id']}: last task end -> run end)"))
    hand = next(ti for ti in ctis if cmodel[ti["task_id"]].kind == "hand_over")
    gaps.append(((ts(drun["queued_at"]) - ts(hand["start_date"])).total_seconds(),
                 f"({crun['dag_id']}:hand_over start -> {drun['dag_id']} run created)"))
    # A deploy run queued behind another change to its environment (max_active_runs=1) waits here.
    gaps.append(((ts(drun["start_date"]) - ts(drun["queued_at"])).total_seconds(),
                 f"({drun['dag_id']} run created -> started)"))
    gaps.append(((ts(hand["end_date"]) - ts(drun["end_date"])).total_seconds(),
                 f"({drun['dag_id']} run end -> {crun['dag_id']}:hand_over end)"))
    retried = [f"{r['dag_id']}:{_label(ti)} x{ti['try_number']}" for r, tis in (caller, deploy) for ti in tis
               if (ti["try_number"] or 0) > 1]
    run_time = sum((ts(ti["end_date"]) - ts(ti["start_date"])).total_seconds()
                   for r, tis in (caller, deploy) for ti in tis if ti["start_date"] and ti["end_date"]
                   and model[r["dag_id"]][ti["task_id"]].kind != "hand_over")  # its run time is the deploy run
    wall = (ts(crun["end_date"]) - ts(crun["start_date"])).total_seconds()
    states = {crun["dag_id"]: crun["state"], drun["dag_id"]: drun["state"]}
    return Measured(name, wall, critical, gaps, beyond, retried, states, run_time=run_time)


def report(m: Measured) -> None:
    gaps = m.task_gaps
    print(f"\n{m.name}: " + ", ".join(f"{d} {s}" for d, s in m.states.items()) + f"; {load()}")
    print(f"  wall time of the run (start to end):  {m.wall:6.1f} s")
    print(f"  critical path (simulated work):       {m.critical:6.1f} s")
    print(f"  wall / critical path:                 {m.wall / m.critical:6.2f}x   (goal <= 1.3)")
    print(f"  overhead (wall - critical path):      {m.wall - m.critical:6.1f} s")
    print(f"  per task, latest upstream end -> start: median {statistics.median(gaps):.2f} s, "
          f"max {max(gaps):.2f} s, sum {sum(gaps):.1f} s over {len(gaps)} task instances")
    extra = [b for b, _ in m.beyond]
    print(f"  per task, run time beyond its work:     median {statistics.median(extra):.2f} s, "
          f"max {max(extra):.2f} s")
    w = m.workers
    print(f"  task run times added up:              {m.run_time:6.1f} s, of which worker processes parsed the DAG "
          f"file {w['parse']:.1f} s ({w['parses']:.0f} parses, {w['parse'] / max(w['parses'], 1):.2f} s each) "
          f"and deferred tasks waited {w['deferred']:.1f} s")
    print(f"  retried: {', '.join(m.retried) or 'none'}")
    print("  where the time goes, largest gaps:")
    for gap, what in sorted(m.gaps, reverse=True)[:5]:
        print(f"    {gap:6.2f} s  {what}")
    print("  largest run times beyond the work:")
    for b, what in sorted(m.beyond, reverse=True)[:5]:
        print(f"    {b:6.2f} s  {what}")


# -- the scenario ----------------------------------------------------------------------------

def pipeline(api: Api, service: str) -> str:
    return api.trigger(f"{service}-pipeline", {"commit": COMMITS[service], "ref": REF})


def measured_pair(api: Api, model, logs: Path, name: str, dag_id: str, run_id: str, env: str,
                  timeout: float) -> Measured:
    """Wait for a run, then read it and the `deploy-<env>` run it handed over to."""
    run = api.wait(dag_id, run_id, timeout)
    deploy_dag, deploy_id = f"deploy-{env}", f"{dag_id}.{run_id}"  # release.flows.handover.handover_run_id
    drun = api.run(deploy_dag, deploy_id)
    measured = analyse(name, model, (run, api.task_instances(dag_id, run_id)),
                       (drun, api.task_instances(deploy_dag, deploy_id)))
    measured.load1 = os.getloadavg()[0]
    for d, r in ((dag_id, run_id), (deploy_dag, deploy_id)):
        for key, value in worker_time(logs, d, r).items():
            measured.workers[key] = measured.workers.get(key, 0) + value
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary Airflow home and logs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each run")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="release-bench-stack-"))
    dag_ids = [f"{s}-pipeline" for s in SERVICES] + ["promote", "deploy-dev", "deploy-staging", "deploy-prod"]
    model = dag_model(tmp / "model", dag_ids)
    port = free_port()
    print(f"make run PORT={port}, Airflow home and data in {tmp}")
    stack = MakeRun(tmp, port)
    results: list[Measured] = []
    summary: dict[str, float] = {}
    ok = True
    try:
        summary["healthy"] = stack.wait_healthy()
        api, logs = Api(stack.base, stack.home), stack.home / "logs"
        wait_ready(api, dag_ids)
        summary["ready"] = time.monotonic() - stack.started
        waited, busy = wait_quiet(api, timeout=300)
        print(f"healthy after {summary['healthy']:.0f} s, DAGs parsed and unpaused after {summary['ready']:.0f} s; "
              f"waited {waited:.0f} s for the nightly runs make run starts"
              + (f" (still busy: {busy})" if busy else ""))

        # 1. one pipeline to dev
        run_id = pipeline(api, "service-a")
        results.append(measured_pair(api, model, logs, "service-a-pipeline to dev", "service-a-pipeline", run_id,
                                     "dev", args.timeout))
        report(results[-1])

        # 2. the other two at once: deploy-dev takes their change sets one after the other
        t0 = time.monotonic()
        runs = {s: pipeline(api, s) for s in SERVICES[1:]}
        for service, rid in runs.items():
            m = measured_pair(api, model, logs, f"{service}-pipeline to dev", f"{service}-pipeline", rid, "dev",
                             args.timeout)
            results.append(m)
        summary["b+c"] = time.monotonic() - t0
        print(f"\nservice-b and service-c pipelines at once: both done {summary['b+c']:.1f} s after the trigger; "
              + "; ".join(f"{m.name.split('-pipeline')[0]} wall {m.wall:.1f} s" for m in results[1:]))

        # 3. all three, dev -> staging
        run_id = api.trigger("promote", {"services": list(SERVICES), "from_env": "dev", "to_env": "staging",
                                         "reason": "bench"})
        results.append(measured_pair(api, model, logs, "promote 3 services to staging", "promote", run_id,
                                     "staging", args.timeout))
        report(results[-1])

        # 4. staging -> prod: alice asks, bob approves over REST
        summary |= prod_promotion(api, stack, args.timeout)
    except SystemExit as exc:
        print(f"\nbench stopped: {exc}", file=sys.stderr)
        ok = False
    finally:
        if stack.proc.poll() is None:
            stop_s, left = stack.stop(signal.SIGTERM)
            summary["stop"] = stop_s
            print(f"\nstopped by SIGTERM to make's group in {stop_s:.1f} s"
                  + (f"; left running: {left}" if left else ""))
        if args.keep or not ok:
            print(f"kept: {tmp} (console: {stack.log_path})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summarise(results, summary)
    ok = ok and all(s == "success" for m in results for s in m.states.values()) and summary.get("prod_state") == 1
    return 0 if ok else 1


def prod_promotion(api: Api, stack: MakeRun, timeout: float) -> dict[str, float]:
    run_id = api.trigger("promote", {"services": list(SERVICES), "from_env": "staging", "to_env": "prod",
                                     "reason": "bench"}, user="alice")
    ti_path = f"/api/v2/dags/promote/dagRuns/{run_id}/taskInstances/approve_prod"
    deadline = time.monotonic() + timeout
    while (state := api.request(ti_path)["state"]) != "awaiting_input":
        if state in ("failed", "upstream_failed", "skipped") or time.monotonic() > deadline:
            raise SystemExit(f"approve_prod is {state}, never awaited input")
        time.sleep(POLL)
    api.request(f"{ti_path}/-1/hitlDetails", "bob", {"chosen_options": ["Approve"]}, "PATCH")
    answered = now()
    run = api.wait("promote", run_id, timeout)
    if run["state"] != "success":
        # Seen once: bob answered within a second of the request appearing and Airflow's defer race
        # failed approve_prod: a stale "success" of its parking, nothing handed over.
        tis = {ti["task_id"]: ti["state"] for ti in api.task_instances("promote", run_id)}
        raise SystemExit(f"promote to prod run {run_id} {run['state']}: {run.get('note')}; tasks {tis}")
    deploy_id = f"promote.{run_id}"
    tis = {ti["task_id"]: ti for ti in api.task_instances("deploy-prod", deploy_id)}
    ptis = {ti["task_id"]: ti for ti in api.task_instances("promote", run_id)}
    drun = api.run("deploy-prod", deploy_id)
    shown = subprocess.run([sys.executable, "-m", "release", "registry", "show", "--env", "prod", "--format", "json"],
                           env=stack.env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    deployed_at = max(ts(d["deployed_at"].replace("Z", "+00:00")) for d in json.loads(shown)["prod"].values() if d)

    def since(moment: str | datetime | None) -> float:
        moment = ts(moment) if isinstance(moment, str) else moment
        return (moment - answered).total_seconds() if moment else float("nan")

    apply = tis.get("apply", {})
    out = {"prod_commit": since(apply.get("end_date")), "prod_deployed_at": since(deployed_at),
           "prod_end": since(run["end_date"]), "prod_state": 1.0 if run["state"] == "success" else 0.0}
    print(f"\npromote 3 services to prod, approved by bob: promote {run['state']}, deploy-prod {drun['state']}; "
          f"{load()}")
    print(f"  bob's answer -> GitOps commit (apply's end):          {out['prod_commit']:6.2f} s   (goal <= 5 s)")
    print(f"  bob's answer -> registry deployed_at (whole seconds): {out['prod_deployed_at']:6.2f} s")
    print(f"  bob's answer -> promote run end:                      {out['prod_end']:6.2f} s")
    print("  on the way to the commit, after bob's answer:")
    steps = [("approve_prod ends", ptis["approve_prod"].get("end_date")),
             ("hand_over starts", ptis["hand_over"].get("start_date")),
             ("deploy-prod run created", drun.get("queued_at")),
             ("deploy-prod run starts", drun.get("start_date")),
             ("apply starts", apply.get("start_date")),
             ("apply ends (commit made)", apply.get("end_date")),
             ("converge ends", tis.get("converge", {}).get("end_date")),
             ("deploy-prod run ends", drun.get("end_date")),
             ("hand_over ends", ptis["hand_over"].get("end_date")),
             ("promote run ends", run.get("end_date"))]
    for what, moment in steps:
        print(f"    +{since(moment):6.2f} s  {what}")
    parsed = [(task, worker_time(stack.home / "logs", dag, rid, task, after=answered)["parse"])
              for dag, rid, task in (("promote", run_id, "approve_prod"), ("promote", run_id, "hand_over"),
                                     ("deploy-prod", deploy_id, "apply"))]
    print("  of which worker processes parsed their DAG file, after bob's answer: "
          + ", ".join(f"{what} {seconds:.2f} s" for what, seconds in parsed))
    retried = [f"{ti['task_id']} x{ti['try_number']}" for ti in [*ptis.values(), *tis.values()]
               if (ti["try_number"] or 0) > 1]
    print(f"  retried: {', '.join(retried) or 'none'}")
    return out


def summarise(results: list[Measured], summary: dict[str, float]) -> None:
    from tabulate import tabulate

    rows = [[m.name, f"{m.wall:.1f}", f"{m.critical:.1f}", f"{m.wall / m.critical:.2f}",
             f"{statistics.median(m.task_gaps):.2f}", f"{max(m.task_gaps):.2f}",
             f"{m.workers['parse'] / max(m.workers['parses'], 1):.2f}", len(m.retried), f"{m.load1:.1f}"]
            for m in results]
    print("\nsummary")
    print(tabulate(rows, headers=["run (with its deploy run)", "wall s", "critical s", "wall/critical",
                                  "gap median s", "gap max s", "parse/task s", "retried", "load"]))
    facts = [("stack healthy after", summary.get("healthy")), ("DAGs ready after", summary.get("ready")),
             ("prod: bob's answer -> GitOps commit", summary.get("prod_commit")),
             ("prod: bob's answer -> deployed_at (whole s)", summary.get("prod_deployed_at")),
             ("prod: bob's answer -> promote run end", summary.get("prod_end")),
             ("stopped by SIGTERM in", summary.get("stop"))]
    print(tabulate([[k, f"{v:.2f}" if v is not None else "-"] for k, v in facts], headers=["", "seconds"]))


if __name__ == "__main__":
    sys.exit(main())
