"""Fuzzed Trivy reports and stored scan summaries: a report gives a summary that round-trips and
re-judges to itself, or ScanReportError saying where; a stored summary is read back whole or
refused with ScanReportError, never anything else."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from release.domain.scan import ScanPolicy, ScanReportError, ScanSummary, evaluate_report, reevaluate
from tests.unit.fuzzing import fuzz, hostile, junk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPORTS = [json.loads(p.read_text()) for p in sorted((FIXTURES / "trivy").glob("*.json"))]
TODAY = date(2026, 11, 1)
SEVERITIES = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
IDS = ["CVE-2019-14697", "CVE-2019-1549", "GHSA-abcd-efgh-ijkl", "DLA-1234-1"]

policies = st.builds(
    ScanPolicy, threshold=st.sampled_from(SEVERITIES), ignore_unfixed=st.booleans(),
    allow=st.lists(st.builds(dict, id=st.sampled_from(IDS[:3]), reason=st.just("accepted"),
                             expires=st.dates(date(2026, 10, 1), date(2026, 12, 1))), max_size=3),
)

vulnerability = st.fixed_dictionaries(
    {"VulnerabilityID": hostile(st.sampled_from(IDS))},
    optional={"PkgName": hostile(st.sampled_from(["musl", "openssl"])), "InstalledVersion": hostile(st.just("1.1")),
              "FixedVersion": st.one_of(st.none(), hostile(st.just("1.2"))), "Severity": hostile(st.sampled_from(SEVERITIES)),
              "Title": hostile(st.just("a flaw")), "Extra": junk},
)
result = st.fixed_dictionaries({}, optional={"Target": hostile(st.just("alpine 3.9")), "Class": junk,
                                             "Vulnerabilities": st.one_of(st.lists(vulnerability, max_size=4), junk)})
generated = st.fixed_dictionaries({"SchemaVersion": st.one_of(st.just(2), junk)},
                                  optional={"Results": st.one_of(st.lists(result, max_size=3), junk), "ArtifactName": junk})


@st.composite
def spoiled_fixture(draw):
    """A real report with one value somewhere replaced by junk."""
    report = copy.deepcopy(draw(st.sampled_from(REPORTS)))
    node = report
    for _ in range(draw(st.integers(1, 5))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()) or not isinstance(node[key], (dict, list)):
            node[key] = draw(junk)
            break
        node = node[key]
    return report


reports = st.one_of(generated, spoiled_fixture(), st.sampled_from(REPORTS), junk)


@fuzz(200)
@given(reports, policies)
def test_a_report_gives_a_sound_summary_or_a_scan_report_error(report, policy):
    try:
        summary = evaluate_report(report, policy, TODAY)
    except ScanReportError as exc:
        assert str(exc), exc
        return
    assert ScanSummary.from_dict(summary.to_dict()) == summary
    assert reevaluate(summary.to_dict(), policy, TODAY) == summary  # a gate re-judging it agrees
    assert sum(summary.counts.values()) == len(summary.findings)
    assert summary.passed is (not summary.blocking)
    for ids in (summary.blocking, summary.allowed, summary.ignored_unfixed):
        assert ids == sorted(set(ids))
    assert not set(summary.blocking) & (set(summary.allowed) | set(summary.ignored_unfixed))
    assert set(summary.expired_allowances) <= set(summary.blocking)


PASSING = evaluate_report(REPORTS[0], ScanPolicy(), TODAY).to_dict()
STORED = [evaluate_report(r, ScanPolicy(), TODAY).to_dict() for r in REPORTS]


@st.composite
def spoiled_summary(draw):
    summary = copy.deepcopy(draw(st.sampled_from(STORED)))
    action = draw(st.sampled_from(["set", "delete", "add", "row"]))
    key = draw(st.sampled_from(sorted(summary)))
    if action == "set":
        summary[key] = draw(junk)
    elif action == "delete":
        del summary[key]
    elif action == "add":
        summary[draw(st.one_of(st.text(max_size=8), st.integers()))] = draw(junk)
    elif summary["findings"]:
        row = draw(st.sampled_from(summary["findings"]))
        row[draw(st.sampled_from(sorted(row)))] = draw(junk)
    return summary


@fuzz(200)
@given(st.one_of(spoiled_summary(), st.sampled_from(STORED), junk), policies)
@example({"threshold": [], **{k: v for k, v in PASSING.items() if k != "threshold"}}, ScanPolicy())  # TypeError: unhashable
@example({**PASSING, 1: "x"}, ScanPolicy())  # TypeError sorting the unknown keys
@example({**STORED[2], "findings": [{**STORED[2]["findings"][0], "severity": ["HIGH"]}]}, ScanPolicy())
def test_a_stored_summary_is_read_whole_or_refused(data, policy):
    try:
        summary = ScanSummary.from_dict(data)
    except ScanReportError as exc:
        assert str(exc).startswith("not a scan summary: "), exc
        return
    assert summary.to_dict() == data
    judged = reevaluate(data, policy, TODAY)  # re-judged whole, under the gate's own policy
    assert len(judged.findings) == len(data["findings"]) and judged.counts == data["counts"]
    assert judged.threshold == policy.threshold.value and judged.passed is (not judged.blocking)
