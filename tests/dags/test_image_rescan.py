"""image-rescan with dag.test(): mapped Trivy pods on the sandbox cluster, real GitOps registry, real promote gate."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from pathlib import Path

import git
import pytest

from release.gitops.registry import ensure_local_repo
from release.domain.registry import DeployRequest
from release.gitops.registry import Registry
from release.domain.scan import ScanPolicy, evaluate_report
from tests.dags.test_promote import override_config
from tests.helpers import digest

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
CRITICAL = "CVE-2019-14697"  # musl, in Trivy's own alpine-39 test report
REPORT_DEST = ("rescan/{label:release-platform/run}/{label:release-platform/env}/"
               "{label:release-platform/service}/trivy.json")


def summary(report: Path) -> dict:
    return evaluate_report(json.loads(report.read_text()), ScanPolicy(), date.today()).to_dict()


def release(config, service: str, version: str, char: str) -> DeployRequest:
    return DeployRequest(service, version, f"{config.services[service].image}@{digest(char)}",
                         {"scan": summary(TRIVY / "alpine-310.json"), "smoke": {"passed": True, "run_id": "pipeline-run"}})


@pytest.fixture
def newly_critical(tmp_path) -> Path:
    """alpine-310's real report as tonight's Trivy database sees it: its 4 MEDIUM findings plus musl's
    CRITICAL CVE-2019-14697, both findings taken verbatim from Trivy's alpine-39 report."""
    report = json.loads((TRIVY / "alpine-310.json").read_text())
    musl = [v for r in json.loads((TRIVY / "alpine-39.json").read_text())["Results"]
            for v in r.get("Vulnerabilities") or [] if v["VulnerabilityID"] == CRITICAL]
    assert len(musl) == 2
    report["Results"][0]["Vulnerabilities"] = report["Results"][0]["Vulnerabilities"] + copy.deepcopy(musl)
    path = tmp_path / "alpine-310-newly-critical.json"
    path.write_text(json.dumps(report))
    return path


@pytest.fixture
def world(airflow_db, data_dir, config, sandbox):
    """dev runs service-a 1.1 and service-b 2.0; staging runs service-a 1.0; prod and service-c nothing.
    Every recorded scan is alpine-310's (4 MEDIUM, passing)."""
    from release.cli import main

    ensure_local_repo(config)
    registry = Registry.from_config(config)
    registry.record_deployment("staging", [release(config, "service-a", "1.0", "1")], by="alice", run_id="r0")
    registry.record_deployment("dev", [release(config, "service-a", "1.1", "3"), release(config, "service-b", "2.0", "2")],
                               by="alice", run_id="r1")
    assert main(["pools", "sync"]) == 0
    sandbox.artifacts_dir = data_dir / "artifacts"
    for env in config.env_order:
        sandbox.call(sandbox.ensure_application, *config.argocd_application(env), env)
    return registry


def reports(sandbox, per_service: dict[str, Path]) -> None:
    """The sandbox's re-scan pods 'write' these reports, as Trivy would, to where the pod was told."""
    sandbox.scenario = {
        "pods": [{"match": {"labels": {"release-platform/step": "rescan", "release-platform/service": service}},
                  "artifacts": [{"source": str(report), "dest": REPORT_DEST}]}
                 for service, report in per_service.items()],
        "default_pod": {"duration_seconds": 0.1},
        "applications": [{"delay_seconds": 0.1}],
    }


def rescan():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "image_rescan.py")).get_dag("image-rescan")
    dagrun = dag.test()
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances() if ti.map_index < 1}


def xcom(dagrun, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dagrun.run_id, dag_ids=dagrun.dag_id, task_ids=task_id,
                                                 key="return_value")).first()
        return None if row is None else XComModel.deserialize_value(row)


def gitops_repo(registry) -> git.Repo:
    return git.Repo(registry.store.url.removeprefix("file://"))


def rescan_pods(sandbox) -> list[dict]:
    return [e[3] for e in sandbox.call(lambda: list(sandbox.store.events))
            if e[1] == "pods" and e[2] == "ADDED" and e[3]["metadata"]["labels"].get("release-platform/step") == "rescan"]


def test_unchanged_reports_write_nothing_and_notify_nobody(world, sandbox, capfd):
    reports(sandbox, {"service-a": TRIVY / "alpine-310.json", "service-b": TRIVY / "alpine-310.json"})
    head = gitops_repo(world).commit("main").hexsha
    before = world.snapshot()
    dagrun, states = rescan()
    assert dagrun.state == "success", states
    assert len(rescan_pods(sandbox)) == 3  # it did scan: dev a, dev b, staging a
    assert gitops_repo(world).commit("main").hexsha == head  # no commit at all
    assert world.snapshot() == before
    assert states["record"] == "skipped"
    assert xcom(dagrun, "notify") == []
    out = capfd.readouterr().out
    assert "newly blocked" not in out and "no newly blocking findings" in out


def test_a_new_critical_flips_the_evidence_in_one_commit_notifies_and_blocks_promotion(
        world, sandbox, config, newly_critical, capfd, caplog, tmp_path, monkeypatch):
    reports(sandbox, {"service-a": newly_critical, "service-b": TRIVY / "alpine-310.json"})
    repo = gitops_repo(world)
    head = repo.commit("main").hexsha
    dagrun, states = rescan()
    assert dagrun.state == "success", states

    # one commit, with the registry of every affected environment
    new = list(repo.iter_commits(f"{head}..main"))
    assert len(new) == 1
    assert {"registry/versions.yaml", "registry/history.yaml"} <= set(new[0].stats.files)
    assert new[0].message.startswith("Record evidence in dev, staging")
    dev, staging = world.state("dev"), world.state("staging")
    for deployment, env in ((dev["service-a"], "dev"), (staging["service-a"], "staging")):
        found = deployment.evidence["rescan"]
        assert found["passed"] is False, env
        assert found["blocking"] == found["new_blocking"] == [CRITICAL], env
        assert found["image"] == deployment.image and found["run_id"] == dagrun.run_id
        assert found["summary"]["counts"]["CRITICAL"] == 2 and found["summary"]["counts"]["MEDIUM"] == 4
        assert deployment.evidence["scan"]["passed"] is True  # the pipeline's record stays as it was
    assert world.history(env="dev", service="service-a")[-1].evidence["rescan"]["passed"] is False
    assert "rescan" not in dev["service-b"].evidence  # unchanged: nothing written for it

    # the notification names service, environment, digest and CVE, once per affected deployment
    messages = xcom(dagrun, "notify")
    assert len(messages) == 2
    out = capfd.readouterr().out + caplog.text  # the task log, wherever logging was set up to write it
    for env, char in (("dev", "3"), ("staging", "1")):
        (message,) = [m for m in messages if f" in {env} " in m]
        assert "service-a" in message and digest(char) in message and CRITICAL in message
        assert message in out  # logged by the task
    assert "service-b" not in "".join(messages)

    # promote refuses that version at its scan gate, naming the CVE and the nightly re-scan
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "r"})
    assert states["gate_scan"] == "failed", states
    assert states["hand_over"] in ("upstream_failed", "skipped")
    out = capfd.readouterr().out
    assert f"the nightly re-scan of {dev['service-a'].evidence['rescan']['scanned_at']} found blocking CVEs" in out
    assert f"under staging's policy: {CRITICAL}" in out
    assert world.state("staging")["service-a"].version == "1.0"

    # an allow-list entry for the CVE in the config lets it through
    allow = {"allow": [{"id": CRITICAL, "reason": "musl not reachable from the service",
                        "expires": (date.today() + timedelta(days=30)).isoformat()}]}
    override_config(tmp_path, monkeypatch, lambda raw: raw["environments"]["staging"].update(scan_policy=allow))
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "r"})
    assert states["gate_scan"] == "success", states
    assert f"allowed {CRITICAL}" in capfd.readouterr().out
    assert states["hand_over"] == "success" and world.state("staging")["service-a"].version == "1.1"


def test_scan_pods_are_mapped_hardened_and_pooled(world, sandbox, config):
    reports(sandbox, {"service-a": TRIVY / "alpine-310.json", "service-b": TRIVY / "alpine-310.json"})
    dagrun, _ = rescan()
    created = [r for r in sandbox.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert len(created) == 3 and all(r.status == 201 for r in created)  # all passed the API server's validation
    pods = rescan_pods(sandbox)
    where = {(p["metadata"]["labels"]["release-platform/env"], p["metadata"]["labels"]["release-platform/service"]): p
             for p in pods}
    assert len(pods) == 3 and set(where) == {("dev", "service-a"), ("dev", "service-b"), ("staging", "service-a")}
    first = config.environments[config.env_order[0]].namespace
    for (env, service), pod in where.items():
        spec = pod["spec"]
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert pod["metadata"]["namespace"] == first
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert spec["automountServiceAccountToken"] is False
        assert container["image"] == config.pipelines.tools.trivy
        deployed = world.state(env)[service].image
        args = container["args"]
        assert args[:3] == ["image", "--format", "json"] and args[-1] == deployed
        assert args[args.index("--output") + 1].endswith(f"/{env}/{service}/trivy.json")
    scans = [ti for ti in dagrun.get_task_instances() if ti.task_id == "scan"]
    assert sorted(ti.map_index for ti in scans) == [0, 1, 2]
    assert {ti.pool for ti in scans} == {"rescans"} and {ti.state for ti in scans} == {"success"}


def test_a_missing_report_fails_the_run_naming_it_after_recording_the_others(world, sandbox, newly_critical, capfd):
    reports(sandbox, {"service-a": newly_critical})  # service-b's pod writes no report
    dagrun, states = rescan()
    assert dagrun.state == "failed"
    assert states["verdict"] == "failed" and states["record"] == "success" and states["notify"] == "success"
    assert "dev/service-b 2.0" in capfd.readouterr().out
    assert world.state("dev")["service-a"].evidence["rescan"]["passed"] is False
    assert world.state("staging")["service-a"].evidence["rescan"]["passed"] is False
    assert "rescan" not in world.state("dev")["service-b"].evidence


def test_pools_sync_creates_the_rescans_pool(airflow_db, config):
    from airflow.models.pool import Pool

    from release.cli import main

    assert main(["pools", "sync"]) == 0
    pool = Pool.get_pool("rescans")
    assert pool.slots == config.nightly.rescan.pool_slots and pool.include_deferred is True


# -- promote, as tests/dags/test_promote.py runs it ------------------------------------------


def promote(params: dict):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "promote.py")).get_dag("promote")
    dagrun = dag.test(run_conf=params)
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}, dagrun


def test_the_dag_follows_the_config(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    override_config(tmp_path, monkeypatch, lambda raw: raw.setdefault("nightly", {}).update(rescan={"schedule": "30 1 * * *"}))
    bag = DagBag(dag_folder=str(DAGS / "image_rescan.py"))
    assert bag.import_errors == {}
    dag = bag.dags["image-rescan"]
    assert dag.timetable.summary == "30 1 * * *" and dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.tags) == {"release", "nightly"}
    scan = dag.get_task("scan")
    assert scan.partial_kwargs["pool"] == "rescans" and scan.partial_kwargs["retries"] == 2  # cluster trouble is retried
    assert dag.get_task("evaluate").retries == 0  # a bad report is not
    assert [t.task_id for t in dag.topological_sort()] == ["targets", "scan", "evaluate", "record", "notify", "verdict"]
