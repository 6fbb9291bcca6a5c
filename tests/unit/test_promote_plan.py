"""plan_promotion and the promotion gates as pure logic (the DAG tests drive them end to end)."""

from __future__ import annotations

import json

import pytest
import yaml

from release.domain.config import DEFAULT_CONFIG_PATH, parse_config
from release.domain.gates import PromotionError
from release.domain.plan_models import PLAN
from release.domain.plans import plan_promotion
from release.domain.registry import RegistryState
from tests.helpers import request_for


@pytest.fixture
def state(config):
    s = RegistryState()
    s.deploy("staging", request_for(config, "service-a", "1.1", "3"), by="alice", run_id="r", at="2026-11-01T00:00:00Z")
    return s


def test_plan_moves_the_exact_digest(config, state):
    plan = plan_promotion({"services": ["*"], "from_env": "staging", "to_env": "prod", "reason": "go"}, config, state, "alice")
    assert plan.services == ["service-a"] and plan.items[0].image == state.current("staging")["service-a"].image
    # Whether it needs approval, and from whom, is the config's (read by needs_approval and approve_prod).
    assert plan.needs_approval(config) and config.environments["prod"].approval.approvers == ["alice", "bob"]
    assert plan.items[0].replaces is None
    # The XCom is JSON and reads back as the same plan; config facts are not in it.
    dumped = plan.model_dump(mode="json")
    assert PLAN.validate_python(json.loads(json.dumps(dumped))) == plan
    assert {"needs_approval", "approvers"}.isdisjoint(dumped) and dumped["kind"] == "promotion"
    assert set(dumped["items"][0]) == {"service", "version", "image", "evidence", "replaces", "replaces_image",
                                       "replaces_commit"}


# -- the scan gate and the nightly re-scan ---------------------------------------------------


def _scan_plan(config, evidence: dict) -> dict:
    from datetime import date

    from release.domain.gates import gate_scan

    s = RegistryState()
    s.deploy("dev", request_for(config, "service-a", "1.1", "3", **evidence), by="alice", run_id="r", at="2026-11-01T00:00:00Z")
    plan = plan_promotion({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "go"}, config, s, "alice")
    return lambda cfg=config: gate_scan(plan, cfg, date.today())


def _summary(name: str, critical: bool = False) -> dict:
    import json
    from datetime import date
    from pathlib import Path

    from release.domain.scan import ScanPolicy, evaluate_report

    trivy = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
    report = json.loads((trivy / name).read_text())
    if critical:  # the CRITICAL musl finding of Trivy's alpine-39 report
        musl = [v for v in json.loads((trivy / "alpine-39.json").read_text())["Results"][0]["Vulnerabilities"]
                if v["VulnerabilityID"] == "CVE-2019-14697"]
        report["Results"][0]["Vulnerabilities"] += musl
    return evaluate_report(report, ScanPolicy(), date.today()).to_dict()


def test_gate_scan_judges_the_nightly_rescan_summary_and_honours_a_later_allow_entry(config):
    from datetime import date, timedelta

    rescan = {"passed": False, "blocking": ["CVE-2019-14697"], "summary": _summary("alpine-310.json", critical=True),
              "scanned_at": "2026-11-26T03:00:05Z"}
    gate = _scan_plan(config, {"scan": _summary("alpine-310.json"), "rescan": rescan})
    with pytest.raises(PromotionError, match=r"the nightly re-scan of 2026-11-26T03:00:05Z found blocking CVEs under "
                                             r"staging's policy: CVE-2019-14697"):
        gate()
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["environments"]["staging"]["scan_policy"] = {"allow": [
        {"id": "CVE-2019-14697", "reason": "not reachable", "expires": (date.today() + timedelta(days=7)).isoformat()}]}
    (line,) = gate(parse_config(yaml.safe_dump(raw, sort_keys=False)))
    assert "nightly re-scan" in line and "allowed CVE-2019-14697" in line


def test_gate_scan_prefers_the_rescan_over_the_pipeline_scan(config):
    # The pipeline's scan blocked; the nightly re-scan of the same digest no longer finds it.
    rescan = {"passed": True, "blocking": [], "summary": _summary("alpine-310.json"), "scanned_at": "t"}
    (line,) = _scan_plan(config, {"scan": _summary("alpine-39.json"), "rescan": rescan})()
    assert "nightly re-scan" in line and "PASSED" in line


def test_gate_scan_without_a_rescan_summary_keeps_refusing_a_failed_rescan(config):
    gate = _scan_plan(config, {"scan": _summary("alpine-310.json"), "rescan": {"passed": False, "blocking": ["CVE-2019-14697"]}})
    with pytest.raises(PromotionError, match="the nightly re-scan found blocking CVEs: CVE-2019-14697"):
        gate()
    (line,) = _scan_plan(config, {"scan": _summary("alpine-310.json")})()
    assert "PASSED" in line and "re-scan" not in line


def test_gate_scan_rejudges_a_summary_stored_before_findings_named_their_package(config):
    from datetime import date, timedelta
    from pathlib import Path

    legacy = yaml.safe_load((Path(__file__).resolve().parents[1] / "fixtures" / "scan-summaries" / "legacy.yaml")
                            .read_text())["alpine-39"]
    gate = _scan_plan(config, {"scan": legacy})
    with pytest.raises(PromotionError, match=r"service-a 1.1 under staging's policy: FAILED: 1 blocking \(CVE-2019-14697\)"):
        gate()
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["environments"]["staging"]["scan_policy"] = {"allow": [
        {"id": "CVE-2019-14697", "reason": "not reachable", "expires": (date.today() + timedelta(days=7)).isoformat()}]}
    (line,) = gate(parse_config(yaml.safe_dump(raw, sort_keys=False)))
    assert "PASSED" in line and "allowed CVE-2019-14697" in line
    # the current form names the packages in the same line
    with pytest.raises(PromotionError, match=r"CVE-2019-14697 in musl and musl-utils"):
        _scan_plan(config, {"scan": _summary("alpine-39.json")})()
