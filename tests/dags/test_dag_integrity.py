"""Every DAG file imports cleanly, follows the house rules, and a broken config is named."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def bag():
    return dagbag()


def test_no_import_errors(bag):
    assert bag.import_errors == {}


def test_expected_dags_exist(bag):
    assert {"umbrella-chart", "release-dispatch", "promote", "rollback",
            "service-a-pipeline", "service-b-pipeline", "service-c-pipeline"} <= set(bag.dag_ids)


def test_house_rules(bag):
    for dag_id, dag in bag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id}: doc_md says what it does"
        assert dag.tags and "release" in dag.tags, f"{dag_id}: tagged 'release'"
        assert dag.catchup is False, f"{dag_id}: catchup off"


def test_broken_config_is_an_import_error_naming_the_problem(tmp_path, monkeypatch):
    bad = tmp_path / "platform.yaml"
    bad.write_text((Path(__file__).resolve().parents[2] / "include/config/platform.yaml").read_text()
                   .replace("deploy_strategy: argocd", "deploy_strategy: kubectl", 1))
    monkeypatch.setenv("RELEASE_PLATFORM_CONFIG", str(bad))
    errors = dagbag().import_errors
    assert errors, "a broken config must surface in the UI"
    message = "\n".join(errors.values())
    assert str(bad) in message and "environments.dev.deploy_strategy" in message and "'argocd' or 'helm'" in message


def test_pipelines_for_every_service_and_their_builds_share_a_pool(bag, config):
    for service in config.services:
        dag = bag.dags[f"{service}-pipeline"]
        assert dag.max_active_runs == 1
        assert dag.get_task("build").pool == "builds"
        assert set(dag.params) == {"commit", "ref", "pr", "changed_paths"}


def test_pools_sync_creates_the_builds_pool(airflow_db, config):
    from airflow.models.pool import Pool

    from release.cli import main

    assert main(["pools", "sync"]) == 0
    assert Pool.get_pool("builds").slots == config.pipelines.builds_pool_slots
