"""The typed plans: a pipeline's checked trigger (`PipelineFacts`), and promote's and rollback's
choices, checked, with the registry's facts the gates judge (each digest's recorded evidence).

`validate` pushes `plan.model_dump(mode="json")` as its XCom; later tasks read it back with
`PLAN.validate_python(...)`. The JSON is the contract `deploy-<env>` checks a caller's change
against (`kind`, `items`), so its keys are the plan's field names. What the config says (approvers,
whether approval is required) is not carried: tasks read it from the config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter

from release.domain.config import PlatformConfig
from release.domain.values import Strict


class PipelineFacts(Strict):
    """What a `<service>-pipeline` run builds, from its checked params (release.domain.plans.
    validate_params). Its `validate` task pushes `model_dump(mode="json")`; the pipeline's
    hand-over, `deploy-<env>` (checking the calling run) and the GitHub report read it back."""

    commit: str  # 40 lowercase hex
    ref: str
    pr: int | None  # set: PR mode, nothing is signed or deployed
    version: str  # the tag without its "v", or sha-<12 hex> for a branch
    release: bool  # not PR mode
    commit_time: str | None  # UTC ISO-8601 ("...Z"): where DORA's change lead time starts


class PlanItem(Strict):
    """One exact digest a plan moves."""

    service: str
    version: str
    image: str


class PromotedItem(PlanItem):
    """A digest promoted from `from_env`, with what the registry recorded for it there (any shape:
    a hand edit may have left it so; the gates judge it) and what `to_env` runs now."""

    evidence: Any = None
    replaces: str | None = None
    replaces_image: str | None = None
    replaces_commit: str | None = None


class Promotion(Strict):
    kind: Literal["promotion"] = "promotion"
    from_env: str
    to_env: str
    requester: str
    reason: str
    items: list[PromotedItem]
    services: list[str]
    subject: str = ""  # what the approver reads (release.domain.plans.describe)
    body: str = ""
    changes: str | None = None  # the commits and PRs promoted, one line, where GitHub is on

    def needs_approval(self, config: PlatformConfig) -> bool:
        return config.environments[self.to_env].approval.required


class Rollback(Strict):
    kind: Literal["rollback"] = "rollback"
    action: Literal["rollback"] = "rollback"
    env: str
    to_env: str  # = env: the environment the change goes to, as for a promotion
    service: str
    services: list[str]
    requester: str
    reason: str
    from_version: str
    to_version: str
    image: str
    items: list[PlanItem]
    subject: str
    body: str

    def needs_approval(self, config: PlatformConfig) -> bool:
        return config.environments[self.env].approval.required_for_rollback


Plan = Annotated[Union[Promotion, Rollback], Field(discriminator="kind")]
PLAN: TypeAdapter[Promotion | Rollback] = TypeAdapter(Plan)
