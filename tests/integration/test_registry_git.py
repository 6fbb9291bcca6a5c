"""The registry on a real GitOps repository: one commit per write, umbrella in step, nothing lost."""

from __future__ import annotations

import threading
from pathlib import Path

import git
import pytest
import yaml

from release.gitops import umbrella
from release.cli import main
from release.gitops.store import GitOpsStore
from release.gitops.registry import ensure_local_repo
from release.domain.registry import HISTORY_FILE, VERSIONS_FILE, NoRollbackTarget, RegistryError, RegistryState
from release.gitops.registry import Registry
from tests.helpers import digest, head, make_gitops_repo, many_services, request_for


def last_commit(url: str) -> git.Commit:
    return git.Repo(url.removeprefix("file://")).commit("main")


def test_deployment_is_one_commit_with_registry_and_umbrella(registry, config, gitops_url):
    result = registry.record_deployment(
        "staging",
        [request_for(config, "service-a", "1.4.0", "a", scan={"critical": 0}), request_for(config, "service-b", "2.0.0", "b")],
        by="alice", run_id="manual__2026-11-26", reason="weekly release",
    )
    commit = last_commit(gitops_url)
    assert commit.hexsha == result.sha
    assert sorted(commit.stats.files) == sorted([
        VERSIONS_FILE, HISTORY_FILE, "umbrella/staging/Chart.yaml", "umbrella/staging/values.yaml",
        "umbrella/staging/templates/NOTES.txt",
    ])
    assert commit.author.name == "alice"
    assert commit.message.splitlines()[0] == "Deploy 2 services to staging"
    assert "- service-a: (none) -> 1.4.0" in commit.message and "Reason: weekly release" in commit.message

    versions = yaml.safe_load(registry.store.read(VERSIONS_FILE))["environments"]["staging"]["service-a"]
    assert versions["image"] == f"{config.services['service-a'].image}@{digest('a')}"
    assert (versions["version"], versions["deployed_by"], versions["run_id"]) == ("1.4.0", "alice", "manual__2026-11-26")
    assert versions["evidence"] == {"scan": {"critical": 0}}
    assert versions["deployed_at"].endswith("Z")

    chart = yaml.safe_load(registry.store.read("umbrella/staging/Chart.yaml"))
    assert [d["name"] for d in chart["dependencies"]] == ["service-a", "service-b"]
    assert chart["dependencies"][0]["repository"] == "file://../../services/service-a"
    values = yaml.safe_load(registry.store.read("umbrella/staging/values.yaml"))
    assert values["service-b"]["image"] == {"repository": config.services["service-b"].image, "digest": digest("b")}


def test_bad_input_writes_nothing(registry, config, gitops_url):
    before = head(gitops_url)
    bad = request_for(config, "service-a", "1.0", "a")
    with pytest.raises(RegistryError, match="version: '1.0; rm -rf /'"):
        registry.record_deployment("dev", [request_for(config, "service-b", "1.0", "b"),
                                           type(bad)("service-a", "1.0; rm -rf /", bad.image)], by="a", run_id="r")
    with pytest.raises(RegistryError, match="appears twice"):
        registry.record_deployment("dev", [bad, bad], by="a", run_id="r")
    with pytest.raises(RegistryError, match="env: unknown environment"):
        registry.record_rollback("qa", ["service-a"], by="a", run_id="r", reason="x")
    with pytest.raises(NoRollbackTarget):
        registry.record_rollback("dev", ["service-a"], by="a", run_id="r", reason="x")
    assert head(gitops_url) == before


def test_rollback_is_a_new_commit_and_history_tells_the_story(registry, config, gitops_url):
    registry.record_deployment("prod", [request_for(config, "service-c", "1.0", "a")], by="alice", run_id="r1")
    registry.record_deployment("prod", [request_for(config, "service-c", "1.1", "b")], by="alice", run_id="r2")
    assert registry.rollback_target("prod", "service-c").version == "1.0"
    before = head(gitops_url)
    result = registry.record_rollback("prod", ["service-c"], by="bob", run_id="r3", reason="errors after deploy")
    assert last_commit(gitops_url).parents[0].hexsha == before  # history only grows
    assert result.message.startswith("Roll back service-c in prod")
    assert registry.state("prod")["service-c"].version == "1.0"
    story = [(e.version, e.previous_version, e.action, e.outcome, e.by) for e in registry.history(service="service-c")]
    assert story == [("1.0", None, "deploy", "deployed", "alice"), ("1.1", "1.0", "deploy", "rolled_back", "alice"),
                     ("1.0", "1.1", "rollback", "deployed", "bob")]
    values = yaml.safe_load(registry.store.read("umbrella/prod/values.yaml"))
    assert values["service-c"]["image"]["digest"] == digest("a")


def test_umbrella_output_is_deterministic(registry, config, gitops_url):
    registry.record_deployment("dev", [request_for(config, "service-a", "1.0", "a")], by="a", run_id="r")
    before = head(gitops_url)
    assert umbrella.reconcile(registry) == ([], None)
    with registry.store.checkout() as tree:
        state = RegistryState.from_tree(tree)
        assert umbrella.render_all(tree, config, state) == umbrella.render_all(tree, config, state)
        assert umbrella.drift(tree, config, state) == []
    assert head(gitops_url) == before


def test_drifted_umbrella_is_regenerated_in_one_commit(registry, config, gitops_url):
    registry.record_deployment("dev", [request_for(config, "service-a", "1.0", "a")], by="a", run_id="r")
    registry.store.change(lambda t: ((t / "umbrella/dev/values.yaml").write_text("hand: edit\n"),
                                     (t / "umbrella/prod/Chart.yaml").unlink(), "hand edit")[2])
    drifted, sha = umbrella.reconcile(registry)
    assert drifted == ["umbrella/dev/values.yaml", "umbrella/prod/Chart.yaml"]
    assert last_commit(gitops_url).hexsha == sha
    assert yaml.safe_load(registry.store.read("umbrella/dev/values.yaml"))["service-a"]["version"] == "1.0"


def test_service_without_chart_is_refused_with_nothing_written(registry, config, gitops_url):
    registry.store.change(lambda t: ((t / "services/service-b/Chart.yaml").unlink(), "remove chart")[1])
    before = head(gitops_url)
    with pytest.raises(umbrella.UmbrellaError, match="services.service-b.chart: no chart at services/service-b/Chart.yaml"):
        registry.record_deployment("dev", [request_for(config, "service-b", "1.0", "b")], by="a", run_id="r")
    assert head(gitops_url) == before


@pytest.mark.parametrize("same_host", [False, True], ids=["writers-on-many-hosts", "writers-on-one-host"])
def test_twenty_concurrent_writers_lose_nothing(tmp_path, same_host):
    config, template = many_services(tmp_path, 20)
    url = make_gitops_repo(tmp_path / "gitops.git", config, template)
    start = threading.Barrier(20)
    results, errors = {}, []

    def writer(i: int) -> None:
        service = f"svc-{i:02d}"
        store = GitOpsStore(url, "main", max_attempts=40, backoff_seconds=0.02, serialize_locally=same_host)
        registry = Registry(store, config)
        start.wait()
        try:
            results[service] = registry.record_deployment(
                "dev", [request_for(config, service, f"1.0.{i}", "0123456789abcdef"[i % 16])], by=f"user{i}", run_id=f"run-{i}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = Registry(GitOpsStore(url), config).snapshot()
    assert {s: d.version for s, d in state.current("dev").items()} == {f"svc-{i:02d}": f"1.0.{i}" for i in range(1, 21)}
    assert sorted(e.id for e in state.entries) == list(range(1, 21))
    assert sorted(e.run_id for e in state.entries) == sorted(f"run-{i}" for i in range(1, 21))
    if same_host:  # they take turns: no attempt is wasted
        assert [r.attempts for r in results.values()] == [1] * 20
    else:  # they really did collide, and retried
        assert sum(r.attempts for r in results.values()) > 20
    commits = list(git.Repo(url.removeprefix("file://")).iter_commits("main"))
    assert len(commits) == 21  # the template commit plus exactly one per writer
    chart = yaml.safe_load(GitOpsStore(url).read("umbrella/dev/Chart.yaml"))
    assert len(chart["dependencies"]) == 20


def test_local_repo_is_created_once_from_the_template(data_dir, config):
    created = ensure_local_repo(config)
    assert created == data_dir / "gitops.git"
    assert ensure_local_repo(config) is None
    store = GitOpsStore(created.as_uri())
    assert yaml.safe_load(store.read(VERSIONS_FILE))["environments"] == {"dev": {}, "staging": {}, "prod": {}}
    assert store.read("umbrella/prod/Chart.yaml") is not None
    with store.checkout() as tree:
        assert (tree / "services/service-a/charts/service-lib").is_symlink()


def test_cli_registry_show_and_history(data_dir, config, capsys):
    assert main(["gitops", "init"]) == 0
    registry = Registry.from_config(config)
    registry.record_deployment("dev", [request_for(config, "service-a", "3.1.4", "e")], by="carol", run_id="r")
    capsys.readouterr()
    assert main(["registry", "show"]) == 0
    out = capsys.readouterr().out
    assert "service-a" in out and "3.1.4" in out and "carol" in out and "staging" in out
    assert main(["registry", "show", "--env", "qa"]) == 2
    assert "allowed: dev, staging, prod" in capsys.readouterr().err
    assert main(["registry", "history", "--service", "service-a"]) == 0
    assert "3.1.4" in capsys.readouterr().out


def _promoted_and_rolled_back(config) -> Registry:
    """dev and prod as promote and rollback leave them: prod 1.1 approved by bob, then 1.2 (approved
    by carol) rolled back to 1.1 with dave approving the rollback; service-b never deployed."""
    registry = Registry.from_config(config)
    registry.record_deployment("dev", [request_for(config, "service-a", "1.2", "e")], by="carol", run_id="r1")
    registry.record_deployment("prod", [request_for(config, "service-a", "1.1", "d", approved_by="bob")],
                               by="alice", run_id="r2", reason="release 1.1")
    registry.record_deployment("prod", [request_for(config, "service-a", "1.2", "e", approved_by="carol")],
                               by="alice", run_id="r3", reason="release 1.2")
    registry.record_rollback("prod", ["service-a"], by="erin", run_id="r4", reason="5xx", approved_by="dave")
    return registry


def test_cli_registry_show_names_the_approver_in_table_and_json(data_dir, config, capsys):
    import json

    assert main(["gitops", "init"]) == 0
    _promoted_and_rolled_back(config)
    capsys.readouterr()
    assert main(["registry", "show", "--env", "prod"]) == 0
    table = capsys.readouterr().out
    assert "1.1 (sha256:" in table and "by erin" in table and "approved by dave" in table
    assert "approved by bob" not in table  # the approver of 1.1's first promotion did not approve the rollback

    assert main(["registry", "show", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert list(shown) == ["dev", "staging", "prod"] and list(shown["prod"]) == list(config.services)
    prod = shown["prod"]["service-a"]
    assert list(prod) == ["version", "image", "deployed_at", "deployed_by", "approved_by", "run_id"]
    assert (prod["version"], prod["image"], prod["deployed_by"], prod["approved_by"], prod["run_id"]) == (
        "1.1", f"{config.services['service-a'].image}@{digest('d')}", "erin", "dave", "r4")
    assert prod["deployed_at"].endswith("Z")
    assert shown["dev"]["service-a"]["approved_by"] is None and shown["dev"]["service-a"]["deployed_by"] == "carol"
    assert shown["prod"]["service-b"] is None and shown["staging"] == {s: None for s in config.services}


def test_cli_registry_history_has_an_approved_by_column_and_json(data_dir, config, capsys):
    import json

    assert main(["gitops", "init"]) == 0
    _promoted_and_rolled_back(config)
    capsys.readouterr()
    assert main(["registry", "history", "--env", "prod"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "at", "env", "service", "from", "to", "action", "outcome", "by", "approved", "by"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows] == [
        ("-", "1.1", "deploy", "deployed", "alice", "bob"),
        ("1.1", "1.2", "deploy", "rolled_back", "alice", "carol"),
        ("1.2", "1.1", "rollback", "deployed", "erin", "dave"),
    ]
    assert main(["registry", "history", "--env", "dev"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "-"  # nobody needed to approve dev

    assert main(["registry", "history", "--service", "service-a", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [list(e) for e in entries] == [["id", "at", "env", "service", "previous_version", "version", "image", "action",
                                           "outcome", "by", "approved_by", "run_id", "reason"]] * 4
    assert [(e["env"], e["version"], e["previous_version"], e["action"], e["by"], e["approved_by"], e["reason"])
            for e in entries] == [
        ("dev", "1.2", None, "deploy", "carol", None, ""),
        ("prod", "1.1", None, "deploy", "alice", "bob", "release 1.1"),
        ("prod", "1.2", "1.1", "deploy", "alice", "carol", "release 1.2"),
        ("prod", "1.1", "1.2", "rollback", "erin", "dave", "5xx"),
    ]
    assert [e["id"] for e in entries] == [1, 2, 3, 4] and entries[1]["image"].endswith(digest("d"))
    assert main(["registry", "history", "--env", "staging", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("command", [["registry", "show"], ["registry", "history"]])
def test_cli_registry_format_is_table_or_json(data_dir, config, capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--format", "yaml"])
    assert exc.value.code == 2
    assert "argument --format: invalid choice: 'yaml' (choose from 'table', 'json')" in capsys.readouterr().err


def test_a_rollback_without_approval_claims_no_approver(registry, config):
    registry.record_deployment("prod", [request_for(config, "service-a", "1.1", "d", approved_by="bob", scan={"x": 1})],
                               by="alice", run_id="r1")
    registry.record_deployment("prod", [request_for(config, "service-a", "1.2", "e", approved_by="bob")],
                               by="alice", run_id="r2")
    registry.record_rollback("prod", ["service-a"], by="release-platform", run_id="r3", reason="smoke failed",
                             outcome="failed")
    current = registry.state("prod")["service-a"]
    assert (current.version, current.approved_by, current.evidence) == ("1.1", None, {"scan": {"x": 1}})
    assert registry.history()[0].approved_by == "bob"  # the original promotion keeps its approver
    with pytest.raises(RegistryError, match="approved_by: 'bob\\\\n'"):
        registry.record_rollback("prod", ["service-a"], by="alice", run_id="r4", reason="x", approved_by="bob\n")
