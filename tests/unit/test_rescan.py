"""The re-scan's pure parts: targets, the Trivy command, comparing with what was recorded, evaluating reports."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from release.domain import rescan as judge
from release.flows import rescan
from release.domain.gates import scan_policy_for
from release.domain.registry import RegistryState
from release.domain.scan import ScanPolicy, evaluate_report, merge_policies
from tests.helpers import request_for

TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
TODAY = date(2026, 11, 26)
CRITICAL = "CVE-2019-14697"


def report(name: str) -> dict:
    return json.loads((TRIVY / name).read_text())


def with_critical() -> dict:
    """alpine-310 plus musl's CRITICAL CVE-2019-14697 (verbatim from Trivy's alpine-39 report)."""
    r = report("alpine-310.json")
    musl = [v for v in report("alpine-39.json")["Results"][0]["Vulnerabilities"] if v["VulnerabilityID"] == CRITICAL]
    r["Results"][0]["Vulnerabilities"] += copy.deepcopy(musl)
    return r


def judged(r: dict, policy: ScanPolicy = ScanPolicy()):
    return evaluate_report(r, policy, TODAY)


# -- compare ------------------------------------------------------------------------------


def test_unchanged_findings_are_not_a_change():
    previous = judged(report("alpine-310.json")).to_dict()
    c = judge.compare(previous, judged(report("alpine-310.json")), ScanPolicy(), TODAY)
    assert c == judge.Comparison(False, [], [])


def test_unchanged_blocking_findings_are_not_new():
    previous = judged(report("alpine-39.json")).to_dict()  # already blocked by the CRITICAL
    c = judge.compare(previous, judged(report("alpine-39.json")), ScanPolicy(), TODAY, previous_is_rescan=True)
    assert (c.changed, c.new_blocking) == (False, [])


def test_a_new_critical_is_newly_blocking():
    previous = judged(report("alpine-310.json")).to_dict()
    c = judge.compare(previous, judged(with_critical()), ScanPolicy(), TODAY)
    assert (c.changed, c.new_blocking, c.resolved) == (True, [CRITICAL], [])


def test_a_fixed_cve_is_a_change_but_not_a_finding():
    previous = judged(with_critical()).to_dict()
    c = judge.compare(previous, judged(report("alpine-310.json")), ScanPolicy(), TODAY, previous_is_rescan=True)
    assert (c.changed, c.new_blocking, c.resolved) == (True, [], [CRITICAL])


def test_findings_are_compared_under_tonights_policy_not_the_recorded_verdict():
    # Recorded under a CRITICAL threshold (passed); tonight's policy blocks at MEDIUM. Same findings:
    # a policy change is the gates' business, not a new finding of the scanner.
    lenient = judged(report("alpine-310.json"), ScanPolicy(threshold="CRITICAL")).to_dict()
    c = judge.compare(lenient, judged(report("alpine-310.json"), ScanPolicy(threshold="MEDIUM")),
                       ScanPolicy(threshold="MEDIUM"), TODAY)
    assert (c.changed, c.new_blocking) == (False, [])


def test_a_rescan_verdict_that_changed_with_the_policy_is_recorded_without_a_finding():
    recorded = judged(with_critical()).to_dict()  # last re-scan: blocked by the CRITICAL
    allow = merge_policies(ScanPolicy(), {"allow": [{"id": CRITICAL, "reason": "r", "expires": TODAY + timedelta(days=1)}]})
    c = judge.compare(recorded, judged(with_critical(), allow), allow, TODAY, previous_is_rescan=True)
    assert (c.changed, c.new_blocking) == (True, [])


def test_nothing_or_an_unusable_record_counts_every_blocking_id_as_new():
    current = judged(with_critical())
    assert judge.compare(None, current, ScanPolicy(), TODAY).new_blocking == [CRITICAL]
    broken = judge.compare({"counts": {}}, current, ScanPolicy(), TODAY)
    assert broken.changed and broken.new_blocking == [CRITICAL] and "unusable" in broken.note


def test_a_record_from_before_per_package_findings_is_replaced_without_announcing_anything():
    legacy = yaml.safe_load((TRIVY.parent / "scan-summaries" / "legacy.yaml").read_text())["alpine-39"]
    tonight = judged(report("alpine-39.json"))
    c = judge.compare(legacy, tonight, ScanPolicy(), TODAY)
    assert (c.changed, c.new_blocking, c.resolved) == (True, [], [])  # recorded anew, with the packages
    assert "predates per-package findings" in c.note
    # once replaced, the same findings the next night are unchanged
    assert judge.compare(tonight.to_dict(), judged(report("alpine-39.json")), ScanPolicy(), TODAY) == \
        judge.Comparison(False, [], [])


def test_another_installed_version_with_the_same_cve_is_a_change():
    older = report("alpine-39.json")
    for v in older["Results"][0]["Vulnerabilities"]:
        if v["PkgName"] == "musl":
            v["InstalledVersion"] = "1.1.20-r3"
    c = judge.compare(judged(older).to_dict(), judged(report("alpine-39.json")), ScanPolicy(), TODAY)
    assert (c.changed, c.new_blocking) == (True, [])


def test_last_summary_prefers_the_last_rescan():
    assert judge.last_summary({"scan": {"s": 1}}) == ({"s": 1}, False)
    assert judge.last_summary({"scan": {"s": 1}, "rescan": {"summary": {"r": 1}}}) == ({"r": 1}, True)
    assert judge.last_summary({"rescan": {"passed": False}}) == (None, False)


# -- targets and pods ------------------------------------------------------------------------------


@pytest.fixture
def state(config):
    s = RegistryState()
    s.deploy("dev", request_for(config, "service-a", "1.1", "3", commit="ab" * 20), by="alice", run_id="r", at="t")
    s.deploy("dev", request_for(config, "service-b", "2.0", "2"), by="alice", run_id="r", at="t")
    s.deploy("staging", request_for(config, "service-a", "1.0", "1"), by="alice", run_id="r", at="t")
    return s


def test_one_target_per_deployment_skipping_services_that_run_nowhere(config, state):
    targets = rescan.list_targets(config, state, "scheduled__2026-11-26T03:00:00+00:00")
    assert [(t.env, t.service, t.version) for t in targets] == [
        ("dev", "service-a", "1.1"), ("dev", "service-b", "2.0"), ("staging", "service-a", "1.0")]
    a = targets[0]
    assert a.image == state.current("dev")["service-a"].image
    assert a.report == "rescan/scheduled__2026-11-26T03-00-00-00-00/dev/service-a/trivy.json"
    assert set(rescan.pod_kwargs(a.model_dump(mode="json"))) == {"name", "arguments", "labels"}
    labels = a.pod["labels"]
    assert labels["release-platform/env"] == "dev" and labels["release-platform/service"] == "service-a"
    assert labels["release-platform/step"] == "rescan" and labels["release-platform/commit"] == "ab" * 20
    assert labels["release-platform/run"] == "scheduled__2026-11-26T03-00-00-00-00"
    assert targets[1].pod["labels"]["release-platform/commit"] == "unknown"


def test_targets_travel_as_json_and_come_back_the_same(config, state):
    """What the targets task pushes is plain JSON with the keys an operator sees in the XCom tab;
    evaluate reads back exactly the targets that were listed, and a malformed one names its field."""
    from pydantic import ValidationError

    targets = rescan.list_targets(config, state, "run-1")
    pushed = json.loads(json.dumps(rescan.TARGET_LIST.dump_python(targets, mode="json")))
    assert set(pushed[0]) == {"env", "service", "version", "image", "report", "pod"}
    assert rescan.TARGET_LIST.validate_python(pushed) == targets
    with pytest.raises(ValidationError, match="image"):
        rescan.pod_kwargs({k: v for k, v in pushed[0].items() if k != "image"})


def test_the_scan_is_the_pipelines_trivy_command_on_the_deployed_digest(config, state):
    from release.k8s import steps

    (a, *_) = rescan.list_targets(config, state, "manual__1")
    args = a.pod["arguments"]
    pipeline = steps.scan(config, "service-a", a.image).args
    assert len(args) == len(pipeline) and args[0] == "image" and args[-1] == a.image
    assert args[args.index("--output") + 1] == f"/artifacts/{a.report}"
    assert [x for x in args if x != f"/artifacts/{a.report}"] == [x for x in pipeline if "{{" not in x]
    assert rescan.rescan_step(config).image == config.pipelines.tools.trivy


@pytest.mark.parametrize("run_id", ["manual__2026-11-26T03:00:00+00:00", "x" * 300, "///", "a/b" * 40])
def test_run_key_is_a_label_value_and_a_folder(run_id):
    from release.k8s.pods import label_value

    key = rescan.run_key(run_id)
    assert label_value(key) == key and "/" not in key and len(key) <= 63
    assert rescan.run_key(run_id + "y") != key


# -- evaluating reports ---------------------------------------------------------------------------


def write(artifacts: Path, target: rescan.Target, content: str) -> None:
    path = artifacts / target.report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def test_evaluate_all_records_changes_and_names_bad_reports(config, state, tmp_path):
    targets = rescan.list_targets(config, state, "run-1")
    dev_a, dev_b, staging_a = targets
    write(tmp_path, dev_a, json.dumps(with_critical()))
    write(tmp_path, dev_b, "{not json")
    # staging_a: no report at all
    for env in ("dev", "staging"):  # what the pipeline recorded: alpine-310's scan
        for service, d in state.current(env).items():
            state.environments[env][service] = replace(d, evidence={
                "scan": judged(report("alpine-310.json"), scan_policy_for(config, service, env)).to_dict()})
    result = rescan.evaluate_all(config, targets, state, tmp_path, today=TODAY, run_id="run-1", scanned_at="T")
    update = result.updates["dev"]["service-a"]
    assert list(result.updates) == ["dev"] and update.version == "1.1" and update.image == dev_a.image
    assert update.rescan.passed is False and update.rescan.new_blocking == [CRITICAL]
    assert update.rescan.summary["blocking"] == [CRITICAL]
    assert result.new_findings == [judge.Finding(service="service-a", env="dev", version="1.1", image=dev_a.image,
                                                 cves=[CRITICAL], threshold="HIGH")]
    # What the evaluate task pushes and the registry writer takes: the JSON keys the platform always wrote.
    pushed = json.loads(json.dumps(result.model_dump(mode="json")))
    assert set(pushed) == {"updates", "new_findings", "errors", "lines"}
    assert set(pushed["updates"]["dev"]["service-a"]["rescan"]) == {
        "passed", "blocking", "new_blocking", "summary", "scanned_at", "run_id", "image"}
    assert pushed["new_findings"][0] == {"service": "service-a", "env": "dev", "version": "1.1",
                                         "image": dev_a.image, "cves": [CRITICAL], "threshold": "HIGH"}
    assert judge.Evaluation.model_validate(pushed) == result
    assert result.registry_updates() == pushed["updates"] and result.update_count() == 1
    errors = "\n".join(result.errors)
    assert len(result.errors) == 2
    assert "dev/service-b 2.0" in errors and "is not JSON" in errors
    assert "staging/service-a 1.0" in errors and "no readable Trivy report" in errors


def test_a_report_that_is_not_trivy_json_is_an_error_for_its_target(config, state, tmp_path):
    (target, *_) = rescan.list_targets(config, state, "run-1")
    write(tmp_path, target, (TRIVY / "alpine-310.sarif").read_text())
    result = rescan.evaluate_all(config, [target], state, tmp_path, today=TODAY, run_id="run-1", scanned_at="T")
    assert result.updates == {} and "dev/service-a" in result.errors[0] and "SARIF" in result.errors[0]


def test_a_target_redeployed_meanwhile_is_skipped(config, state, tmp_path):
    (target, *_) = rescan.list_targets(config, state, "run-1")
    write(tmp_path, target, json.dumps(with_critical()))
    state.deploy("dev", request_for(config, "service-a", "1.2", "4"), by="alice", run_id="r", at="t")
    result = rescan.evaluate_all(config, [target], state, tmp_path, today=TODAY, run_id="run-1", scanned_at="T")
    assert result.updates == {} and result.errors == [] and "no longer deployed" in result.lines[0]


def test_notify_names_service_env_digest_and_cves(capfd, caplog):
    image = "registry.local:5000/release/service-a@sha256:" + "3" * 64
    messages = rescan.notify_new_findings([judge.Finding(service="service-a", env="prod", version="1.1", image=image,
                                                         cves=[CRITICAL, "CVE-2019-1549"], threshold="HIGH")])
    (message,) = messages
    assert "service-a in prod runs " + image in message and f"{CRITICAL}, CVE-2019-1549" in message
    captured = capfd.readouterr()  # the task log: stdout or the logging handlers, depending on what set logging up
    assert message in captured.out + captured.err + caplog.text
    assert rescan.notify_new_findings([]) == []
