"""promote with dag.test(): gates, the real HITL approval answered through the Core API, one commit, rollback."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from release.gitops.registry import ensure_local_repo
from release.domain.registry import DeployRequest
from release.gitops.registry import Registry
from release.domain.scan import ScanPolicy, evaluate_report
from tests.dags.conftest import deploy_result, deploy_xcom
from tests.helpers import answer_approval, assert_pods_meet_restricted, digest, head

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"


def evidence(report: str = "alpine-310.json", smoke: bool = True, commit: str | None = None) -> dict:
    summary = evaluate_report(json.loads((TRIVY / report).read_text()), ScanPolicy(), date.today()).to_dict()
    return {"scan": summary, "smoke": {"passed": smoke, "run_id": "pipeline-run"} if smoke else None,
            **({"commit": commit} if commit else {})}


def sha(char: str) -> str:
    """The app-repo commit a test version was built from (the registry's evidence.commit)."""
    return char * 40


def release(config, service: str, version: str, char: str, **kw) -> DeployRequest:
    kw.setdefault("commit", sha(char))
    return DeployRequest(service, version, f"{config.services[service].image}@{digest(char)}", evidence(**kw))


@pytest.fixture
def gh(github):
    """The GitHub stand-in, with the process's GitHub clients and any pause after a failure forgotten."""
    from release.github import outbound

    outbound.reset()
    yield github
    outbound.reset()


def github_deployment(service: str, env: str, char: str) -> int:
    """A deployment an earlier deploy-<env> run left on GitHub (successful), as the stand-in keeps it."""
    from release.domain.config import load_config
    from release.github import outbound

    config = load_config()
    made = outbound.call(config, "POST", "/deployments", json={
        "ref": sha(char), "environment": env, "task": f"deploy:{service}", "required_contexts": [], "auto_merge": False})
    outbound.call(config, "POST", f"/deployments/{made['id']}/statuses", json={"state": "success", "auto_inactive": False})
    return made["id"]


def github_states(github, env: str) -> dict[tuple[str, str], list[str]]:
    """(service, commit) -> the states of that deployment's statuses, oldest first."""
    return {(d["task"].removeprefix("deploy:"), d["ref"]): [s["state"] for s in d["statuses"]]
            for d in github.deployments(env)}


@pytest.fixture
def world(airflow_db, data_dir, config, sandbox, monkeypatch):
    """dev runs a 1.1 and b 2.0; staging runs a 1.0 and b 2.0; the Applications exist."""
    ensure_local_repo(config)
    registry = Registry.from_config(config)
    registry.record_deployment("staging", [release(config, "service-a", "1.0", "1"), release(config, "service-b", "2.0", "2")],
                               by="alice", run_id="r0")
    registry.record_deployment("dev", [release(config, "service-a", "1.0", "1"), release(config, "service-b", "2.0", "2")],
                               by="alice", run_id="r1")
    registry.record_deployment("dev", [release(config, "service-a", "1.1", "3")], by="alice", run_id="r2")
    for env in config.env_order:
        sandbox.call(sandbox.ensure_application, *config.argocd_application(env), env)
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1}, "applications": [{"delay_seconds": 0.1}]}
    return registry


@pytest.fixture
def as_user(monkeypatch):
    """dag.test() records every run as triggered by 'dag_test'; let a test say who triggered it."""
    import airflow.models.dagrun as dagrun_module

    original = dagrun_module.get_or_create_dagrun
    who = {"user": "alice"}

    def get_or_create(**kwargs):
        return original(**{**kwargs, "triggering_user_name": who["user"]})

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", get_or_create)
    return who


def override_config(tmp_path, monkeypatch, mutate) -> None:
    """Run the DAG under a changed copy of the platform config (DAGs and tasks read the file)."""
    from release.domain.config import DEFAULT_CONFIG_PATH

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    mutate(raw)
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # environments keep their promotion order
    monkeypatch.setenv("RELEASE_PLATFORM_CONFIG", str(path))


def last_run(dag_id: str) -> tuple[str, str | None]:
    """The state and note of the DAG's newest run, as the metadata database (and so the UI and
    the REST API) holds them."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        return run.state, run.note


def dagrun_id(dag_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first().run_id


def api_get(path: str, user: str = "alice") -> dict:
    """GET a Core REST API route as `user` would."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    resp = TestClient(create_app("core")).get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def promote(params: dict, answer: tuple[str, str] | None = None, approval_task: str = "approve_prod"):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "promote.py")).get_dag("promote")
    response = {}
    thread = None
    if answer:
        thread = threading.Thread(target=lambda: response.update(answer_approval("promote", approval_task, *answer)))
        thread.start()
    dagrun = dag.test(run_conf=params)
    if thread:
        thread.join()
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}, response


def test_dev_to_staging_moves_the_exact_digest_in_one_commit(world, config, sandbox, as_user, deploy_runs, gh):
    before = len(world.history())
    replaced = github_deployment("service-a", "staging", "1")  # staging's 1.0, deployed earlier
    gh.seed_compare(sha("1"), sha("3"), files=["services/service-a/login.py", "docs/index.md"], commits=[
        {"sha": "a" * 40, "message": "Merge pull request #12 from octo/login\n\nFix login", "login": "octocat",
         "files": ["services/service-a/login.py"]},
        {"sha": "b" * 40, "message": "Docs only", "login": "hubot", "files": ["docs/index.md"]}])
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "weekly"})
    assert states["hand_over"] == "success", states
    [(deploy_dag, deploy_run)] = deploy_runs
    assert (deploy_dag, deploy_run) == ("deploy-staging", f"promote.{dagrun_id('promote')}")
    assert states["needs_approval"] == "success" and states["no_approval"] == "success" and states["approve_prod"] == "skipped"
    staging, dev = world.state("staging")["service-a"], world.state("dev")["service-a"]
    assert (staging.version, staging.image) == (dev.version, dev.image) == ("1.1", staging.image)
    assert staging.deployed_by == "alice" and staging.evidence["promoted_from"] == "dev"
    assert staging.evidence["smoke"]["passed"] is True  # smoke passed in staging, recorded
    synced = sandbox.get("applications", "argocd", "umbrella-staging")["status"]["sync"]["revision"]  # the deploy's commit
    line = f"deployed service-a 1.1 to staging, commit {synced[:12]}"
    assert deploy_result(deploy_dag, deploy_run)[:2] == ("success", line)  # staging's deployment log says it
    changes = "changes: service-a: 1 commit(s), PRs #12 by octocat"  # what was promoted, from GitHub
    note = f"{line} (deploy-staging run {deploy_run}); {changes}"
    assert last_run("promote") == ("success", note)
    body = deploy_xcom("promote", dagrun_id("promote"), "validate")["body"]  # the approval request's body
    assert "- **service-a**: 1 commit(s) by octocat; merged PRs: [#12](https://github.com/example-org/app/pull/12)" in body
    assert f"  - [`{'a' * 12}`](https://github.com/example-org/app/commit/{'a' * 40}) Merge pull request #12" in body
    assert "Docs only" not in body  # it does not touch service-a
    # GitHub's Environments page: staging runs 1.1's commit; the deployment it replaced is inactive.
    assert github_states(gh, "staging") == {("service-a", sha("1")): ["success", "inactive"],
                                            ("service-a", sha("3")): ["in_progress", "success"]}
    assert [d["id"] for d in gh.deployments("staging")][0] == replaced
    run = api_get(f"/api/v2/dags/promote/dagRuns/{dagrun_id('promote')}")  # what the UI and scripts see
    assert (run["state"], run["note"]) == ("success", note)
    entry = world.history(env="staging", service="service-a")[-1]
    assert (entry.previous_version, entry.version, entry.reason) == ("1.0", "1.1", "weekly")
    assert len(world.history()) == before + 1
    umbrella = yaml.safe_load(world.store.read("umbrella/staging/values.yaml"))
    assert umbrella["service-a"]["image"]["digest"] == digest("3")
    verify_pods = [e[3] for e in sandbox.call(lambda: list(sandbox.store.events))
                   if e[1] == "pods" and e[2] == "ADDED" and e[3]["metadata"]["labels"]["release-platform/step"] == "verify-signatures"]
    assert verify_pods and verify_pods[0]["spec"]["containers"][0]["args"][-1] == dev.image
    assert_pods_meet_restricted(sandbox, {"verify-signatures", "smoke-staging"})


def prod_ready(world, config):
    world.record_deployment("staging", [release(config, "service-a", "1.1", "3")], by="alice", run_id="r3")


def test_the_requester_is_refused_and_another_approver_still_can_answer(world, config, as_user):
    """alice triggered the run: Airflow refuses her answer without using up the request, and bob's
    answer on the same run deploys."""
    prod_ready(world, config)
    result = {}

    def alice_then_bob():
        result["alice"] = answer_approval("promote", "approve_prod", "alice", "Approve")
        result["open"] = hitl_open("promote", "approve_prod")
        result["pending"] = api_get("/release/api/pending", user="carol")  # the Releases view's Pending page
        result["bob"] = answer_approval("promote", "approve_prod", "bob", "Approve")

    thread = threading.Thread(target=alice_then_bob)
    thread.start()
    states, _ = promote({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "release 1.1"})
    thread.join()
    assert result["alice"]["status"] == 403 and "not a respondent" in str(result["alice"]["body"]), result
    assert result["open"] is True  # her answer did not use up the request
    [waiting] = result["pending"]["approvals"]
    assert (waiting["dag_id"], waiting["task_id"], waiting["assigned_users"]) == ("promote", "approve_prod", ["bob"]), result
    assert [r["dag_id"] for r in result["pending"]["queued"]] == ["promote"], result["pending"]
    assert result["bob"]["status"] == 200 and states["hand_over"] == "success", (states, result)
    prod = world.state("prod")["service-a"]
    assert (prod.version, prod.deployed_by, prod.evidence["approved_by"]) == ("1.1", "alice", "bob")
    state, note = last_run("promote")
    assert state == "success" and note.startswith("deployed service-a 1.1 to prod, commit ") and "; approved by bob (deploy-prod run" in note


def hitl_open(dag_id: str, task_id: str) -> bool:
    """The task still waits for an answer and none was recorded."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                                                TaskInstance.state == "awaiting_input").first()
        detail = ti and session.query(HITLDetail).filter(HITLDetail.ti_id == ti.id).one()
        return bool(detail) and not detail.response_received


def test_a_run_whose_only_approver_is_its_requester_fails_at_once(world, config, as_user, monkeypatch, tmp_path):
    prod_ready(world, config)
    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["prod"]["approval"].update(approvers=["alice"]))
    states, _ = promote({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "mine"})
    assert states["approve_prod"] == "failed" and states["hand_over"] in ("upstream_failed", "skipped"), states
    assert "service-a" not in world.state("prod")
    assert last_run("promote") == ("failed", "refused: approval: alice requested this promotion and is its only "
                                             "approver (alice); another approver must be configured")


def test_someone_not_assigned_cannot_answer(world, config, as_user):
    prod_ready(world, config)
    as_user["user"] = "carol"
    result = {}

    def answer_then_reject():
        result["carol"] = answer_approval("promote", "approve_prod", "carol", "Approve")
        result["bob"] = answer_approval("promote", "approve_prod", "bob", "Reject")

    thread = threading.Thread(target=answer_then_reject)
    thread.start()
    from airflow.dag_processing.dagbag import DagBag

    DagBag(dag_folder=str(DAGS / "promote.py")).get_dag("promote").test(
        run_conf={"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "x"})
    thread.join()
    assert result["carol"]["status"] == 403
    assert result["bob"]["status"] == 200
    assert "service-a" not in world.state("prod")


def test_rejection_deploys_nothing(world, config, as_user):
    prod_ready(world, config)
    head = world.store.read("registry/versions.yaml")
    states, _ = promote({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "x"},
                        answer=("bob", "Reject"))
    # A rejection fails the approval: the run that deployed nothing is red and says who said no.
    assert states["approve_prod"] == "failed" and states["hand_over"] in ("upstream_failed", "skipped")
    assert world.store.read("registry/versions.yaml") == head
    assert last_run("promote") == ("failed", "rejected by bob")


def test_no_answer_in_time_deploys_nothing(world, config, as_user, monkeypatch, tmp_path):
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    prod_ready(world, config)
    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["prod"]["approval"].update(response_timeout_minutes=0.02))

    def time_out():
        import time

        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        def parked() -> bool:
            with create_session() as session:
                return session.query(TaskInstance).filter(TaskInstance.task_id == "approve_prod",
                                                          TaskInstance.state == "awaiting_input").count() > 0

        deadline = time.monotonic() + 60
        while not parked() and time.monotonic() < deadline:
            time.sleep(0.2)
        while parked() and time.monotonic() < deadline:
            time.sleep(1.5)  # past the 1.2 s response timeout
            SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()  # the scheduler's own sweep

    thread = threading.Thread(target=time_out)
    thread.start()
    states, _ = promote({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "x"})
    thread.join()
    assert states["approve_prod"] == "failed" and states["hand_over"] in ("upstream_failed", "skipped")
    assert "service-a" not in world.state("prod")
    assert last_run("promote") == ("failed", "not approved: no answer in time from bob")


@pytest.mark.parametrize("params,message", [
    ({"services": ["service-z"]}, "services: 'service-z' is not a service of dev and staging"),
    ({"from_env": "prod", "to_env": "dev"}, "from_env: 'prod' is not allowed; allowed: dev, staging"),
    ({"from_env": "dev", "to_env": "prod"}, "to_env: 'prod' is not allowed from dev; allowed: staging"),
    ({"version": "0.9"}, "version: '0.9' of service-a was never successfully deployed in dev; allowed: 1.1, 1.0"),
    ({"version": "1.0; rm -rf /"}, "version: '1.0; rm -rf /' is not allowed"),
    ({"from_env": "../prod"}, "from_env: '../prod' is not allowed"),
    ({"services": ["x" * 10_000]}, "services: 'xxxxxxxx"),
    ({"reason": "x" * 10_000}, "reason: at most 500 characters"),
    ({"from_env": "staging", "to_env": "prod", "reason": ""}, "reason: required for a promotion to prod"),
])
def test_refused_before_anything_is_written(world, config, sandbox, as_user, capfd, params, message):
    from airflow.sdk.exceptions import ParamValidationError

    head = world.store.read("registry/versions.yaml")
    try:
        states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "r", **params})
    except ParamValidationError as exc:  # the trigger form's schema (enum, maxLength) refused it first
        assert f"param {next(iter(params))}" in str(exc)
    else:
        assert states["validate"] == "failed"
        assert message in capfd.readouterr().out
        state, note = last_run("promote")
        assert state == "failed" and note.startswith("refused: ") and message[:60] in note, note
    assert world.store.read("registry/versions.yaml") == head and not sandbox.seen("POST", "/pods")


@pytest.mark.parametrize("case,expected,note", [
    ("unsigned", "verify_signatures", "failed: verify_signatures failed (see the task log)"),
    ("scan", "gate_scan", "refused: gate scan: service-a 1.2 under staging's policy"),
    ("freeze", "gate_freeze", "refused: gate freeze: staging is frozen until"),
    ("smoke", "gate_smoke", "refused: gate smoke: no passed smoke test in dev is recorded for: service-a 1.2"),
])
def test_gates_refuse(world, config, sandbox, as_user, monkeypatch, tmp_path, case, expected, note):
    if case == "unsigned":
        sandbox.scenario = {"pods": [{"match": {"labels": {"release-platform/step": "verify-signatures"}}, "exit_code": 1,
                                      "logs": ["Error: no matching signatures"]}], "default_pod": {"duration_seconds": 0.1}}
    elif case == "scan":
        world.record_deployment("dev", [release(config, "service-a", "1.2", "4", report="alpine-39.json")], by="a", run_id="r")
    elif case == "freeze":
        now = datetime.now(timezone.utc)
        override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["staging"].update(
            freeze_policy="fail", freeze=[{"start": (now - timedelta(hours=1)).isoformat(),
                                           "end": (now + timedelta(hours=1)).isoformat(), "reason": "year-end freeze"}]))
    elif case == "smoke":
        world.record_deployment("dev", [release(config, "service-a", "1.2", "4", smoke=False)], by="a", run_id="r")
    head = world.store.read("registry/versions.yaml")
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "r"})
    assert states[expected] == "failed", states
    assert states["hand_over"] in ("upstream_failed", "skipped")
    assert world.store.read("registry/versions.yaml") == head
    state, written = last_run("promote")
    assert state == "failed" and written.startswith(note), written


def test_failed_smoke_in_prod_rolls_back_every_promoted_service_in_one_commit(world, config, sandbox, as_user,
                                                                             deploy_runs, gh):
    """Two services promoted to prod together; their smoke tests fail: deploy-prod puts both back
    in one commit, smoke-tests them again (passing), and the promote run fails with its message."""
    world.record_deployment("prod", [release(config, "service-a", "1.0", "1"), release(config, "service-b", "2.0", "2")],
                            by="alice", run_id="r")
    world.record_deployment("staging", [release(config, "service-a", "1.1", "3"), release(config, "service-b", "2.1", "5")],
                            by="alice", run_id="r")
    sandbox.scenario = {"pods": [{"match": {"task_id": "smoke"}, "exit_code": 1, "logs": ["http://.../healthz 503"]}],
                        "default_pod": {"duration_seconds": 0.1}, "applications": [{"delay_seconds": 0.1}]}
    states, response = promote({"services": ["*"], "from_env": "staging", "to_env": "prod", "reason": "r"},
                               answer=("bob", "Approve"))
    assert response["status"] == 200 and states["hand_over"] == "failed", states
    [(deploy_dag, deploy_run)] = deploy_runs
    state, deploy_note, tasks = deploy_result(deploy_dag, deploy_run)
    assert (tasks["smoke[0]"], tasks["smoke[1]"], tasks["undo"]) == ("failed", "failed", "success"), tasks
    assert (tasks["smoke_after_undo[0]"], tasks["smoke_after_undo[1]"]) == ("success", "success"), tasks
    now = world.state("prod")
    assert (now["service-a"].version, now["service-b"].version) == ("1.0", "2.0")
    for service, story in (("service-a", ("1.1", "1.0")), ("service-b", ("2.1", "2.0"))):
        assert [(e.version, e.action, e.outcome) for e in world.history(env="prod", service=service)][-2:] == [
            (story[0], "deploy", "failed"), (story[1], "rollback", "deployed")]
    import git

    tip = git.Repo(world.store.url.removeprefix("file://")).commit("main")
    assert tip.message.startswith("Roll back service-a, service-b in prod")  # one commit for both
    what = ("the smoke test of service-a, service-b in prod failed after promotion of service-a 1.1, service-b 2.1; "
            f"rolled prod back to service-a 1.0, service-b 2.0 (commit {head(world.store.url)[:12]})")
    assert (state, deploy_note) == ("failed", what)
    # prod's comparisons were never seeded: the approver is told the list is unavailable, and the note says so.
    assert last_run("promote") == ("failed", f"{what} (deploy-prod run {deploy_run}); "
                                             "changes: service-a: changes unavailable; service-b: changes unavailable")
    # GitHub: the promoted versions' deployments failed; the automatic rollback's deployments of the
    # versions put back succeeded (nothing was on GitHub for prod before, so nothing turned inactive).
    assert github_states(gh, "prod") == {("service-a", sha("3")): ["in_progress", "failure"],
                                         ("service-b", sha("5")): ["in_progress", "failure"],
                                         ("service-a", sha("1")): ["in_progress", "success"],
                                         ("service-b", sha("2")): ["in_progress", "success"]}
    assert all(d["production_environment"] for d in gh.deployments("prod"))
    assert_pods_meet_restricted(sandbox, {"verify-signatures", "smoke-prod"})


@pytest.mark.parametrize("expect_status", [204, None])
def test_each_service_is_smoke_tested_with_its_own_settings(world, config, sandbox, as_user, monkeypatch, tmp_path,
                                                           deploy_runs, expect_status):
    """service-b's /healthz answers 204 only. With `expect_status: 204` (and its own retries and
    interval) a promotion of both services passes; without it (the default 200) service-b's smoke
    test fails, naming service-b, and the whole change set is rolled back."""
    world.record_deployment("dev", [release(config, "service-b", "2.1", "5")], by="alice", run_id="r")

    def settings(raw):
        raw["services"]["service-a"]["smoke"].update(retries=1, interval_seconds=2)
        raw["services"]["service-b"]["smoke"].update(retries=3, interval_seconds=7,
                                                     **({"expect_status": expect_status} if expect_status else {}))
    override_config(tmp_path, monkeypatch, settings)
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1}, "applications": [{"delay_seconds": 0.1}],
                        "http": [{"match": {"host": "service-b.*"}, "status": 204}]}
    states, _ = promote({"services": ["service-a", "service-b"], "from_env": "dev", "to_env": "staging", "reason": "r"})
    [(deploy_dag, deploy_run)] = deploy_runs
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    smoke_a, smoke_b = (deploy_xcom(deploy_dag, deploy_run, "smoke", map_index=i) for i in (0, 1))
    pods = {p["metadata"]["labels"]["release-platform/service"]: p["spec"]["containers"][0]["args"]
            for p in sandbox.received("pods") if p["metadata"]["labels"].get("task_id") == "smoke"}
    args_b = pods["service-b"]
    assert args_b[args_b.index("--retries") + 1] == "3" and args_b[args_b.index("--interval") + 1] == "7", args_b
    args_a = pods["service-a"]
    assert args_a[args_a.index("--retries") + 1] == "1" and args_a[args_a.index("--interval") + 1] == "2", args_a
    assert [c["url"] for c in smoke_a["checks"]] == [f"http://service-a.apps-staging.svc.cluster.local:8080{p}"
                                                     for p in ("/healthz", "/ready")]
    if expect_status:
        assert states["hand_over"] == "success" and state == "success", (states, tasks)
        assert smoke_b["passed"] is True and smoke_b["expect_status"] == 204
        assert [c["status"] for c in smoke_b["checks"]] == [204]
        assert world.state("staging")["service-b"].version == "2.1"
    else:
        assert states["hand_over"] == "failed" and (tasks["smoke[0]"], tasks["smoke[1]"]) == ("success", "failed"), tasks
        assert world.state("staging")["service-b"].version == "2.0" and world.state("staging")["service-a"].version == "1.0"
        assert note.startswith("the smoke test of service-b in staging failed after promotion of service-a 1.1, "
                               "service-b 2.1; rolled staging back to service-a 1.0, service-b 2.0"), note
        assert last_run("promote") == ("failed", f"{note} (deploy-staging run {deploy_run})")


def form_blocks_trigger(param: dict) -> bool:
    """Whether Airflow 3.3's trigger form keeps Trigger disabled for this param as it opens: the
    UI (airflow/ui/dist, `isRequired`) requires a param whose schema has a type without "null",
    and counts a null or "" value as missing."""
    kind = param["schema"].get("type")
    required = bool(kind) and (not isinstance(kind, list) or "null" not in kind)
    return required and param["value"] in (None, "")


def test_trigger_forms_require_what_the_run_requires(config):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    blocking = {dag_id: {name for name in bag.dags[dag_id].params
                         if form_blocks_trigger(bag.dags[dag_id].params.get_param(name).dump())}
                for dag_id in ("promote", "rollback", "service-a-pipeline")}
    # promote: reason is required only for prod, which validate checks; the form accepts it empty.
    # rollback always needs a reason; a pipeline run needs its commit.
    assert blocking == {"promote": set(), "rollback": {"reason"}, "service-a-pipeline": {"commit"}}
    reason = bag.dags["promote"].params.get_param("reason")
    assert reason.description == "why; required for a promotion to prod"
    reason.resolve("")  # the schema itself accepts an empty reason ...
    reason.resolve(None)


# -- approvals that cannot be skipped ---------------------------------------------------------


def wait_for_state(dag_id: str, task_id: str, states: tuple[str, ...], timeout: float = 60.0) -> str:
    """The run id of the newest run once its `task_id` is in one of `states` (polls the metadata DB)."""
    import time

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            # The newest run's: an earlier test's run left waiting must not be the one answered.
            ti = (session.query(TaskInstance).join(TaskInstance.dag_run)
                  .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id, TaskInstance.state.in_(states))
                  .order_by(DagRun.id.desc()).first())
            if ti is not None:
                return ti.run_id
        time.sleep(0.1)
    raise AssertionError(f"{dag_id}.{task_id} never reached {states}")


def mark_success_by_hand(dag_id: str, run_id: str, *task_ids: str, user: str = "carol") -> None:
    """What the UI's "Mark as success" does (without up- or downstream): the Core API's
    PATCH taskInstances route; several tasks go in one bulk request, as the grid's multi-select."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    headers = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app("core"))
    base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    if len(task_ids) == 1:
        resp = client.patch(f"{base}/{task_ids[0]}", json={"new_state": "success"}, headers=headers)
        assert resp.status_code == 200, resp.text
    else:
        resp = client.patch(base, headers=headers, json={"actions": [{"action": "update", "entities": [
            {"task_id": t, "new_state": "success"} for t in task_ids]}]})
        assert resp.status_code == 200 and not resp.json()["update"]["errors"], resp.text


def outcome_of(dag_id: str, task_id: str) -> str | None:
    """What `task_id` of the newest run recorded as its outcome (release.flows.outcome)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.task_id == task_id,
                                              XComModel.key == "outcome").order_by(XComModel.timestamp.desc()).first()
        return row and XComModel.deserialize_value(row)


PROD = {"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "release 1.1"}


def trigger_by_hand(dag_id: str, conf: dict, user: str = "carol") -> str:
    """Trigger `dag_id` through the Core REST API as `user`, as the UI's trigger form does."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    resp = TestClient(create_app("core")).post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf},
                                               headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def forged(config, world, **overrides) -> dict:
    """A change set as someone would type it: staging's digest of service-a, to prod."""
    entry = world.state("staging")["service-a"]
    change = {"kind": "promotion", "env": "prod", "from_env": "staging", "requester": "carol", "reason": "hotfix",
              "items": [{"service": "service-a", "version": entry.version, "image": entry.image}],
              "caller": {"dag_id": "promote", "run_id": "manual__2026-12-01T00:00:00+00:00"}}
    return {**change, **overrides}


@pytest.mark.parametrize("case,message", [
    ("no caller", "change.caller: promote has no run 'manual__2026-12-01T00:00:00+00:00'"),
    ("finished caller", "is failed, not running"),
    ("wrong digest", "change.items: service-a 1.1 runs as"),
    ("unknown field", "change.force: Extra inputs are not permitted"),
    ("pipeline to prod", "change.kind: a pipeline deploys one service to dev only"),
])
def test_deploy_prod_triggered_by_hand_writes_nothing(world, config, sandbox, as_user, case, message):
    """Whoever can trigger deploy-prod still cannot deploy with it: a hand-written change set is
    refused before anything is written, and the run says why."""
    from tests.dags.conftest import execute_deploy_run, sync_deploy_dags

    prod_ready(world, config)
    change = forged(config, world)
    if case == "finished caller":  # a real promotion to prod, rejected: its run id is real, its approval is not
        promote(PROD, answer=("bob", "Reject"))
        change = forged(config, world, caller={"dag_id": "promote", "run_id": dagrun_id("promote")}, requester="alice")
    elif case == "wrong digest":
        change["items"] = [{**change["items"][0], "image": f"{config.services['service-a'].image}@{digest('f')}"}]
    elif case == "unknown field":
        change["force"] = True
    elif case == "pipeline to prod":
        change = {**change, "kind": "pipeline", "caller": {"dag_id": "service-a-pipeline", "run_id": "x"}}
        change.pop("from_env")
    head_before = world.store.read("registry/versions.yaml")
    sync_deploy_dags()
    run_id = trigger_by_hand("deploy-prod", {"change": change})
    execute_deploy_run("deploy-prod", run_id)
    state, note, tasks = deploy_result("deploy-prod", run_id)
    assert tasks["apply"] == "failed" and tasks["converge"] in ("upstream_failed", "skipped"), tasks
    assert state == "failed" and note.startswith("refused: nothing was written to the environment: "), note
    assert message in note, note
    assert world.store.read("registry/versions.yaml") == head_before and "service-a" not in world.state("prod")
    assert not [p for p in sandbox.received("pods") if p["metadata"]["labels"]["release-platform/step"] == "smoke-prod"]


def test_approval_marked_success_by_hand_without_an_answer_deploys_nothing(world, config, as_user, deploy_runs):
    """approve_prod marked "success" by hand while nobody answered: the change is handed over, but
    Airflow holds no answer for this run, so deploy-prod refuses it and both runs say so."""
    prod_ready(world, config)
    head = world.store.read("registry/versions.yaml")

    def skip_it():
        run_id = wait_for_state("promote", "approve_prod", ("awaiting_input",))
        mark_success_by_hand("promote", run_id, "approve_prod")

    thread = threading.Thread(target=skip_it)
    thread.start()
    states, _ = promote(PROD)
    thread.join()
    assert (states["approve_prod"], states["hand_over"]) == ("success", "failed"), states
    assert world.store.read("registry/versions.yaml") == head and "service-a" not in world.state("prod")
    [(deploy_dag, deploy_run)] = deploy_runs
    refused = ("refused: nothing was written to the environment: approval: approve_prod of this run recorded no "
               "answer (was it marked success by hand?); a promotion to prod needs an approval answered in Airflow")
    assert deploy_result(deploy_dag, deploy_run)[:2] == ("failed", refused)
    assert last_run("promote") == ("failed", f"{refused} (deploy-prod run {deploy_run})")


def test_an_approved_promotion_records_the_approver_from_airflows_record(world, config, as_user):
    prod_ready(world, config)
    states, response = promote(PROD, answer=("bob", "Approve"))
    assert response["status"] == 200 and states["hand_over"] == "success", states
    prod = world.state("prod")["service-a"]
    assert (prod.version, prod.deployed_by, prod.evidence["approved_by"]) == ("1.1", "alice", "bob")


def test_the_write_check_reads_the_requester_from_the_run_not_the_plan():
    """Unit-level: require_approval against a record answered by the run's own requester, or by
    someone who is not an approver, or with Reject, refuses; only bob's Approve passes."""
    from types import SimpleNamespace

    from release.flows.approval import ApprovalMissing, require_approval

    def context(record, state="success", requester="alice"):
        def xcom_pull(**kw):
            assert (kw["dag_id"], kw["run_id"], kw["task_ids"], kw["key"]) == ("promote", "r", "approve_prod", "hitl_record")
            return record

        ti = SimpleNamespace(dag_id="promote", run_id="r", map_index=-1, xcom_pull=xcom_pull,
                             get_task_states=lambda **kw: {"r": {"approve_prod": state}})
        return {"ti": ti, "dag_run": SimpleNamespace(triggering_user_name=requester)}

    def answered(name, option="Approve"):
        return {"run_id": "r", "task_id": "approve_prod", "response_received": True,
                "responded_by": {"id": name, "name": name}, "chosen_options": [option]}

    assert require_approval(context(answered("bob")), "prod", ["alice", "bob"]) == "bob"
    for ctx, message in [
        (context(answered("alice")), "four-eyes: alice requested this change and cannot approve it"),
        (context(answered("carol")), "four-eyes: 'carol' is not an approver for prod; allowed: alice, bob"),
        (context(answered("bob", "Reject")), "was answered ['Reject'] by bob, not \"Approve\""),
        (context({**answered("bob"), "run_id": "another-run"}), "recorded no answer"),
        (context(None), "recorded no answer"),
        (context(answered("bob"), state="skipped"), "approve_prod of this run is skipped"),
        (context(answered("bob"), requester=None), "this run has no triggering user"),
    ]:
        with pytest.raises(ApprovalMissing) as exc:
            require_approval(ctx, "prod", ["alice", "bob"])
        assert message in str(exc.value)
