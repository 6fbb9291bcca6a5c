"""The GitHub stand-in answers like GitHub: checked against GitHub's REST description, refusing
what GitHub refuses in GitHub's error shape, keeping what it was sent, and failing on demand."""

from __future__ import annotations

import base64
import gzip
import json
import time

import pytest
import requests

from sandbox.github import TOKEN

REPO = "/repos/example-org/app"
SHA = "a" * 40
AUTH = {"Authorization": f"token {TOKEN}"}


def call(github, method, path, body=None, headers=AUTH, **kwargs):
    return requests.request(method, github.url + path, json=body, headers=headers, timeout=10, **kwargs)


def test_refusals_have_githubs_status_and_shape(github):
    missing = call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success"}, headers={})
    wrong = call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success"}, headers={"Authorization": "token nope"})
    assert (missing.status_code, missing.json()["message"]) == (401, "Requires authentication")
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Bad credentials")
    assert call(github, "POST", f"/repos/other/repo/statuses/{SHA}", {"state": "success"}).status_code == 404
    assert call(github, "GET", f"{REPO}/no/such/path").status_code == 404
    bad = call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "done", "context": "ci"})
    assert bad.status_code == 422
    assert set(bad.json()) >= {"message", "errors", "documentation_url"}
    assert bad.json()["errors"][0] == {"resource": "Status", "field": "state", "code": "invalid",
                                       "message": "'done' is not one of ['error', 'failure', 'pending', 'success']"}
    missing_field = call(github, "POST", f"{REPO}/deployments", {"environment": "dev"})
    assert missing_field.status_code == 422 and missing_field.json()["errors"][0]["code"] == "missing_field"
    not_json = requests.post(github.url + f"{REPO}/issues/1/comments", data="{not json", timeout=10,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert (not_json.status_code, not_json.json()["message"]) == (400, "Problems parsing JSON")
    # Nothing refused was kept.
    assert github.statuses() == [] and github.deployments() == [] and github.comments() == []


def test_keeps_statuses_comments_and_deployments(github):
    assert call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "pending", "context": "release/build"}).status_code == 201
    assert call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success", "context": "release/build",
                                                           "target_url": "http://airflow/run"}).status_code == 201
    assert [s["state"] for s in github.statuses(SHA)] == ["pending", "success"]

    created = call(github, "POST", f"{REPO}/issues/5/comments", {"body": "first"}).json()
    assert call(github, "PATCH", f"{REPO}/issues/comments/{created['id']}", {"body": "second"}).status_code == 200
    assert [c["body"] for c in call(github, "GET", f"{REPO}/issues/5/comments").json()] == ["second"]
    assert call(github, "PATCH", f"{REPO}/issues/comments/999999", {"body": "x"}).status_code == 404

    # GitHub's default required_contexts: a commit with a failed status cannot be deployed.
    call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "failure", "context": "release/scan"})
    refused = call(github, "POST", f"{REPO}/deployments", {"ref": SHA, "environment": "dev"})
    assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "required_contexts"
    first = call(github, "POST", f"{REPO}/deployments", {"ref": SHA, "environment": "dev", "required_contexts": []}).json()
    call(github, "POST", f"{REPO}/deployments/{first['id']}/statuses", {"state": "success"})
    second = call(github, "POST", f"{REPO}/deployments", {"ref": "b" * 40, "environment": "dev", "required_contexts": []}).json()
    call(github, "POST", f"{REPO}/deployments/{second['id']}/statuses", {"state": "success"})
    # auto_inactive: the deployment the new one replaced in the same environment goes inactive.
    states = {d["id"]: [s["state"] for s in d["statuses"]] for d in github.deployments("dev")}
    assert states == {first["id"]: ["success", "inactive"], second["id"]: ["success"]}
    listed = call(github, "GET", f"{REPO}/deployments", params={"environment": "dev"}).json()
    assert [d["id"] for d in listed] == [second["id"], first["id"]]

    state = requests.get(github.url + "/_github/state", timeout=10).json()["example-org/app"]
    assert len(state["statuses"]) == 3 and len(state["deployments"]) == 2 and len(state["comments"]) == 1


def test_sarif_must_be_gzip_then_base64(github):
    sarif = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy"}}, "results": [{"ruleId": "CVE-1"}]}]}
    good = call(github, "POST", f"{REPO}/code-scanning/sarifs",
                {"commit_sha": SHA, "ref": "refs/heads/main", "sarif": base64.b64encode(gzip.compress(json.dumps(sarif).encode())).decode()})
    assert good.status_code == 202
    plain = call(github, "POST", f"{REPO}/code-scanning/sarifs",
                 {"commit_sha": SHA, "ref": "refs/heads/main", "sarif": base64.b64encode(json.dumps(sarif).encode()).decode()})
    assert plain.status_code == 400
    bad_ref = call(github, "POST", f"{REPO}/code-scanning/sarifs", {"commit_sha": SHA, "ref": "main", "sarif": "eA=="})
    assert bad_ref.status_code == 422 and bad_ref.json()["errors"][0]["field"] == "ref"
    [kept] = github.sarifs()
    assert (kept["id"], kept["tool_names"], kept["results"], kept["sarif"]) == (good.json()["id"], ["Trivy"], 1, sarif)
    assert call(github, "GET", f"{REPO}/code-scanning/sarifs/{kept['id']}").json()["processing_status"] == "complete"


def test_compare_answers_what_was_seeded_with_githubs_limits(github):
    github.seed_compare(SHA, "b" * 40, files=[f"services/service-a/f{i}.py" for i in range(301)],
                        commits=[{"sha": f"{i:040x}", "message": f"change {i}", "login": "dev"} for i in range(3)])
    answer = call(github, "GET", f"{REPO}/compare/{SHA}...{'b' * 40}").json()
    assert answer["total_commits"] == 3 and len(answer["commits"]) == 3
    assert len(answer["files"]) == 300  # GitHub lists at most 300 files
    second_page = call(github, "GET", f"{REPO}/compare/{SHA}...{'b' * 40}", params={"page": 2, "per_page": 2}).json()
    assert [c["sha"] for c in second_page["commits"]] == [f"{2:040x}"] and "files" not in second_page
    assert call(github, "GET", f"{REPO}/compare/{SHA}...{'c' * 40}").status_code == 404


def test_faults_5xx_rate_limit_and_slowness(github):
    github.fail(502, count=1, method="POST")
    github.rate_limit(count=1, retry_after=7, reset_in=120)
    github.slow(0.3, count=1)
    assert call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success"}).status_code == 502
    limited = call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success"})
    assert limited.status_code == 403
    assert limited.headers["X-RateLimit-Remaining"] == "0" and limited.headers["Retry-After"] == "7"
    assert 110 <= int(limited.headers["X-RateLimit-Reset"]) - time.time() <= 121
    started = time.monotonic()
    assert call(github, "POST", f"{REPO}/statuses/{SHA}", {"state": "success"}).status_code == 201
    assert time.monotonic() - started >= 0.3
    assert len(github.statuses()) == 1
    assert [r.status for r in github.seen("POST", "/statuses/")] == [502, 403, 201]


def test_enterprise_prefix_and_bearer_tokens(github):
    answer = call(github, "POST", f"/api/v3{REPO}/statuses/{SHA}", {"state": "success"},
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 201


@pytest.mark.parametrize("operation", ["GET /repos/example-org/app", "GET /repos/example-org/app/pulls/1"])
def test_what_it_does_not_model_it_says_so(github, operation):
    method, path = operation.split(" ")
    answer = call(github, method, path)
    assert answer.status_code == 501 and "does not model" in answer.json()["message"]


def test_sandbox_mode_points_the_github_connections_at_the_stand_in(tmp_path, monkeypatch, config, capsys):
    from release.cli import main
    from release.cli_github import webhook_secret
    from sandbox.github import mode

    monkeypatch.setenv("RELEASE_DATA_DIR", str(tmp_path))
    for name in ("AIRFLOW_CONN_GITHUB_DEFAULT", "AIRFLOW_CONN_GITHUB_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    assert mode.sandbox_github_environment(config) == {}  # no stand-in running
    standin = mode.start(config)
    try:
        env = mode.sandbox_github_environment(config)
        api = json.loads(env["AIRFLOW_CONN_GITHUB_DEFAULT"])
        assert (api["conn_type"], api["host"], api["password"]) == ("github", standin.url, TOKEN)
        assert json.loads(env["AIRFLOW_CONN_GITHUB_WEBHOOK"])["password"] == webhook_secret(config)
        # A real GitHub connection is never shadowed by the sandbox's.
        real = mode.sandbox_github_environment(config, environ={"AIRFLOW_CONN_GITHUB_DEFAULT": "github://:t@"})
        assert list(real) == ["AIRFLOW_CONN_GITHUB_WEBHOOK"]

        call(standin, "POST", f"{REPO}/statuses/{SHA}", {"state": "success", "context": "release/build",
                                                          "description": "built service-a"})
        assert main(["github", "state"]) == 0
        listing = capsys.readouterr().out
        assert "release/build" in listing and "built service-a" in listing and SHA[:12] in listing
    finally:
        mode.stop(standin)
    assert mode.read_info() is None and main(["github", "state"]) == 1
