"""A change set: what `deploy-<env>` is asked to apply, the checks it makes before it writes, and
what it did with it (`Applied`, `Undone`: its tasks' results).

Pipelines, promote and rollback hand one over (release.flows.handover); `deploy-<env>` trusts no
caller and checks it here: its shape (`ChangeSet`, every field named in an error), against the
config, and against the registry (a promotion's gates are judged again on the registry's own
evidence). Pure: the checks against the calling run and its approval, which read Airflow's
records, are in release.flows.deploy.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from release.domain.config import PlatformConfig
from release.domain.gates import PromotionError, gate_freeze, gate_scan, gate_smoke
from release.domain.plan_models import PromotedItem, Promotion
from release.domain.registry import NoRollbackTarget
from release.domain.scan import utc_today
from release.domain.values import DIGEST_RE, DNS1123_LABEL, MAX_REASON, USER_RE, VERSION_RE, Strict

RUN_ID_RE = re.compile(r"[A-Za-z0-9_.~:+-]{1,250}")
Kind = Literal["pipeline", "promotion", "rollback"]
# The DAG that may ask for each kind of change.
CALLERS: dict[str, str] = {"promotion": "promote", "rollback": "rollback"}  # pipeline: <service>-pipeline


class ChangeRefused(ValueError):
    """The change set must not be applied; the message names the field and what is allowed."""


class ChangeItem(Strict):
    service: str
    version: str
    image: str = Field(description="repository@sha256:<64 hex>")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if not DNS1123_LABEL.fullmatch(value):
            raise ValueError("must be a service name (lowercase letters, digits and '-')")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_RE.fullmatch(value):
            raise ValueError("must be a version such as 1.4.2")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        repository, _, digest = value.partition("@")
        if not repository or not DIGEST_RE.fullmatch(digest):
            raise ValueError("must be <repository>@sha256:<64 hex>")
        return value


class Caller(Strict):
    """The run that asked for the change: its approval and plan are read from Airflow."""

    dag_id: str
    run_id: str

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", value):
            raise ValueError("must be a DAG id")
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        if not RUN_ID_RE.fullmatch(value):
            raise ValueError("must be a run id")
        return value


class ChangeSet(Strict):
    """What one `deploy-<env>` run applies: exact digests, why, for whom, asked by which run."""

    kind: Kind
    env: str
    from_env: str | None = Field(None, description="promotion: the environment the digests come from")
    items: list[ChangeItem] = Field(min_length=1, max_length=1000)
    requester: str
    reason: str = Field("", max_length=MAX_REASON)
    caller: Caller

    @field_validator("requester")
    @classmethod
    def _requester(cls, value: str) -> str:
        if not USER_RE.fullmatch(value):
            raise ValueError("must be a user name (letters, digits, '.', '_', '@', '+', '-')")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if any(ord(c) < 32 for c in value):
            raise ValueError("must be one line")
        return value

    @property
    def services(self) -> list[str]:
        return [i.service for i in self.items]

    def describe(self) -> str:
        return ", ".join(f"{i.service} {i.version}" for i in self.items)


class Applied(Strict):
    """What `deploy-<env>`'s `apply` did: the one GitOps commit of a checked change set.

    Its XCom is `model_dump(mode="json")` (`multiple_outputs`: each field is also an XCom of its own,
    so the converge step takes `gitops_commit` by reference); the smoke targets, the smoke evidence,
    `undo`, `report` and the GitHub deployments read it back with `model_validate`."""

    gitops_commit: str
    approved_by: str | None  # None: this environment needs no approval for this kind of change
    replaced: dict[str, str | None]  # service -> the version it replaced here (None: its first deploy here)
    change: ChangeSet

    @property
    def short_commit(self) -> str:
        return self.gitops_commit[:12]


class Undone(Strict):
    """What `deploy-<env>`'s `undo` did after a failed rollout or smoke test: one commit back."""

    gitops_commit: str
    what: str  # what failed, in a sentence: "the smoke test of service-a in dev failed after ..."
    restored: list[str]  # the services put back on the version they had
    first_time: list[str]  # services with no earlier version here: left as they are

    @property
    def short_commit(self) -> str:
        return self.gitops_commit[:12]


def parse_change_set(raw: Any) -> ChangeSet:
    """The `change` param as a ChangeSet, or ChangeRefused naming the first bad field."""
    if not isinstance(raw, dict):
        raise ChangeRefused("change: must be a change set object (kind, env, items, requester, reason, caller)")
    try:
        return ChangeSet.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "change"
        allowed = err.get("ctx", {}).get("expected")
        raise ChangeRefused(f"change.{where}: {err['msg']}" + (f"; allowed: {allowed}" if allowed else "")) from None


def check_against_config(change: ChangeSet, config: PlatformConfig, env: str) -> None:
    """The change set fits this environment and the platform config."""
    if change.env != env:
        raise ChangeRefused(f"change.env: {change.env!r} is not allowed in deploy-{env}; allowed: {env}")
    allowed = config.services_in(env)
    if len(set(change.services)) != len(change.services):
        raise ChangeRefused("change.items: a service is named twice")
    for item in change.items:
        if item.service not in allowed:
            raise ChangeRefused(f"change.items: {item.service!r} is not a service of {env}; allowed: {', '.join(allowed)}")
        repository = config.services[item.service].image
        if item.image.partition("@")[0] != repository:
            raise ChangeRefused(f"change.items: the image of {item.service} must come from {repository}; got {item.image}")
    order = config.env_order
    if change.kind == "pipeline":
        if env != order[0] or len(change.items) != 1:
            raise ChangeRefused(f"change.kind: a pipeline deploys one service to {order[0]} only")
        expected_caller = f"{change.items[0].service}-pipeline"
    else:
        expected_caller = CALLERS[change.kind]
    if change.caller.dag_id != expected_caller:
        raise ChangeRefused(f"change.caller.dag_id: a {change.kind} is handed over by {expected_caller}, "
                            f"not {change.caller.dag_id!r}")
    if change.kind == "promotion":
        before = order[order.index(env) - 1] if order.index(env) > 0 else None
        if before is None or change.from_env != before:
            raise ChangeRefused(f"change.from_env: {change.from_env!r} is not allowed; allowed: {before or 'none'} "
                                f"(promotions reach {env} from the environment before it)")
    elif change.from_env is not None:
        raise ChangeRefused(f"change.from_env: only a promotion has one; this is a {change.kind}")
    if change.kind == "rollback" and len(change.items) != 1:
        raise ChangeRefused("change.items: a rollback puts back one service")


def check_against_registry(change: ChangeSet, config: PlatformConfig, state, now: datetime) -> dict[str, dict]:
    """What the registry says of the change: for each service, the evidence to record with it.

    A promotion's digests must have been deployed (and not undone) in `from_env`, and the gates
    are judged again on the registry's evidence, not on anything the caller sent; a rollback's
    target is judged by the registry's one rule (`RegistryState.undo_target`), digest included.
    Returns service -> evidence."""
    env = change.env
    evidence: dict[str, dict] = {}
    if change.kind == "promotion":
        for item in change.items:
            entry = state.deployed_versions(change.from_env, item.service).get(item.version)
            if entry is None:
                raise ChangeRefused(f"change.items: {item.service} {item.version} was never successfully deployed "
                                    f"in {change.from_env}")
            if entry.image != item.image:
                raise ChangeRefused(f"change.items: {item.service} {item.version} runs as {entry.image} in "
                                    f"{change.from_env}, not {item.image}")
            evidence[item.service] = dict(entry.evidence)
        plan = Promotion(from_env=change.from_env, to_env=env, requester=change.requester, reason=change.reason,
                         services=[i.service for i in change.items],
                         items=[PromotedItem(service=i.service, version=i.version, image=i.image,
                                             evidence=evidence[i.service]) for i in change.items])
        try:
            gate_smoke(plan)
            gate_scan(plan, config, utc_today())
            end = gate_freeze(config, env, now)
        except PromotionError as exc:
            raise ChangeRefused(str(exc)) from None
        if end:
            raise ChangeRefused(f"gate freeze: {env} is frozen until {end}")
    elif change.kind == "rollback":
        item = change.items[0]
        try:
            state.undo_target(env, item.service, item.version, image=item.image)
        except NoRollbackTarget as exc:
            raise ChangeRefused(f"change.items: {item.service} {item.version} ({item.image}) was never successfully "
                                f"deployed to {env} before; allowed: {', '.join(exc.allowed) or 'none'}") from None
    return evidence


def needs_approval(config: PlatformConfig, change: ChangeSet) -> bool:
    approval = config.environments[change.env].approval
    return approval.required_for_rollback if change.kind == "rollback" else (
        approval.required and change.kind == "promotion")
