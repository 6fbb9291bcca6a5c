"""The Releases read model without a server: incremental parsing by commit, the matrix's
"behind" figures, the metrics registry per scrape, the pipeline's commit_time param."""

from __future__ import annotations

import pytest

from release.domain.plans import ParamError, validate_params
from release.domain.registry import RegistryState
from release.domain.registry_file import RegistryFileError
from release.releases.model import AirflowFacts, ReleaseView
from release.releases.source import HistoryParser, VersionsParser
from tests.helpers import request_for

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build(config) -> RegistryState:
    state = RegistryState()
    for i, version in enumerate(["1.0", "1.1", "1.2", "1.3"]):
        state.deploy("dev", request_for(config, "service-a", version, str(i), commit_time="2026-11-01T00:00:00Z"),
                     by="alice", run_id=f"r{i}", at=f"2026-11-0{i + 2}T00:00:00Z")
    state.deploy("staging", request_for(config, "service-a", "1.1", "1"), by="bob", run_id="s", at="2026-11-06T00:00:00Z")
    state.deploy("prod", request_for(config, "service-a", "1.0", "0"), by="bob", run_id="p", at="2026-11-06T00:00:00Z")
    return state


def test_prod_and_staging_show_how_far_behind_they_are(config):
    view = ReleaseView(config, build(config), "c1")
    cells = view.matrix(name="service-a")["rows"][0].cells
    assert (cells["dev"].version, cells["staging"].behind, cells["prod"].behind) == ("1.3", 2, 1)
    assert cells["staging"].differs and not cells["dev"].differs


def test_a_new_commit_parses_only_what_changed_and_a_hand_edit_is_named(config):
    state = build(config)
    texts = state.render(config.env_order)
    history, versions = HistoryParser(), VersionsParser()
    entries, parsed = history.parse(texts["registry/history.yaml"])
    assert parsed == 6 and entries == state.entries
    assert versions.parse(texts["registry/versions.yaml"]) == state.environments

    state.deploy("prod", request_for(config, "service-b", "2.0", "9"), by="alice", run_id="r8")
    texts = state.render(config.env_order)
    entries, parsed = history.parse(texts["registry/history.yaml"])
    assert parsed == 1 and entries == state.entries  # appended: only the new entry is read

    state.undo("dev", "service-a", outcome="failed", by="release-platform", run_id="r9", reason="automatic rollback: smoke")
    texts = state.render(config.env_order)
    entries, parsed = history.parse(texts["registry/history.yaml"])
    assert parsed == 2 and entries == state.entries  # the replaced entry (now failed) and the rollback
    assert versions.parse(texts["registry/versions.yaml"]) == state.environments

    broken = texts["registry/history.yaml"].replace("outcome: failed", "outcome: [failed]")
    with pytest.raises(RegistryFileError, match=r"registry/history.yaml, line \d+"):
        history.parse(broken)
    with pytest.raises(RegistryFileError, match="registry/versions.yaml"):
        versions.parse(texts["registry/versions.yaml"].replace("deployed_by: bob", "deployed_by: [bob]"))

    history.parse(texts["registry/history.yaml"])
    appended = texts["registry/history.yaml"] + "- id: 99\n  env: [prod]\n"
    line = appended.count("\n")
    with pytest.raises(RegistryFileError, match=rf"registry/history.yaml, line {line}: entries.{len(state.entries)}.env: must be a string"):
        history.parse(appended)  # a broken entry appended by hand: named by the strict read, with its line


def test_each_scrape_builds_its_figures_afresh(config):
    from prometheus_client import generate_latest

    from release.releases.prometheus import build_registry

    view = ReleaseView(config, build(config), "c1")
    backups = [{"env": "prod", "phase": "Completed", "completed": "2026-11-06T02:00:00Z"},
               {"env": "prod", "phase": "Failed", "completed": "2026-11-07T02:00:00Z"}]
    facts = AirflowFacts(approvals=[{"dag_id": "promote"}])
    first = generate_latest(build_registry(view, facts, backups)).decode()
    second = generate_latest(build_registry(view, facts, backups)).decode()
    assert first == second  # nothing accumulates across scrapes
    assert 'release_deployments_total{action="deploy",env="dev",outcome="deployed",service="service-a"} 4.0' in first
    assert 'release_change_lead_time_seconds_count{env="dev"} 4.0' in first
    assert 'release_last_successful_backup_timestamp_seconds{env="prod"} 1.7939304e+09' in first
    assert 'release_approvals_waiting{dag_id="promote"} 1.0' in first


def test_the_pipeline_records_the_commit_time_in_utc_and_refuses_a_time_without_a_zone():
    facts = validate_params({"commit": COMMIT, "ref": "refs/tags/v1.0", "commit_time": "2026-11-26T11:00:00+01:00"})
    assert facts.commit_time == "2026-11-26T10:00:00Z"
    assert validate_params({"commit": COMMIT, "ref": "refs/tags/v1.0"}).commit_time is None
    for bad in ("2026-11-26T10:00:00", "yesterday", 12):
        with pytest.raises(ParamError, match="^commit_time: "):
            validate_params({"commit": COMMIT, "ref": "refs/tags/v1.0", "commit_time": bad})


def test_a_view_built_on_the_last_commits_view_is_the_view_built_afresh(config):
    """The cache builds each commit's view on the last one (appended entries indexed, unchanged
    services' rows reused); a page must show exactly what a view built from nothing shows."""
    state = build(config)
    history, versions = HistoryParser(), VersionsParser()

    def read(previous: ReleaseView | None, commit: str) -> ReleaseView:
        texts = state.render(config.env_order)
        envs = versions.parse(texts["registry/versions.yaml"])
        entries, _ = history.parse(texts["registry/history.yaml"])
        return ReleaseView(config, RegistryState(envs, entries), commit, previous=previous, kept=history.kept)

    def afresh(commit: str) -> ReleaseView:
        return ReleaseView(config, RegistryState(state.environments, list(state.entries)), commit)

    view = read(None, "c1")
    steps = [
        lambda: state.deploy("prod", request_for(config, "service-b", "2.0", "9"), by="alice", run_id="r8"),
        lambda: state.deploy("dev", request_for(config, "service-a", "1.4", "5"), by="alice", run_id="r9"),
        lambda: state.undo("dev", "service-a", outcome="failed", by="release-platform", run_id="r10",
                           reason="automatic rollback: smoke"),  # rewrites an entry: built afresh
        lambda: state.deploy("staging", request_for(config, "service-a", "1.3", "3"), by="bob", run_id="r11"),
    ]
    for n, step in enumerate(steps, start=2):
        before, sizes = view, {s: len(e) for s, e in view.by_service.items()}
        step()
        view, expected = read(view, f"c{n}"), afresh(f"c{n}")
        assert view.rows == expected.rows and view.by_service == expected.by_service
        assert view._order == expected._order
        assert view.service("service-a") == expected.service("service-a")
        assert view.matrix()["rows"] == expected.matrix()["rows"]
        # The last commit's view is left as it was: a page still rendering it sees no change.
        assert {s: len(e) for s, e in before.by_service.items()} == sizes
    # An appended deployment reuses every untouched service's row, and copies the touched ones.
    before = view
    state.deploy("prod", request_for(config, "service-b", "2.1", "10"), by="alice", run_id="r12")
    view = read(view, "c9")
    assert history.kept == len(before.state.entries)
    assert view.row_index["service-a"] is before.row_index["service-a"]
    assert view.row_index["service-b"] is not before.row_index["service-b"]
    assert len(before.by_service["service-b"]) == len(view.by_service["service-b"]) - 1
