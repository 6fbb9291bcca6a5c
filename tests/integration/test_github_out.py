"""What the platform tells GitHub, against the GitHub stand-in (which checks every request against
GitHub's REST description and refuses what GitHub would): the PR comment over several runs, a
SARIF upload, the commits an approver sees, and a GitHub outage costing one bounded call."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from release.github import changes, outbound, pr_comment, sarif, statuses
from release.domain.plan_models import PromotedItem

TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def gh(github):
    outbound.reset()
    yield github
    outbound.reset()


def report(service: str, commit: str, gate: str, scan: dict | None) -> pr_comment.ServiceReport:
    return pr_comment.ServiceReport(service=service, commit=commit, run_id=f"run-{commit[:4]}",
                                    run_url=f"http://airflow/dags/{service}-pipeline/runs/run-{commit[:4]}",
                                    stages={"verify": "success", "build": "success", "scan gate": gate,
                                            "chart validation": "success"},
                                    scan=scan, charts=["dev", "staging", "prod"])


def test_three_runs_of_a_pr_leave_one_comment_updated_in_place(gh, config):
    from release.domain.scan import ScanPolicy, evaluate_report, utc_today

    def scan(name: str) -> dict:
        return evaluate_report(json.loads((TRIVY / name).read_text()), ScanPolicy(), utc_today()).to_dict()

    outbound.call(config, "POST", "/issues/7/comments", json={"body": "LGTM, one nit"})  # someone else's comment
    first = pr_comment.update(config, 7, report("service-a", "a" * 40, "failed", scan("alpine-39.json")))
    pr_comment.update(config, 7, report("service-b", "b" * 40, "success", scan("alpine-310.json")))
    pr_comment.update(config, 7, report("service-a", "c" * 40, "success", scan("alpine-310.json")))

    comments = gh.comments(7)
    assert len(comments) == 2 and comments[0]["body"] == "LGTM, one nit"  # theirs untouched, ours one
    ours = comments[1]
    assert ours["id"] == first["id"] and ours["body"].count(pr_comment.MARKER) == 1
    body = ours["body"]
    assert "#### service-a at `cccccccccccc`" in body and "aaaaaaaaaaaa" not in body  # the newest run of a
    assert "#### service-b at `bbbbbbbbbbbb`" in body  # b's section stays
    assert "CVE-2019-14697" not in body and body.count("**Scan gate**: passed") == 2
    assert [r.method for r in gh.seen(path_contains="/issues/")].count("POST") == 2  # theirs, and ours once


def test_a_blocked_scan_names_its_ids_and_counts_in_the_comment(gh, config):
    from release.domain.scan import ScanPolicy, evaluate_report, utc_today

    blocked = evaluate_report(json.loads((TRIVY / "alpine-39.json").read_text()), ScanPolicy(), utc_today()).to_dict()
    pr_comment.update(config, 8, report("service-a", COMMIT, "failed", blocked))
    (comment,) = gh.comments(8)
    assert "**blocked** by 1 vulnerability id(s) at or above HIGH; counts: CRITICAL 2, MEDIUM 4" in comment["body"]
    assert "`CVE-2019-14697` (musl, musl-utils)" in comment["body"]


def test_a_scans_sarif_is_accepted_by_code_scanning(gh, config):
    path = TRIVY / "alpine-310.sarif"
    answer = sarif.upload(config, path, COMMIT, "refs/pull/42/head")
    assert answer and answer["id"]
    (upload,) = gh.sarifs()
    assert (upload["commit_sha"], upload["ref"], upload["tool_names"]) == (COMMIT, "refs/pull/42/head", ["Trivy"])
    assert upload["sarif"] == json.loads(path.read_text())  # what GitHub unpacks is the file
    assert upload["results"] == sum(len(r.get("results") or []) for r in json.loads(path.read_text())["runs"])


def test_the_approver_sees_only_the_commits_that_touch_the_service(gh, config):
    base, head = "1" * 40, "2" * 40
    commits = [{"sha": "a" * 40, "message": "Merge pull request #12 from octo/login\n\nFix login", "login": "octocat",
                "files": ["services/service-a/login.py"]},
               {"sha": "b" * 40, "message": "Docs only", "login": "hubot", "files": ["docs/index.md"]},
               {"sha": "c" * 40, "message": "Share the retry helper (#15)", "login": "mona",
                "files": ["shared/retry.py"]}]
    gh.seed_compare(base, head, files=["services/service-a/login.py", "docs/index.md", "shared/retry.py"],
                    commits=commits)
    found = changes.between(config, "service-a", base, head)
    assert [(c.sha[0], c.author, c.pr) for c in found.commits] == [("a", "octocat", 12), ("c", "mona", 15)]
    assert found.unavailable is None and found.prs == [12, 15]
    other = changes.between(config, "service-b", base, head)  # it watches shared/** too
    assert [(c.sha[0], c.pr) for c in other.commits] == [("c", 15)]
    lookups = len(gh.seen("GET", "/commits/"))
    gh.seed_compare(head, "3" * 40, files=["services/service-a/x.py"], commits=[
        {"sha": "d" * 40, "message": "a only", "files": ["services/service-a/x.py"]}])
    untouched = changes.between(config, "service-b", head, "3" * 40)
    assert untouched.commits == [] and untouched.unavailable is None
    assert len(gh.seen("GET", "/commits/")) == lookups  # the range's files said so: no commit was looked up


def test_github_down_costs_one_bounded_call_then_nothing_is_asked(gh, config):
    gh.fail(503, count=1000)
    started = time.monotonic()
    for stage in ("verify", "build", "scan-gate"):
        assert statuses.post(config, COMMIT, statuses.status_body("pending", "service-a", stage, "http://x")) is None
    assert time.monotonic() - started < outbound.BUDGET_SECONDS + 5
    assert len(gh.seen("POST", "/statuses/")) <= outbound.MAX_ATTEMPTS  # the first call's tries, then paused
    assert gh.statuses() == []


def test_a_cut_short_file_list_is_not_taken_to_mean_the_service_is_untouched(gh, config):
    """GitHub lists at most 300 files of a comparison: past that, each commit's own files decide."""
    base, head = "4" * 40, "5" * 40
    gh.seed_compare(base, head, files=[f"docs/page-{i}.md" for i in range(300)] + ["services/service-a/x.py"],
                    commits=[{"sha": "e" * 40, "message": "Big docs change", "files": ["docs/page-1.md"]},
                             {"sha": "f" * 40, "message": "Touch a (#3)", "login": "mona",
                              "files": ["services/service-a/x.py"]}])
    found = changes.between(config, "service-a", base, head)
    assert [(c.sha[0], c.pr) for c in found.commits] == [("f", 3)] and found.more == 0


def test_services_sharing_a_range_look_each_commit_up_once_and_within_the_plans_budget(gh, config):
    base, head = "6" * 40, "7" * 40
    gh.seed_compare(base, head, files=["shared/retry.py", "services/service-a/x.py"], commits=[
        {"sha": "8" * 40, "message": "Shared retry (#21)", "files": ["shared/retry.py"]},
        {"sha": "9" * 40, "message": "a only", "files": ["services/service-a/x.py"]}])
    items = [PromotedItem(service=s, version="1.0", image="x", evidence={"commit": head}, replaces_commit=base)
             for s in ("service-a", "service-b", "service-c")]
    found = changes.for_plan(config, items)
    assert [[c.sha[0] for c in f.commits] for f in found] == [["8", "9"], ["8"], ["8"]]
    assert len(gh.seen("GET", "/commits/")) == 2  # two commits, asked once each for three services
    tight = changes.Lookups(limit=1)
    a = changes.between(config, "service-a", base, head, tight)
    assert [c.sha[0] for c in a.commits] == ["8"] and a.more == 1  # the budget spent: counted, not shown
