"""Fuzzed `deploy-<env>` change sets (what a hand_over, or anyone triggering the DAG, passes):
parse, then the checks against the config and the registry, each either accepts a change that
is really valid or refuses it with ChangeRefused naming the field. Nothing is written: the
registry state is the same afterwards."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timezone
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from release.domain.config import DEFAULT_CONFIG_PATH, parse_config
from release.domain.change_set import ChangeRefused, ChangeSet, check_against_config, check_against_registry, parse_change_set
from release.domain.registry import DIGEST_RE, USER_RE, VERSION_RE, RegistryState
from release.domain.scan import ScanPolicy, evaluate_report
from tests.helpers import digest
from tests.unit.fuzzing import fuzz, hostile, junk, nasty_text

TRIVY = Path(__file__).resolve().parents[1] / "fixtures" / "trivy"
NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)
VERSIONS = ["1.0", "1.1", "2.0"]


CONFIG = parse_config(DEFAULT_CONFIG_PATH.read_text())
PASSING_SCAN = evaluate_report(json.loads((TRIVY / "alpine-39-skip.json").read_text()), ScanPolicy(), date(2026, 11, 1)).to_dict()
FAILING_SCAN = evaluate_report(json.loads((TRIVY / "alpine-39.json").read_text()), ScanPolicy(), date(2026, 11, 1)).to_dict()

# Evidence as the gates record it, and as a hand edit of the registry might leave it.
evidence = st.one_of(
    st.just({"smoke": {"passed": True, "run_id": "r1"}, "scan": PASSING_SCAN}),
    st.just({"smoke": {"passed": True, "run_id": "r1"}, "scan": FAILING_SCAN}),
    st.just({"smoke": {"passed": True, "run_id": "r1"}, "scan": PASSING_SCAN, "rescan": {"passed": False, "blocking": ["CVE-1"]}}),
    st.just({}),
    st.builds(lambda key, value: {"smoke": {"passed": True, "run_id": "r1"}, "scan": PASSING_SCAN, key: value},
              st.sampled_from(["smoke", "scan", "rescan"]),
              st.one_of(st.sampled_from(["yes", 1, True, ["x"], {"passed": "yes"}, {"summary": 5}, {"passed": None}]), junk)),
    st.dictionaries(st.sampled_from(["smoke", "scan", "rescan", "approved_by"]), junk, max_size=3),
)


@st.composite
def states(draw) -> RegistryState:
    state = RegistryState()
    steps = st.tuples(st.sampled_from(CONFIG.env_order), st.sampled_from(list(CONFIG.services)),
                      st.sampled_from(VERSIONS), st.sampled_from("ab"), evidence)
    for env, service, version, build, ev in draw(st.lists(steps, min_size=2, max_size=8)):
        image = f"{CONFIG.services[service].image}@{digest(build)}"
        from release.domain.registry import DeployRequest

        state.deploy(env, DeployRequest(service, version, image, ev), by="alice", run_id="r", at="2026-11-01T00:00:00Z")
    return state


def images():
    repos = [s.image for s in CONFIG.services.values()] + ["registry.evil/x", ""]
    return hostile(st.builds("{}@{}".format, st.sampled_from(repos), st.sampled_from([digest("a"), digest("b"), "sha256:x"])))


items = st.one_of(
    st.lists(st.fixed_dictionaries(
        {"service": hostile(st.sampled_from(list(CONFIG.services))), "version": hostile(st.sampled_from(VERSIONS)),
         "image": images()}, optional={"extra": junk}), max_size=3),
    junk,
)
change_sets = st.one_of(
    st.fixed_dictionaries(
        {"kind": hostile(st.sampled_from(["pipeline", "promotion", "rollback"])),
         "env": hostile(st.sampled_from(CONFIG.env_order)),
         "items": items,
         "requester": hostile(st.sampled_from(["alice", "bob", "release-platform"])),
         "caller": st.one_of(st.fixed_dictionaries({
             "dag_id": hostile(st.sampled_from(["promote", "rollback", "service-a-pipeline", "deploy-prod"])),
             "run_id": hostile(st.sampled_from(["manual__2026-11-01T00:00:00+00:00", "r1"]))}), junk)},
        optional={"from_env": st.one_of(st.none(), hostile(st.sampled_from(CONFIG.env_order))),
                  "reason": st.one_of(st.text(max_size=20), nasty_text, junk), "approved_by": junk}),
    junk,
)

FIELDS = {"kind", "env", "from_env", "items", "requester", "reason", "caller"}


@st.composite
def from_the_registry(draw, state: RegistryState) -> dict:
    """A change set that names what the registry holds (the checks' valid side), one field maybe spoiled."""
    order = CONFIG.env_order
    kind = draw(st.sampled_from(["pipeline", "promotion", "rollback"]))
    env = order[0] if kind == "pipeline" else draw(st.sampled_from(order[1:] if kind == "promotion" else order))
    source = order[order.index(env) - 1] if kind == "promotion" else env
    held = [(s, e) for s in CONFIG.services for e in state.deployed_versions(source, s).values()]
    picked = draw(st.lists(st.sampled_from(held), min_size=1, max_size=1 if kind != "promotion" else 3,
                           unique_by=lambda p: p[0])) if held else []
    raw = {"kind": kind, "env": env, "requester": "alice", "reason": "go",
           "items": [{"service": s, "version": e.version, "image": e.image} for s, e in picked],
           "caller": {"dag_id": {"promotion": "promote", "rollback": "rollback"}.get(kind, f"{picked[0][0] if picked else 'x'}-pipeline"),
                      "run_id": "r1"}}
    if kind == "promotion":
        raw["from_env"] = source
    if draw(st.integers(0, 3)) == 0:
        raw[draw(st.sampled_from(sorted(FIELDS)))] = draw(junk)
    return raw


def refused_field(exc: ChangeRefused) -> str:
    message = str(exc)
    if message.startswith("gate "):  # a gate judged again on the registry's evidence
        return message.split(":")[0]
    assert message.startswith("change"), message
    return message.removeprefix("change.").split(".")[0].split(":")[0].split("[")[0]


@fuzz(250)
@given(data=st.data())
def test_a_change_set_is_valid_or_refused_naming_the_field(data):
    state = data.draw(states())
    raw = data.draw(st.one_of(change_sets, from_the_registry(state), from_the_registry(state)))
    check_change(raw, state)


def check_change(raw, state):
    before = copy.deepcopy(state)
    try:
        change = parse_change_set(raw)
    except ChangeRefused as exc:
        assert refused_field(exc) in FIELDS | {"change"}, exc
        return
    assert parse_change_set(change.model_dump()) == change  # round trip
    assert USER_RE.fullmatch(change.requester) and not any(ord(c) < 32 for c in change.reason)
    for env in CONFIG.env_order:
        try:
            check_against_config(change, CONFIG, env)
        except ChangeRefused as exc:
            assert refused_field(exc) in FIELDS, exc
            continue
        assert change.env == env
        for item in change.items:
            assert item.image.partition("@")[0] == CONFIG.services[item.service].image
            assert VERSION_RE.fullmatch(item.version) and DIGEST_RE.fullmatch(item.image.partition("@")[2])
        try:
            found = check_against_registry(change, CONFIG, state, NOW)
        except ChangeRefused as exc:
            assert refused_field(exc) in FIELDS | {"gate scan", "gate smoke", "gate freeze"}, exc
            continue
        finally:
            assert state == before
        if change.kind == "promotion":
            for item in change.items:
                held = state.deployed_versions(change.from_env, item.service)[item.version]
                assert held.image == item.image and found[item.service] == held.evidence
                assert (held.evidence.get("smoke") or {}).get("passed")
        elif change.kind == "rollback":
            item = change.items[0]
            assert state.deployed_versions(env, item.service)[item.version].image == item.image
            assert state.current(env)[item.service].version != item.version


def test_a_promotion_of_nothing_deployed_is_refused():
    check_change({"kind": "promotion", "env": "prod", "from_env": "staging", "requester": "alice", "reason": "go",
                  "items": [{"service": "service-a", "version": "1.0", "image": f"{CONFIG.services['service-a'].image}@{digest('a')}"}],
                  "caller": {"dag_id": "promote", "run_id": "r1"}}, RegistryState())


def test_round_trip_of_a_valid_change(config):
    change = parse_change_set({"kind": "pipeline", "env": "dev", "requester": "alice", "reason": "pipeline of refs/heads/main",
                               "items": [{"service": "service-a", "version": "sha-0123456789ab",
                                          "image": f"{config.services['service-a'].image}@{digest('a')}"}],
                               "caller": {"dag_id": "service-a-pipeline", "run_id": "manual__1"}})
    assert isinstance(change, ChangeSet) and parse_change_set(json.loads(change.model_dump_json())) == change
    check_against_config(change, config, "dev")


# The gates deploy-<env> judges again read the evidence the registry holds for each digest, which a
# hand edit of the registry file can have left in any shape.
@fuzz(200)
@given(st.lists(st.one_of(evidence, junk), min_size=1, max_size=3))
@example([{"smoke": "yes"}])  # AttributeError in gate smoke
@example([{"smoke": {"passed": True, "run_id": "r1"}, "scan": PASSING_SCAN, "rescan": "x"}])  # AttributeError in gate scan
@example([{"smoke": {"passed": True, "run_id": "r1"}, "scan": PASSING_SCAN, "rescan": {"passed": False, "blocking": 7}}])
@example([{"smoke": {"passed": "no"}, "scan": PASSING_SCAN}])  # was taken as a passed smoke test
@example(["evidence"])
def test_gates_judge_any_recorded_evidence(evidences):
    from release.domain.gates import PromotionError, gate_scan, gate_smoke
    from release.domain.plan_models import PromotedItem, Promotion
    from release.domain.plans import describe

    plan = Promotion(from_env="staging", to_env="prod", services=list(CONFIG.services)[:len(evidences)],
                     requester="alice", reason="go",
                     items=[PromotedItem(service=s, version="1.0", image="x", replaces=None, evidence=e)
                            for s, e in zip(CONFIG.services, evidences)])
    subject, body = describe(plan)  # what the approver reads
    assert subject.startswith("Promote ") and body
    for gate in (lambda: gate_smoke(plan), lambda: gate_scan(plan, CONFIG, date(2026, 11, 1))):
        try:
            lines = gate()
        except PromotionError as exc:
            assert str(exc).startswith(("gate smoke: ", "gate scan: ")), exc
            continue
        assert len(lines) == len(plan.items) and all(isinstance(line, str) for line in lines)
    try:
        gate_smoke(plan)
    except PromotionError:
        return
    assert all(isinstance(e, dict) and e["smoke"]["passed"] is True for e in evidences)
