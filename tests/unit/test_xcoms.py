"""The task results other tasks read: typed, with the JSON (the XCom) keeping the keys it had, and
read from one place (release.flows.xcoms) by task ids named once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from release.domain.change_set import Applied, ChangeSet, Undone
from release.domain.plan_models import PipelineFacts, Rollback
from release.domain.plans import validate_params
from release.flows import xcoms
from tests.unit.test_change_set import change

COMMIT = "ab" * 20
SHA = "cd" * 20
PACKAGE = Path(__file__).resolve().parents[2] / "include" / "release"


class TI:
    """The task instance's xcom_pull: records each call, answers from `xcoms`."""

    def __init__(self, values: dict):
        self.values, self.calls = values, []

    def xcom_pull(self, **kwargs):
        self.calls.append(kwargs)
        return self.values.get((kwargs["task_ids"], kwargs["key"]))


def applied(config) -> Applied:
    return Applied(gitops_commit=SHA, approved_by="bob", replaced={"service-a": "1.0"},
                   change=ChangeSet.model_validate(change(config)))


def test_the_pipeline_facts_keep_their_json_keys():
    facts = validate_params({"commit": COMMIT, "ref": "refs/tags/v1.2.0", "commit_time": "2026-11-26T11:00:00+01:00"})
    assert facts.model_dump(mode="json") == {"commit": COMMIT, "ref": "refs/tags/v1.2.0", "pr": None, "version": "1.2.0",
                                             "release": True, "commit_time": "2026-11-26T10:00:00Z"}
    assert PipelineFacts.model_validate(facts.model_dump(mode="json")) == facts


def test_apply_and_undo_results_keep_their_json_keys(config):
    done = applied(config)
    raw = done.model_dump(mode="json")
    assert set(raw) == {"gitops_commit", "approved_by", "replaced", "change"}
    assert raw["change"] == ChangeSet.model_validate(change(config)).model_dump() and raw["replaced"] == {"service-a": "1.0"}
    assert Applied.model_validate(raw) == done and done.short_commit == SHA[:12]
    undone = Undone(gitops_commit=SHA, what="the Argo CD sync in prod failed", restored=["service-a"], first_time=[])
    assert set(undone.model_dump(mode="json")) == {"gitops_commit", "what", "restored", "first_time"}
    # The converge steps take this field by reference: both results have it.
    assert xcoms.GITOPS_COMMIT in Applied.model_fields and xcoms.GITOPS_COMMIT in Undone.model_fields


def test_readers_return_what_the_task_pushed_typed_or_none(config):
    done = applied(config)
    facts = validate_params({"commit": COMMIT, "ref": "refs/heads/main"})
    ti = TI({(xcoms.APPLY, xcoms.RETURN): done.model_dump(mode="json"),
               (xcoms.VALIDATE, xcoms.RETURN): facts.model_dump(mode="json"),
               (xcoms.IMAGE_REF, xcoms.RETURN): "registry/a@sha256:" + "1" * 64,
               (xcoms.SCAN_GATE, xcoms.RETURN): "not a summary",
               ("smoke_undo_targets", xcoms.RETURN): [{"name": "a"}]})
    assert xcoms.applied(ti) == done and xcoms.undone(ti) is None
    assert xcoms.pipeline_facts(ti) == facts and xcoms.image_ref(ti).endswith("1" * 64)
    assert xcoms.scan_summary(ti) is None and xcoms.chart_envs(ti) == []
    assert xcoms.smoke_targets(ti, xcoms.UNDO) == [{"name": "a"}] and xcoms.smoke_targets(ti, xcoms.APPLY) == []
    assert all(set(call) == {"task_ids", "key"} for call in ti.calls)  # this run's own tasks


def test_another_runs_results_are_read_from_that_run_unmapped(config):
    plan = {"kind": "rollback", "action": "rollback", "env": "prod", "to_env": "prod", "service": "service-a",
            "services": ["service-a"], "requester": "alice", "reason": "r", "from_version": "1.1", "to_version": "1.0",
            "image": "x", "items": [{"service": "service-a", "version": "1.0", "image": "x"}], "subject": "s", "body": "b"}
    ti = TI({(xcoms.VALIDATE, xcoms.RETURN): plan, (xcoms.REPORT, "outcome"): "deployed service-a 1.0"})
    assert isinstance(xcoms.plan(ti, dag_id="rollback", run_id="r1"), Rollback)
    assert xcoms.deploy_outcome(ti, "deploy-prod", "rollback.r1") == "deployed service-a 1.0"
    assert ti.calls == [{"task_ids": "validate", "key": "return_value", "dag_id": "rollback", "run_id": "r1", "map_indexes": -1},
                        {"task_ids": "report", "key": "outcome", "dag_id": "deploy-prod", "run_id": "rollback.r1",
                         "map_indexes": -1}]


def test_a_record_of_another_shape_is_an_error_not_a_guess():
    """deploy-<env> refuses a caller whose validate recorded something else (ChangeRefused)."""
    ti = TI({(xcoms.VALIDATE, xcoms.RETURN): {"commit": COMMIT, "version": "1.0"}})
    with pytest.raises(ValidationError):
        xcoms.pipeline_facts(ti, dag_id="service-a-pipeline", run_id="r")
    with pytest.raises(ValidationError):
        xcoms.plan(ti)


def test_only_the_xcoms_module_reads_another_tasks_results():
    """Task ids another task reads are spelled once: no other module of the deploy path, the
    pipeline, promote, rollback or the GitHub mirrors calls xcom_pull."""
    readers = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "xcom_pull(" in p.read_text()}
    # outcome and approval read their own keys; github_report its task's own outcome; the
    # nightly DAGs read their own tasks' results.
    assert readers <= {"flows/xcoms.py", "flows/outcome.py", "flows/approval.py", "flows/github_report.py",
                       "flows/rescan.py", "flows/backups.py"}, readers
    assert not [p for p in PACKAGE.rglob("*.py") if re.search(r"task_ids=['\"](apply|undo|validate|image_ref|scan_gate)",
                                                              p.read_text())]
