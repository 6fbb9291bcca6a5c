"""One `<service>-pipeline` run against the sandbox of `make run`: wall time against the work.

Runs `service-a-pipeline` once with dag.test() (tasks run in this process, one at a time; the
triggers of deferred tasks inline) against the sandbox cluster with `make run`'s scenario
(include/release/sandbox/scenarios/make-run.yaml): its pod durations, and its Argo CD sync delay
for the dev rollout. Prints:

- the critical path: the longest chain of simulated work (pod durations, the Argo CD sync)
  through the tasks that ran, and the serial sum of that work (dag.test() runs one task at a
  time, so the sum is its floor);
- the run's wall time, and its ratio to both;
- the scheduling overhead per task: the gap from its upstream's end to its start, and its run
  time beyond its simulated work.

    .venv/bin/python bench/pipeline.py [--service service-a]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "include" / "release" / "sandbox" / "scenarios" / "make-run.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _isolate() -> Path:
    """A throw-away Airflow home, database and data folder, set before Airflow is imported."""
    home = Path(tempfile.mkdtemp(prefix="release-bench-pipeline-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "RELEASE_DATA_DIR": str(home / "data"),
    })
    os.environ.pop("KUBECONFIG", None)
    sys.path.insert(0, str(ROOT / "include"))
    return home


def _work(task, scenario, ran: dict) -> float:
    """The simulated work of one task: its pod's scheduling and run time, or Argo CD's sync."""
    labels = getattr(task, "labels", None)
    if labels and "release-platform/step" in labels:
        behaviour = scenario.pod_behaviour({"metadata": {"labels": {**labels, "task_id": task.task_id}},
                                            "spec": {"containers": [{"image": getattr(task, "image", "")}]}})
        return behaviour.schedule_seconds + behaviour.duration_seconds
    if task.task_id.startswith("wait_") and ran.get(task.task_id):
        return scenario.application_rule({"metadata": {}}).delay_seconds
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--service", default="service-a")
    args = parser.parse_args(argv)

    home = _isolate()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    from release import cli
    from release.config import data_dir, load_config
    from release.gitops import ensure_local_repo
    from release.sandbox import SandboxCluster, Scenario
    from release.sandbox.mode import sandbox_environment

    config = load_config()
    scenario = Scenario.load(SCENARIO)
    db.resetdb()
    cli.main(["pools", "sync"])
    ensure_local_repo(config)
    cluster = SandboxCluster(scenario, namespaces=tuple(e.namespace for e in config.environments.values()),
                             artifacts_dir=data_dir() / "artifacts", backup_storage_dir=home / "backup-storage")
    cluster.start()
    try:
        for env in config.env_order:
            cluster.call(cluster.ensure_application, *config.argocd_application(env), env)
        os.environ.update(sandbox_environment(config, cluster.write_kubeconfig(home / "kubeconfig")))

        dag = DagBag(dag_folder=str(ROOT / "dags" / "service_pipelines.py")).get_dag(f"{args.service}-pipeline")
        started = time.monotonic()
        dagrun = dag.test(run_conf={"commit": COMMIT, "ref": "refs/tags/v1.1.0"})
        wall = time.monotonic() - started
    finally:
        cluster.stop()

    tis = {ti.task_id: ti for ti in dagrun.get_task_instances() if ti.map_index in (-1, 0)}
    ran = {t: ti.state == "success" and ti.start_date is not None for t, ti in tis.items()}
    work = {t: _work(dag.get_task(t), scenario, ran) if ran[t] else 0.0 for t in tis}
    finish: dict[str, float] = {}

    def longest(task_id: str) -> float:  # the longest chain of work ending with this task
        if task_id not in finish:
            ups = [u for u in dag.get_task(task_id).upstream_task_ids if u in tis]
            finish[task_id] = work[task_id] + max((longest(u) for u in ups), default=0.0)
        return finish[task_id]

    critical = max(longest(t) for t in tis)
    serial = sum(work.values())
    run_span = (dagrun.end_date - dagrun.start_date).total_seconds()
    gaps, extra, rows = [], [], []
    for t, ti in sorted(tis.items(), key=lambda item: item[1].start_date or dagrun.end_date):
        if not ran[t]:
            continue
        ends = [tis[u].end_date for u in dag.get_task(t).upstream_task_ids if u in tis and tis[u].end_date]
        gap = (ti.start_date - max(ends)).total_seconds() if ends else (ti.start_date - dagrun.start_date).total_seconds()
        gaps.append(gap)
        extra.append((ti.end_date - ti.start_date).total_seconds() - work[t])
        rows.append(f"    {t:<16} work {work[t]:4.1f} s  ran {(ti.end_date - ti.start_date).total_seconds():5.1f} s  "
                    f"waited {gap:5.2f} s  tries {ti.try_number}")
    retried = sorted(t for t, ti in tis.items() if (ti.try_number or 0) > 1)

    print(f"{args.service}-pipeline under dag.test() against the sandbox ({SCENARIO.name}); run {dagrun.state}")
    print(f"  tasks run: {sum(ran.values())} of {len(tis)}; retried: {', '.join(retried) or 'none'}")
    print(f"  critical path (longest chain of pod/sync work): {critical:6.1f} s")
    print(f"  serial sum of that work (dag.test's floor):    {serial:6.1f} s")
    print(f"  wall time of the run:                           {run_span:6.1f} s  (dag.test() call {wall:.1f} s)")
    print(f"  wall / critical path:                           {run_span / critical:6.2f}x")
    print(f"  wall / serial work:                             {run_span / serial:6.2f}x")
    print(f"  per task, upstream end -> start: mean {statistics.mean(gaps):.2f} s, max {max(gaps):.2f} s")
    print(f"  per task, run time beyond its work: mean {statistics.mean(extra):.2f} s, max {max(extra):.2f} s, "
          f"total {sum(extra):.1f} s")
    print("\n".join(rows))
    return 0 if dagrun.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
