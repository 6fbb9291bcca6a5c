"""The scan gate's policy, against real Trivy reports (tests/fixtures/trivy, copied from
Trivy's own golden files) and two hand-made unfixed variants (tests/fixtures/trivy-extra,
each a real report with one finding's fix removed; see the README there)."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from release.domain.scan import (
    AllowEntry,
    Finding,
    ScanPolicy,
    ScanReportError,
    ScanSummary,
    Severity,
    evaluate,
    evaluate_report,
    merge_policies,
    parse_trivy,
    reevaluate,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TODAY = date(2026, 11, 1)
ZERO = {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}


def report(name: str) -> dict:
    folder = "trivy-extra" if "unfixed" in name and name != "debian-buster-ignore-unfixed" else "trivy"
    return json.loads((FIXTURES / folder / f"{name}.json").read_text())


def counts(**nonzero) -> dict:
    return {**ZERO, **nonzero}


def allow(id_: str, expires: date = TODAY, reason: str = "no exploit path in this service") -> dict:
    return {"id": id_, "reason": reason, "expires": expires.isoformat()}


# Per finding, as Trivy's own totals: alpine-39 has each CVE in two packages.
COUNTS = {
    "alpine-310": counts(MEDIUM=4),
    "alpine-39": counts(MEDIUM=4, CRITICAL=2),
    "alpine-39-skip": counts(),
    "busybox-with-lockfile": counts(HIGH=1, MEDIUM=1),
    "debian-buster-ignore-unfixed": counts(CRITICAL=1),
    "npm": counts(MEDIUM=1),
}
REAL = sorted(COUNTS)
# Blocking ids (unique, sorted) per threshold.
BLOCKING = {
    "CRITICAL": {"alpine-39": ["CVE-2019-14697"], "debian-buster-ignore-unfixed": ["CVE-2019-18224"]},
    "HIGH": {"alpine-39": ["CVE-2019-14697"], "busybox-with-lockfile": ["CVE-2019-15542"],
             "debian-buster-ignore-unfixed": ["CVE-2019-18224"]},
    "MEDIUM": {"alpine-310": ["CVE-2019-1549", "CVE-2019-1551"],
               "alpine-39": ["CVE-2019-14697", "CVE-2019-1549", "CVE-2019-1551"],
               "busybox-with-lockfile": ["CVE-2019-15542", "CVE-2021-38193"],
               "debian-buster-ignore-unfixed": ["CVE-2019-18224"], "npm": ["CVE-2019-11358"]},
}


def test_every_real_fixture_is_covered():
    assert sorted(p.stem for p in (FIXTURES / "trivy").glob("*.json")) == REAL


# -- real reports under thresholds ------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_default_policy_fails_on_high_and_critical(name):
    summary = evaluate_report(report(name), ScanPolicy(), TODAY)
    assert summary.counts == COUNTS[name]
    assert list(summary.counts) == ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
    assert summary.blocking == BLOCKING["HIGH"].get(name, [])
    assert summary.passed is (name in {"alpine-310", "alpine-39-skip", "npm"})
    assert summary.threshold == "HIGH"
    assert (summary.allowed, summary.expired_allowances, summary.ignored_unfixed) == ([], [], [])


@pytest.mark.parametrize("threshold", ["CRITICAL", "MEDIUM"])
@pytest.mark.parametrize("name", REAL)
def test_other_thresholds(name, threshold):
    summary = evaluate_report(report(name), ScanPolicy(threshold=threshold), TODAY)
    assert summary.counts == COUNTS[name]  # counts describe the image, not the verdict
    assert summary.blocking == BLOCKING[threshold].get(name, [])
    assert summary.passed is (not BLOCKING[threshold].get(name))
    assert summary.threshold == threshold


def test_counts_are_per_finding_and_blocking_per_unique_id():
    findings = parse_trivy(report("alpine-39"))
    assert [(f.id, f.package) for f in findings if f.id == "CVE-2019-14697"] == [
        ("CVE-2019-14697", "musl"), ("CVE-2019-14697", "musl-utils")]
    summary = evaluate(findings, ScanPolicy(), TODAY)
    assert summary.counts["CRITICAL"] == 2 and summary.blocking == ["CVE-2019-14697"]
    assert len(summary.findings) == 6
    assert summary.findings[:2] == [
        {"id": "CVE-2019-14697", "severity": "CRITICAL", "package": "musl", "installed": "1.1.20-r4",
         "fixed": "1.1.20-r5", "title": ""},
        {"id": "CVE-2019-14697", "severity": "CRITICAL", "package": "musl-utils", "installed": "1.1.20-r4",
         "fixed": "1.1.20-r5", "title": ""},
    ]


def _raw(name: str) -> list[tuple]:
    """(id, package, installed, fixed, severity) of every vulnerability, straight from the JSON."""
    return [(v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"], v.get("FixedVersion"), v["Severity"])
            for r in report(name).get("Results") or [] for v in r.get("Vulnerabilities") or []]


@pytest.mark.parametrize("name", REAL + ["debian-buster-unfixed", "alpine-39-musl-utils-unfixed"])
def test_stored_findings_name_the_package_of_every_cve_once(name):
    rows = evaluate_report(report(name), ScanPolicy(), TODAY).to_dict()["findings"]
    assert all(list(r) == ["id", "severity", "package", "installed", "fixed", "title"] for r in rows)
    # Exactly the report's findings, each with its package and versions, none twice.
    assert sorted((r["id"], r["package"], r["installed"], r["fixed"], r["severity"]) for r in rows) == sorted(_raw(name))
    assert len({(r["id"], r["package"], r["installed"]) for r in rows}) == len(rows)
    # The fixture README's severity counts, per finding.
    derived_from = {"debian-buster-unfixed": "debian-buster-ignore-unfixed", "alpine-39-musl-utils-unfixed": "alpine-39"}
    assert evaluate_report(report(name), ScanPolicy(), TODAY).counts == COUNTS[derived_from.get(name, name)]


def test_one_cve_in_two_packages_is_two_findings_and_a_repeat_is_one():
    r = report("alpine-39")
    # The same image target reported twice (as two lock files naming one dependency would be).
    r["Results"].append(copy.deepcopy(r["Results"][0]))
    summary = evaluate_report(r, ScanPolicy(), TODAY)
    assert summary.counts == COUNTS["alpine-39"]
    assert [(f["id"], f["package"]) for f in summary.findings] == [
        ("CVE-2019-14697", "musl"), ("CVE-2019-14697", "musl-utils"),
        ("CVE-2019-1549", "libcrypto1.1"), ("CVE-2019-1549", "libssl1.1"),
        ("CVE-2019-1551", "libcrypto1.1"), ("CVE-2019-1551", "libssl1.1"),
    ]
    assert summary.packages("CVE-2019-1549") == ["libcrypto1.1", "libssl1.1"]


def test_a_repeat_keeps_the_worst_severity_and_a_known_fix():
    musl = Finding(id="CVE-2019-14697", package="musl", installed="1.1.20-r4", fixed=None, severity=Severity.HIGH)
    again = Finding(id="CVE-2019-14697", package="musl", installed="1.1.20-r4", fixed="1.1.20-r5",
                    severity=Severity.CRITICAL, title="musl: x87 stack", target="other")
    older = Finding(id="CVE-2019-14697", package="musl", installed="1.1.19-r1", fixed="1.1.20-r5", severity=Severity.LOW)
    summary = evaluate([musl, again, older], ScanPolicy(), TODAY)
    assert summary.findings == [
        {"id": "CVE-2019-14697", "severity": "CRITICAL", "package": "musl", "installed": "1.1.20-r4",
         "fixed": "1.1.20-r5", "title": "musl: x87 stack"},
        {"id": "CVE-2019-14697", "severity": "LOW", "package": "musl", "installed": "1.1.19-r1",
         "fixed": "1.1.20-r5", "title": ""},  # another installed version is another upgrade to make
    ]
    assert summary.counts == counts(CRITICAL=1, LOW=1)


def test_parse_reads_trivy_fields():
    musl = parse_trivy(report("alpine-39"))[4]
    assert musl == Finding(id="CVE-2019-14697", package="musl", installed="1.1.20-r4", fixed="1.1.20-r5",
                           severity=Severity.CRITICAL, target="testdata/fixtures/images/alpine-39.tar.gz (alpine 3.9.4)",
                           title="")  # Trivy wrote no Title for it
    [ammonia, _] = parse_trivy(report("busybox-with-lockfile"))
    assert (ammonia.target, ammonia.fixed, ammonia.severity) == ("Cargo.lock", ">= 2.1.0", Severity.HIGH)
    assert ammonia.title.startswith("Uncontrolled recursion")
    [jquery] = parse_trivy(report("npm"))  # a repository scan: Packages listed, one vulnerable
    assert (jquery.id, jquery.package, jquery.installed, jquery.target) == (
        "CVE-2019-11358", "jquery", "3.3.9", "package-lock.json")
    assert parse_trivy(report("alpine-39-skip")) == []  # no Results at all


def test_empty_severity_is_unknown_and_the_lowest_threshold_catches_it():
    data = report("npm")
    data["Results"][0]["Vulnerabilities"][0]["Severity"] = ""
    assert evaluate_report(data, ScanPolicy(threshold="LOW"), TODAY).passed
    summary = evaluate_report(data, ScanPolicy(threshold="UNKNOWN"), TODAY)
    assert (summary.counts, summary.blocking) == (counts(UNKNOWN=1), ["CVE-2019-11358"])


def test_severity_orders_by_rank_not_alphabet():
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.HIGH > Severity.LOW and Severity.MEDIUM < "HIGH" and Severity.CRITICAL >= Severity.CRITICAL
    assert sorted([Severity.LOW, Severity.CRITICAL, Severity.HIGH]) == [Severity.LOW, Severity.HIGH, Severity.CRITICAL]
    assert str(Severity.HIGH) == "HIGH"


# -- ignore-unfixed ---------------------------------------------------------------------


def test_hand_made_unfixed_reports_differ_from_their_source_only_in_the_fix():
    for derived, source, package in [("debian-buster-unfixed", "debian-buster-ignore-unfixed", "libidn2-0"),
                                     ("alpine-39-musl-utils-unfixed", "alpine-39", "musl-utils")]:
        expected = report(source)
        for vuln in expected["Results"][0]["Vulnerabilities"]:
            if vuln["PkgName"] == package:
                del vuln["FixedVersion"]
                vuln["Status"] = "affected"
        assert report(derived) == expected


def test_ignore_unfixed_drops_a_finding_without_a_fix():
    data = report("debian-buster-unfixed")
    assert parse_trivy(data)[0].fixed is None
    strict = evaluate_report(data, ScanPolicy(), TODAY)
    assert (strict.passed, strict.blocking) == (False, ["CVE-2019-18224"])  # unfixed still blocks by default
    lenient = evaluate_report(data, ScanPolicy(ignore_unfixed=True), TODAY)
    assert (lenient.passed, lenient.blocking, lenient.ignored_unfixed) == (True, [], ["CVE-2019-18224"])
    assert lenient.counts == counts(CRITICAL=1)  # still counted: the image has it
    assert "ignored unfixed CVE-2019-18224" in lenient.describe()


def test_an_id_with_a_fix_in_any_package_still_blocks():
    summary = evaluate_report(report("alpine-39-musl-utils-unfixed"), ScanPolicy(ignore_unfixed=True), TODAY)
    assert (summary.passed, summary.blocking, summary.ignored_unfixed) == (False, ["CVE-2019-14697"], [])


def test_unfixed_below_threshold_is_not_listed():
    summary = evaluate_report(report("debian-buster-unfixed"),
                              ScanPolicy(ignore_unfixed=True, threshold="CRITICAL"), TODAY)
    assert summary.ignored_unfixed == ["CVE-2019-18224"]
    finding = Finding("CVE-2024-0001", "zlib", "1.0", None, Severity.LOW)
    assert evaluate([finding], ScanPolicy(ignore_unfixed=True), TODAY).ignored_unfixed == []


@pytest.mark.parametrize("threshold", ["CRITICAL", "HIGH", "MEDIUM"])
@pytest.mark.parametrize("name", REAL)
def test_ignore_unfixed_changes_nothing_on_real_reports(name, threshold):
    plain = evaluate_report(report(name), ScanPolicy(threshold=threshold), TODAY)
    assert evaluate_report(report(name), ScanPolicy(threshold=threshold, ignore_unfixed=True), TODAY) == plain


# -- allow-list -------------------------------------------------------------------------


def test_an_allowed_cve_stops_blocking_through_its_expiry_day():
    policy = ScanPolicy(allow=[allow("CVE-2019-14697", expires=TODAY)])
    summary = evaluate_report(report("alpine-39"), policy, TODAY)
    assert (summary.passed, summary.blocking, summary.allowed) == (True, [], ["CVE-2019-14697"])
    assert summary.counts == COUNTS["alpine-39"]
    assert summary.describe().endswith("; allowed CVE-2019-14697 in musl and musl-utils")


def test_an_expired_allowance_blocks_again_and_is_reported():
    policy = ScanPolicy(allow=[allow("CVE-2019-14697", expires=TODAY)])
    summary = evaluate_report(report("alpine-39"), policy, TODAY + timedelta(days=1))
    assert (summary.passed, summary.blocking, summary.allowed) == (False, ["CVE-2019-14697"], [])
    assert summary.expired_allowances == ["CVE-2019-14697"]
    assert "expired allowances CVE-2019-14697" in summary.describe()


def test_a_renewed_allowance_wins_over_an_expired_one():
    base = ScanPolicy(allow=[allow("CVE-2019-14697", expires=TODAY - timedelta(days=30))])
    renewed = merge_policies(base, {"allow": [allow("CVE-2019-14697", expires=TODAY + timedelta(days=30))]})
    summary = evaluate_report(report("alpine-39"), renewed, TODAY)
    assert (summary.passed, summary.allowed, summary.expired_allowances) == (True, ["CVE-2019-14697"], [])


@pytest.mark.parametrize("expires", [TODAY, TODAY - timedelta(days=1)])
@pytest.mark.parametrize("name", REAL)
def test_an_allowance_for_an_absent_id_changes_nothing(name, expires):
    policy = ScanPolicy(allow=[allow("CVE-2000-0001", expires=expires), allow("GHSA-jfh8-c2jp-5v3q", expires=expires)])
    assert evaluate_report(report(name), policy, TODAY) == evaluate_report(report(name), ScanPolicy(), TODAY)


def test_allowances_only_list_ids_that_would_block():
    # CVE-2019-1549 is MEDIUM: under HIGH it never blocks, so the allowance is not "used".
    policy = ScanPolicy(allow=[allow("CVE-2019-1549"), allow("CVE-2019-1551", expires=TODAY - timedelta(days=1))])
    summary = evaluate_report(report("alpine-310"), policy, TODAY)
    assert (summary.allowed, summary.expired_allowances, summary.passed) == ([], [], True)
    summary = evaluate_report(report("alpine-310"), policy.model_copy(update={"threshold": Severity.MEDIUM}), TODAY)
    assert (summary.allowed, summary.blocking, summary.expired_allowances) == (
        ["CVE-2019-1549"], ["CVE-2019-1551"], ["CVE-2019-1551"])


def test_ignore_unfixed_is_applied_before_the_allow_list():
    policy = ScanPolicy(ignore_unfixed=True, allow=[allow("CVE-2019-18224")])
    summary = evaluate_report(report("debian-buster-unfixed"), policy, TODAY)
    assert (summary.ignored_unfixed, summary.allowed, summary.passed) == (["CVE-2019-18224"], [], True)


# -- policies: merging and validation -----------------------------------------------------


def test_merge_sets_only_named_keys_and_concatenates_allow_lists():
    default = ScanPolicy(ignore_unfixed=True, allow=[allow("CVE-2019-1549")])
    prod = merge_policies(default, {"threshold": "medium"})
    assert (prod.threshold, prod.ignore_unfixed, [e.id for e in prod.allow]) == (Severity.MEDIUM, True, ["CVE-2019-1549"])
    service = merge_policies(prod, {"allow": [allow("CVE-2019-1551")], "ignore_unfixed": False})
    assert (service.threshold, service.ignore_unfixed) == (Severity.MEDIUM, False)
    assert [e.id for e in service.allow] == ["CVE-2019-1549", "CVE-2019-1551"]
    assert merge_policies(default, None) is default and merge_policies(default, {}) == default
    assert evaluate_report(report("alpine-310"), service, TODAY).allowed == ["CVE-2019-1549", "CVE-2019-1551"]


def test_policy_is_frozen():
    with pytest.raises(ValidationError):
        ScanPolicy().threshold = Severity.LOW


@pytest.mark.parametrize(
    "data, loc, text",
    [
        ({"threshold": "SEVERE"}, ("threshold",), "'UNKNOWN', 'LOW', 'MEDIUM', 'HIGH' or 'CRITICAL'"),
        ({"allow": [{"id": "CVE-2019-1549", "expires": "2026-12-31"}]}, ("allow", 0, "reason"), "Field required"),
        ({"allow": [allow("CVE-2019-1549", reason="  ")]}, ("allow", 0, "reason"), "reason is empty"),
        ({"allow": [allow("CVE-19-1549")]}, ("allow", 0, "id"), "is not a CVE id"),
        ({"allow": [allow("cve-2019-1549")]}, ("allow", 0, "id"), "is not a CVE id"),
        ({"allow": [allow("GHSA-JFH8-C2JP-5V3Q")]}, ("allow", 0, "id"), "GitHub advisory id"),
        ({"allow": [{**allow("CVE-2019-1549"), "expires": 20261231}]}, ("allow", 0, "expires"), "YYYY-MM-DD"),
        ({"allow": [{**allow("CVE-2019-1549"), "expires": "next year"}]}, ("allow", 0, "expires"), "date"),
        ({"allow": [{**allow("CVE-2019-1549"), "ticket": "SEC-1"}]}, ("allow", 0, "ticket"), "Extra inputs"),
        ({"thresold": "HIGH"}, ("thresold",), "Extra inputs are not permitted"),
    ],
)
def test_bad_policies_name_the_field(data, loc, text):
    with pytest.raises(ValidationError) as exc:
        ScanPolicy.model_validate(data)
    assert [e["loc"] for e in exc.value.errors()] == [loc]
    assert text in str(exc.value)
    # An override is validated the same way, with the location inside the override.
    with pytest.raises(ValidationError) as exc:
        merge_policies(ScanPolicy(allow=[allow("CVE-2019-1551")]), data)
    assert [e["loc"] for e in exc.value.errors()] == [loc]


def test_allow_entry_accepts_both_id_forms():
    assert AllowEntry(id="GHSA-jfh8-c2jp-5v3q", reason="r", expires="2026-12-31").expires == date(2026, 12, 31)
    assert AllowEntry(id="CVE-2021-44228", reason="r", expires=date(2026, 1, 1)).id == "CVE-2021-44228"


# -- stored summaries: round trip and re-evaluation ---------------------------------------

POLICIES = [
    ScanPolicy(),
    ScanPolicy(threshold="CRITICAL"),
    ScanPolicy(threshold="MEDIUM", allow=[allow("CVE-2019-1549"), allow("CVE-2019-14697", TODAY - timedelta(days=1))]),
    ScanPolicy(ignore_unfixed=True, allow=[allow("CVE-2019-15542")]),
]
ALL = REAL + ["debian-buster-unfixed", "alpine-39-musl-utils-unfixed"]


@pytest.mark.parametrize("name", ALL)
def test_round_trip_through_json_is_exact(name):
    summary = evaluate_report(report(name), POLICIES[2], TODAY)
    stored = json.loads(json.dumps(summary.to_dict()))
    assert stored == summary.to_dict()
    assert ScanSummary.from_dict(stored) == summary
    assert ScanSummary.from_dict(stored).to_dict() == summary.to_dict()


@pytest.mark.parametrize("name", ALL)
def test_reevaluating_a_stored_summary_equals_evaluating_the_report(name):
    # What the pipeline stored (under the dev policy), judged later under every other policy.
    stored = json.loads(json.dumps(evaluate_report(report(name), ScanPolicy(threshold="LOW"), TODAY).to_dict()))
    for policy in POLICIES:
        for day in (TODAY, TODAY + timedelta(days=1)):
            expected = evaluate_report(report(name), policy, day)
            assert reevaluate(stored, policy, day) == expected
            assert reevaluate(ScanSummary.from_dict(stored), policy, day) == expected


def test_reevaluation_changes_the_verdict_with_the_policy():
    stored = evaluate_report(report("alpine-310"), ScanPolicy(), TODAY).to_dict()
    assert stored["passed"] is True
    stricter = reevaluate(stored, ScanPolicy(threshold="MEDIUM"), TODAY)
    assert (stricter.passed, stricter.blocking, stricter.threshold) == (False, ["CVE-2019-1549", "CVE-2019-1551"], "MEDIUM")


def _edited(change) -> dict:
    data = copy.deepcopy(evaluate_report(report("alpine-39"), ScanPolicy(), TODAY).to_dict())
    change(data)
    return data


# -- summaries stored before findings named their package --------------------------------

LEGACY = yaml.safe_load((FIXTURES / "scan-summaries" / "legacy.yaml").read_text())
VERDICT = ("counts", "blocking", "allowed", "expired_allowances", "ignored_unfixed", "passed", "threshold")


def test_legacy_records_are_the_old_form():
    assert sorted(LEGACY) == ["alpine-39", "alpine-39-musl-utils-unfixed", "busybox-with-lockfile", "debian-buster-unfixed"]
    for stored in LEGACY.values():
        assert all(sorted(r) == ["fixed", "id", "severity"] for r in stored["findings"])


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_a_legacy_record_is_rejudged_as_its_report_would_be(name):
    for policy in POLICIES:
        for day in (TODAY, TODAY + timedelta(days=1)):
            old = reevaluate(LEGACY[name], policy, day)
            new = evaluate_report(report(name), policy, day)
            assert {k: getattr(old, k) for k in VERDICT} == {k: getattr(new, k) for k in VERDICT}
            assert old.legacy and not new.legacy
            assert old.findings == LEGACY[name]["findings"]  # re-judged as recorded, not rewritten


def test_a_legacy_record_round_trips_and_describes_without_packages():
    stored = LEGACY["alpine-39"]
    assert ScanSummary.from_dict(stored).to_dict() == stored
    assert reevaluate(stored, ScanPolicy(), TODAY).describe().startswith("FAILED: 1 blocking (CVE-2019-14697) at")
    # what is written from a report is always the current form
    assert not evaluate_report(report("alpine-39"), ScanPolicy(), TODAY).legacy


def test_a_damaged_legacy_record_is_refused():
    stored = copy.deepcopy(LEGACY["alpine-39"])
    stored["findings"][1]["package"] = "musl"  # one row in one form, the rest in the other
    with pytest.raises(ScanReportError, match=r"findings\[1\] must be \{id, severity, fixed\}"):
        reevaluate(stored, ScanPolicy(), TODAY)
    stored = copy.deepcopy(LEGACY["alpine-39"])
    stored["findings"].pop()
    with pytest.raises(ScanReportError, match="counts"):
        reevaluate(stored, ScanPolicy(), TODAY)


@pytest.mark.parametrize(
    "change, text",
    [
        (lambda d: d["findings"].pop(0), "counts"),  # a truncated record must not pass re-judging
        (lambda d: d.pop("findings"), "missing key(s) findings"),
        (lambda d: d.update(extra=1), "unknown key(s) extra"),
        (lambda d: d.update(threshold="SEVERE"), "threshold 'SEVERE'"),
        (lambda d: d["findings"][0].update(severity="SEVERE"), "findings[0]"),
        (lambda d: d["findings"][0].pop("fixed"), "findings[0]"),
        (lambda d: d["findings"][0].pop("package"), "findings[0]"),
        (lambda d: d["findings"][0].update(installed=None), "findings[0]"),
        (lambda d: d["findings"][1].update(package="musl"), "findings[1] repeats CVE-2019-14697 in musl 1.1.20-r4"),
        (lambda d: d.update(passed=True), "contradicts"),
        (lambda d: d.update(blocking="CVE-2019-14697"), "blocking must be a list"),
    ],
)
def test_a_damaged_summary_is_refused(change, text):
    with pytest.raises(ScanReportError, match="not a scan summary") as exc:
        reevaluate(_edited(change), ScanPolicy(), TODAY)
    assert text in str(exc.value)


def test_describe_is_one_line_for_logs():
    assert evaluate_report(report("alpine-39"), ScanPolicy(), TODAY).describe() == (
        "FAILED: 1 blocking (CVE-2019-14697 in musl and musl-utils) at threshold HIGH; "
        "counts CRITICAL=2 HIGH=0 MEDIUM=4 LOW=0 UNKNOWN=0")
    assert evaluate_report(report("alpine-310"), ScanPolicy(), TODAY).describe() == (
        "PASSED: 0 blocking at threshold HIGH; counts CRITICAL=0 HIGH=0 MEDIUM=4 LOW=0 UNKNOWN=0")
    many = [Finding(f"CVE-2024-{n:04d}", "p", "1", "2", Severity.HIGH) for n in range(1, 8)]
    line = evaluate(many, ScanPolicy(), TODAY).describe()
    assert ("(CVE-2024-0001 in p, CVE-2024-0002 in p, CVE-2024-0003 in p, CVE-2024-0004 in p, CVE-2024-0005 in p, "
            "+2 more)") in line
    assert "\n" not in line


# -- not a Trivy report -------------------------------------------------------------------


def _with(change) -> dict:
    data = report("npm")
    change(data)
    return data


@pytest.mark.parametrize(
    "data, text",
    [
        (json.loads((FIXTURES / "trivy" / "alpine-310.sarif").read_text()), "SARIF report"),
        ({}, "no SchemaVersion"),
        ([], "got list"),
        ('{"SchemaVersion": 2}', "got str"),
        (_with(lambda d: d.update(SchemaVersion=1)), "SchemaVersion 1"),
        (_with(lambda d: d.pop("SchemaVersion")), "no SchemaVersion"),
        (_with(lambda d: d.update(SchemaVersion=True)), "SchemaVersion True"),
        (_with(lambda d: d.update(Results={"Target": "x"})), "Results: expected a list"),
        (_with(lambda d: d["Results"][0].update(Vulnerabilities="none")), "Results[0].Vulnerabilities"),
        (_with(lambda d: d["Results"][0]["Vulnerabilities"][0].update(Severity="SEVERE")),
         "Results[0].Vulnerabilities[0].Severity: 'SEVERE' is not a Trivy severity"),
        (_with(lambda d: d["Results"][0]["Vulnerabilities"][0].pop("VulnerabilityID")),
         "Results[0].Vulnerabilities[0].VulnerabilityID is missing"),
        (_with(lambda d: d["Results"][0]["Vulnerabilities"][0].update(FixedVersion=3)),
         "Results[0].Vulnerabilities[0].FixedVersion: expected a string"),
    ],
)
def test_non_trivy_input_is_refused(data, text):
    with pytest.raises(ScanReportError) as exc:
        evaluate_report(data, ScanPolicy(), TODAY)
    assert text in str(exc.value)
    assert isinstance(exc.value, ValueError)
