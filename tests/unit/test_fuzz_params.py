"""Fuzzed params of `<service>-pipeline`, `release-dispatch`, `promote` and `rollback`: any
input gives a plan that is really valid, or the DAG's own error naming the param. Planning is
pure: a refused plan leaves the registry state as it was."""

from __future__ import annotations

import copy

from hypothesis import example, given
from hypothesis import strategies as st

from release.domain.affected import naive_affected
from release.domain.plans import plan_dispatch as dispatch_plan
from release.domain.plans import COMMIT_RE, ParamError, validate_params
from release.domain.gates import PromotionError
from release.domain.plans import plan_promotion
from release.domain.registry import DIGEST_RE, USER_RE, VERSION_RE, NoRollbackTarget, RegistryState
from release.domain.plans import plan_rollback
from release.k8s.steps import verify_signatures_args
from tests.helpers import request_for
from tests.unit.fuzzing import field_of, fuzz, hostile, junk, nasty_text

COMMIT = "0123456789abcdef0123456789abcdef01234567"
commits = hostile(st.one_of(st.just(COMMIT), st.text("0123456789abcdef", min_size=40, max_size=40)))
branch_names = st.from_regex(r"v?[A-Za-z0-9][A-Za-z0-9._/-]{0,40}", fullmatch=True)
refs = hostile(st.one_of(
    st.builds("refs/heads/{}".format, branch_names), st.builds("refs/tags/{}".format, branch_names),
    st.builds("refs/pull/{}/{}".format, st.integers(1, 10**9), st.sampled_from(["head", "merge"])),
))
prs = st.one_of(st.none(), st.integers(-5, 10**10), junk)
paths = hostile(st.sampled_from(["services/service-a/app.py", "./services/service-b/x", "shared/lib.py",
                                 "proto/search/a.proto", "README.md", "services/service-a/../service-b/x", "/x"]))
changed = st.one_of(st.lists(paths, max_size=5), junk)


def optional(**fields):
    """Params with any of `fields` left out, plus the odd unknown param."""
    return st.fixed_dictionaries({}, optional={**fields, "unknown": junk})


@fuzz(200)
@given(optional(commit=commits, ref=refs, pr=prs, changed_paths=changed))
@example({"commit": COMMIT, "ref": "refs/tags/v"})  # planned version '' (the registry refuses it after the build)
@example({"commit": COMMIT, "ref": "refs/tags/team/1.0"})  # planned version 'team/1.0'
@example({"commit": COMMIT, "ref": "refs/tags/v1.2.0\n"})
def test_pipeline_params(params):
    try:
        facts = validate_params(params)
    except ParamError as exc:
        assert field_of(str(exc)) in {"commit", "ref", "pr", "changed_paths", "commit_time"}, exc
        return
    assert COMMIT_RE.fullmatch(facts.commit) and facts.commit == params["commit"]
    assert VERSION_RE.fullmatch(facts.version), facts  # what the registry will record
    assert facts.release is (params.get("pr") is None)
    if params["ref"].startswith("refs/tags/"):
        assert facts.version == params["ref"].removeprefix("refs/tags/").removeprefix("v")


@fuzz(100)
@given(params=optional(before=st.one_of(st.none(), commits), after=commits, ref=refs, pr=prs, changed_paths=changed))
def test_dispatch_params(config, params):
    try:
        result = dispatch_plan(params, config)
    except ParamError as exc:
        # `after` is checked as the pipeline's `commit` param, and named so.
        assert field_of(str(exc)) in {"before", "commit", "ref", "pr", "changed_paths"}, exc
        return
    services = {n: (s.path, s.watch) for n, s in config.services.items()}
    assert result.services == naive_affected(services, result.changed_paths)
    assert all(".." not in p.split("/") and not p.startswith("/") for p in result.changed_paths)
    assert COMMIT_RE.fullmatch(result.commit)


# -- promote and rollback: planned against a registry state ------------------------------------

VERSIONS = ["1.0", "1.1", "2.0", "2.0.1"]


@st.composite
def states(draw, config) -> RegistryState:
    """A registry as the platform writes it: deployments, and rollbacks of some of them."""
    state = RegistryState()
    steps = st.tuples(st.sampled_from(config.env_order), st.sampled_from(list(config.services)),
                      st.sampled_from(VERSIONS), st.sampled_from("abc"), st.booleans())
    for env, service, version, build, undo in draw(st.lists(steps, max_size=10)):
        if undo and service in state.current(env):
            try:
                state.undo(env, service, outcome="rolled_back", by="bob", run_id="r", reason="undo")
            except NoRollbackTarget:
                pass
        else:
            state.deploy(env, request_for(config, service, version, build), by="alice", run_id="r")
    return state


def names(config):
    return hostile(st.sampled_from([*config.env_order, *config.services]))


requesters = hostile(st.sampled_from(["alice", "bob", "carol", ""]))
reasons = st.one_of(st.none(), st.text(max_size=30), nasty_text, junk)


def promote_params(config):
    services = st.one_of(st.just(["*"]), st.lists(names(config), max_size=4), junk)
    versions = st.one_of(st.none(), hostile(st.sampled_from(VERSIONS)))
    return optional(services=services, from_env=names(config), to_env=names(config), version=versions, reason=reasons)


@fuzz(120)
@given(data=st.data())
def test_promote_params(config, data):
    state = data.draw(states(config))
    params, requester = data.draw(promote_params(config)), data.draw(requesters)
    before = copy.deepcopy(state)
    try:
        plan = plan_promotion(params, config, state, requester)
    except PromotionError as exc:
        assert field_of(str(exc)) in {"from_env", "to_env", "services", "version", "reason", "the"}, exc
        assert state == before
        return
    assert config.next_env(plan.from_env) == plan.to_env and USER_RE.fullmatch(plan.requester)
    assert not any(ord(c) < 32 for c in plan.reason)
    for item in plan.items:
        # The exact digests the registry holds for from_env: what runs there, or a version that ran there.
        held = state.deployed_versions(plan.from_env, item.service).get(item.version)
        current = state.current(plan.from_env)[item.service]
        assert (item.version, item.image) in {(current.version, current.image), (held and held.version, held and held.image)}
        assert item.image.startswith(config.services[item.service].image + "@")
        assert DIGEST_RE.fullmatch(item.image.partition("@")[2])
        if params.get("version") is not None:
            assert item.version == params["version"]
    assert verify_signatures_args([i.image for i in plan.items])[-len(plan.items):] == [i.image for i in plan.items]
    assert len(set(plan.services)) == len(plan.services) == len(plan.items)


def rollback_params(config):
    versions = st.one_of(st.none(), hostile(st.sampled_from(VERSIONS)))
    return optional(service=names(config), env=names(config), to_version=versions, reason=reasons)


@fuzz(120)
@given(data=st.data())
def test_rollback_params(config, data):
    state = data.draw(states(config))
    params, requester = data.draw(rollback_params(config)), data.draw(requesters)
    before = copy.deepcopy(state)
    try:
        plan = plan_rollback(params, config, state, requester)
    except PromotionError as exc:
        message = str(exc)
        # The one refusal about the registry rather than a param: nothing to roll back to.
        nothing_earlier = message.startswith(f"{params.get('service')} in {params.get('env')} runs ")
        assert field_of(message) in {"env", "service", "to_version", "reason", "the"} or nothing_earlier, message
        assert state == before
        return
    env, service = plan.env, plan.service
    current = state.current(env)[service]
    target = state.deployed_versions(env, service)[plan.to_version]
    assert plan.to_version != current.version and plan.from_version == current.version
    assert plan.image == target.image == plan.items[0].image
    if params.get("to_version") is not None:
        assert plan.to_version == params["to_version"]
    assert USER_RE.fullmatch(plan.requester) and plan.reason.strip()
