"""The task results one task reads from another, named once: which task, which key, which type.

Tasks hand their results on as XComs. A reader that spells another task's id as a string breaks
without a word when that task is renamed, and a reader that indexes the JSON by hand breaks when
its shape changes. So every task id that another task, or another DAG, reads is named here, with a
reader that returns what that task pushed as its type (the domain's models: `PipelineFacts`, the
promote or rollback `Plan`, `Applied`, `Undone`). A reader of another DAG's run (`deploy-<env>`
checking the run that asked for a change; a hand-over reading the deploy run's outcome) passes
that run's `dag_id` and `run_id`.

The DAG builders share this module (it is not a builder itself): a builder never imports another.
A task's own outcome (release.flows.outcome) and an approval's record (release.flows.approval)
are read where they are written, and the nightly DAGs (release.flows.rescan, .backups), whose
results no other DAG reads, name and read their own tasks' results typed in their module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from release.domain.change_set import Applied, Undone
from release.domain.plan_models import PLAN, PipelineFacts, Promotion, Rollback

if TYPE_CHECKING:
    from airflow.sdk import XComArg

RETURN = "return_value"  # the key of what a task returns

# -- <service>-pipeline ---------------------------------------------------------------------
VALIDATE = "validate"  # a pipeline's PipelineFacts; promote's and rollback's plan (same task id)
BUILD = "build"  # BuildKit's metadata, {"containerimage.digest": ...}
IMAGE_REF = "image_ref"  # the built image, repository@sha256:<64 hex>
SCAN_GATE = "scan_gate"  # the passed scan's summary (release.domain.scan.ScanSummary.to_dict)
CHART_VALIDATE = "chart_validate"  # the environments the service's chart validates for
# Not results but task states deploy-<env> checks: the image is signed and its SBOM attested.
SIGNING = ("sign", "attest_sbom")

# -- deploy-<env> ---------------------------------------------------------------------------
APPLY, UNDO = "apply", "undo"  # Applied, Undone
SMOKE_TARGETS = {APPLY: "smoke_targets", UNDO: "smoke_undo_targets"}  # per source: one pod's kwargs per service
REPORT = "report"  # the run's leaf; its outcome is the message the calling run ends with
GITOPS_COMMIT = "gitops_commit"  # the field of Applied and Undone that a converge step rolls out


def pull(ti, task_id: str, key: str = RETURN, *, dag_id: str | None = None, run_id: str | None = None) -> Any:
    """The XCom `key` of `task_id`, in this run or in run `run_id` of `dag_id` (None if absent)."""
    if dag_id is None:
        return ti.xcom_pull(task_ids=task_id, key=key)
    # Another DAG's run: its tasks are not mapped (map index -1), whatever this task is.
    return ti.xcom_pull(task_ids=task_id, key=key, dag_id=dag_id, run_id=run_id, map_indexes=-1)


# -- readers: a pipeline run ----------------------------------------------------------------


def pipeline_facts(ti, *, dag_id: str | None = None, run_id: str | None = None) -> PipelineFacts | None:
    """What the pipeline run's `validate` checked (None if it recorded nothing); a record of
    another shape raises pydantic's ValidationError."""
    raw = pull(ti, VALIDATE, dag_id=dag_id, run_id=run_id)
    return PipelineFacts.model_validate(raw) if raw else None


def build_result(ti) -> Any:
    """What the build pod reported (BuildKit's metadata, unchecked: `image_ref` checks it)."""
    return pull(ti, BUILD)


def image_ref(ti, *, dag_id: str | None = None, run_id: str | None = None) -> str | None:
    ref = pull(ti, IMAGE_REF, dag_id=dag_id, run_id=run_id)
    return ref if isinstance(ref, str) else None


def scan_summary(ti, *, dag_id: str | None = None, run_id: str | None = None) -> dict | None:
    """The summary the scan gate passed (None if it recorded none: it failed, or never ran)."""
    scan = pull(ti, SCAN_GATE, dag_id=dag_id, run_id=run_id)
    return scan if isinstance(scan, dict) else None


def chart_envs(ti) -> list[str]:
    return list(pull(ti, CHART_VALIDATE) or [])


# -- readers: promote and rollback ----------------------------------------------------------


def plan(ti, *, dag_id: str | None = None, run_id: str | None = None) -> Promotion | Rollback | None:
    """The plan `validate` recorded (None if it recorded none); a record of another shape raises
    pydantic's ValidationError."""
    raw = pull(ti, VALIDATE, dag_id=dag_id, run_id=run_id)
    return PLAN.validate_python(raw) if raw else None


# -- readers: deploy-<env> ------------------------------------------------------------------


def applied(ti) -> Applied | None:
    """What `apply` committed (None if it committed nothing)."""
    raw = pull(ti, APPLY)
    return Applied.model_validate(raw) if raw else None


def undone(ti) -> Undone | None:
    """What `undo` put back (None if it was skipped: nothing failed, or nothing to put back)."""
    raw = pull(ti, UNDO)
    return Undone.model_validate(raw) if raw else None


def smoke_targets(ti, source: str) -> list[dict]:
    """The smoke pods' kwargs (release.k8s.pods.mapped_pod_kwargs) after `source` (APPLY or UNDO)."""
    return list(pull(ti, SMOKE_TARGETS[source]) or [])


def deploy_outcome(ti, dag_id: str, run_id: str) -> str | None:
    """The message a deploy run ended with (its `report` task's outcome)."""
    from release.flows import outcome

    said = pull(ti, REPORT, outcome.KEY, dag_id=dag_id, run_id=run_id)
    return str(said) if said else None


def rolled_out_commit(task) -> XComArg:
    """The GitOps commit `task` (apply or undo, built with `multiple_outputs=True`) made, as a
    reference Airflow resolves when the converge step runs: the step's wiring is Python, not a
    template string, and it depends on `task` wherever it is used."""
    return task.output[GITOPS_COMMIT]
