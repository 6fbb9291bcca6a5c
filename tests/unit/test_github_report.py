"""What the platform tells GitHub, as data: status and deployment bodies, the PR comment's
sections, the SARIF encoding, the commits an approver sees. (Against the GitHub stand-in:
tests/integration/test_github_out.py and the pipeline, promote and rollback DAG tests.)"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from release.github import changes, pr_comment, sarif, statuses
from release.domain.scan import ScanPolicy, evaluate_report

TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def summary(report: str) -> dict:
    return evaluate_report(json.loads((TRIVY / report).read_text()), ScanPolicy(), date(2026, 1, 1)).to_dict()


def report(service: str, **kw) -> pr_comment.ServiceReport:
    base = {"commit": COMMIT, "run_id": "manual__1", "run_url": "http://airflow/dags/x/runs/manual__1",
            "stages": {"verify": "success", "build": "success", "scan gate": "failed", "chart validation": "success"}}
    return pr_comment.ServiceReport(service=service, **{**base, **kw})


def test_a_status_is_one_short_line_under_the_services_own_context():
    body = statuses.status_body("failure", "service-a", "scan-gate", "http://airflow/t", "refused: " + "x" * 300)
    assert body["context"] == "release/service-a/scan-gate" and body["target_url"] == "http://airflow/t"
    assert len(body["description"]) == statuses.MAX_DESCRIPTION and body["description"].startswith("refused: x")
    assert statuses.status_body("pending", "service-a", "build", "u")["description"] == "build running"
    with pytest.raises(ValueError, match="state: 'done' is not allowed; allowed: pending, success, failure"):
        statuses.status_body("done", "service-a", "build", "u")


def test_the_pr_section_names_the_blocking_ids_counts_and_chart_results():
    section = pr_comment.render_section(report("service-a", scan=summary("alpine-39.json"), charts=["dev", "staging"]))
    assert "#### service-a at `0123456789ab`: [run manual__1](http://airflow/dags/x/runs/manual__1)" in section
    assert "**Scan gate**: **blocked** by 1 vulnerability id(s) at or above HIGH; counts: CRITICAL 2, MEDIUM 4" in section
    assert "- blocking: `CVE-2019-14697` (musl, musl-utils)" in section
    assert "| scan gate | ❌ failed |" in section and "| chart validation | ✅ success |" in section
    assert "**Chart validation**: renders, lints and validates for dev, staging" in section


def test_one_comment_keeps_one_section_per_service_and_replaces_only_its_own():
    a1 = pr_comment.render_section(report("service-a", scan=summary("alpine-39.json"), charts=["dev"]))
    b = pr_comment.render_section(report("service-b", scan=summary("alpine-310.json"), charts=["dev"]))
    a2 = pr_comment.render_section(report("service-a", commit="f" * 40, scan=summary("alpine-310.json"), charts=["dev"]))
    body = pr_comment.merge(pr_comment.merge(pr_comment.merge(None, a1), b), a2)
    assert body.startswith(pr_comment.MARKER) and body.count(pr_comment.MARKER) == 1
    assert body.count("<!-- service:service-a -->") == 1 and body.count("<!-- service:service-b -->") == 1
    assert "`ffffffffffff`" in body and "`0123456789ab`" in body  # a's newest run; b's section untouched
    assert body.index("service:service-a") < body.index("service:service-b")
    assert pr_comment.merge(body, a2) == body  # the same run again: the same comment


def test_the_sarif_field_is_gzip_then_base64_of_the_file_and_refuses_what_github_would():
    text = (TRIVY / "alpine-310.sarif").read_text()
    body = sarif.upload_body(text, COMMIT, "refs/tags/v1.1.0")
    assert set(body) == {"commit_sha", "ref", "sarif", "tool_name"}
    assert sarif.decode(body["sarif"]) == json.loads(text)
    with pytest.raises(sarif.SarifError, match="commit: 'abc' is not a full commit id"):
        sarif.upload_body(text, "abc", "refs/heads/main")
    with pytest.raises(sarif.SarifError, match="ref: 'main' is not a full ref"):
        sarif.upload_body(text, COMMIT, "main")
    with pytest.raises(sarif.SarifError, match="not a SARIF 2.1.0 log"):
        sarif.upload_body('{"version": "2.0.0", "runs": []}', COMMIT, "refs/heads/main")


@pytest.mark.parametrize("message,number", [
    ("Merge pull request #12 from octo/fix-login\n\nFix login", 12),
    ("Fix the login page (#345)", 345),
    ("Fix the login page (#345)\n\n* wip (#1)", 345),
    ("Bump version; see #7 for why", None),
    ("", None),
])
def test_a_merged_pull_request_is_read_from_its_merge_or_squash_commit(message, number):
    assert changes.pr_number(message) == number


def test_the_approval_lines_list_commits_prs_and_authors_or_say_why_not():
    found = [
        changes.ServiceChanges("service-a", "a" * 40, "b" * 40, commits=[
            changes.Commit("c" * 40, "Fix the login page (#12)", "octocat", 12),
            changes.Commit("d" * 40, "Tidy up", "hubot")]),
        changes.ServiceChanges("service-b", None, "e" * 40,
                               unavailable="the target environment runs no version with a recorded commit"),
    ]
    lines = "\n".join(changes.markdown(found, "example-org/app"))
    url = "https://github.com/example-org/app"
    assert f"- **service-a**: 2 commit(s) by hubot, octocat; merged PRs: [#12]({url}/pull/12)" in lines
    assert f"  - [`{'c' * 12}`]({url}/commit/{'c' * 40}) Fix the login page (#12) (octocat, #12)" in lines
    assert "- **service-b**: list unavailable: the target environment runs no version" in lines
    assert changes.summary(found) == "changes: service-a: 2 commit(s), PRs #12 by hubot, octocat; service-b: changes unavailable"


def test_a_service_is_touched_by_its_folder_and_watched_paths_only(config):
    assert changes.touches(config, "service-a", ["services/service-a/app.py"])
    assert changes.touches(config, "service-a", ["docs/readme.md", "shared/lib/util.py"])  # watch: shared/**
    assert not changes.touches(config, "service-a", ["services/service-b/app.py", "docs/readme.md"])
    assert not changes.touches(config, "service-a", [])


@pytest.mark.parametrize("states,ready", [
    ({"verify": "success", "build": "success", "scan_gate": "success", "chart_validate": "running"}, False),
    ({"verify": "success", "build": "success", "scan_gate": "running", "chart_validate": "success"}, False),
    ({"verify": "success", "build": "success", "scan_gate": "failed", "chart_validate": "success"}, True),
    # verify failed: build and the scan gate will never run, whatever their state says yet
    ({"verify": "failed", "build": None, "scan_gate": None, "chart_validate": "success"}, True),
    ({"verify": "failed", "chart_validate": "running"}, False),
    ({"verify": "success", "build": "success", "image_ref": "success", "scan": "failed", "chart_validate": "failed"}, True),
])
def test_the_pr_comment_is_written_once_every_stage_it_shows_has_settled(states, ready):
    from release.flows.github_report import settled

    assert settled(states) is ready
