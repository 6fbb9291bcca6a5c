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
    assert {"umbrella-chart", "release-dispatch", "promote", "rollback", "velero-backups", "velero-restore-drill", "image-rescan",
            "service-a-pipeline", "service-b-pipeline", "service-c-pipeline"} <= set(bag.dag_ids)


def test_house_rules(bag):
    for dag_id, dag in bag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id}: doc_md says what it does"
        assert dag.tags and "release" in dag.tags, f"{dag_id}: tagged 'release'"
        assert dag.catchup is False, f"{dag_id}: catchup off"


def test_every_task_of_every_dag_notifies_when_it_fails(bag):
    from release.flows.notify import FailureNotifier

    for dag_id, dag in bag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(cb, FailureNotifier) for cb in callbacks), f"{dag_id}.{task.task_id} fails silently"


def test_a_failed_promote_check_is_named_a_blocked_promotion(bag):
    """The checks notify calls "Promotion blocked" are the promote DAG's own tasks (one list, in
    release.domain.gates): a renamed gate cannot fall back to a plain "task failed" unnoticed."""
    from release.domain.gates import PROMOTION_CHECKS
    from release.flows.notify import PROMOTION_BLOCKED, TASK_FAILED, classify

    tasks = set(bag.dags["promote"].task_ids)
    assert set(PROMOTION_CHECKS) <= tasks, sorted(set(PROMOTION_CHECKS) - tasks)
    blocked = {t for t in tasks if classify("promote", t)[0] == PROMOTION_BLOCKED}
    assert blocked == set(PROMOTION_CHECKS) | {t for t in tasks if t.startswith("approve_")}
    assert classify("promote", "hand_over")[0] == TASK_FAILED



def test_a_failed_backup_or_drill_is_named_for_what_it_is(bag, config):
    """notify tells a failed backup and a failed drill by the Velero DAGs' own task ids: every task
    of the backup group, and each drilled environment's report, and nothing else."""
    from release.flows.notify import BACKUP_FAILED, DRILL_FAILED, TASK_FAILED, classify

    backups = bag.dags["velero-backups"].task_ids
    assert {classify("velero-backups", t)[0] for t in backups if t != "environments"} == {BACKUP_FAILED}
    assert classify("velero-backups", "environments")[0] == TASK_FAILED
    drill = bag.dags["velero-restore-drill"].task_ids
    alerts = {t: classify("velero-restore-drill", t) for t in drill if classify("velero-restore-drill", t)[0] == DRILL_FAILED}
    assert alerts == {f"drill_{env}.report": (DRILL_FAILED, f"Restore drill failed ({env})") for env in config.drill_envs()}


NIGHTLY = {"velero-backups": "backups", "velero-restore-drill": "restore_drill", "image-rescan": "rescan"}


def test_nightly_dags_run_on_the_configured_utc_schedules(bag, config, tmp_path, monkeypatch):
    for dag_id, key in NIGHTLY.items():
        timetable = bag.dags[dag_id].timetable
        assert timetable.summary == getattr(config.nightly, key).schedule and str(timetable._timezone) == "UTC"
        assert bag.dags[dag_id].max_active_runs == 1  # a slow night never overlaps the next
    from tests.dags.test_promote import override_config

    override_config(tmp_path, monkeypatch, lambda raw: raw.update(nightly={k: {"schedule": "15 1 * * 1-5"} for k in NIGHTLY.values()}))
    changed = dagbag()
    assert all(changed.dags[d].timetable.summary == "15 1 * * 1-5" for d in NIGHTLY)


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
        assert set(dag.params) == {"commit", "ref", "pr", "changed_paths", "commit_time"}


def test_pools_sync_creates_the_builds_pool(airflow_db, config):
    from airflow.models.pool import Pool

    from release.cli import main

    assert main(["pools", "sync"]) == 0
    builds = Pool.get_pool("builds")
    # Build pods wait deferred: a pool that did not count them would not bound the builds.
    assert builds.slots == config.pipelines.builds_pool_slots and builds.include_deferred is True


def test_converge_rolls_out_the_commit_of_the_task_it_follows(bag, tmp_path, monkeypatch):
    """The revision a converge step waits for (Argo CD) or deploys (helm) is the commit its own
    apply or undo made, taken by reference (an XComArg of that task's `gitops_commit`), not a
    template string naming a task: a renamed task cannot roll out the wrong commit unnoticed."""
    from airflow.sdk import XComArg

    from release.flows.xcoms import APPLY, GITOPS_COMMIT, UNDO
    from tests.dags.test_promote import override_config

    def references(value) -> set[tuple[str, str]]:
        return {(op.task_id, key) for op, key in XComArg.iter_xcom_references(value)}

    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["staging"].update(deploy_strategy="helm"))
    seen = set()
    for dags in (bag, dagbag()):
        for env in ("dev", "staging", "prod"):
            dag = dags.dags[f"deploy-{env}"]
            for converge, source in (("converge", APPLY), ("converge_undo", UNDO)):
                task = dag.get_task(converge)
                assert dag.get_task(source).multiple_outputs, f"{env}: {source} pushes {GITOPS_COMMIT} as an XCom"
                if hasattr(task, "revision"):  # Argo CD: the sensor waits for that commit
                    assert references(task.revision) == {(source, GITOPS_COMMIT)}, (env, converge)
                    seen.add("argocd")
                    continue
                seen.add("helm")
                # helm: the verify-gitops init container proves that commit is in the checkout
                verify = next(c for c in task.init_containers if c.name == "verify-gitops")
                assert references(verify.args) == {(source, GITOPS_COMMIT)}, (env, converge)
                assert "xcom_pull(task_ids='%s', dag_id='deploy-%s', key='%s')" % (source, env, GITOPS_COMMIT) \
                    in " ".join(a for a in task.arguments if isinstance(a, str))  # helm history's description
    assert seen == {"argocd", "helm"}
