"""velero-backups and velero-restore-drill with dag.test() against the sandbox's fake Velero."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from release.domain.backups import read_records, scratch_namespace
from sandbox.validation import validate_crd
from tests.dags.test_promote import override_config

DAGS = Path(__file__).resolve().parents[2] / "dags"


def load(dag_id: str, file: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / file)).get_dag(dag_id)


def task_states(run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


@pytest.fixture
def nightly(airflow_db, data_dir, sandbox, tmp_path, monkeypatch):
    """A fast-polling config; Velero (the sandbox's) answers in a fraction of a second."""
    def fast(raw):
        raw["nightly"] = {"poll_seconds": 0.2, "backups": {"timeout_minutes": 0.1},
                          "restore_drill": {"timeout_minutes": 0.2}}
    override_config(tmp_path, monkeypatch, fast)
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1}, "backups": [{"delay_seconds": 0.3}],
                        "restores": [{"delay_seconds": 0.3}]}
    return sandbox


def backups(sandbox) -> list[dict]:
    return sandbox.list("backups", "velero")


def test_every_environment_is_backed_up_recorded_and_valid(nightly):
    from release.domain.config import load_config

    run = load("velero-backups", "velero_backups.py").test()
    assert run.state == "success", task_states(run)

    made = {b["metadata"]["labels"]["release-platform/env"]: b for b in backups(nightly)}
    assert sorted(made) == ["dev", "prod", "staging"]
    for env, backup in made.items():
        validate_crd(backup)  # what we created is what Velero's CRD accepts
        spec, labels = backup["spec"], backup["metadata"]["labels"]
        assert spec["includedNamespaces"] == [f"apps-{env}"]
        assert spec["ttl"] == ("720h0m0s" if env == "prod" else "168h0m0s")
        assert spec["storageLocation"] == "default" and spec["snapshotVolumes"] is True
        assert labels["app.kubernetes.io/managed-by"] == "release-platform"
        assert backup["metadata"]["annotations"]["release-platform/run-id"] == run.run_id
        assert backup["metadata"]["name"].startswith(f"release-{env}-")
        assert backup["status"]["phase"] == "Completed"

    records = {r["env"]: r for r in read_records(load_config(), "backups")}
    assert sorted(records) == ["dev", "prod", "staging"]
    prod = records["prod"]
    assert prod["name"] == made["prod"]["metadata"]["name"] and prod["phase"] == "Completed"
    assert prod["items_backed_up"] == 42 and prod["errors"] == 0 and prod["run_id"] == run.run_id
    assert prod["started"] and prod["completed"]


def test_a_partially_failed_backup_fails_and_lists_velero_errors(nightly, capfd):
    from release.domain.config import load_config

    nightly.scenario = {"backups": [{"match": {"labels": {"release-platform/env": "prod"}}, "phase": "PartiallyFailed",
                                     "delay_seconds": 0.3, "errors": ["error backing up pvc apps-prod/data: timed out"],
                                     "warnings": ["volume snapshot skipped for apps-prod/cache"]}]}
    run = load("velero-backups", "velero_backups.py").test()
    out = capfd.readouterr().out

    assert run.state == "failed"
    states = task_states(run)
    assert sorted(s for (t, _), s in states.items() if t == "backup.wait") == ["failed", "success", "success"]
    assert "error backing up pvc apps-prod/data: timed out" in out
    assert "volume snapshot skipped for apps-prod/cache" in out
    assert "ended PartiallyFailed" in out
    prod = [r for r in read_records(load_config(), "backups") if r["env"] == "prod"]
    assert prod[0]["phase"] == "PartiallyFailed"
    assert prod[0]["error_messages"] == ["velero: error backing up pvc apps-prod/data: timed out"]


def test_a_stuck_backup_times_out_saying_so(nightly, capfd):
    from release.domain.config import load_config

    nightly.scenario = {"backups": [{"match": {"labels": {"release-platform/env": "staging"}}, "stuck": True}]}
    run = load("velero-backups", "velero_backups.py").test()
    out = capfd.readouterr().out

    assert run.state == "failed"
    assert "is stuck: still InProgress after 0.1 minutes" in out
    staging = [r for r in read_records(load_config(), "backups") if r["env"] == "staging"]
    assert staging[0]["timed_out"] is True and staging[0]["phase"] == "InProgress"


def test_backing_up_an_unknown_environment_is_refused_before_anything_is_created(nightly):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="environments"):
        load("velero-backups", "velero_backups.py").test(run_conf={"environments": ["qa"]})
    assert backups(nightly) == []


def test_a_restore_drill_restores_smoke_tests_records_and_cleans_up(nightly, capfd):
    from release.domain.config import load_config

    assert load("velero-backups", "velero_backups.py").test().state == "success"
    nightly.call(nightly.ensure_namespace, "drill-apps-prod", {"left-by": "an-earlier-drill"})
    run = load("velero-restore-drill", "velero_restore_drill.py").test()
    assert run.state == "success", task_states(run)
    assert "Deleted scratch namespaces left by an earlier drill: drill-apps-prod" in capfd.readouterr().out

    [restore] = nightly.list("restores", "velero")
    validate_crd(restore)
    scratch = scratch_namespace("apps-prod")
    prod_backup = next(b for b in backups(nightly) if b["metadata"]["labels"]["release-platform/env"] == "prod")
    assert restore["spec"]["backupName"] == prod_backup["metadata"]["name"]
    assert restore["spec"]["namespaceMapping"] == {"apps-prod": scratch}
    # One smoke pod per service (test_the_drill_smoke_pods_call_the_restored_copy checks their target).
    smoke_pods = [r for r in nightly.seen("POST", "/pods")]
    assert len(smoke_pods) == 3
    names = {n["metadata"]["name"] for n in nightly.list("namespaces")}
    assert scratch not in names and "apps-prod" in names  # the copy is gone, the live env untouched

    [drill] = read_records(load_config(), "drills", "prod")
    assert drill["restored"] is True and drill["smoke_passed"] is True and drill["problems"] == []
    assert drill["backup"] == prod_backup["metadata"]["name"] and drill["recovery_seconds"] > 0
    assert set(drill["smoke"]) == {"service-a", "service-b", "service-c"}


def test_the_drill_smoke_pods_call_the_restored_copy(nightly):
    assert load("velero-backups", "velero_backups.py").test().state == "success"
    nightly.scenario = {"default_pod": {"duration_seconds": 0.1}, "restores": [{"delay_seconds": 0.3}],
                        "pods": [{"match": {"labels": {"release-platform/service": "service-b"}}, "exit_code": 1,
                                  "logs": ["smoke test failed (expected status 200): ... answered 503 after 6 attempt(s)"]}]}
    run = load("velero-restore-drill", "velero_restore_drill.py").test()
    assert run.state == "failed"
    scratch = scratch_namespace("apps-prod")
    # The failed pod is kept for its logs: it ran in the live namespace, hardened, calling the copy.
    [pod] = [p for p in nightly.list("pods", "apps-prod")
             if p["metadata"]["labels"].get("release-platform/service") == "service-b"]
    args = pod["spec"]["containers"][0]["args"]
    assert f"http://service-b.{scratch}.svc.cluster.local:8080/healthz" in args
    assert not any("service-b.apps-prod.svc" in a for a in args)
    ctx = pod["spec"]["containers"][0]["securityContext"]
    assert ctx["runAsNonRoot"] is True or pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
    states = task_states(run)
    assert states[("drill_prod.smoke_service-b", -1)] == "failed"
    assert states[("drill_prod.report", -1)] == "failed"
    assert states[("drill_prod.delete_scratch_namespaces", -1)] == "success"
    assert scratch not in {n["metadata"]["name"] for n in nightly.list("namespaces")}


def test_a_drill_whose_restore_fails_still_cleans_up_and_reports(nightly, capfd, caplog):
    from release.domain.config import load_config

    assert load("velero-backups", "velero_backups.py").test().state == "success"
    nightly.scenario = {"restores": [{"phase": "PartiallyFailed", "delay_seconds": 0.3,
                                      "errors": ["error restoring deployments.apps/apps-prod/service-a: quota exceeded"]}]}
    run = load("velero-restore-drill", "velero_restore_drill.py").test()
    out = capfd.readouterr().out

    assert run.state == "failed"
    states = task_states(run)
    assert states[("drill_prod.wait_restore", -1)] == "failed"
    assert states[("drill_prod.report", -1)] == "failed"
    assert states[("drill_prod.delete_scratch_namespaces", -1)] == "success"
    scratch = scratch_namespace("apps-prod")
    assert scratch not in {n["metadata"]["name"] for n in nightly.list("namespaces")}
    assert "quota exceeded" in out
    # The alert, not just a red box: one notice of kind drill_failed naming what went wrong.
    alerts = [r.getMessage() for r in caplog.records if "[drill_failed/error] Restore drill failed (prod)" in r.getMessage()]
    assert len(alerts) == 1 and "did not complete" in alerts[0]
    [drill] = read_records(load_config(), "drills", "prod")
    assert drill["restored"] is False and drill["smoke_passed"] is False
    assert drill["restore_phase"] is None and drill["recovery_seconds"] is None
    assert any("did not complete" in p for p in drill["problems"])


def test_a_drill_with_no_backup_to_restore_fails_clearly(nightly, capfd):
    run = load("velero-restore-drill", "velero_restore_drill.py").test()
    assert run.state == "failed"
    assert "no Completed backup of prod to drill" in capfd.readouterr().out
    assert nightly.list("restores", "velero") == []


def test_a_retry_adopts_its_running_backup_and_a_cleared_run_backs_up_again(nightly):
    import time

    from release.k8s import velero
    from release.domain.config import load_config

    manifest = velero.backup_manifest(load_config(), "prod", name="release-prod-x", dag_id="velero-backups", run_id="r1")
    nightly.scenario = {"backups": [{"stuck": True}]}
    assert velero.create("k8s_prod", manifest)["metadata"]["name"] == "release-prod-x"
    # The task is retried while Velero is still at it: the same backup, not a second one.
    assert velero.create("k8s_prod", manifest)["metadata"]["name"] == "release-prod-x"
    nightly.call(nightly.store.patch, nightly.resource("backups"), "velero", "release-prod-x",
                 lambda o: {**o, "status": {**o.get("status", {}), "phase": "PartiallyFailed"}})
    # The run is cleared after it failed: a new backup, under a numbered name.
    nightly.scenario = {}
    again = velero.create("k8s_prod", manifest)
    assert again["metadata"]["name"] == "release-prod-x-2"
    assert sorted(b["metadata"]["name"] for b in backups(nightly)) == ["release-prod-x", "release-prod-x-2"]
    other = {**manifest, "metadata": {**manifest["metadata"], "annotations": {"release-platform/run-id": "r2"}}}
    with pytest.raises(velero.VeleroError, match="belongs to run 'r1'"):
        velero.create("k8s_prod", other)
    time.sleep(0.5)  # let the sandbox's Velero finish before the cluster stops


def test_a_backup_that_finished_just_as_the_wait_ran_out_is_judged_by_its_phase(nightly):
    import time

    from release.k8s import velero
    from release.domain.config import load_config

    manifest = velero.backup_manifest(load_config(), "dev", name="release-dev-x", dag_id="velero-backups", run_id="r1")
    velero.create("k8s_dev", manifest)
    deadline = time.monotonic() + 10
    while nightly.get("backups", "velero", "release-dev-x").get("status", {}).get("phase") != "Completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    seen = []

    class Recording(velero.VeleroSensor):
        def on_outcome(self, outcome, context) -> None:
            seen.append(outcome)

    target = {"kubernetes_conn_id": "k8s_dev", "kind": "Backup", "namespace": "velero", "name": "release-dev-x", "env": "dev"}
    sensor = Recording(task_id="wait", timeout_minutes=1, target=target)
    outcome = sensor.execute_complete({}, {"status": "timeout", "phase": "InProgress"})
    assert outcome["timed_out"] is False and outcome["status"]["phase"] == "Completed"
    # on_outcome gets the typed outcome; the XCom is the same as JSON, with the target as it came.
    (typed,) = seen
    assert isinstance(typed, velero.VeleroOutcome) and typed.status.phase == "Completed" and typed.target.env == "dev"
    assert outcome == typed.model_dump(mode="json") and outcome["target"] == target
    # A creating task that handed over something else fails the wait naming the field.
    with pytest.raises(ValidationError, match="namespace"):
        velero.VeleroSensor(task_id="wait2", timeout_minutes=1,
                            target={k: v for k, v in target.items() if k != "namespace"}).execute({})
