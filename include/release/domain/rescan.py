"""The nightly re-scan's judgement, pure: tonight's Trivy report of a deployed digest against the
last summary recorded for it, under that environment's scan policy.

`compare` says whether anything worth recording changed and which CVE ids block newly;
`evaluate_target` turns one report into the deployment's `rescan` evidence and, where ids block
newly, the finding to announce. The `image-rescan` DAG (release.flows.rescan) reads the reports
and writes the results.

What the DAG's tasks hand each other is typed here too: a `Target` per deployment, the
`Evaluation` of all reports, what `Recorded` committed. Each travels through XCom as
`model_dump(mode="json")` and is read back with `model_validate`, so a task that gets something
else fails naming the field instead of a KeyError three calls later. The JSON keys are the field
names: they are what an operator sees in the UI's XCom tab, and `rescan` evidence is registry
format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from release.domain.config import PlatformConfig
from release.domain.gates import scan_policy_for
from release.domain.scan import ScanReportError, evaluate_report, reevaluate
from release.domain.values import Strict


class Target(Strict):
    """One deployment to re-scan: what the registry says runs there, where its report goes, and
    the scan pod's own kwargs (`pod`, built by the Kubernetes side; the mapped scan task expands
    over it)."""

    env: str
    service: str
    version: str
    image: str
    report: str  # relative to the artifact store
    pod: dict[str, Any]

    def where(self) -> str:
        return f"{self.env}/{self.service} {self.version} ({self.image})"


class RescanEvidence(Strict):
    """The deployment's `rescan` evidence in the registry (its keys are registry format)."""

    passed: bool
    blocking: list[str]
    new_blocking: list[str]  # block now, did not on the previous findings
    summary: dict[str, Any]  # release.domain.scan's summary, as the promote gate re-judges it
    scanned_at: str
    run_id: str
    image: str


class EvidenceUpdate(Strict):
    """What `Registry.record_evidence_across` adds to one deployment: the version and digest it is
    for (a redeployed service is left alone) and the evidence."""

    version: str
    image: str
    rescan: RescanEvidence


class Finding(Strict):
    """Newly blocking CVE ids of one deployment: what is announced."""

    service: str
    env: str
    version: str
    image: str
    cves: list[str]
    threshold: str


class Evaluation(Strict):
    """Every report judged: the evidence to record per environment and service, the findings to
    announce, the targets that could not be judged (`errors`), and one log line per target."""

    updates: dict[str, dict[str, EvidenceUpdate]] = {}
    new_findings: list[Finding] = []
    errors: list[str] = []
    lines: list[str] = []

    def registry_updates(self) -> dict[str, dict[str, dict[str, Any]]]:
        """`updates` in the plain form the registry writer takes."""
        return {env: {service: u.model_dump(mode="json") for service, u in services.items()}
                for env, services in self.updates.items()}

    def update_count(self) -> int:
        return sum(len(services) for services in self.updates.values())


class Recorded(Strict):
    """What the record task wrote: the GitOps commit (None when every deployment was redeployed
    meanwhile and nothing was left to write) and how many updates it was given."""

    commit: str | None
    updates: int


class RescanError(ValueError):
    """One target's report cannot be judged; the message names the target."""


@dataclass(frozen=True)
class Comparison:
    changed: bool  # something worth recording: other findings, or another verdict than the last re-scan's
    new_blocking: list[str] = field(default_factory=list)  # block now, did not on the previous findings
    resolved: list[str] = field(default_factory=list)  # blocked on the previous findings, do not now
    note: str = ""


def compare(previous: dict | None, current, policy, today: date, *, previous_is_rescan: bool = False) -> Comparison:
    """Tonight's summary against the previous findings, both judged under the same policy today.

    Only a change of findings makes an id "newly blocking"; a changed policy (an allow entry
    added or expired) is the gates' business, as they re-judge the summary themselves. When the
    previous record is a re-scan whose recorded verdict differs from tonight's, the new verdict
    is recorded too, so `rescan.passed` stays current.
    """
    if previous is None:
        return Comparison(True, list(current.blocking), [], "no summary was recorded before")
    try:
        baseline = reevaluate(previous, policy, today)
    except ScanReportError as exc:
        return Comparison(True, list(current.blocking), [], f"the recorded summary is unusable ({exc})")
    new_blocking = sorted(set(current.blocking) - set(baseline.blocking))
    resolved = sorted(set(baseline.blocking) - set(current.blocking))
    if baseline.legacy and not current.legacy:
        # Recorded before findings named their package: tonight's summary, which does, replaces
        # it (read old, write new); ids gained or lost still count as they would otherwise.
        return Comparison(True, new_blocking, resolved, "the recorded summary predates per-package findings")
    changed = baseline.findings != current.findings  # both judged, so rows in the same canonical order
    if not changed and previous_is_rescan:
        changed = sorted(previous.get("blocking") or []) != sorted(current.blocking)
    return Comparison(changed, new_blocking, resolved)


def last_summary(evidence: dict) -> tuple[dict | None, bool]:
    """The last recorded summary of a deployment: the last re-scan's, else the pipeline scan's."""
    rescan = (evidence or {}).get("rescan") or {}
    if rescan.get("summary"):
        return rescan["summary"], True
    return (evidence or {}).get("scan") or None, False


def evaluate_target(config: PlatformConfig, target: Target, deployment, report: dict, *, today: date,
                    run_id: str, scanned_at: str) -> tuple[EvidenceUpdate | None, Finding | None, Comparison]:
    """(evidence update or None when unchanged, newly blocking finding or None, the comparison)."""
    where = f"{target.env}/{target.service} ({target.image})"
    policy = scan_policy_for(config, target.service, target.env)
    try:
        summary = evaluate_report(report, policy, today)
    except ScanReportError as exc:
        raise RescanError(f"{where}: the Trivy report {target.report} is unusable: {exc}") from None
    previous, is_rescan = last_summary(deployment.evidence)
    comparison = compare(previous, summary, policy, today, previous_is_rescan=is_rescan)
    if not comparison.changed:
        return None, None, comparison
    update = EvidenceUpdate(version=target.version, image=target.image, rescan=RescanEvidence(
        passed=summary.passed, blocking=list(summary.blocking), new_blocking=comparison.new_blocking,
        summary=summary.to_dict(), scanned_at=scanned_at, run_id=run_id, image=target.image,
    ))
    finding = None
    if comparison.new_blocking:
        finding = Finding(service=target.service, env=target.env, version=target.version, image=target.image,
                          cves=comparison.new_blocking, threshold=summary.threshold)
    return update, finding, comparison


def finding_message(finding: Finding) -> str:
    return (f"{finding.service} in {finding.env} runs {finding.image} (version {finding.version}), "
            f"which the nightly re-scan finds newly blocked at threshold {finding.threshold} by "
            f"{', '.join(finding.cves)}; promotions of it are refused until fixed or allow-listed")
