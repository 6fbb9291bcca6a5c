"""deploy-<env>'s own checks of a change set, as pure logic: shape, config, registry.

The DAG tests drive them end to end (tests/dags/test_promote.py: hand-written change sets); here
each refusal names the field and what is allowed, and nothing passes that should not."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from release.domain.change_set import ChangeRefused, check_against_config, check_against_registry, parse_change_set
from release.domain.registry import RegistryState
from tests.dags.test_promote import evidence
from tests.helpers import digest, request_for

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


@pytest.fixture
def state(config):
    s = RegistryState()
    s.deploy("staging", request_for(config, "service-a", "1.0", "1", **evidence()), by="a", run_id="r")
    s.deploy("staging", request_for(config, "service-a", "1.1", "3", **evidence()), by="a", run_id="r")
    s.deploy("prod", request_for(config, "service-a", "1.0", "1", **evidence()), by="a", run_id="r")
    s.deploy("prod", request_for(config, "service-a", "1.1", "3", **evidence()), by="a", run_id="r")
    return s


def change(config, **overrides) -> dict:
    base = {"kind": "promotion", "env": "prod", "from_env": "staging", "requester": "alice", "reason": "go",
            "items": [{"service": "service-a", "version": "1.1", "image": f"{config.services['service-a'].image}@{digest('3')}"}],
            "caller": {"dag_id": "promote", "run_id": "manual__2026-12-02T00:00:00+00:00"}}
    return {**base, **overrides}


@pytest.mark.parametrize("overrides,message", [
    ({"kind": "hotfix"}, "change.kind: Input should be 'pipeline', 'promotion' or 'rollback'"),
    ({"requester": "alice\n"}, "change.requester: Value error, must be a user name"),
    ({"reason": "two\nlines"}, "change.reason: Value error, must be one line"),
    ({"items": []}, "change.items: List should have at least 1 item"),
    ({"items": [{"service": "service-a", "version": "1.1\n", "image": "x@sha256:" + "a" * 64}]},
     "change.items.0.version: Value error, must be a version"),
    ({"items": [{"service": "service-a", "version": "1.1", "image": "repo:latest"}]},
     "change.items.0.image: Value error, must be <repository>@sha256:<64 hex>"),
    ({"caller": {"dag_id": "promote", "run_id": "a b"}}, "change.caller.run_id: Value error, must be a run id"),
    ({"approved_by": "bob"}, "change.approved_by: Extra inputs are not permitted"),
])
def test_a_malformed_change_set_is_refused_naming_the_field(config, overrides, message):
    with pytest.raises(ChangeRefused) as exc:
        parse_change_set(change(config, **overrides))
    assert str(exc.value).startswith(message), str(exc.value)


def test_a_change_set_must_be_an_object():
    with pytest.raises(ChangeRefused, match="change: must be a change set object"):
        parse_change_set("promote everything")


@pytest.mark.parametrize("env,overrides,message", [
    ("staging", {}, "change.env: 'prod' is not allowed in deploy-staging; allowed: staging"),
    ("prod", {"from_env": "dev"}, "change.from_env: 'dev' is not allowed; allowed: staging"),
    ("prod", {"caller": {"dag_id": "rollback", "run_id": "r"}}, "change.caller.dag_id: a promotion is handed over by promote"),
    ("prod", {"kind": "pipeline", "from_env": None, "caller": {"dag_id": "service-a-pipeline", "run_id": "r"}},
     "change.kind: a pipeline deploys one service to dev only"),
    ("prod", {"items": [{"service": "service-z", "version": "1", "image": "r@sha256:" + "a" * 64}]},
     "change.items: 'service-z' is not a service of prod"),
    ("prod", {"items": [{"service": "service-a", "version": "1.1", "image": "evil.example/a@sha256:" + "a" * 64}]},
     "change.items: the image of service-a must come from registry.local:5000/release/service-a"),
])
def test_a_change_set_must_fit_the_environment_and_config(config, env, overrides, message):
    with pytest.raises(ChangeRefused) as exc:
        check_against_config(parse_change_set(change(config, **overrides)), config, env)
    assert str(exc.value).startswith(message), str(exc.value)


def test_a_promotion_must_carry_the_digest_the_environment_before_runs(config, state):
    ok = parse_change_set(change(config))
    check_against_config(ok, config, "prod")
    assert check_against_registry(ok, config, state, NOW)["service-a"]["scan"]["passed"] is True
    other = change(config, items=[{**change(config)["items"][0], "image": f"{config.services['service-a'].image}@{digest('f')}"}])
    with pytest.raises(ChangeRefused, match="service-a 1.1 runs as .* in staging, not"):
        check_against_registry(parse_change_set(other), config, state, NOW)
    never = change(config, items=[{**change(config)["items"][0], "version": "9.9"}])
    with pytest.raises(ChangeRefused, match="service-a 9.9 was never successfully deployed in staging"):
        check_against_registry(parse_change_set(never), config, state, NOW)


def test_a_promotion_is_judged_on_the_registrys_evidence_not_the_callers(config):
    s = RegistryState()
    s.deploy("staging", request_for(config, "service-a", "1.1", "3", **evidence(smoke=False)), by="a", run_id="r")
    with pytest.raises(ChangeRefused, match="gate smoke: no passed smoke test in staging is recorded for: service-a 1.1"):
        check_against_registry(parse_change_set(change(config)), config, s, NOW)


def test_a_rollback_target_must_have_run_here_before(config, state):
    back = change(config, kind="rollback", from_env=None, caller={"dag_id": "rollback", "run_id": "r"},
                  items=[{"service": "service-a", "version": "1.0", "image": f"{config.services['service-a'].image}@{digest('1')}"}])
    assert check_against_registry(parse_change_set(back), config, state, NOW) == {}
    for version, char in (("1.1", "3"), ("0.9", "9"), ("1.0", "f")):  # the current one, a stranger, a wrong digest
        bad = {**back, "items": [{"service": "service-a", "version": version,
                                  "image": f"{config.services['service-a'].image}@{digest(char)}"}]}
        with pytest.raises(ChangeRefused, match="was never successfully deployed to prod before; allowed: 1.0"):
            check_against_registry(parse_change_set(bad), config, state, NOW)
