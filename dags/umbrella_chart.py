"""umbrella-chart: keep every environment's umbrella chart equal to the registry."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from release.flows.assets import REGISTRY
from release.domain.config import load_config
from release.flows.notify import on_failure

CONFIG = load_config()  # a broken config fails here, as an import error named in the UI

DOC = f"""
### Umbrella charts follow the registry

Every registry write regenerates `umbrella/<env>/` in the same commit, so this DAG
normally finds nothing to do. It runs after each registry change and on demand, and
verifies each environment's chart ({", ".join(CONFIG.env_order)}) against
`registry/versions.yaml`. If a chart drifted (a hand edit, a write from an older
platform version) it commits the regenerated files in one commit and lists them in the
log and in the task's return value.

It never "repairs" the registry itself: if `registry/versions.yaml` or `registry/history.yaml`
is broken (a hand edit that is not valid YAML, gives a key twice or a value of the wrong type),
the run fails at once naming the file and the line, and commits nothing.
"""


@dag(
    dag_id="umbrella-chart",
    schedule=[REGISTRY],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"on_failure_callback": on_failure()},
    tags=["release", "gitops"],
    doc_md=DOC,
)
def umbrella_chart():
    @task(retries=2)
    def reconcile() -> dict:
        from release.flows import outcome
        from release.gitops import umbrella
        from release.domain.config import load_config
        from release.domain.registry import RegistryFileError
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

    reconcile()


umbrella_chart()
