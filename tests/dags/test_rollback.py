"""rollback with dag.test(): to the previous version, to an explicit older one, never to a never-deployed one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from release.gitops.registry import Registry, ensure_local_repo
from tests.dags.test_promote import (as_user, gh, github_deployment, github_states, hitl_open, last_run,  # noqa: F401 - shared fixtures
                                    mark_success_by_hand, outcome_of, override_config, release, sha, wait_for_state)
from tests.dags.conftest import deploy_result
from tests.helpers import answer_approval, run_dag_test

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def staging(airflow_db, data_dir, config, sandbox):
    ensure_local_repo(config)
    registry = Registry.from_config(config)
    for version, char in [("1.0", "1"), ("1.1", "2"), ("1.2", "3")]:
        registry.record_deployment("staging", [release(config, "service-a", version, char)], by="alice", run_id=version)
    sandbox.call(sandbox.ensure_application, *config.argocd_application("staging"), "staging")
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1}, "applications": [{"delay_seconds": 0.1}]}
    return registry


def rollback(params: dict) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    # Written to the database as parsed now: a test's config may add an approval task, and the
    # API (marking a task success by hand) finds tasks in the DAG's latest serialized version.
    dagrun = run_dag_test(DagBag(dag_folder=str(DAGS / "rollback.py")).get_dag("rollback"),
                          run_conf={"service": "service-a", "env": "staging", "reason": "errors after 1.2", **params})
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def test_rollback_to_the_previous_version(staging, as_user, sandbox, deploy_runs, gh):  # noqa: F811
    github_deployment("service-a", "staging", "3")  # 1.2, what staging runs, as GitHub shows it
    states = rollback({})
    assert states["hand_over"] == "success", states
    [(deploy_dag, deploy_run)] = deploy_runs
    assert deploy_dag == "deploy-staging" and deploy_result(deploy_dag, deploy_run)[2]["smoke[0]"] == "success"
    current = staging.state("staging")["service-a"]
    assert current.version == "1.1" and current.evidence["smoke"]["passed"] is True
    last = staging.history(env="staging", service="service-a")
    assert [(e.version, e.action, e.outcome) for e in last[-2:]] == [("1.2", "deploy", "rolled_back"), ("1.1", "rollback", "deployed")]
    assert last[-1].reason == "errors after 1.2" and last[-1].by == "alice"
    app = sandbox.get("applications", "argocd", "umbrella-staging")
    assert app["status"]["sync"]["status"] == "Synced"
    assert last_run("rollback") == ("success", "rolled service-a in staging back from 1.2 to 1.1, "
                                               f"commit {app['status']['sync']['revision'][:12]}; smoke test passed "
                                               f"(deploy-staging run {deploy_run})")
    # GitHub's Environments page: staging runs 1.1's commit again; 1.2's deployment is inactive.
    assert github_states(gh, "staging") == {("service-a", sha("3")): ["success", "inactive"],
                                            ("service-a", sha("2")): ["in_progress", "success"]}
    assert gh.deployments("staging")[-1]["description"] == "service-a 1.1 (rollback by alice)"


def test_rollback_to_an_explicit_older_version(staging, as_user):  # noqa: F811
    rollback({"to_version": "1.0"})
    assert staging.state("staging")["service-a"].version == "1.0"


@pytest.mark.parametrize("params,message", [
    ({"to_version": "0.9"}, "to_version: '0.9' was never successfully deployed to staging before 1.2; allowed: 1.1, 1.0"),
    ({"to_version": "1.2"}, "allowed: 1.1, 1.0"),
    ({"env": "prod"}, "service: 'service-a' does not run in prod"),
    ({"reason": ""}, "reason: required"),
])
def test_refused(staging, as_user, capfd, params, message):  # noqa: F811
    from airflow.sdk.exceptions import ParamValidationError

    before = staging.store.read("registry/versions.yaml")
    try:
        states = rollback(params)
    except ParamValidationError as exc:  # the trigger form's schema refused it first
        assert f"param {next(iter(params))}" in str(exc)
    else:
        assert states["validate"] == "failed" and message in capfd.readouterr().out
        state, note = last_run("rollback")
        assert state == "failed" and note.startswith("refused: ") and message in note, note
    assert staging.store.read("registry/versions.yaml") == before


def test_deploy_waits_with_the_environments_own_sync_timeout(config):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "deploy.py"))
    for env in config.env_order:
        converge = bag.dags[f"deploy-{env}"].get_task("converge")
        assert converge.timeout_seconds == config.environments[env].argocd.sync_timeout_minutes * 60


def test_rollback_approval_refuses_the_requester_and_waits_for_another(staging, as_user, monkeypatch, tmp_path):  # noqa: F811
    """Where the environment's policy asks for approval of rollbacks, alice (who asked) is refused
    by Airflow and bob's answer on the same run lets the rollback happen."""
    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["staging"].update(
        approval={"required": False, "required_for_rollback": True, "approvers": ["alice", "bob"]}))
    result = {}

    def alice_then_bob():
        result["alice"] = answer_approval("rollback", "approve_staging", "alice")
        result["open"] = hitl_open("rollback", "approve_staging")
        result["bob"] = answer_approval("rollback", "approve_staging", "bob")

    thread = threading.Thread(target=alice_then_bob)
    thread.start()
    states = rollback({})
    thread.join()
    assert result["alice"]["status"] == 403 and result["open"] is True and result["bob"]["status"] == 200, result
    assert states["hand_over"] == "success", states
    current = staging.state("staging")["service-a"]
    assert (current.version, current.deployed_by, current.approved_by) == ("1.1", "alice", "bob")
    assert staging.history(env="staging")[-1].approved_by == "bob"
    state, note = last_run("rollback")
    assert state == "success" and "smoke test passed; approved by bob (deploy-staging run" in note, note


def test_rollback_approval_marked_success_by_hand_rolls_nothing_back(staging, as_user, monkeypatch, tmp_path,  # noqa: F811
                                                                     deploy_runs):
    """Where rollbacks need approval, marking the approval "success" in the UI hands the change
    over, and deploy-staging finds no answered approval of this run: no commit."""
    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["staging"].update(
        approval={"required": False, "required_for_rollback": True, "approvers": ["alice", "bob"]}))
    before = staging.store.read("registry/versions.yaml")

    def skip_the_gate():
        run_id = wait_for_state("rollback", "approve_staging", ("awaiting_input",))
        mark_success_by_hand("rollback", run_id, "approve_staging")

    thread = threading.Thread(target=skip_the_gate)
    thread.start()
    states = rollback({})
    thread.join()
    assert states["hand_over"] == "failed", states
    assert staging.store.read("registry/versions.yaml") == before
    assert staging.state("staging")["service-a"].version == "1.2"
    [(deploy_dag, deploy_run)] = deploy_runs
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    assert tasks["apply"] == "failed" and tasks["converge"] == "upstream_failed", tasks
    assert note == ("refused: nothing was written to the environment: approval: approve_staging of this run recorded no "
                    "answer (was it marked success by hand?); a rollback to staging needs an approval answered in Airflow")
