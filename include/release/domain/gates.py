"""Every gate a change passes, in one place: the scan policy, smoke and scan evidence, freezes.

The promote DAG runs them before a change joins its environment's queue and `deploy-<env>`
runs them again on the registry's own evidence right before its commit (release.domain.change_set).
Pure: data in, a list of evidence lines or a `PromotionError` naming the gate out.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from release.domain.config import PlatformConfig
from release.domain.plan_models import PromotedItem, Promotion
from release.domain.scan import ScanPolicy, ScanReportError, merge_policies, reevaluate

# The promote tasks whose failure refuses a promotion rather than breaks one (the approval
# tasks, `approve_<env>`, too): a notice says "Promotion blocked" (release.flows.notify).
PROMOTION_CHECKS = ("validate", "gate_smoke", "gate_scan", "gate_freeze", "wait_freeze", "verify_signatures")


def blocks_promotion(task_id: str) -> bool:
    return task_id in PROMOTION_CHECKS or task_id.startswith("approve_")


class PromotionError(ValueError):
    pass


def scan_policy_for(config: PlatformConfig, service: str, env: str) -> ScanPolicy:
    """The scan policy for `service` in `env`: the built-in one, overridden by the pipelines',
    then the environment's, then the service's own."""
    policy = merge_policies(ScanPolicy(), config.pipelines.scan_policy)
    policy = merge_policies(policy, config.environments[env].scan_policy)
    return merge_policies(policy, config.services[service].scan_policy)


def mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def recorded(item: PromotedItem, key: str) -> dict:
    """The evidence record `key` of a plan item; empty when missing or not a record (a hand edit)."""
    return mapping(mapping(item.evidence).get(key))


def smoke_passed(item: PromotedItem) -> bool:
    return recorded(item, "smoke").get("passed") is True


def gate_smoke(plan: Promotion) -> list[str]:
    failed = [f"{i.service} {i.version}" for i in plan.items if not smoke_passed(i)]
    if failed:
        raise PromotionError(f"gate smoke: no passed smoke test in {plan.from_env} is recorded for: {', '.join(failed)}")
    return [f"{i.service} {i.version}: smoke passed in {plan.from_env} ({recorded(i, 'smoke').get('run_id')})"
            for i in plan.items]


def gate_scan(plan: Promotion, config: PlatformConfig, today: date) -> list[str]:
    evidence, problems = [], []
    for i in plan.items:
        what_item = f"{i.service} {i.version}"
        scan = mapping(i.evidence).get("scan")
        if not scan:
            problems.append(f"{what_item}: no scan summary recorded")
            continue
        policy = scan_policy_for(config, i.service, plan.to_env)
        rescan = mapping(i.evidence).get("rescan") or {}
        if not isinstance(rescan, dict):
            problems.append(f"{what_item}: the recorded nightly re-scan is not a record: {str(rescan)[:80]!r}")
            continue
        if rescan.get("summary"):
            # The nightly re-scan judged the same digest with a newer vulnerability database: its
            # findings supersede the pipeline's, re-judged here so an allow entry added since counts.
            what = f"{what_item}: the nightly re-scan of {rescan.get('scanned_at', 'an earlier night')}"
            try:
                summary = reevaluate(rescan["summary"], policy, today)
            except ScanReportError as exc:
                problems.append(f"{what} recorded an unusable summary: {exc}")
                continue
            if summary.passed:
                evidence.append(f"{what} under {plan.to_env}'s policy: {summary.describe()}")
            else:
                problems.append(f"{what} found blocking CVEs under {plan.to_env}'s policy: "
                                f"{', '.join(summary.blocking)} ({summary.describe()})")
            continue
        if rescan.get("passed") is False:
            blocking = rescan.get("blocking")
            ids = ", ".join(map(str, blocking)) if isinstance(blocking, list) else repr(blocking)
            problems.append(f"{what_item}: the nightly re-scan found blocking CVEs: {ids}")
            continue
        try:
            summary = reevaluate(scan, policy, today)
        except ScanReportError as exc:
            problems.append(f"{what_item}: the recorded scan summary is unusable: {exc}")
            continue
        line = f"{what_item} under {plan.to_env}'s policy: {summary.describe()}"
        (evidence if summary.passed else problems).append(line)
    if problems:
        raise PromotionError("gate scan: " + "; ".join(problems))
    return evidence


def gate_freeze(config: PlatformConfig, to_env: str, now: datetime) -> str | None:
    """The end of an active freeze to wait for, None if there is none; fails if the policy says so."""
    env = config.environments[to_env]
    window = env.active_freeze(now)
    if window is None:
        return None
    if env.freeze_policy == "fail":
        raise PromotionError(f"gate freeze: {to_env} is frozen until {window.end.isoformat()} ({window.reason})")
    return window.end.isoformat()
