"""DAG parse cost of the service pipelines as the number of services grows.

For configs of 10, 100 and 1,000 services it measures, each in a fresh process:
- the DagBag parse time of dags/service_pipelines.py, against a baseline file that
  builds DAGs of the same shape (same tasks, operator classes, params and dependencies)
  directly with plain operators, without the config, the pod factory or validation;
- the time to build one service's DAG when Airflow runs a single task
  (get_parsing_context().dag_id set), at 1 and 1,000 services.

Targets: ours <= 1.3x the baseline at 1,000 services; the single-DAG build at 1,000
services <= 2x the one at 1 service.

    .venv/bin/python bench/parse.py [--sizes 10 100 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "service_pipelines.py"

BASELINE = '''
from datetime import datetime
import json, os
from airflow.sdk import DAG, Param
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.python import PythonOperator, ShortCircuitOperator
from airflow.providers.standard.sensors.python import PythonSensor

def noop(**_):
    return None

PODS = ["verify", "build", "sbom", "scan", "scan_sarif", "sign", "attest_sbom", "smoke_dev"]
PY = ["validate", "image_ref", "scan_gate", "chart_validate", "deploy_dev", "rollback_dev"]
for name in json.load(open(os.environ["BENCH_SERVICES"])):
    params = {"commit": Param("", type="string"), "ref": Param("refs/heads/main", type="string"),
              "pr": Param(None, type=["null", "integer"]), "changed_paths": Param([], type="array")}
    with DAG(f"{name}-pipeline", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params=params) as dag:
        t = {p: KubernetesPodOperator(task_id=p, name=p, namespace="apps-dev", image="busybox", arguments=["x"]) for p in PODS}
        t |= {p: PythonOperator(task_id=p, python_callable=noop) for p in PY}
        t["is_release"] = ShortCircuitOperator(task_id="is_release", python_callable=noop)
        t["wait_dev"] = PythonSensor(task_id="wait_dev", python_callable=noop)
        t["validate"] >> [t["verify"], t["chart_validate"]]
        t["verify"] >> t["build"] >> t["image_ref"] >> [t["sbom"], t["scan"]]
        t["scan"] >> [t["scan_sarif"], t["scan_gate"]]
        [t["scan_gate"], t["sbom"], t["chart_validate"]] >> t["is_release"] >> t["sign"] >> t["attest_sbom"]
        t["attest_sbom"] >> t["deploy_dev"] >> t["wait_dev"] >> t["smoke_dev"]
        [t["wait_dev"], t["smoke_dev"]] >> t["rollback_dev"]
    globals()[name] = dag
'''

PROBE = '''
import sys, time
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
print(elapsed, len(bag.dags))
'''


def make_config(tmp: Path, count: int) -> Path:
    raw = yaml.safe_load((ROOT / "include/config/platform.yaml").read_text())
    base = raw["services"]["service-a"]
    raw["services"] = {f"svc-{i:04d}": {**base, "path": f"services/svc-{i:04d}/", "chart": f"services/svc-{i:04d}",
                                        "image": f"registry.local:5000/release/svc-{i:04d}"} for i in range(count)}
    path = tmp / f"platform-{count}.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp / f"services-{count}.json").write_text(json.dumps(list(raw["services"])))
    return path


def measure(dag_file: Path, env: dict, repeat: int) -> tuple[float, int]:
    best, dags = float("inf"), 0
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", PROBE, str(dag_file)], env=env, capture_output=True, text=True, check=True)
        seconds, dags = out.stdout.split()[-2:]
        best = min(best, float(seconds))
    return best, int(dags)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env |= {"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline_file = tmp / "baseline_dags.py"
        baseline_file.write_text(BASELINE)
        env["AIRFLOW_HOME"] = str(tmp / "airflow")
        print(f"{'services':>8} {'ours (s)':>9} {'baseline (s)':>12} {'ratio':>6} {'dags':>5}")
        ratios = {}
        for n in args.sizes:
            cfg = make_config(tmp, n)
            run_env = env | {"RELEASE_PLATFORM_CONFIG": str(cfg), "BENCH_SERVICES": str(tmp / f"services-{n}.json")}
            ours, dags = measure(DAG_FILE, run_env, args.repeat)
            base, _ = measure(baseline_file, run_env, args.repeat)
            ratios[n] = ours / base
            print(f"{n:>8} {ours:>9.3f} {base:>12.3f} {ours / base:>6.2f} {dags:>5}")
        single = {}
        for n in (1, max(args.sizes)):
            cfg = make_config(tmp, n)
            run_env = env | {"RELEASE_PLATFORM_CONFIG": str(cfg), "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "svc-0000-pipeline",
                             "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "build"}
            single[n], dags = measure(DAG_FILE, run_env, args.repeat)
            print(f"single-DAG build at {n} service(s): {single[n]:.3f}s ({dags} DAG built)")
    largest = max(args.sizes)
    single_ratio = single[largest] / single[1]
    print(f"parse ratio at {largest} services: {ratios[largest]:.2f}x (target <= 1.3x): "
          f"{'met' if ratios[largest] <= 1.3 else 'NOT met'}")
    print(f"single-DAG build, {largest} vs 1 service: {single_ratio:.2f}x (target <= 2x): "
          f"{'met' if single_ratio <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
