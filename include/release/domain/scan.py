"""The scan gate: a policy over Trivy JSON reports (SchemaVersion 2). Pure logic, no I/O.

Three callers share it: the pipeline's scan task (report -> summary, which is the task's
result and the gate evidence recorded in the registry), promotion gates (a stored summary
re-judged under the target environment's policy, without the full report) and the nightly
re-scan. The rules, pinned by tests/unit/test_scan.py:

- A finding is one vulnerability id in one package at one installed version, and the
  stored summary keeps one row per finding: {id, severity, package, installed, fixed,
  title}, so a reviewer sees which package carries each CVE and which version fixes it.
  One CVE in both libssl and libcrypto is two findings; the same CVE in the same package
  and version reported twice (e.g. by two lock files of one image) is one.
- `counts` are per finding, as Trivy's own "Total: N (...)" line counts them. They
  describe the artifact, not the verdict, so no policy setting changes them.
- Summaries stored before findings named their package have rows {id, severity, fixed},
  one per Trivy finding. They are still read and re-judged exactly as before (a gate must
  not refuse what was recorded then); anything judged from a report is written in the
  current form.
- The verdict is per vulnerability id (an allowance or a fix is decided per id, and one
  line per id is what people act on): `blocking`, `allowed`, `ignored_unfixed` and
  `expired_allowances` are sorted lists of unique ids.
- An id "would block" when one of its findings is at or above the threshold. Each such id
  lands in exactly one of: `ignored_unfixed` (the policy ignores unfixed and none of those
  findings has a fix; checked first, as Trivy's --ignore-unfixed filters before its ignore
  file), `allowed` (an unexpired allow entry names it) or `blocking`.
  `expired_allowances` is the part of `blocking` whose allow entries have all expired.
- "Unfixed" means no FixedVersion, the test Trivy's --ignore-unfixed applies.
- An allow entry holds through its `expires` day and stops counting the day after.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

from pydantic import Field, field_validator

from release.domain.values import Strict

__all__ = [
    "AllowEntry", "Finding", "ScanPolicy", "ScanReportError", "ScanSummary", "Severity",
    "evaluate", "evaluate_report", "finding_rows", "merge_policies", "parse_trivy", "reevaluate",
]


class ScanReportError(ValueError):
    """Not a Trivy SchemaVersion 2 JSON report, or not a stored scan summary."""


class Severity(str, Enum):
    UNKNOWN = "UNKNOWN"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __str__(self) -> str:
        return self.value

    # As a str subclass it would otherwise compare alphabetically (HIGH < LOW).
    def __lt__(self, other): return self.rank < Severity(other).rank
    def __le__(self, other): return self.rank <= Severity(other).rank
    def __gt__(self, other): return self.rank > Severity(other).rank
    def __ge__(self, other): return self.rank >= Severity(other).rank


_ORDER = list(Severity)
_DESCENDING = _ORDER[::-1]  # the order of `counts` and of log lines: worst first
_ALLOWED_SEVERITIES = ", ".join(s.value for s in _ORDER)

# The two id forms a person can accept a risk for; other Trivy ids (DLA-, RUSTSEC-...)
# are aliases that Trivy reports under a CVE or GHSA id when one exists.
ALLOW_ID = re.compile(r"CVE-\d{4}-\d{4,}|GHSA(-[0-9a-z]{4}){3}")


class AllowEntry(Strict):
    """One accepted risk: which id, why, and until when (inclusive)."""

    id: str
    reason: str
    expires: date

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ALLOW_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a CVE id (CVE-YYYY-NNNN, e.g. CVE-2019-1549) "
                "or a GitHub advisory id (GHSA-xxxx-xxxx-xxxx, lowercase)"
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason is empty: say why the risk is accepted")
        return value.strip()

    @field_validator("expires", mode="before")
    @classmethod
    def _date_only(cls, value: Any) -> Any:
        # pydantic reads numbers as Unix timestamps; `expires: 20250630` must not mean 1970.
        if isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a date: write YYYY-MM-DD")
        return value


class ScanPolicy(Strict):
    threshold: Severity = Field(Severity.HIGH, description="findings at or above this severity block")
    ignore_unfixed: bool = False
    allow: list[AllowEntry] = Field(default_factory=list)

    @field_validator("threshold", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value  # `critical` in YAML is fine


def merge_policies(base: ScanPolicy, override: dict | None) -> ScanPolicy:
    """`base` with the keys `override` names replaced; `allow` lists concatenate.

    Chain it from general to specific: merge_policies(merge_policies(default, env), service).
    The override is validated on its own first, so an error's location points into it.
    """
    if override is None:
        return base
    patch = ScanPolicy.model_validate(override)
    data = {name: getattr(base, name) for name in ScanPolicy.model_fields}
    for name in patch.model_fields_set:
        data[name] = base.allow + patch.allow if name == "allow" else getattr(patch, name)
    return ScanPolicy(**data)


@dataclass(frozen=True)
class Finding:
    """One vulnerability in one package of one target, as Trivy reports it."""

    id: str
    package: str
    installed: str
    fixed: str | None
    severity: Severity
    target: str = ""
    title: str = ""


def _text(value: Any, where: str, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise ScanReportError(f"{where} is missing")
        return ""
    if not isinstance(value, str):
        raise ScanReportError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def parse_trivy(report: dict) -> list[Finding]:
    """Every vulnerability finding of a `trivy ... --format json` report, in report order.

    Only vulnerabilities are gated; misconfiguration, secret and license results carry
    no `Vulnerabilities` and contribute nothing.
    """
    if not isinstance(report, dict):
        raise ScanReportError(f"a Trivy report is a JSON object, got {type(report).__name__} (parse the JSON first)")
    if "SchemaVersion" not in report:
        if "runs" in report:
            raise ScanReportError("this is a SARIF report, not a Trivy JSON report: run trivy with --format json")
        raise ScanReportError("not a Trivy JSON report: no SchemaVersion (expected 2, as trivy --format json writes)")
    if report["SchemaVersion"] != 2 or isinstance(report["SchemaVersion"], bool):
        raise ScanReportError(f"unsupported Trivy SchemaVersion {report['SchemaVersion']!r}: only 2 is understood")
    # Trivy omits Results when there is nothing to report (alpine-39-skip.json).
    results = report.get("Results") or []
    if not isinstance(results, list):
        raise ScanReportError(f"Results: expected a list, got {type(results).__name__}")
    findings = []
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            raise ScanReportError(f"Results[{i}]: expected an object, got {type(result).__name__}")
        vulns = result.get("Vulnerabilities") or []
        if not isinstance(vulns, list):
            raise ScanReportError(f"Results[{i}].Vulnerabilities: expected a list, got {type(vulns).__name__}")
        target = _text(result.get("Target"), f"Results[{i}].Target")
        for j, v in enumerate(vulns):
            at = f"Results[{i}].Vulnerabilities[{j}]"
            if not isinstance(v, dict):
                raise ScanReportError(f"{at}: expected an object, got {type(v).__name__}")
            # An empty severity is UNKNOWN, as Trivy itself treats it; anything else
            # unexpected fails closed rather than guessing a rank.
            severity = _text(v.get("Severity"), f"{at}.Severity") or "UNKNOWN"
            if severity not in Severity.__members__:
                raise ScanReportError(f"{at}.Severity: {severity!r} is not a Trivy severity ({_ALLOWED_SEVERITIES})")
            findings.append(Finding(
                id=_text(v.get("VulnerabilityID"), f"{at}.VulnerabilityID", required=True),
                package=_text(v.get("PkgName"), f"{at}.PkgName"),
                installed=_text(v.get("InstalledVersion"), f"{at}.InstalledVersion"),
                fixed=_text(v.get("FixedVersion"), f"{at}.FixedVersion") or None,
                severity=Severity(severity),
                target=target,
                title=_text(v.get("Title"), f"{at}.Title"),
            ))
    return findings


_SUMMARY_KEYS = ("counts", "blocking", "allowed", "expired_allowances", "ignored_unfixed", "passed", "threshold", "findings")
ROW_KEYS = ("id", "severity", "package", "installed", "fixed", "title")  # a stored finding, in this order
LEGACY_ROW_KEYS = ("id", "severity", "fixed")  # as stored before findings named their package


@dataclass(frozen=True)
class ScanSummary:
    counts: dict[str, int]          # per finding, every severity, worst first
    blocking: list[str]             # sorted unique ids
    allowed: list[str]              # would block, covered by an unexpired allow entry
    expired_allowances: list[str]   # blocking again because their allow entries expired
    ignored_unfixed: list[str]      # would block, but no fix exists and the policy ignores unfixed
    passed: bool
    threshold: str
    findings: list[dict]            # ROW_KEYS per finding (LEGACY_ROW_KEYS in old records): enough to re-judge later

    def to_dict(self) -> dict:
        return {
            "counts": dict(self.counts), "blocking": list(self.blocking), "allowed": list(self.allowed),
            "expired_allowances": list(self.expired_allowances), "ignored_unfixed": list(self.ignored_unfixed),
            "passed": self.passed, "threshold": self.threshold, "findings": [dict(r) for r in self.findings],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScanSummary:
        """A stored summary back; refuses anything a gate could be fooled by."""

        def bad(msg: str) -> ScanReportError:
            return ScanReportError(f"not a scan summary: {msg}")

        if not isinstance(data, dict):
            raise bad(f"expected an object, got {type(data).__name__}")
        if missing := [k for k in _SUMMARY_KEYS if k not in data]:
            raise bad(f"missing key(s) {', '.join(missing)}")
        if extra := sorted(str(k) for k in set(data) - set(_SUMMARY_KEYS)):
            raise bad(f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(_SUMMARY_KEYS)}")
        if not isinstance(data["threshold"], str) or data["threshold"] not in Severity.__members__:
            raise bad(f"threshold {data['threshold']!r} is not one of {_ALLOWED_SEVERITIES}")
        for key in ("blocking", "allowed", "expired_allowances", "ignored_unfixed"):
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise bad(f"{key} must be a list of ids")
        rows = data["findings"]
        if not isinstance(rows, list):
            raise bad("findings must be a list")
        _check_rows(rows, bad)
        # Counts are recomputable from the findings; a mismatch means a truncated or
        # edited record, which must not be re-judged as if it were whole.
        if data["counts"] != _tally(rows):
            raise bad(f"counts {data['counts']!r} do not match its findings {_tally(rows)!r}")
        if data["passed"] is not (not data["blocking"]):
            raise bad(f"passed={data['passed']!r} contradicts blocking={data['blocking']!r}")
        return cls(**{k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                      for k, v in data.items() if k != "findings"}, findings=[dict(r) for r in rows])

    @property
    def legacy(self) -> bool:
        """Read from a record that predates per-package findings (its rows lack the package)."""
        return any("package" not in r for r in self.findings)

    def packages(self, vid: str) -> list[str]:
        """The packages (sorted, unique) that carry `vid`; empty for a legacy record."""
        return sorted({r["package"] for r in self.findings if r["id"] == vid and r.get("package")})

    def describe(self) -> str:
        """One line for logs, e.g.
        FAILED: 1 blocking (CVE-2019-14697 in musl and musl-utils) at threshold HIGH; counts CRITICAL=2 ..."""
        ids = f" ({_ids(self.blocking, self.packages)})" if self.blocking else ""
        parts = [
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.blocking)} blocking{ids} at threshold {self.threshold}",
            "counts " + " ".join(f"{s.value}={self.counts.get(s.value, 0)}" for s in _DESCENDING),
        ]
        for label, ids_ in (("allowed", self.allowed), ("expired allowances", self.expired_allowances),
                            ("ignored unfixed", self.ignored_unfixed)):
            if ids_:
                parts.append(f"{label} {_ids(ids_, self.packages)}")
        return "; ".join(parts)


def _ids(ids: list[str], packages=None, limit: int = 5) -> str:
    # A log line, not a report: the full list is in the summary itself.
    more = f", +{len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(_carried(vid, packages(vid) if packages else []) for vid in ids[:limit]) + more


def _carried(vid: str, names: list[str]) -> str:
    if not names:
        return vid
    return f"{vid} in {names[0]}" if len(names) == 1 else f"{vid} in {', '.join(names[:-1])} and {names[-1]}"


def _check_rows(rows: list, bad) -> None:
    """Every row in the current form (no finding twice), or every row in the legacy form."""
    legacy = bool(rows) and isinstance(rows[0], dict) and set(rows[0]) == set(LEGACY_ROW_KEYS)
    keys = LEGACY_ROW_KEYS if legacy else ROW_KEYS
    texts = ("id",) if legacy else ("id", "package", "installed", "title")
    seen = set()
    for n, row in enumerate(rows):
        if (not isinstance(row, dict) or set(row) != set(keys) or not all(isinstance(row[k], str) for k in texts)
                or not row["id"] or not isinstance(row["severity"], str) or row["severity"] not in Severity.__members__
                or not isinstance(row["fixed"], (str, type(None)))):
            raise bad(f"findings[{n}] must be {{{', '.join(keys)}}} with a Trivy severity"
                      + ("" if legacy else f" (or, as stored before packages were recorded, {{{', '.join(LEGACY_ROW_KEYS)}}})")
                      + f", got {row!r}")
        if not legacy:
            key = (row["id"], row["package"], row["installed"])
            if key in seen:
                raise bad(f"findings[{n}] repeats {row['id']} in {row['package']} {row['installed']}")
            seen.add(key)


def _tally(rows: list[dict]) -> dict[str, int]:
    seen = Counter(r["severity"] for r in rows)
    return {s.value: seen[s.value] for s in _DESCENDING}


def _order(r: dict) -> tuple:
    # Worst first, then by id and package; legacy rows have no package and sort by fix.
    return (-Severity(r["severity"]).rank, r["id"], r.get("package", ""), r.get("installed", ""), r["fixed"] or "")


def _judge(rows: list[dict], policy: ScanPolicy, today: date) -> ScanSummary:
    # Canonical order, so a summary does not depend on the report's result order and
    # re-judging stored rows gives the same object as judging the report.
    rows = sorted(rows, key=_order)
    has_fix: dict[str, bool] = {}  # id -> any at-or-above-threshold finding of it has a fix
    for r in rows:
        if Severity(r["severity"]) >= policy.threshold:
            has_fix[r["id"]] = has_fix.get(r["id"], False) or r["fixed"] is not None
    active = {e.id for e in policy.allow if today <= e.expires}
    expired = {e.id for e in policy.allow} - active  # a later unexpired entry for the same id wins
    blocking, allowed, expired_hit, ignored = [], [], [], []
    for vid in sorted(has_fix):
        if policy.ignore_unfixed and not has_fix[vid]:
            ignored.append(vid)
        elif vid in active:
            allowed.append(vid)
        else:
            blocking.append(vid)
            if vid in expired:
                expired_hit.append(vid)
    return ScanSummary(
        counts=_tally(rows), blocking=blocking, allowed=allowed, expired_allowances=expired_hit,
        ignored_unfixed=ignored, passed=not blocking, threshold=policy.threshold.value, findings=rows,
    )


def utc_today() -> date:
    """The day allow-list expiry dates are judged on: UTC's, like the schedules, whatever the worker's zone."""
    return datetime.now(timezone.utc).date()


def finding_rows(findings: list[Finding]) -> list[dict]:
    """The stored form of `findings`: one row per (id, package, installed version).

    Trivy reports the same package again when two targets of one artifact hold it (two lock
    files naming one dependency); that is one finding to fix, kept once: its worst severity,
    and a fixed version and title if any of the repeats has one.
    """
    rows: dict[tuple[str, str, str], dict] = {}
    for f in findings:
        key = (f.id, f.package, f.installed)
        severity = Severity(f.severity)
        row = rows.get(key)
        if row is None:
            rows[key] = {"id": f.id, "severity": severity.value, "package": f.package, "installed": f.installed,
                         "fixed": f.fixed, "title": f.title}
            continue
        row["severity"] = max(Severity(row["severity"]), severity).value
        row["fixed"] = row["fixed"] or f.fixed
        row["title"] = row["title"] or f.title
    return list(rows.values())


def evaluate(findings: list[Finding], policy: ScanPolicy, today: date) -> ScanSummary:
    return _judge(finding_rows(findings), policy, today)


def reevaluate(summary: ScanSummary | dict, policy: ScanPolicy, today: date) -> ScanSummary:
    """The verdict `policy` gives today on the findings a stored summary recorded."""
    if isinstance(summary, ScanSummary):
        summary = summary.to_dict()  # same checks whichever form the caller holds
    return _judge(ScanSummary.from_dict(summary).findings, policy, today)


def evaluate_report(report: dict, policy: ScanPolicy, today: date) -> ScanSummary:
    return evaluate(parse_trivy(report), policy, today)
