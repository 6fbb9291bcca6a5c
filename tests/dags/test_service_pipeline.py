"""<service>-pipeline end to end with dag.test(): real operators, sandbox cluster, real GitOps repo."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from release.gitops.registry import ensure_local_repo
from release.gitops.registry import Registry
from tests.dags.conftest import deploy_result, deploy_xcom
from tests.dags.test_promote import last_run
from tests.helpers import assert_pods_meet_restricted, digest, request_for

DAGS = Path(__file__).resolve().parents[2] / "dags"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
EARLIER = "1" * 40  # the app-repo commit of the version dev ran before
NEW_DIGEST = digest("9")
ARTIFACT = "{label:release-platform/service}/{label:release-platform/commit}/"


def scenario(report: str = "alpine-310.json", smoke_exit: int = 0, argo: dict | None = None) -> dict:
    return {
        "pods": [
            {"match": {"labels": {"release-platform/step": "build"}}, "logs": ["#1 building", "#9 pushing"],
             "termination_message": json.dumps({"containerimage.digest": NEW_DIGEST, "image.name": "x"})},
            {"match": {"labels": {"release-platform/step": "scan"}},
             "artifacts": [{"source": str(FIXTURES / report), "dest": ARTIFACT + "trivy.json"}]},
            {"match": {"labels": {"release-platform/step": "scan-sarif"}},
             "artifacts": [{"source": str(FIXTURES / "alpine-310.sarif"), "dest": ARTIFACT + "trivy.sarif"}]},
            {"match": {"labels": {"release-platform/step": "sbom"}},
             "artifacts": [{"source": str(FIXTURES / "npm.json"), "dest": ARTIFACT + "sbom.spdx.json"}]},
            # A passing smoke test is the real checker against the sandbox's services (they answer 200).
            *([{"match": {"labels": {"release-platform/step": "smoke-dev"}}, "exit_code": smoke_exit,
                "logs": ["smoke test failed (expected status 200): "
                         "http://service-a.apps-dev.svc.cluster.local:8080/healthz answered 503 after 6 attempt(s)"]}]
              if smoke_exit else []),
        ],
        "default_pod": {"duration_seconds": 0.1},
        "applications": [argo] if argo else [],
    }


@pytest.fixture
def world(airflow_db, data_dir, config, sandbox):
    """A GitOps repo where dev runs service-a 1.0.0, and the Argo CD Application for dev."""
    ensure_local_repo(config)
    Registry.from_config(config).record_deployment("dev", [request_for(config, "service-a", "1.0.0", "1", commit=EARLIER)],
                                                   by="alice", run_id="earlier")
    sandbox.artifacts_dir = data_dir / "artifacts"
    sandbox.call(sandbox.store.create, sandbox.resource("applications"), "argocd", {
        "metadata": {"name": "umbrella-dev"},
        "spec": {"project": "default", "source": {"repoURL": "file:///gitops.git", "path": "umbrella/dev", "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "apps-dev"}},
        "status": {"sync": {"status": "Synced", "revision": "old"}, "health": {"status": "Healthy"}}})
    return Registry.from_config(config)


def run(params: dict):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "service_pipelines.py")).get_dag("service-a-pipeline")
    dagrun = dag.test(run_conf={"commit": COMMIT, "ref": "refs/tags/v1.1.0", **params})
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


@pytest.fixture
def gh(github):
    """The GitHub stand-in, with the process's GitHub clients and any pause after a failure forgotten."""
    from release.github import outbound

    outbound.reset()
    yield github
    outbound.reset()


def test_green_pipeline_deploys_the_new_digest_to_dev(world, sandbox, config, deploy_runs, gh):
    sandbox.scenario = scenario()
    # GitHub fails while dev is deployed: a 502 for the deployment, a rate limit for its first status.
    gh.fail(502, count=1, method="POST", path=r"/repos/example-org/app/deployments")
    gh.rate_limit(count=1, retry_after=1, method="POST", path=r"/repos/example-org/app/deployments/\d+/statuses")
    dagrun, states = run({"commit_time": "2026-11-26T11:00:00+01:00"})
    assert dagrun.state == "success", states
    # the pipeline handed the digest over to deploy-dev, which made the change: one run, linked
    [(deploy_dag, deploy_run)] = deploy_runs
    assert (deploy_dag, deploy_run) == ("deploy-dev", f"service-a-pipeline.{dagrun.run_id}")
    current = world.state("dev")["service-a"]
    assert (current.version, current.image) == ("1.1.0", f"{config.services['service-a'].image}@{NEW_DIGEST}")
    assert current.evidence["scan"]["passed"] is True and current.evidence["commit"] == COMMIT
    assert current.evidence["commit_time"] == "2026-11-26T10:00:00Z"  # where DORA's change lead time starts
    # the registry keeps each finding with the package that carries it (alpine-310: 2 CVEs x 2 packages)
    assert sorted((f["id"], f["package"], f["installed"]) for f in current.evidence["scan"]["findings"]) == [
        (cve, package, "1.1.1c-r0") for cve in ("CVE-2019-1549", "CVE-2019-1551") for package in ("libcrypto1.1", "libssl1.1")]
    assert current.evidence["signature"]["signed"] is True and current.evidence["sbom"].endswith("sbom.spdx.json")
    app = sandbox.get("applications", "argocd", "umbrella-dev")
    gitops_head = world.history(service="service-a")[-1]
    assert app["status"]["sync"]["revision"] == app["status"]["operationState"]["syncResult"]["revision"]
    assert len(app["status"]["sync"]["revision"]) == 40 and gitops_head.version == "1.1.0"
    sha = app["status"]["sync"]["revision"]
    line = f"deployed service-a 1.1.0 to dev, commit {sha[:12]}"
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    assert (state, note) == ("success", line)
    assert tasks["smoke[0]"] == "success" and tasks["undo"] == "skipped" and tasks["report"] == "success", tasks
    assert last_run("service-a-pipeline") == ("success", f"{line} (deploy-dev run {deploy_run})")
    assert gitops_head.run_id == dagrun.run_id and gitops_head.evidence["deploy_run"] == f"deploy-dev/{deploy_run}"
    # The smoke test ran the checker with service-a's settings against its endpoints in dev.
    smoke = deploy_xcom(deploy_dag, deploy_run, "smoke", map_index=0)
    assert smoke["passed"] is True and smoke["expect_status"] == config.services["service-a"].smoke.expect_status
    assert [(c["url"], c["status"]) for c in smoke["checks"]] == [
        (f"http://service-a.apps-dev.svc.cluster.local:8080{path}", 200) for path in ("/healthz", "/ready")]
    # GitHub shows each stage on the commit: pending while it ran, then passed, linked to its task.
    shown: dict[str, list] = {}
    for status in gh.statuses(COMMIT):
        shown.setdefault(status["context"], []).append(status)
    stages = ("verify", "build", "scan-gate", "chart-validation", "deploy-dev", "smoke")
    assert sorted(shown) == sorted(f"release/service-a/{s}" for s in stages), sorted(shown)
    for stage in stages:
        seen = shown[f"release/service-a/{stage}"]
        assert seen[0]["state"] == "pending" and seen[-1]["state"] == "success", (stage, seen)
    assert f"/dags/service-a-pipeline/runs/{quote(dagrun.run_id)}/tasks/scan_gate?" in shown["release/service-a/scan-gate"][-1]["target_url"]
    assert f"/dags/deploy-dev/runs/{quote(deploy_run)}/tasks/smoke/mapped/0?" in shown["release/service-a/smoke"][-1]["target_url"]
    assert shown["release/service-a/deploy-dev"][-1]["description"].startswith(line)
    assert shown["release/service-a/scan-gate"][-1]["description"].startswith("passed at threshold HIGH; counts CRITICAL=0")
    # The Environments page: dev runs this commit, deployed despite GitHub's 502 and rate limit (tried again).
    (deployment,) = gh.deployments("dev")
    assert (deployment["ref"], deployment["task"], deployment["payload"]["version"]) == (COMMIT, "deploy:service-a", "1.1.0")
    assert [s["state"] for s in deployment["statuses"]] == ["in_progress", "success"]
    assert deployment["statuses"][-1]["log_url"].endswith(f"/dags/deploy-dev/runs/{quote(deploy_run)}")
    assert {r.status for r in gh.seen("POST", "/deployments")} >= {502, 403, 201}
    # The scan's findings in code scanning, for the commit and tag built.
    (upload,) = gh.sarifs()
    assert (upload["commit_sha"], upload["ref"], upload["tool_names"]) == (COMMIT, "refs/tags/v1.1.0", ["Trivy"])


def test_pods_the_cluster_received_are_hardened(world, sandbox):
    sandbox.scenario = scenario()
    run({})
    created = [r for r in sandbox.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert created and all(r.status == 201 for r in created)  # all passed the API server's validation
    # Pod Security Standard "restricted" for every pod, init containers too, but the build's declared exception.
    assert_pods_meet_restricted(sandbox, {"verify", "build", "scan", "scan-sarif", "sbom", "sign", "attest-sbom", "smoke-dev"})
    pods = {}
    for event in sandbox.call(lambda: list(sandbox.store.events)):
        _, plural, kind, obj = event
        if plural == "pods" and kind == "ADDED":
            pods[obj["metadata"]["labels"]["release-platform/step"]] = obj
    assert {"verify", "build", "scan", "sbom", "sign", "smoke-dev"} <= set(pods)
    for step, pod in pods.items():
        spec = pod["spec"]
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert spec["securityContext"]["runAsNonRoot"] is True, step
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, step
        assert container["resources"]["limits"] and container["resources"]["requests"], step
        assert spec["automountServiceAccountToken"] is False, step
        # build steps carry the application commit; the smoke test the GitOps commit it tests
        gitops = world.history(service="service-a")[-1]
        expected = COMMIT if step != "smoke-dev" else sandbox.get("applications", "argocd", "umbrella-dev")["status"]["sync"]["revision"]
        assert pod["metadata"]["labels"]["release-platform/commit"] == expected and gitops.version == "1.1.0", step
        if step == "build":  # the one declared exception, with its reason on the pod
            assert "user namespaces" in pod["metadata"]["annotations"]["release-platform/security-exception"]
        else:
            assert sc["readOnlyRootFilesystem"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, step
    assert "--metadata-file" in pods["build"]["spec"]["containers"][0]["args"]
    sign_mounts = {m["mountPath"]: m for m in pods["sign"]["spec"]["containers"][0]["volumeMounts"]}
    assert sign_mounts["/cosign"]["readOnly"] is True  # the key arrives as a read-only secret volume
    assert all(isinstance(a, str) for p in pods.values() for a in p["spec"]["containers"][0]["args"])


def test_a_registry_broken_by_a_hand_edit_stops_the_deploy_naming_file_and_line(world, sandbox, deploy_runs):
    """Someone edited registry/versions.yaml by hand and broke it: deploy-dev writes nothing over
    it, and both runs' notes name the file and the line to fix."""
    import git

    sandbox.scenario = scenario()
    with world.store.checkout() as tree:
        repo = git.Repo(tree)
        path = tree / "registry" / "versions.yaml"
        lines = path.read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("version:"))
        lines[at] = lines[at].split("version:")[0] + "version: [1]"
        path.write_text("\n".join(lines) + "\n")
        repo.git.commit("-qam", "hand edit")
        repo.git.push("-q", "origin", "HEAD:main")
        broken = repo.head.commit.hexsha
    dagrun, states = run({})
    assert dagrun.state == "failed" and states["hand_over"] == "failed", states
    [(deploy_dag, deploy_run)] = deploy_runs
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    assert tasks["apply"] == "failed" and tasks["converge"] == "upstream_failed", tasks
    expected = f"nothing was written to dev: cannot read the registry: registry/versions.yaml, line {at + 1}: "
    assert state == "failed" and note.startswith(expected) and "must be a string" in note, note
    assert last_run("service-a-pipeline")[1].startswith(expected)
    assert git.Repo(world.store.url.removeprefix("file://")).commit("main").hexsha == broken  # nothing written


def test_blocking_scan_stops_at_the_gate(world, sandbox, gh):
    sandbox.scenario = scenario(report="alpine-39.json")  # 2 CRITICAL
    before = world.snapshot()
    dagrun, states = run({})
    assert dagrun.state == "failed"
    assert states["scan_gate"] == "failed"
    assert states["sign"] in ("upstream_failed", "skipped") and states["hand_over"] in ("upstream_failed", "skipped")
    assert world.snapshot().entries == before.entries
    steps = {e[3]["metadata"]["labels"]["release-platform/step"] for e in sandbox.call(lambda: list(sandbox.store.events)) if e[1] == "pods"}
    assert "sign" not in steps and "smoke-dev" not in steps
    state, note = last_run("service-a-pipeline")
    assert state == "failed" and note.startswith(f"refused: scan-gate: service-a {COMMIT[:12]} is blocked: "), note
    # On the commit: the gate failed saying why; nothing was deployed, so no deploy status or deployment.
    latest = {s["context"]: s for s in gh.statuses(COMMIT)}
    assert latest["release/service-a/scan-gate"]["state"] == "failure"
    assert latest["release/service-a/scan-gate"]["description"].startswith("refused: scan-gate: service-a")
    assert latest["release/service-a/verify"]["state"] == "success" and "release/service-a/deploy-dev" not in latest
    assert gh.deployments() == []


def test_failed_smoke_test_rolls_dev_back_and_fails(world, sandbox, config, capfd, deploy_runs, gh):
    sandbox.scenario = scenario(smoke_exit=22)
    dagrun, states = run({})
    assert dagrun.state == "failed" and states["hand_over"] == "failed"
    [(deploy_dag, deploy_run)] = deploy_runs
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    assert tasks["smoke[0]"] == "failed" and tasks["undo"] == "success" and tasks["smoke_after_undo[0]"] == "failed", tasks
    assert world.state("dev")["service-a"].version == "1.0.0"
    story = [(e.version, e.action, e.outcome) for e in world.history(service="service-a", env="dev")]
    assert story == [("1.0.0", "deploy", "deployed"), ("1.1.0", "deploy", "failed"), ("1.0.0", "rollback", "deployed")]
    what = "the smoke test of service-a in dev failed after pipeline of service-a 1.1.0; rolled dev back to service-a 1.0.0"
    assert state == "failed" and note.startswith(what), note
    # the scenario fails every smoke pod of dev, so the smoke test after the rollback fails too, and says so
    assert note.endswith("the smoke test of service-a after the rollback failed too"), note
    state, note = last_run("service-a-pipeline")
    assert state == "failed" and note.startswith(what) and note.endswith(f"(deploy-dev run {deploy_run})"), note
    # On the commit: the smoke test and the deploy to dev failed, saying what happened.
    latest = {s["context"]: s for s in gh.statuses(COMMIT)}
    assert (latest["release/service-a/smoke"]["state"], latest["release/service-a/deploy-dev"]["state"]) == ("failure", "failure")
    assert latest["release/service-a/deploy-dev"]["description"].startswith("the smoke test of service-a in dev failed")
    # Environments: 1.1.0 failed; the automatic rollback deployed 1.0.0's commit again, and its smoke test failed too.
    assert {(d["ref"], d["payload"]["version"]): [s["state"] for s in d["statuses"]] for d in gh.deployments("dev")} == {
        (COMMIT, "1.1.0"): ["in_progress", "failure"], (EARLIER, "1.0.0"): ["in_progress", "failure"]}
    assert gh.deployments("dev")[-1]["statuses"][-1]["description"] == "automatic rollback: the smoke test of service-a failed"


def test_pr_mode_never_signs_deploys_or_writes(world, sandbox, deploy_runs, gh):
    sandbox.scenario = scenario()
    before = world.snapshot()
    dagrun, states = run({"pr": 42, "ref": "refs/pull/42/head"})
    assert states["scan_gate"] == "success" and states["chart_validate"] == "success"
    assert all(states[t] == "skipped" for t in ("sign", "attest_sbom", "hand_over")), states
    assert world.snapshot().entries == before.entries and deploy_runs == []
    steps = {e[3]["metadata"]["labels"]["release-platform/step"] for e in sandbox.call(lambda: list(sandbox.store.events)) if e[1] == "pods"}
    assert steps.isdisjoint({"sign", "attest-sbom", "smoke-dev"})
    # Writing nothing is what PR mode is for: the run is green and says so.
    assert dagrun.state == "success" and last_run("service-a-pipeline") == (
        "success", f"PR mode (PR #42): service-a at {COMMIT[:12]} built, scanned and its chart validated; "
                   "nothing signed, deployed or recorded, by design")
    # The PR's one report comment: service-a's stages, the scan gate's verdict, the chart validation, the run.
    (comment,) = gh.comments(42)
    body = comment["body"]
    assert f"#### service-a at `{COMMIT[:12]}`: [run {dagrun.run_id}](" in body
    assert "| scan gate | ✅ success |" in body and "**Scan gate**: passed; counts: MEDIUM 4" in body
    assert "**Chart validation**: renders, lints and validates for dev, staging, prod" in body
    assert gh.deployments() == [] and [u["ref"] for u in gh.sarifs()] == ["refs/pull/42/head"]
    # Written once, by whichever of the scan gate and the chart validation ended last, complete.
    assert [r.method for r in gh.seen(path_contains="/issues/") if r.method != "GET"] == ["POST"]


@pytest.mark.parametrize("case,message", [
    ("not yet signed", "has not signed and attested"),
    ("a pull request", "a pull-request build is never deployed"),
])
def test_a_change_handed_over_before_the_image_is_signed_writes_nothing(world, sandbox, deploy_runs, case, message):
    """deploy-dev checks, where it writes, that the calling pipeline signed and attested the image
    and is no PR build: a change set that names a running pipeline before its `sign` ran (typed
    by hand, or a hand_over marked success) is refused and nothing is written."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from tests.dags.conftest import execute_deploy_run

    sandbox.scenario = scenario()
    before = world.snapshot()

    def as_if_earlier(dag_id: str, run_id: str) -> None:
        caller = run_id.split(".", 1)[1]
        with create_session() as session:
            if case == "not yet signed":  # the caller's run as it was before sign and attest_sbom ran
                for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == "service-a-pipeline",
                                                             TaskInstance.run_id == caller,
                                                             TaskInstance.task_id.in_(["sign", "attest_sbom"])):
                    ti.state = None
            else:  # the caller's run recorded a PR build
                facts = {"commit": COMMIT, "ref": "refs/pull/42/head", "pr": 42, "version": "1.1.0", "release": False,
                         "commit_time": None}
                XComModel.set(key="return_value", value=facts, dag_id="service-a-pipeline", task_id="validate",
                              run_id=caller, serialize=False, session=session)  # as a task pushes it
        execute_deploy_run(dag_id, run_id)

    deploy_runs.on_handover = as_if_earlier
    dagrun, states = run({})
    [(deploy_dag, deploy_run)] = deploy_runs
    state, note, tasks = deploy_result(deploy_dag, deploy_run)
    assert tasks["apply"] == "failed" and state == "failed", tasks
    assert note.startswith("refused: nothing was written to the environment: ") and message in note, note
    assert world.snapshot().entries == before.entries  # no commit: dev still runs what it ran
    assert world.state("dev")["service-a"].version == before.current("dev")["service-a"].version == "1.0.0"
    assert dagrun.state == "failed" and message in last_run("service-a-pipeline")[1]


@pytest.mark.parametrize("params,message", [
    ({"commit": "abc"}, "commit: 'abc' is not a full commit id"),
    ({"ref": "refs/heads/../../etc"}, "ref: 'refs/heads/../../etc' is not a ref"),
    ({"pr": -1}, "pr: '-1' is not a pull request number"),
])
def test_bad_params_fail_at_the_first_task_naming_the_param(world, sandbox, capfd, params, message):
    dagrun, states = run(params)
    assert states["validate"] == "failed"
    assert not sandbox.seen("POST", "/pods")  # no pod was created
    assert message in capfd.readouterr().out
    # Nothing after validate ran, the rollback included: every other task was never started.
    assert {t: s for t, s in states.items() if t != "validate" and s != "upstream_failed"} == {}
    state, note = last_run("service-a-pipeline")
    assert state == "failed" and note.startswith("refused: " + message), note


def test_make_run_scenario_walks_a_whole_run_to_dev(airflow_db, data_dir, config, sandbox, gh):
    """The scenario `make run` gives its sandbox lets a newcomer's first run reach dev, even with
    GitHub down all along (it answers every request with a 503)."""
    from release.domain.config import INCLUDE_DIR
    from release.github import outbound
    from sandbox import Scenario

    gh.fail(503, count=10_000)

    ensure_local_repo(config)
    sandbox.artifacts_dir = data_dir / "artifacts"
    sandbox.scenario = Scenario.load(INCLUDE_DIR / "sandbox/scenarios/make-run.yaml")
    sandbox.call(sandbox.ensure_application, *config.argocd_application("dev"), "dev")
    dagrun, states = run({})
    assert dagrun.state == "success", states
    assert Registry.from_config(config).state("dev")["service-a"].version == "1.1.0"
    assert (data_dir / "artifacts" / "service-a" / COMMIT / "trivy.sarif").is_file()  # for code scanning
    # GitHub was asked once, within its bound, then left alone: no task waited on it again.
    assert 1 <= len(gh.requests) <= outbound.MAX_ATTEMPTS and {r.status for r in gh.requests} == {503}
