"""`umbrella-chart`: keep every environment's umbrella chart equal to the registry.

    reconcile (regenerate the charts that drifted, in one commit)
"""

from __future__ import annotations

from datetime import datetime

from release.domain.config import PlatformConfig

DAG_ID = "umbrella-chart"
RECONCILE = "reconcile"  # the task id; its XCom is {"drifted": [paths], "commit": sha or None}


def task_reconcile() -> dict:
    from release.domain.config import load_config
    from release.domain.registry import RegistryFileError
    from release.flows import outcome
    from release.gitops import umbrella
    from release.gitops.registry import Registry

    registry = Registry.from_config(load_config())
    try:
        drifted, sha = umbrella.reconcile(registry)
    except RegistryFileError as exc:  # retrying cannot help: a commit has to fix the file
        outcome.fail_task(f"registry broken, nothing regenerated: {exc}")
    if drifted:
        print(f"Regenerated {len(drifted)} drifted file(s) in commit {sha}:")
        for path in drifted:
            print(f"  {path}")
    else:
        print("Every umbrella chart matches the registry; nothing to commit.")
    return {"drifted": drifted, "commit": sha}


def umbrella_doc(config: PlatformConfig) -> str:
    return f"""
### Umbrella charts follow the registry

Every registry write regenerates `umbrella/<env>/` in the same commit, so this DAG
normally finds nothing to do. It runs after each registry change and on demand, and
verifies each environment's chart ({", ".join(config.env_order)}) against
`registry/versions.yaml`. If a chart drifted (a hand edit, a write from an older
platform version) it commits the regenerated files in one commit and lists them in the
log and in the task's return value.

It never "repairs" the registry itself: if `registry/versions.yaml` or `registry/history.yaml`
is broken (a hand edit that is not valid YAML, gives a key twice or a value of the wrong type),
the run fails at once naming the file and the line, and commits nothing.
"""


def build_umbrella_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from release.flows.assets import REGISTRY
    from release.flows.notify import on_failure

    with DAG(
        dag_id=DAG_ID,
        schedule=[REGISTRY],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"on_failure_callback": on_failure()},
        tags=["release", "gitops"],
        doc_md=umbrella_doc(config),
    ) as dag:
        PythonOperator(task_id=RECONCILE, python_callable=task_reconcile, retries=2)
    return dag
