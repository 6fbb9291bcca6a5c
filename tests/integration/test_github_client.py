"""The GitHub client against the strict stand-in: what it sends GitHub accepts, and GitHub failing
never reaches the caller: retried within a bound, then reported once and carried on without."""

from __future__ import annotations

import base64
import gzip
import json
import logging

import pytest

from release.domain.config import load_config, parse_config
from release.github import client as client_module
from release.github.client import GitHubClient, get_client
from tests.unit.test_config import with_change

SHA = "a" * 40
HEAD = "b" * 40


@pytest.fixture(autouse=True)
def no_outage_yet(monkeypatch):
    """Each test starts with GitHub answering (an outage is reported once per process)."""
    monkeypatch.setattr(client_module, "_outages", set())


@pytest.fixture
def waits():
    return []


@pytest.fixture
def gh(github, waits):
    """A client on the stand-in that records its waits instead of sleeping them."""
    return GitHubClient("example-org/app", github.conn_id, sleep=waits.append, budget_seconds=30)


def test_statuses_comments_sarif_and_deployments_land(github, gh):
    assert gh.enabled and gh.base_url == github.url
    assert gh.create_status(SHA, "pending", context="release/build", target_url="http://airflow/run",
                            description="building\nservice-a " + "x" * 200).ok
    [status] = github.statuses(SHA)
    assert (status["state"], status["context"], status["target_url"]) == ("pending", "release/build", "http://airflow/run")
    assert "\n" not in status["description"] and len(status["description"]) == 140

    # One comment per pull request, updated in place.
    for text in ("run 1", "run 2", "run 3"):
        assert gh.upsert_issue_comment(42, text).ok
    [comment] = github.comments(42)
    assert comment["body"].endswith("\nrun 3") and "release-platform:report" in comment["body"]

    sarif = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy"}}, "results": []}]}
    uploaded = gh.upload_sarif(SHA, "refs/heads/main", sarif)
    assert uploaded.status == 202 and github.sarifs()[0]["sarif"] == sarif
    assert json.loads(gzip.decompress(base64.b64decode(github.seen("POST", "/code-scanning/sarifs")[0].body["sarif"]))) == sarif
    assert gh.get_sarif(uploaded.data["id"]).data["processing_status"] == "complete"

    # Deploying a commit whose statuses are not all green still works: the platform already judged it.
    gh.create_status(SHA, "failure", context="release/smoke")
    deployment = gh.create_deployment(SHA, "dev", description="service-a 1.2.3", payload={"service": "service-a"})
    assert deployment.status == 201
    assert gh.create_deployment_status(deployment.data["id"], "in_progress", log_url="http://airflow/run").ok
    assert gh.create_deployment_status(deployment.data["id"], "success", environment_url="http://dev").ok
    [kept] = github.deployments("dev")
    assert [s["state"] for s in kept["statuses"]] == ["in_progress", "success"] and kept["payload"] == {"service": "service-a"}
    assert [d["id"] for d in gh.list_deployments(environment="dev").data] == [kept["id"]]

    run = gh.create_check_run(SHA, "release/verify", status="in_progress")
    assert gh.update_check_run(run.data["id"], conclusion="success").ok
    assert github.check_runs()[0]["status"] == "completed"


def test_compare_pages_commits_and_says_when_files_may_be_missing(github, gh):
    commits = [{"sha": f"{i:040x}", "message": f"change {i}", "login": "dev"} for i in range(230)]
    github.seed_compare(SHA, HEAD, files=["services/service-a/app.py", {"filename": "shared/new.py", "status": "renamed",
                                                                        "previous_filename": "shared/old.py"}],
                        commits=commits)
    compared = gh.compare(SHA, HEAD)
    assert [c["sha"] for c in compared.data["commits"]] == [c["sha"] for c in commits]
    assert compared.attempts == 3  # three pages of 100
    assert gh.changed_files(SHA, HEAD).data == {"paths": ["services/service-a/app.py", "shared/old.py", "shared/new.py"],
                                                "complete": True}
    github.seed_compare(SHA, "c" * 40, files=[f"f{i}" for i in range(400)])
    assert gh.changed_files(SHA, "c" * 40).data["complete"] is False


def test_5xx_and_rate_limit_are_retried_within_the_bound(github, gh, waits):
    github.fail(503, count=2)
    assert gh.create_status(SHA, "success", context="release/build").attempts == 3
    assert len(waits) == 2 and all(0 < w <= 8 for w in waits)

    waits.clear()
    github.rate_limit(count=1, retry_after=3)
    assert gh.create_status(SHA, "success", context="release/scan").ok
    assert waits == [3.0]  # Retry-After honoured

    waits.clear()
    github.rate_limit(count=1, retry_after=None, reset_in=10)
    assert gh.create_status(SHA, "success", context="release/deploy").ok
    assert len(waits) == 1 and 9 <= waits[0] <= 11  # until X-RateLimit-Reset
    assert len(github.statuses(SHA)) == 3


def test_a_rate_limit_beyond_the_budget_gives_up_at_once(github, gh, waits, caplog):
    github.rate_limit(count=1, retry_after=None, reset_in=3600)
    with caplog.at_level(logging.WARNING, logger="release.github.client"):
        result = gh.create_status(SHA, "success", context="release/build")
    assert (result.ok, result.status, result.attempts, waits) == (False, 403, 1, [])
    assert "rate limit" in result.error and github.statuses() == []


def test_an_outage_is_reported_once_and_never_raises(github, gh, waits, caplog):
    github.fail(500, count=100)
    with caplog.at_level(logging.DEBUG, logger="release.github.client"):
        results = [gh.create_status(SHA, "success", context=f"c{i}") for i in range(3)]
        github.faults.clear()
        assert gh.create_status(SHA, "success", context="after").ok
    assert [(r.ok, r.status, r.attempts) for r in results] == [(False, 500, 4)] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]
    assert any("GitHub answers again" in r.getMessage() for r in caplog.records)


def test_not_retried_what_retrying_cannot_fix(github, waits):
    wrong_token = GitHubClient("example-org/app", github.conn_id, sleep=waits.append)
    github.tokens.clear()
    assert wrong_token.create_status(SHA, "success", context="x").status == 401
    github.tokens.add("sandbox-github-token")
    other_repo = GitHubClient("example-org/other", github.conn_id, sleep=waits.append)
    assert (other_repo.create_status(SHA, "success", context="x").status, waits) == (404, [])


def test_unreachable_github_is_retried_then_given_up(github, waits):
    client = GitHubClient("example-org/app", github.conn_id, sleep=waits.append)
    assert client.enabled
    github.stop()
    result = client.create_status(SHA, "success", context="x")
    assert (result.ok, result.status, result.attempts) == (False, None, 4) and "ConnectionError" in result.error


def test_a_422_is_retried_then_reported(github, gh, waits):
    result = gh.create_status(SHA, "done", context="x")
    assert (result.status, result.attempts) == (422, 4) and "'done' is not one of" in result.error


def test_off_without_config_or_connection_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(client_module, "_off_reported", False)
    monkeypatch.delenv("AIRFLOW_CONN_GITHUB_DEFAULT", raising=False)
    with caplog.at_level(logging.INFO, logger="release.github.client"):
        off = GitHubClient.from_config(parse_config(with_change("github", None)))
        results = [off.create_status(SHA, "success", context="x"), off.upload_sarif(SHA, "refs/heads/main", {}),
                   GitHubClient.from_config(load_config()).create_deployment(SHA, "dev")]
    assert all(r.skipped and not r.ok for r in results)
    said = [r.getMessage() for r in caplog.records if "GitHub reporting is off" in r.getMessage()]
    assert len(said) == 1 and "no `github:` section" in said[0]


def test_get_client_follows_the_platform_config(github):
    client = get_client()
    assert (client.repository, client.conn_id, client.enabled) == ("example-org/app", "github_default", True)


def test_an_unanswered_request_is_repeated_only_when_repeating_is_harmless(github, waits):
    client = GitHubClient("example-org/app", github.conn_id, sleep=waits.append, timeout_seconds=1)
    github.slow(1.5, count=2)  # GitHub does it, but answers after the client gave up
    status = client.create_status(SHA, "success", context="release/build")
    assert status.ok and status.attempts == 3
    github.slow(1.5, count=1)
    deployment = client.create_deployment(SHA, "dev")
    assert (deployment.ok, deployment.attempts) == (False, 1) and "GitHub may have done it" in deployment.error
    github.slow(1.5, count=1)
    assert not client.create_issue_comment(7, "report").ok
    assert github.wait_idle()
    assert len(github.deployments("dev")) == 1 and len(github.comments(7)) == 1  # done once, never twice
