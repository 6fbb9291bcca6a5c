"""plan_promotion and check_four_eyes as pure logic (the DAG tests drive them end to end)."""

from __future__ import annotations

import pytest
import yaml

from release.config import DEFAULT_CONFIG_PATH, parse_config
from release.promote import PromotionError, check_four_eyes, plan_promotion
from release.registry import RegistryState
from tests.helpers import request_for


@pytest.fixture
def state(config):
    s = RegistryState()
    s.deploy("staging", request_for(config, "service-a", "1.1", "3"), by="alice", run_id="r", at="2026-11-01T00:00:00Z")
    return s


def test_plan_moves_the_exact_digest(config, state):
    plan = plan_promotion({"services": ["*"], "from_env": "staging", "to_env": "prod", "reason": "go"}, config, state, "alice")
    assert plan["services"] == ["service-a"] and plan["items"][0]["image"] == state.current("staging")["service-a"].image
    assert plan["needs_approval"] and plan["approvers"] == ["alice", "bob"] and plan["items"][0]["replaces"] is None


def test_environments_deployed_with_helm_are_refused_before_anything(config, state):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["environments"]["prod"]["deploy_strategy"] = "helm"
    helm = parse_config(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(PromotionError, match="to_env: prod deploys with 'helm'"):
        plan_promotion({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "go"}, helm, state, "alice")


@pytest.mark.parametrize("responder,message", [
    ("alice", "four-eyes: alice requested this promotion and cannot approve it"),
    ("mallory", "four-eyes: 'mallory' is not an approver for prod; allowed: alice, bob"),
])
def test_four_eyes(config, state, responder, message):
    plan = plan_promotion({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "go"}, config, state, "alice")
    with pytest.raises(PromotionError, match=message):
        check_four_eyes(plan, {"chosen_options": ["Approve"], "responded_by_user": {"id": responder, "name": responder}})
    assert check_four_eyes(plan, {"chosen_options": ["Approve"], "responded_by_user": {"id": "bob", "name": "bob"}}) == "bob"
    with pytest.raises(PromotionError, match="not approved"):
        check_four_eyes(plan, {"chosen_options": ["Reject"], "responded_by_user": {"id": "bob", "name": "bob"}})
