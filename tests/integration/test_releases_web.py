"""The Releases view and /release/metrics through Airflow's own API server app (the plugin mounted
at /release, Airflow's authentication in front of it), on a real GitOps repository."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from release.gitops.registry import Registry, ensure_local_repo
from tests.helpers import request_for

pytestmark = pytest.mark.xdist_group("releases_web")


def ago(**kw) -> str:
    """A time this long before now (a commit time: the deployment recorded right after is that much later)."""
    return (datetime.now(timezone.utc).replace(microsecond=0) - timedelta(**kw)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def client():
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app("core"), follow_redirects=False)


@pytest.fixture
def token():
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))


@pytest.fixture(scope="module")
def registry(airflow_db, config, tmp_path_factory) -> Registry:
    """service-a: 1.0, 1.1, 1.2 in dev, 1.0 in staging (2 versions behind), a failed 1.3 in prod
    rolled back automatically; service-b blocked by a nightly re-scan finding in dev. Built once
    for the module: the tests that write to it come last (the module runs as one xdist group)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEASE_DATA_DIR", str(tmp_path_factory.mktemp("releases") / "data"))
        yield _world(config)


def _world(config) -> Registry:
    from release.releases import source

    source._cached = None  # another test's repository
    ensure_local_repo(config)
    reg = Registry.from_config(config)
    for i, version in enumerate(["1.0", "1.1", "1.2"]):
        reg.record_deployment("dev", [request_for(config, "service-a", version, str(i), scan={"passed": True},
                                                  signature={"signed": True}, commit_time=ago(hours=5))],
                              by="alice", run_id=f"p{i}")
    reg.record_deployment("staging", [request_for(config, "service-a", "1.0", "0", scan={"passed": True})], by="bob",
                          run_id="s1")
    reg.record_deployment("prod", [request_for(config, "service-a", "1.0", "0", commit_time=ago(hours=30),
                                               approved_by="carol")], by="bob", run_id="q1")
    reg.record_deployment("prod", [request_for(config, "service-a", "1.3", "3", commit_time=ago(hours=3))], by="bob",
                          run_id="q2")
    reg.record_rollback("prod", ["service-a"], by="release-platform", run_id="q2", outcome="failed",
                        reason="automatic rollback: smoke test failed")
    reg.record_deployment("dev", [request_for(config, "service-b", "2.0", "b", scan={"passed": True})], by="alice",
                          run_id="b1")
    reg.record_evidence("dev", {"service-b": {"version": "2.0", "rescan": {"passed": False, "blocking": ["CVE-2026-1"],
                                                                           "scanned_at": ago(hours=1)}}},
                        by="release-platform", run_id="rescan1")
    return reg


def test_release_state_needs_a_logged_in_user(client, registry):
    for path in ("/release/api/matrix", "/release/api/services/service-a", "/release/api/dora", "/release/api/pending",
                 "/release/api/operations", "/release/metrics"):
        resp = client.get(path)
        assert resp.status_code == 401, (path, resp.status_code, resp.text)
        assert "service-a" not in resp.text
    bad = client.get("/release/api/matrix", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code in (401, 403) and "service-a" not in bad.text
    # A page sends the browser to Airflow's login, which brings it back here.
    page = client.get("/release/ui/?name=service", cookies={})
    assert page.status_code == 303, page.text
    assert "login" in page.headers["location"] and "next=%2Frelease%2Fui%2F%3Fname%3Dservice" in page.headers["location"]
    assert "service-a" not in page.text


def test_the_matrix_shows_what_runs_where_and_who_is_behind(client, registry, token):
    auth = {"Authorization": f"Bearer {token}"}
    data = client.get("/release/api/matrix", headers=auth).json()
    assert data["envs"] == ["dev", "staging", "prod"]
    rows = {r["service"]: r for r in data["rows"]}
    a = rows["service-a"]["envs"]
    assert a["dev"]["version"] == "1.2" and a["dev"]["deployed_by"] == "alice" and a["dev"]["signed"] is True
    assert a["dev"]["scan"] == "passed" and a["dev"]["digest"] == "2" * 12
    assert a["staging"]["version"] == "1.0" and a["staging"]["behind"] == 2 and a["staging"]["differs"] is True
    assert a["prod"]["version"] == "1.0" and a["prod"]["behind"] == 0 and a["prod"]["approved_by"] is None
    assert rows["service-b"]["blocking"] is True and rows["service-b"]["envs"]["dev"]["rescan"] == "blocking"
    assert data["rows"][0]["service"] == "service-b"  # a blocking finding comes first
    assert rows["service-c"]["envs"] == {"dev": None, "staging": None, "prod": None}
    # Filters: by name and by owner (service-a is @team-payments's).
    assert [r["service"] for r in client.get("/release/api/matrix?owner=payments", headers=auth).json()["rows"]] == ["service-a"]
    assert [r["service"] for r in client.get("/release/api/matrix?name=-c", headers=auth).json()["rows"]] == ["service-c"]
    page = client.get("/release/api/matrix?page_size=1&page=2", headers=auth).json()
    assert (page["pages"], page["page"], len(page["rows"])) == (3, 2, 1)

    html = client.get("/release/ui/", headers=auth)
    assert html.status_code == 200
    assert "staging 2 versions behind dev" in html.text
    assert "blocking re-scan finding" in html.text and "signed in as viewer" in html.text
    # Cookie auth, as the UI's frame sends it.
    framed = client.get("/release/ui/", cookies={"_token": token})
    assert framed.status_code == 200 and "service-a" in framed.text


def test_the_service_page_lists_every_deployment_and_rollback(client, registry, token):
    auth = {"Authorization": f"Bearer {token}"}
    data = client.get("/release/api/services/service-a", headers=auth).json()
    history = data["history"]
    assert [(h["env"], h["action"], h["version"], h["outcome"]) for h in history[:3]] == [
        ("prod", "rollback", "1.0", "deployed"), ("prod", "deploy", "1.3", "failed"), ("prod", "deploy", "1.0", "deployed")]
    assert history[0]["reason"] == "automatic rollback: smoke test failed" and history[0]["by"] == "release-platform"
    assert history[2]["approved_by"] == "carol"
    assert {v["version"] for v in data["versions"]} == {"1.0", "1.1", "1.2", "1.3"}
    html = client.get("/release/ui/services/service-a", headers=auth).text
    assert "automatic rollback" in html and '<svg id="timeline"' in html and "carol" in html
    assert client.get("/release/api/services/nope", headers=auth).status_code == 404


def test_dora_pending_operations_and_metrics(client, registry, token, config):
    auth = {"Authorization": f"Bearer {token}"}
    d = client.get("/release/api/dora?env=prod&days=7", headers=auth).json()["figures"]
    # prod: 1.0 (lead 30 h) and 1.3 (lead 3 h, failed, rolled back at once): 2 deployments, 1 failed.
    assert (d["deployments"], d["failed_deployments"], d["rollbacks"]) == (2, 1, 1)
    assert d["change_fail_rate"] == 0.5 and d["lead_time_median_s"] == pytest.approx(16.5 * 3600, abs=120)
    assert client.get("/release/api/dora?env=nowhere", headers=auth).status_code == 422
    assert client.get("/release/api/dora?days=3", headers=auth).status_code == 422
    assert "deployment frequency" in client.get("/release/ui/dora?env=prod&days=30", headers=auth).text

    pending = client.get("/release/api/pending", headers=auth).json()
    assert pending == {"approvals": [], "queued": [], "freezes": [], "error": None}
    ops = client.get("/release/api/operations", headers=auth).json()
    assert [b["env"] for b in ops["backups"]] == ["dev", "staging", "prod"]
    assert ops["rescan"]["blocking"] == ["service-b in dev"]
    assert client.get("/release/ui/pending", headers=auth).status_code == 200
    assert client.get("/release/ui/operations", headers=auth).status_code == 200

    resp = client.get("/release/metrics", headers=auth)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'release_deployments_total{action="deploy",env="prod",outcome="failed",service="service-a"} 1.0' in text
    assert 'release_rollbacks_total{env="prod",kind="automatic",service="service-a"} 1.0' in text
    assert 'release_rescan_blocking_findings{env="dev",service="service-b"} 1.0' in text
    assert re.search(r'release_change_lead_time_seconds_count\{env="prod"\} 2\.0', text)
    assert 'release_approvals_waiting{dag_id="promote"} 0.0' in text


def test_the_command_line_gives_the_same_dora_figures(registry, capsys):
    from release.cli import main

    assert main(["metrics", "dora", "--env", "prod", "--days", "7", "--format", "json"]) == 0
    import json

    figures = json.loads(capsys.readouterr().out)
    assert (figures["deployments"], figures["failed_deployments"], figures["rollbacks"]) == (2, 1, 1)
    assert figures["change_fail_rate"] == 0.5 and figures["lead_time_known"] == 2
    assert main(["metrics", "dora", "--env", "prod", "--days", "30", "--service", "service-a"]) == 0
    table = capsys.readouterr().out
    assert "change fail rate" in table and "50% (1 of 2 rolled back)" in table and "16 h 30 min" in table
    assert main(["metrics", "dora", "--env", "qa"]) == 2
    assert "--env: unknown environment 'qa'; allowed: dev, staging, prod" in capsys.readouterr().err


def test_a_new_commit_is_read_once_and_a_page_view_reads_nothing(client, registry, token, config):
    from release.releases.source import cache_for
    from release.web.releases import current_config

    auth = {"Authorization": f"Bearer {token}"}
    client.get("/release/api/matrix", headers=auth)
    cache = cache_for(current_config())
    first = cache.load()
    cache.ttl_seconds = 0  # ask the remote every time
    registry.record_deployment("staging", [request_for(config, "service-a", "1.2", "2")], by="bob", run_id="s2")
    data = client.get("/release/api/matrix?name=service-a", headers=auth).json()
    assert data["rows"][0]["envs"]["staging"]["version"] == "1.2"
    second = cache.load()
    assert second.commit != first.commit
    assert second.parsed_entries == 1  # only the new history entry was parsed
    assert cache.load() is second  # the same commit: nothing read again


def test_a_registry_broken_by_a_hand_edit_is_named_not_a_crash(client, registry, token, config):
    from release.domain.registry import HISTORY_FILE

    def break_history(tree):
        path = tree / HISTORY_FILE
        path.write_text(path.read_text().replace("outcome: failed", "outcome: [failed]", 1))
        return "hand edit"

    registry.store.change(break_history)
    from release.releases.source import cache_for
    from release.web.releases import current_config

    cache_for(current_config()).ttl_seconds = 0
    resp = client.get("/release/api/matrix", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 503
    assert "cannot read the registry: registry/history.yaml, line" in resp.json()["detail"]


def test_loading_the_plugin_leaves_the_web_app_unbuilt_until_the_api_server_serves_it():
    """Every task's process imports the plugins (for their listeners): the /release app, with
    FastAPI and Airflow's API-server auth, must not be built there."""
    import subprocess
    import sys
    from pathlib import Path

    plugins = Path(__file__).resolve().parents[2] / "plugins"
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import release_web; "
             "print(sorted(m for m in ('fastapi', 'airflow.api_fastapi.core_api.security', 'release.web.releases') "
             "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe, str(plugins)], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
