"""GitHub webhooks in: real payloads from GitHub, signed as GitHub signs them, posted to the
receiver in the platform's FastAPI app; every refusal is checked to have triggered nothing."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import logging
from pathlib import Path

import jsonschema
import pytest
import yaml

from release.domain.config import DEFAULT_CONFIG_PATH
from sandbox.github.pytest_plugin import WEBHOOK_SECRET

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"
DAGS = Path(__file__).resolve().parents[2] / "dags"
REPOSITORY = "Codertocat/Hello-World"  # the repository of GitHub's example payloads
URL = "/webhooks/github"


def payload(name: str) -> dict:
    return json.loads((FIXTURES / "webhooks" / f"{name}.json").read_text())


@functools.cache
def _webhook_schema() -> dict:
    return json.loads((FIXTURES / "webhooks-schema.json").read_text())


def _only_missing_properties(error) -> bool:
    """A schema error that is only a property the payload lacks (in a oneOf/anyOf: some branch)."""
    if error.validator == "required":
        return True
    if error.validator in ("oneOf", "anyOf"):
        branches: dict = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        return any(all(_only_missing_properties(e) for e in errors) for errors in branches.values())
    return False


@pytest.mark.parametrize("name,complete", [
    ("ping.0", False), ("pull_request.closed.3", True), ("pull_request.labeled.8", True), ("pull_request.opened.0", False),
    ("pull_request.synchronize.22", True), ("push.created.0", False), ("push.created.4", True), ("push.deleted.1", True),
])
def test_fixture_payloads_match_githubs_webhook_schema(name, complete):
    """Each payload against its event's definition. Three of GitHub's examples are older than a few
    properties the schema now requires (repository.topics, hook.deliveries_url, ...): those may be
    missing, but nothing present may have another type or value than the schema says."""
    schema = _webhook_schema()
    event, action = name.split(".")[:2]
    definition = f"{event}$event" if event in ("ping", "push") else f"{event}${action}"
    validator = jsonschema.Draft7Validator({"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]})
    errors = list(validator.iter_errors(payload(name)))
    assert all(_only_missing_properties(e) for e in errors), [e.message[:200] for e in errors]
    assert (not errors) == complete


@pytest.fixture(scope="module")
def dispatch_dag(airflow_db):
    """release-dispatch serialized in the metadata database, as the dag-processor leaves it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(DAGS / "release_dispatch.py"))
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)


@pytest.fixture
def receiver(dispatch_dag, github, tmp_path, monkeypatch):
    """The platform's app with a config naming the example payloads' repository, the stand-in
    holding that repository, and a counter of release-dispatch runs."""
    from fastapi.testclient import TestClient

    from release.web.app import create_app

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["github"]["repository"] = REPOSITORY
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RELEASE_PLATFORM_CONFIG", str(tmp_path / "platform.yaml"))
    github.add_repository(REPOSITORY)
    client = TestClient(create_app())
    client.github = github
    return client


def runs() -> list:
    from airflow.models.dagrun import DagRun

    return DagRun.find(dag_id="release-dispatch")


_deliveries = iter(range(10**6))


def post(client, event: str, body: dict | bytes, *, secret: str | None = WEBHOOK_SECRET, delivery: str | None = None,
         content_type: str = "application/json", signature: str | None = None, tamper=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or f"72d3162e-cc78-11e3-81ab-{next(_deliveries):012d}",
               "Content-Type": content_type, "User-Agent": "GitHub-Hookshot/044aadd"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if tamper:
        raw = tamper(raw)
    return client.post(URL, content=raw, headers=headers)


def refused_without_a_run(client, expected_status: int, *args, **kwargs):
    before = len(runs())
    answer = post(client, *args, **kwargs)
    assert answer.status_code == expected_status, answer.text
    assert len(runs()) == before, "a refused delivery triggered a run"
    return answer.json()


def the_run(run_id: str):
    """The release-dispatch run `run_id` as plain facts: conf, note, who triggered it."""
    from types import SimpleNamespace

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        [run] = session.query(DagRun).filter(DagRun.dag_id == "release-dispatch", DagRun.run_id == run_id).all()
        return SimpleNamespace(conf=run.conf, note=run.note, triggering_user_name=run.triggering_user_name,
                               triggered_by=str(run.triggered_by), state=str(run.state))


# -- signature -------------------------------------------------------------------------------------

def test_signatures_that_are_missing_wrong_or_of_another_body_are_refused(receiver, caplog):
    body = payload("pull_request.opened.0")
    with caplog.at_level(logging.DEBUG):
        assert "missing" in refused_without_a_run(receiver, 401, "pull_request", body, secret=None)["detail"]
        refused_without_a_run(receiver, 401, "pull_request", body, secret="another-secret")
        refused_without_a_run(receiver, 401, "pull_request", body, signature="sha256=" + "0" * 64)
        refused_without_a_run(receiver, 401, "pull_request", body, signature="sha1=" + "0" * 40)
        refused_without_a_run(receiver, 401, "pull_request", body, tamper=lambda raw: raw.replace(b'"opened"', b'"openeD"', 1))
    assert receiver.github.seen() == []  # nothing asked of GitHub for an unsigned delivery
    assert WEBHOOK_SECRET not in caplog.text


def test_without_the_secret_connection_nothing_is_accepted(receiver, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GITHUB_WEBHOOK")
    answer = refused_without_a_run(receiver, 503, "ping", payload("ping.0"))
    assert "github_webhook" in answer["detail"]


# -- body ---------------------------------------------------------------------------------------------

def test_oversized_malformed_and_non_json_bodies_are_refused(receiver):
    big = refused_without_a_run(receiver, 413, "push", b"{" + b" " * (25 * 1024 * 1024) + b"}")
    assert "25" in big["detail"] or "26214400" in big["detail"]
    refused_without_a_run(receiver, 400, "push", b'{"ref": "refs/heads/main",')
    refused_without_a_run(receiver, 400, "push", b"[1, 2]")
    form = refused_without_a_run(receiver, 400, "push", b"payload=%7B%7D", content_type="application/x-www-form-urlencoded")
    assert "application/json" in form["detail"]
    refused_without_a_run(receiver, 400, "push", payload("push.created.4"), delivery="not a delivery id")


# -- events -----------------------------------------------------------------------------------------

def test_ping_is_answered(receiver):
    answer = refused_without_a_run(receiver, 200, "ping", payload("ping.0"))
    assert answer["status"] == "pong"


@pytest.mark.parametrize("event,name,reason", [
    ("push", "push.deleted.1", "was deleted"),
    ("pull_request", "pull_request.closed.3", "action 'closed' is not handled"),
    ("pull_request", "pull_request.labeled.8", "action 'labeled' is not handled"),
    ("issues", "pull_request.opened.0", "event 'issues' is not handled"),
])
def test_other_events_actions_and_deletions_are_202_with_a_reason(receiver, event, name, reason):
    answer = refused_without_a_run(receiver, 202, event, payload(name))
    assert answer["status"] == "ignored" and reason in answer["detail"] and "\n" not in answer["detail"]


def test_other_repositories_are_ignored(receiver):
    other = payload("pull_request.opened.0")
    other["repository"]["full_name"] = "someone/else"
    assert "not the configured 'Codertocat/Hello-World'" in refused_without_a_run(receiver, 202, "pull_request", other)["detail"]


def test_a_draft_pull_request_waits_until_ready_for_review(receiver):
    draft = payload("pull_request.opened.0")
    draft["pull_request"]["draft"] = True
    assert "draft" in refused_without_a_run(receiver, 202, "pull_request", draft)["detail"]


def test_a_new_branch_asks_compare_and_triggers_dispatch_with_exact_params(receiver):
    body = payload("push.created.4")  # a new branch: GitHub's list of commits is no base to trust
    receiver.github.seed_compare("master", body["after"], repository=REPOSITORY,
                                 files=["services/service-b/app/main.py", "README.md"])
    answer = post(receiver, "push", body, delivery="d-new-branch")
    assert answer.status_code == 201, answer.text
    run = the_run("github__d-new-branch")
    assert run.conf == {"before": None, "after": body["after"], "ref": "refs/heads/master", "pr": None,
                        "changed_paths": ["services/service-b/app/main.py", "README.md"],
                        "commit_time": "2019-05-15T15:19:25Z"}  # head_commit.timestamp: DORA's lead time starts there
    assert answer.json()["services"] == ["service-b"]
    assert "new branch" in run.note and "d-new-branch" in run.note and run.triggering_user_name == "github"
    assert run.triggered_by.endswith("REST_API") and run.state == "queued"
    assert [r.path for r in receiver.github.seen("GET")] == [f"/repos/{REPOSITORY}/compare/master...{body['after']}"]


def test_a_branch_push_listing_its_files_needs_no_compare(receiver):
    body = payload("push.created.4")
    body.update(created=False, before="f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    body["commits"][0]["modified"] = ["shared/logging/setup.py"]
    body["head_commit"]["timestamp"] = "2019-05-15T10:19:25-05:00"  # as GitHub writes it: the committer's zone
    assert post(receiver, "push", body, delivery="d-listed").status_code == 201
    conf = the_run("github__d-listed").conf
    assert conf["changed_paths"] == ["README.md", "shared/logging/setup.py"]
    assert conf["commit_time"] == "2019-05-15T10:19:25-05:00"
    assert receiver.github.seen() == []


def test_a_head_commit_that_is_not_the_pushed_one_gives_no_commit_time(receiver):
    body = payload("push.created.4")
    body.update(created=False, before="f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    body["head_commit"]["id"] = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert post(receiver, "push", body, delivery="d-other-head").status_code == 201
    assert "commit_time" not in the_run("github__d-other-head").conf


@pytest.mark.parametrize("change", ["forced", "twenty_commits", "no_paths"])
def test_a_push_that_may_be_incomplete_asks_compare(receiver, change):
    body = payload("push.created.4")
    body.update(created=False, before="f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    if change == "forced":
        body["forced"] = True
    elif change == "twenty_commits":
        body["commits"] = [copy.deepcopy(body["commits"][0]) for _ in range(20)]
    else:
        body["commits"][0].update(added=[], removed=[], modified=[])
    receiver.github.seed_compare(body["before"], body["after"], repository=REPOSITORY, files=["proto/search/api.proto"])
    assert post(receiver, "push", body, delivery=f"d-{change.replace('_', '-')}").status_code == 201
    assert the_run(f"github__d-{change.replace('_', '-')}").conf["changed_paths"] == ["proto/search/api.proto"]


def test_a_tag_is_a_release_of_every_service(receiver):
    body = payload("push.created.0")
    answer = post(receiver, "push", body, delivery="d-tag")
    assert answer.status_code == 201, answer.text
    conf = the_run("github__d-tag").conf
    assert (conf["ref"], conf["after"], conf["before"]) == ("refs/tags/simple-tag", body["after"], None)
    assert conf["commit_time"] == "2019-05-15T15:20:41Z"
    assert answer.json()["services"] == ["service-a", "service-b", "service-c"]


@pytest.mark.parametrize("name,before", [("pull_request.opened.0", None),
                                         ("pull_request.synchronize.22", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e")])
def test_pull_requests_trigger_with_their_files(receiver, name, before):
    body = payload(name)
    receiver.github.seed_pull(2, body["pull_request"]["head"]["sha"], repository=REPOSITORY,
                              files=["services/service-c/search.py", {"filename": "shared/b.py", "previous_filename": "shared/a.py"}])
    delivery = f"d-{name.replace('.', '-').replace('_', '-')}"
    assert post(receiver, "pull_request", body, delivery=delivery).status_code == 201
    # No commit_time: a pull request's payload does not carry its head commit.
    assert the_run(f"github__{delivery}").conf == {
        "before": before, "after": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ref": "refs/pull/2/head", "pr": 2,
        "changed_paths": ["services/service-c/search.py", "shared/a.py", "shared/b.py"]}


# -- idempotency and GitHub failing -----------------------------------------------------------------------

def test_a_redelivery_triggers_nothing_new_and_says_so(receiver):
    body = payload("push.created.0")
    assert post(receiver, "push", body, delivery="d-twice").status_code == 201
    again = refused_without_a_run(receiver, 200, "push", body, delivery="d-twice")
    assert again["status"] == "duplicate" and "nothing new triggered" in again["detail"]
    assert [r.run_id for r in runs()].count("github__d-twice") == 1


def test_github_down_while_asking_for_files_fails_the_delivery_until_redelivered(receiver):
    body = payload("push.created.4")
    receiver.github.seed_compare("master", body["after"], repository=REPOSITORY, files=["services/service-a/x.py"])
    receiver.github.fail(503, count=2)
    answer = refused_without_a_run(receiver, 502, "push", body, delivery="d-outage")
    assert "redeliver" in answer["detail"]
    assert post(receiver, "push", body, delivery="d-outage").status_code == 201
    assert the_run("github__d-outage").conf["changed_paths"] == ["services/service-a/x.py"]


@pytest.mark.parametrize("key,value,message", [
    ("ref", "refs/tags/bad..tag", "ref: 'refs/tags/bad..tag' is not a ref"),
    ("head_commit.timestamp", "2019-05-15T15:20:41", "commit_time: '2019-05-15T15:20:41' is not an ISO-8601 time with a zone"),
])
def test_bad_params_fail_before_anything_is_triggered(receiver, key, value, message):
    body = payload("push.created.0")
    *parents, last = key.split(".")
    target = body
    for part in parents:
        target = target[part]
    target[last] = value
    answer = refused_without_a_run(receiver, 422, "push", body)
    assert message in answer["detail"]


def test_the_plugin_serves_the_receiver_under_release(receiver):
    """Mounted as Airflow's API server mounts a plugin's fastapi_apps (a full API server costs ~9 s)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from plugins.release_web import ReleaseWebPlugin

    [spec] = ReleaseWebPlugin.fastapi_apps
    server = FastAPI()
    server.mount(spec["url_prefix"], spec["app"])
    answer = TestClient(server).post("/release/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"})
    assert answer.status_code == 401 and "X-Hub-Signature-256 is missing" in answer.json()["detail"]


# -- the test push of the sandbox walk-through ---------------------------------------------------------

def test_send_test_push_is_signed_with_the_configured_secret_and_starts_dispatch(dispatch_dag, github):
    from fastapi.testclient import TestClient

    from release.domain.config import load_config
    from release.cli_github import send_test_push
    from release.web.app import create_app

    answer = send_test_push(load_config(), "/webhooks/github", ["services/service-c/search.py"],
                            after="c0ffee" + "0" * 34, http=TestClient(create_app()))
    assert answer.status_code == 201, answer.text
    reply = answer.json()
    assert reply["services"] == ["service-c"]
    conf = the_run(reply["run_id"]).conf
    assert (conf["after"], conf["ref"], conf["pr"], conf["changed_paths"]) == (
        "c0ffee" + "0" * 34, "refs/heads/main", None, ["services/service-c/search.py"])
    assert github.seen() == []  # one commit listing its files: no need to ask GitHub


def test_send_test_push_says_what_is_wrong(github, monkeypatch, capsys, tmp_path):
    from release.cli import main

    assert main(["github", "send-test-push", "--url", "http://127.0.0.1:9/release/webhooks/github"]) == 1
    assert "cannot reach the receiver at http://127.0.0.1:9/release/webhooks/github" in capsys.readouterr().err
    monkeypatch.delenv("AIRFLOW_CONN_GITHUB_WEBHOOK")
    monkeypatch.setenv("RELEASE_DATA_DIR", str(tmp_path))  # and no sandbox running
    assert main(["github", "send-test-push"]) == 1
    assert "no webhook secret: the Airflow connection 'github_webhook' is unusable" in capsys.readouterr().err
