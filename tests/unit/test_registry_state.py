"""The registry's pure state: recording, history queries and rollback targets."""

from __future__ import annotations

import pytest

from release.domain.registry import (
    DeployRequest,
    NoRollbackTarget,
    RegistryError,
    RegistryState,
    validate_actor,
    validate_request,
)
from tests.helpers import digest, request_for


def deploy(state, config, env, service, version, char, at):
    return state.deploy(env, request_for(config, service, version, char), by="alice", run_id=f"run-{version}", at=at)


def test_deploy_sets_current_and_appends_history(config):
    state = RegistryState()
    first = deploy(state, config, "dev", "service-a", "1.0.0", "a", "2026-11-01T10:00:00Z")
    second = deploy(state, config, "dev", "service-a", "1.1.0", "b", "2026-11-02T10:00:00Z")
    current = state.current("dev")["service-a"]
    assert (current.version, current.image.endswith(digest("b")), current.deployed_by) == ("1.1.0", True, "alice")
    assert (first.id, first.previous_version) == (1, None)
    assert (second.id, second.previous_version, second.outcome) == (2, "1.0.0", "deployed")


def test_render_parse_round_trip_is_identical(config):
    state = RegistryState()
    deploy(state, config, "dev", "service-b", "2.0.0", "c", "2026-11-01T10:00:00Z")
    state.deploy("staging", request_for(config, "service-a", "1.0.0", "d", scan={"high": 0, "critical": 0}),
                 by="bob", run_id="r", reason="promote", at="2026-11-01T11:00:00Z")
    files = state.render(config.env_order)
    again = RegistryState.parse(*files.values()).render(config.env_order)
    assert again == files
    assert list(RegistryState.parse(*files.values()).environments) == ["dev", "staging", "prod"]


def test_render_is_deterministic_whatever_order_evidence_comes_in(config):
    a, b = RegistryState(), RegistryState()
    a.deploy("dev", DeployRequest("service-a", "1", config.services["service-a"].image + "@" + digest("a"),
                                  {"scan": {"high": 1, "critical": 0}, "signed": True}), by="x", run_id="r", at="t")
    b.deploy("dev", DeployRequest("service-a", "1", config.services["service-a"].image + "@" + digest("a"),
                                  {"signed": True, "scan": {"critical": 0, "high": 1}}), by="x", run_id="r", at="t")
    assert a.render(config.env_order) == b.render(config.env_order)


@pytest.fixture
def timeline(config):
    """dev: 1.0 -> 1.1 -> 1.2 (rolled back to 1.1) -> 1.3 ; staging: 1.0 only."""
    s = RegistryState()
    deploy(s, config, "dev", "service-a", "1.0", "a", "2026-11-01T00:00:00Z")
    deploy(s, config, "dev", "service-a", "1.1", "b", "2026-11-02T00:00:00Z")
    deploy(s, config, "dev", "service-a", "1.2", "c", "2026-11-03T00:00:00Z")
    s.undo("dev", "service-a", outcome="rolled_back", by="bob", run_id="rb", reason="latency", at="2026-11-03T01:00:00Z")
    deploy(s, config, "dev", "service-a", "1.3", "d", "2026-11-04T00:00:00Z")
    deploy(s, config, "staging", "service-a", "1.0", "a", "2026-11-05T00:00:00Z")
    return s


def test_rollback_entry_marks_the_replaced_version(timeline):
    entries = timeline.history(env="dev")
    assert [(e.version, e.action, e.outcome) for e in entries] == [
        ("1.0", "deploy", "deployed"),
        ("1.1", "deploy", "deployed"),
        ("1.2", "deploy", "rolled_back"),
        ("1.1", "rollback", "deployed"),
        ("1.3", "deploy", "deployed"),
    ]
    rollback = entries[3]
    assert (rollback.previous_version, rollback.by, rollback.reason) == ("1.2", "bob", "latency")
    assert rollback.image.endswith(digest("b"))  # the exact digest that ran before


def test_rolled_back_version_is_never_a_target(timeline):
    assert timeline.rollback_target("dev", "service-a").version == "1.1"


def test_first_deploy_has_no_rollback_target(timeline):
    with pytest.raises(NoRollbackTarget, match="no earlier version was successfully deployed"):
        timeline.rollback_target("staging", "service-a")
    with pytest.raises(NoRollbackTarget, match="never been deployed to prod"):
        timeline.rollback_target("prod", "service-a")


def test_repeated_version_is_skipped_for_the_previous_distinct_one(config):
    s = RegistryState()
    for v, c, day in [("1.0", "a", 1), ("2.0", "b", 2), ("2.0", "b", 3)]:
        deploy(s, config, "dev", "service-a", v, c, f"2026-11-0{day}T00:00:00Z")
    assert s.rollback_target("dev", "service-a").version == "1.0"


def test_failed_version_is_not_a_target_either(config):
    s = RegistryState()
    for v, c, day in [("1.0", "a", 1), ("2.0", "b", 2)]:
        deploy(s, config, "dev", "service-a", v, c, f"2026-11-0{day}T00:00:00Z")
    s.undo("dev", "service-a", outcome="failed", by="platform", run_id="auto", reason="smoke failed")
    deploy(s, config, "dev", "service-a", "3.0", "c", "2026-11-05T00:00:00Z")
    assert s.rollback_target("dev", "service-a").version == "1.0"
    assert [e.outcome for e in s.history(env="dev", outcome="failed")] == ["failed"]


def test_undo_to_a_named_version(timeline):
    entry = timeline.undo("dev", "service-a", outcome="rolled_back", by="bob", run_id="x", reason="", to_version="1.0")
    assert (entry.version, entry.previous_version) == ("1.0", "1.3")
    assert timeline.current("dev")["service-a"].version == "1.0"


@pytest.mark.parametrize("version", ["1.2", "9.9", "1.3"])
def test_undo_refuses_versions_that_are_not_targets(timeline, version):
    with pytest.raises(NoRollbackTarget, match=r"to_version: .* allowed: 1.1, 1.0"):
        timeline.undo("dev", "service-a", outcome="rolled_back", by="b", run_id="x", reason="", to_version=version)


def test_the_undo_target_rule_checks_the_digest_and_names_what_is_allowed(timeline):
    """One rule for every rollback: the target's digest must be the one that ran, and a refusal
    carries the allowed versions so each caller can name them in its own words."""
    one_oh = timeline.deployed_versions("dev", "service-a")["1.0"]
    assert timeline.undo_target("dev", "service-a", "1.0", image=one_oh.image) == one_oh
    with pytest.raises(NoRollbackTarget, match=r"image: service-a 1.0 ran in dev as .*, not .*@sha256:f{64}") as exc:
        timeline.undo_target("dev", "service-a", "1.0", image=one_oh.image.replace(digest("a"), digest("f")))
    assert exc.value.allowed == ("1.1", "1.0")
    with pytest.raises(NoRollbackTarget) as exc:
        timeline.undo_target("dev", "service-a", "1.3")
    assert exc.value.allowed == ("1.1", "1.0")
    with pytest.raises(NoRollbackTarget, match="service-a has never been deployed to prod: nothing to roll back"):
        timeline.undo_target("prod", "service-a", "1.0")


def test_history_filters(timeline):
    assert {e.env for e in timeline.history(service="service-a")} == {"dev", "staging"}
    assert [e.version for e in timeline.history(env="dev", since="2026-11-03T00:30:00Z")] == ["1.1", "1.3"]
    assert [e.version for e in timeline.history(until="2026-11-02T00:00:00Z")] == ["1.0", "1.1"]
    assert [e.version for e in timeline.history(outcome="rolled_back")] == ["1.2"]
    assert timeline.history(service="service-b") == []


@pytest.mark.parametrize(
    "env,service,version,image,message",
    [
        ("qa", "service-a", "1.0", None, "env: unknown environment 'qa'; allowed: dev, staging, prod"),
        ("dev", "service-z", "1.0", None, "service: 'service-z' does not run in dev; allowed: service-a, service-b, service-c"),
        ("dev", "service-a", "1.0; rm -rf /", None, "version: '1.0; rm -rf /' is not a version"),
        ("dev", "service-a", "../prod", None, "version: '../prod' is not a version"),
        ("dev", "service-a", "x" * 10_000, None, "is not a version"),
        ("dev", "service-a", "1.0", "registry.local:5000/release/service-a:1.0", "image: 'registry.local:5000/release/service-a:1.0' must be registry.local:5000/release/service-a@sha256:<64 hex digits>"),
        ("dev", "service-a", "1.0", "evil.example.com/service-a@" + digest("a"), "must be registry.local:5000/release/service-a@sha256"),
        ("dev", "service-a", "1.0", "registry.local:5000/release/service-a@sha256:abc", "(pinned by digest)"),
        # `$` also matches before a final newline: the whole value must match
        ("dev", "service-a", "1.0\n", None, "version: '1.0\\n' is not a version"),
        ("dev", "service-a", "1.0", f"registry.local:5000/release/service-a@{digest('a')}\n", "(pinned by digest)"),
    ],
)
def test_bad_requests_name_the_field(config, env, service, version, image, message):
    image = image or f"registry.local:5000/release/{service}@{digest('a')}"
    with pytest.raises(RegistryError) as exc:
        validate_request(config, env, DeployRequest(service, version, image))
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "by,run_id,reason,message",
    [
        ("", "r", "", "deployed_by: '' is not a user name"),
        ("alice; rm", "r", "", "deployed_by: 'alice; rm' is not a user name"),
        ("alice\n", "r", "", "deployed_by: 'alice\\\\n' is not a user name"),  # a regex: backslash, n
        ("alice", "", "", "run_id: must be a single-line run id"),
        ("alice", "a\nb", "", "run_id: must be a single-line run id"),
        ("alice", "r", "x" * 501, "reason: at most 500 printable characters"),
    ],
)
def test_bad_actor_fields(by, run_id, reason, message):
    with pytest.raises(RegistryError, match=message.replace("(", r"\(")):
        validate_actor(by, run_id, reason)


# -- evidence across environments (a real GitOps repository) ------------------------------------


def test_evidence_across_environments_is_one_commit_and_drops_stale_versions(registry, config):
    import git

    registry.record_deployment("dev", [request_for(config, "service-a", "1.1", "3"), request_for(config, "service-b", "2.0", "2")],
                               by="alice", run_id="r1")
    registry.record_deployment("staging", [request_for(config, "service-a", "1.0", "1")], by="alice", run_id="r0")
    repo = git.Repo(registry.store.url.removeprefix("file://"))
    head = repo.commit("main").hexsha
    rescan = {"passed": False, "blocking": ["CVE-2019-14697"]}
    result = registry.record_evidence_across({
        "dev": {"service-a": {"version": "1.1", "rescan": rescan},
                "service-b": {"version": "1.9", "rescan": rescan}},  # no longer runs: dropped
        "staging": {"service-a": {"version": "1.0", "image": request_for(config, "service-a", "1.0", "1").image,
                                  "rescan": rescan}},
    }, by="release-platform", run_id="nightly")
    (commit,) = list(repo.iter_commits(f"{head}..main"))
    assert commit.hexsha == result.sha and commit.message.startswith("Record evidence in dev, staging")
    assert "- dev: service-a 1.1: rescan" in commit.message and "service-b" not in commit.message
    snapshot = registry.snapshot()
    assert snapshot.current("dev")["service-a"].evidence["rescan"] == rescan
    assert snapshot.current("staging")["service-a"].evidence["rescan"] == rescan
    assert "rescan" not in snapshot.current("dev")["service-b"].evidence
    assert snapshot.history(env="staging", service="service-a")[-1].evidence["rescan"] == rescan
    # an image that does not run there (same version, other digest) and a stale version write nothing
    stale = registry.record_evidence_across({"staging": {"service-a": {
        "version": "1.0", "image": request_for(config, "service-a", "1.0", "9").image, "rescan": {}}}},
        by="release-platform", run_id="nightly")
    assert stale.sha is None and repo.commit("main").hexsha == result.sha
    with pytest.raises(RegistryError, match="env: unknown environment 'qa'"):
        registry.record_evidence_across({"qa": {}}, by="release-platform", run_id="nightly")


def test_record_evidence_is_the_single_environment_case(registry, config):
    registry.record_deployment("dev", [request_for(config, "service-a", "1.1", "3")], by="alice", run_id="r1")
    result = registry.record_evidence("dev", {"service-a": {"version": "1.1", "smoke": {"passed": True}}},
                                      by="release-platform", run_id="r2")
    assert result.message.startswith("Record evidence in dev\n\n- service-a 1.1: smoke")
    assert registry.state("dev")["service-a"].evidence["smoke"] == {"passed": True}



def test_history_times_without_a_zone_are_utc(timeline):
    # `registry history --since 2026-11-02` means midnight UTC, as a Z time would.
    assert timeline.history(since="2026-11-02") == timeline.history(since="2026-11-02T00:00:00Z")
    assert timeline.history(until="2026-11-02T01:00:00+01:00") == timeline.history(until="2026-11-02T00:00:00Z")
