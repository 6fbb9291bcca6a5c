"""The nightly DAGs in `make run`'s sandbox: the real make-run.yaml scenario, prepared as
`python -m release sandbox` prepares it; later a service deployed as a first pipeline run leaves it.

`make run` unpauses the DAGs, so each nightly DAG's latest scheduled run starts at once and in
any order: the restore drill may run before `velero-backups` has made a backup. The runs below
come in that order (re-scan, drill, backups) and each must succeed and leave its record.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import git
import pytest

from release.domain.backups import read_records, scratch_namespace
from release.gitops.registry import ensure_local_repo
from release.gitops.registry import Registry
from release.flows.rescan import report_path
from sandbox.seed import PRIOR_RUN_ID, SEEDED_ANNOTATION, prepare
from sandbox.validation import validate_crd
from tests.dags.test_image_rescan import release, rescan_pods, xcom
from tests.dags.test_promote import override_config
from tests.helpers import assert_pods_meet_restricted

DAGS = Path(__file__).resolve().parents[2] / "dags"
MAKE_RUN = Path(__file__).resolve().parents[2] / "include" / "sandbox" / "scenarios" / "make-run.yaml"


def run(dag_id: str, file: str):
    from airflow.dag_processing.dagbag import DagBag

    dagrun = DagBag(dag_folder=str(DAGS / file)).get_dag(dag_id).test()
    return dagrun, {(ti.task_id, ti.map_index): ti.state for ti in dagrun.get_task_instances()}


@pytest.fixture
def make_run(airflow_db, data_dir, sandbox, tmp_path, monkeypatch):
    """The sandbox as `make run` starts it, nothing deployed yet; waits poll fast."""
    from release.domain.config import load_config
    from sandbox import Scenario

    override_config(tmp_path, monkeypatch, lambda raw: raw["nightly"].update(poll_seconds=0.2))
    config = load_config()
    ensure_local_repo(config)
    registry = Registry.from_config(config)
    sandbox.artifacts_dir = data_dir / "artifacts"
    sandbox.scenario = Scenario.load(MAKE_RUN)
    sandbox.seeded = prepare(sandbox, config)
    return sandbox, config, registry


def test_every_nightly_dag_succeeds_in_the_make_run_sandbox_and_leaves_its_record(make_run):
    sandbox, config, registry = make_run
    backups = lambda: sandbox.list("backups", config.environments["prod"].backup.velero_namespace)  # noqa: E731

    # The clusters hold last night's backups, as the platform's own nightly run made them.
    seeded = {b["metadata"]["labels"]["release-platform/env"]: b for b in backups()}
    assert sorted(seeded) == ["dev", "prod", "staging"] and sorted(sandbox.seeded) == sorted(
        b["metadata"]["name"] for b in seeded.values())
    for backup in seeded.values():
        validate_crd(backup)
        assert backup["status"]["phase"] == "Completed"
        assert backup["metadata"]["labels"]["release-platform/dag"] == "velero-backups"
        assert backup["metadata"]["annotations"]["release-platform/run-id"] == PRIOR_RUN_ID
        assert "sandbox scenario" in backup["metadata"]["annotations"][SEEDED_ANNOTATION]
        completed = datetime.fromisoformat(backup["status"]["completionTimestamp"].replace("Z", "+00:00"))
        assert completed < datetime.now(timezone.utc) - timedelta(hours=19)  # made before the sandbox started
        assert backup["metadata"]["creationTimestamp"] < backup["status"]["completionTimestamp"]

    # image-rescan's first run (the one unpausing starts) finds nothing deployed yet.
    dagrun, states = run("image-rescan", "image_rescan.py")
    assert dagrun.state == "success", states
    assert xcom(dagrun, "targets") == [] and not rescan_pods(sandbox)

    # After a first pipeline run: the deployed digest is scanned again; a quiet night records nothing new.
    registry.record_deployment("dev", [release(config, "service-a", "1.1", "3")], by="alice", run_id="pipeline-run")
    repo = git.Repo(registry.store.url.removeprefix("file://"))
    head = repo.commit("main").hexsha
    dagrun, states = run("image-rescan", "image_rescan.py")
    assert dagrun.state == "success", states
    deployed = registry.state("dev")["service-a"]
    [pod] = rescan_pods(sandbox)
    assert pod["spec"]["containers"][0]["args"][-1] == deployed.image
    report = sandbox.artifacts_dir / report_path(dagrun.run_id, "dev", "service-a")
    assert report.is_file()  # the scan pod's report, where evaluate read it
    evaluated = xcom(dagrun, "evaluate")
    assert evaluated["errors"] == [] and evaluated["updates"] == {}
    assert evaluated["lines"] == [f"dev/service-a 1.1 ({deployed.image}): unchanged"]
    assert states[("record", -1)] == "skipped" and states[("verdict", -1)] == "success"
    assert repo.commit("main").hexsha == head and "rescan" not in registry.state("dev")["service-a"].evidence

    # velero-restore-drill before velero-backups ran: it restores last night's prod backup.
    dagrun, states = run("velero-restore-drill", "velero_restore_drill.py")
    assert dagrun.state == "success", states
    [restore] = sandbox.list("restores", "velero")
    assert restore["spec"]["backupName"] == seeded["prod"]["metadata"]["name"]
    assert restore["status"]["phase"] == "Completed"
    [drill] = read_records(config, "drills", "prod")
    assert drill["backup"] == seeded["prod"]["metadata"]["name"] and drill["run_id"] == dagrun.run_id
    assert drill["restored"] is True and drill["smoke_passed"] is True and drill["problems"] == []
    assert drill["smoke"] == {"service-a": "success", "service-b": "success", "service-c": "success"}
    assert drill["recovery_seconds"] > 0
    assert scratch_namespace("apps-prod") not in {n["metadata"]["name"] for n in sandbox.list("namespaces")}

    # velero-backups: a new Completed backup per environment, recorded.
    dagrun, states = run("velero-backups", "velero_backups.py")
    assert dagrun.state == "success", states
    made = {b["metadata"]["labels"]["release-platform/env"]: b for b in backups()
            if b["metadata"]["annotations"]["release-platform/run-id"] == dagrun.run_id}
    assert sorted(made) == ["dev", "prod", "staging"] and len(backups()) == 6
    records = {r["env"]: r for r in read_records(config, "backups")}
    assert sorted(records) == ["dev", "prod", "staging"]
    for env, record in records.items():
        assert record["name"] == made[env]["metadata"]["name"] and record["phase"] == "Completed"
        assert record["run_id"] == dagrun.run_id and record["errors"] == 0 and record["items_backed_up"] == 42

    # Every pod of the night (the re-scan's Trivy pod, the drill's smoke pods; backups run none)
    # meets the Pod Security Standard "restricted" and runs a pinned image.
    pods = assert_pods_meet_restricted(sandbox, {"rescan", "smoke-prod"})
    assert len(pods) == 1 + len(config.services_in("prod"))
