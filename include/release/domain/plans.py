"""What a run will do, decided from what the user typed, the config and the registry.

Each planner checks every param before anything happens (a refusal names the param and what is
allowed) and returns the plan the run's later tasks carry: a pipeline's commit and version, a
dispatch's affected services, a promotion's or rollback's exact digests. Pure: data in, data out.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from release.domain.affected import AffectedIndex, validate_paths
from release.domain.config import PlatformConfig
from release.domain.gates import PromotionError, mapping, recorded, smoke_passed
from release.domain.plan_models import PipelineFacts, PlanItem, PromotedItem, Promotion, Rollback
from release.domain.registry import NoRollbackTarget
from release.domain.values import DNS1123_LABEL, MAX_REASON, USER_RE, VERSION_RE, Strict

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REF_RE = re.compile(r"^refs/(heads|tags)/[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$|^refs/pull/[0-9]{1,9}/(head|merge)$")


class ParamError(ValueError):
    """A pipeline or dispatch param is refused; the message names it."""


def validate_params(params: dict) -> PipelineFacts:
    """The run's params, checked before anything is built; errors name the param."""
    commit, ref, pr = params.get("commit"), params.get("ref"), params.get("pr")
    if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
        raise ParamError(f"commit: {str(commit)[:80]!r} is not a full commit id (40 lowercase hex characters)")
    if not isinstance(ref, str) or ".." in ref or not REF_RE.fullmatch(ref):
        raise ParamError(f"ref: {str(ref)[:80]!r} is not a ref; allowed forms: refs/heads/<branch>, refs/tags/<tag>, refs/pull/<n>/head")
    if pr is not None and (isinstance(pr, bool) or not isinstance(pr, int) or not 1 <= pr <= 10**9):
        raise ParamError(f"pr: {str(pr)[:80]!r} is not a pull request number (a positive integer) or null")
    paths = params.get("changed_paths") or []
    if not isinstance(paths, list) or not all(isinstance(p, str) and len(p) < 4096 for p in paths):
        raise ParamError("changed_paths: must be a list of repository paths")
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    version = tag.removeprefix("v") if tag else f"sha-{commit[:12]}"
    if not VERSION_RE.fullmatch(version):
        raise ParamError(f"ref: the tag {tag[:80]!r} gives no version the registry can record; allowed: refs/tags/<version> "
                         "or refs/tags/v<version>, a version of letters, digits, '.', '_', '+', '-' (at most 128 characters)")
    return PipelineFacts(commit=commit, ref=ref, pr=pr, version=version, release=pr is None,
                         commit_time=_commit_time(params.get("commit_time")))


def _commit_time(value) -> str | None:
    """The commit's time (the change lead time of DORA starts there), as UTC ISO-8601; None if not given."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ParamError(f"commit_time: {str(value)[:80]!r} is not an ISO-8601 time with a zone, e.g. 2026-11-26T10:00:00Z")
    return parsed.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def pipeline_requester(triggering_user: str | None) -> str:
    """Who a pipeline's deployment is recorded as by: the user who triggered the run, or the
    platform itself (release-dispatch, a webhook, or a name the registry cannot record)."""
    return triggering_user if triggering_user and USER_RE.fullmatch(triggering_user) else "release-platform"


class DispatchPlan(Strict):
    """A commit checked as each pipeline will check it, and the services it affects (config order).

    `release-dispatch` pushes it as its `plan` XCom and hands `pipeline_conf()` to every pipeline
    it triggers; the GitHub webhook plans the same way to refuse a bad delivery before triggering.
    """

    commit: str
    ref: str
    pr: int | None
    changed_paths: list[str]
    commit_time: str | None
    services: list[str]

    def pipeline_conf(self) -> dict[str, Any]:
        """What each triggered `<service>-pipeline` runs with: exactly its params."""
        return self.model_dump(mode="json", include={"commit", "ref", "pr", "changed_paths", "commit_time"})


def plan_dispatch(params: dict, config: PlatformConfig) -> DispatchPlan:
    """The validated trigger and the services it affects, in config order."""
    before = params.get("before")
    if before is not None and (not isinstance(before, str) or not COMMIT_RE.fullmatch(before)):
        raise ParamError(f"before: {str(before)[:80]!r} is not a full commit id (40 lowercase hex characters) or null")
    facts = validate_params({"commit": params.get("after"), "ref": params.get("ref"), "pr": params.get("pr"),
                             "changed_paths": params.get("changed_paths") or [], "commit_time": params.get("commit_time")})
    try:
        paths = validate_paths(params.get("changed_paths") or [])
    except ValueError as exc:
        raise ParamError(f"changed_paths: {exc}") from None
    return DispatchPlan(commit=facts.commit, ref=facts.ref, pr=facts.pr, changed_paths=paths,
                        commit_time=facts.commit_time, services=AffectedIndex.from_config(config).affected(paths))


# -- promote and rollback --------------------------------------------------------------------


def plain(param: str, value: Any, pattern: re.Pattern, allowed: str) -> str:
    if not isinstance(value, str) or len(value) > 128 or not pattern.fullmatch(value):
        raise PromotionError(f"{param}: {str(value)[:80]!r} is not allowed; allowed: {allowed}")
    return value


def plan_promotion(params: dict, config: PlatformConfig, state, requester: str) -> Promotion:
    """Check every param against the config and the registry; return what will happen."""
    envs = config.env_order
    from_env = plain("from_env", params.get("from_env"), DNS1123_LABEL, ", ".join(envs[:-1]))
    to_env = plain("to_env", params.get("to_env"), DNS1123_LABEL, ", ".join(envs[1:]))
    if from_env not in envs[:-1]:
        raise PromotionError(f"from_env: {from_env!r} is not allowed; allowed: {', '.join(envs[:-1])}")
    expected = config.next_env(from_env)
    if to_env != expected:
        raise PromotionError(f"to_env: {to_env!r} is not allowed from {from_env}; allowed: {expected} "
                             "(promotion goes one environment forward; use the rollback DAG to go back)")
    names = params.get("services")
    if not isinstance(names, list) or not names or len(names) > 1000:
        raise PromotionError('services: must be a list of service names, or ["*"]')
    running = state.current(from_env)
    if names == ["*"]:
        names = [s for s in config.services_in(from_env) if s in running]
        if not names:
            raise PromotionError(f"services: nothing runs in {from_env} to promote")
    allowed = ", ".join(config.services_in(from_env))
    for name in names:
        plain("services", name, DNS1123_LABEL, allowed)
        if name not in config.services_in(from_env) or name not in config.services_in(to_env):
            raise PromotionError(f"services: {name!r} is not a service of {from_env} and {to_env}; allowed: {allowed}")
        if name not in running:
            raise PromotionError(f"services: {name!r} does not run in {from_env}")
    if len(set(names)) != len(names):
        raise PromotionError("services: a service is named twice")
    version = params.get("version")
    if version is not None:
        plain("version", version, VERSION_RE, "a version such as 1.4.2")
        if len(names) != 1:
            raise PromotionError("version: only allowed when promoting a single service")
    reason = params.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise PromotionError(f"reason: at most {MAX_REASON} characters on one line")
    if config.environments[to_env].approval.required and not reason.strip():
        raise PromotionError(f"reason: required for a promotion to {to_env}")
    if not USER_RE.fullmatch(requester or ""):
        raise PromotionError(f"the run was triggered by {requester!r}, which is not a user name the registry can record")

    items = []
    for name in names:
        current = running[name]
        if version is not None and version != current.version:
            entry = state.deployed_versions(from_env, name).get(version)
            if entry is None:
                deployed = ", ".join(reversed(list(state.deployed_versions(from_env, name)))) or "none"
                raise PromotionError(f"version: {version!r} of {name} was never successfully deployed in {from_env}; "
                                     f"allowed: {deployed}")
        else:
            entry = current
        target = state.current(to_env).get(name)
        items.append(PromotedItem(service=name, version=entry.version, image=entry.image, evidence=entry.evidence,
                                  replaces=target.version if target else None,
                                  replaces_image=target.image if target else None,
                                  replaces_commit=(target.evidence or {}).get("commit") if target else None))
    return Promotion(from_env=from_env, to_env=to_env, requester=requester, reason=reason, items=items,
                     services=names)


def describe(plan: Promotion, run_url: str = "") -> tuple[str, str]:
    """Subject and body an approver can decide on."""
    names = ", ".join(plan.services)
    subject = f"Promote {names} from {plan.from_env} to {plan.to_env}?"
    lines = [f"Requested by **{plan.requester}**: {plan.reason or '(no reason given)'}", ""]
    for i in plan.items:
        scan = recorded(i, "scan")
        counts = ", ".join(f"{k} {v}" for k, v in mapping(scan.get("counts")).items() if v) or "no findings"
        lines.append(f"- **{i.service}** {i.replaces or '(not deployed)'} -> **{i.version}**  ")
        lines.append(f"  `{i.image}`  ")
        lines.append(f"  scan: {counts if scan else 'not recorded'}; smoke in {plan.from_env}: "
                     f"{'passed' if smoke_passed(i) else 'not recorded'}")
    if run_url:
        lines += ["", f"[The run]({run_url})"]
    return subject, "\n".join(lines)


def plan_rollback(params: dict, config: PlatformConfig, state, requester: str) -> Rollback:
    envs = config.env_order
    env = plain("env", params.get("env"), DNS1123_LABEL, ", ".join(envs))
    if env not in envs:
        raise PromotionError(f"env: {env!r} is not allowed; allowed: {', '.join(envs)}")
    running = state.current(env)
    service = plain("service", params.get("service"), DNS1123_LABEL, ", ".join(running) or "none")
    if service not in running:
        raise PromotionError(f"service: {service!r} does not run in {env}; allowed: {', '.join(running) or 'none'}")
    to_version = params.get("to_version")
    if to_version is not None:
        plain("to_version", to_version, VERSION_RE, "a version such as 1.4.2")
    reason = params.get("reason") or ""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise PromotionError(f"reason: required, at most {MAX_REASON} characters on one line")
    if not USER_RE.fullmatch(requester or ""):
        raise PromotionError(f"the run was triggered by {requester!r}, which is not a user name the registry can record")
    current = running[service]
    try:
        target = state.undo_target(env, service, to_version)
    except NoRollbackTarget as exc:
        raise PromotionError(str(exc)) from None
    return Rollback(
        env=env, to_env=env, service=service, services=[service], requester=requester, reason=reason,
        from_version=current.version, to_version=target.version, image=target.image,
        items=[PlanItem(service=service, version=target.version, image=target.image)],
        subject=f"Roll {service} in {env} back from {current.version} to {target.version}?",
        body=f"Requested by **{requester}**: {reason}\n\n`{current.image}` -> `{target.image}`",
    )
