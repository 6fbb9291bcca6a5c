"""The umbrella-chart DAG, run for real with dag.test() against a real GitOps repository."""

from __future__ import annotations

from pathlib import Path

import git
import yaml

from release.gitops.store import GitOpsStore
from release.gitops.registry import ensure_local_repo
from release.gitops.registry import Registry
from tests.helpers import request_for

DAGS = Path(__file__).resolve().parents[2] / "dags"


def run_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "umbrella_chart.py")).get_dag("umbrella-chart")
    dagrun = dag.test()
    ti = dagrun.get_task_instance("reconcile")
    return dagrun.state, ti


def test_repairs_a_drifted_chart_then_finds_nothing(airflow_db, data_dir, config):
    repo = ensure_local_repo(config)
    registry = Registry.from_config(config)
    registry.record_deployment("prod", [request_for(config, "service-b", "5.0.0", "f")], by="alice", run_id="r")
    store = GitOpsStore(repo.as_uri())
    store.change(lambda t: ((t / "umbrella/prod/values.yaml").write_text("service-b: {}\n"), "hand edit")[1])
    hand_edit = git.Repo(repo).commit("main").hexsha

    state, ti = run_dag()
    assert state == "success"
    fix = git.Repo(repo).commit("main")
    assert fix.parents[0].hexsha == hand_edit
    assert fix.message.startswith("Regenerate umbrella charts that drifted from the registry")
    assert ti.xcom_pull(task_ids="reconcile") == {"drifted": ["umbrella/prod/values.yaml"], "commit": fix.hexsha}
    assert yaml.safe_load(store.read("umbrella/prod/values.yaml"))["service-b"]["version"] == "5.0.0"

    state, ti = run_dag()
    assert state == "success"
    assert git.Repo(repo).commit("main").hexsha == fix.hexsha  # nothing to do, nothing written


def test_a_broken_registry_is_reported_with_file_and_line_and_nothing_is_repaired(airflow_db, data_dir, config):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    repo = ensure_local_repo(config)
    registry = Registry.from_config(config)
    registry.record_deployment("prod", [request_for(config, "service-b", "5.0.0", "f")], by="alice", run_id="r")
    store = GitOpsStore(repo.as_uri())

    def hand_edit(tree: Path) -> str:
        versions = tree / "registry/versions.yaml"
        versions.write_text(versions.read_text().replace("  dev: {}\n", "  dev:\n  - service-b\n"))
        (tree / "umbrella/prod/values.yaml").write_text("service-b: {}\n")  # drift it would otherwise repair
        return "hand edit"

    store.change(hand_edit)
    broken = git.Repo(repo).commit("main").hexsha
    line = store.read("registry/versions.yaml").splitlines().index("  dev:") + 1

    state, ti = run_dag()
    assert state == "failed" and ti.state == "failed"
    assert ti.try_number == 1  # not retried: only a commit can fix the file
    assert git.Repo(repo).commit("main").hexsha == broken  # nothing "fixed", nothing written
    with create_session() as session:
        note = session.query(DagRun).filter(DagRun.dag_id == "umbrella-chart").order_by(DagRun.id.desc()).first().note
    assert note.startswith(f"registry broken, nothing regenerated: registry/versions.yaml, line {line}: "
                           "environments.dev: must be a mapping, not a list")
