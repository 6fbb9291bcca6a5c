"""Every pattern check is a full match: a value with a trailing newline (which `$` lets
through with `re.match`) is refused at each boundary a person or a program reaches."""

from __future__ import annotations

import pytest
import yaml

from release.domain.config import DEFAULT_CONFIG_PATH, ConfigError, parse_config
from release.domain.plans import plan_dispatch as dispatch_plan
from release.domain.plans import ParamError, validate_params
from release.domain.gates import PromotionError
from release.domain.plans import plan_promotion
from release.domain.registry import RegistryState
from release.domain.plans import plan_rollback
from sandbox.validation import Invalid, validate_core
from tests.helpers import request_for

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def state(config):
    s = RegistryState()
    for version, build in (("1.0", "1"), ("1.1", "2")):
        s.deploy("staging", request_for(config, "service-a", version, build), by="alice", run_id="r",
                 at="2026-11-01T00:00:00Z")
    return s


@pytest.mark.parametrize("params,field", [
    ({"commit": COMMIT + "\n", "ref": "refs/heads/main"}, "commit"),
    ({"commit": COMMIT, "ref": "refs/tags/v1.2.0\n"}, "ref"),
    ({"commit": COMMIT, "ref": "refs/pull/7/head\n"}, "ref"),
])
def test_pipeline_params(params, field):
    with pytest.raises(ParamError, match=f"^{field}:"):
        validate_params(params)


def test_dispatch_params(config):
    with pytest.raises(ParamError, match="^before:"):
        dispatch_plan({"before": COMMIT + "\n", "after": COMMIT, "ref": "refs/heads/main"}, config)


@pytest.mark.parametrize("params,requester,field", [
    ({"services": ["service-a"], "from_env": "staging\n", "to_env": "prod", "reason": "go"}, "alice", "from_env"),
    ({"services": ["service-a"], "from_env": "staging", "to_env": "prod\n", "reason": "go"}, "alice", "to_env"),
    ({"services": ["service-a\n"], "from_env": "staging", "to_env": "prod", "reason": "go"}, "alice", "services"),
    ({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "version": "1.0\n", "reason": "go"},
     "alice", "version"),
    ({"services": ["service-a"], "from_env": "staging", "to_env": "prod", "reason": "go"}, "alice\n", "the run"),
])
def test_promote_params(config, state, params, requester, field):
    with pytest.raises(PromotionError, match=f"^{field}"):
        plan_promotion(params, config, state, requester)


@pytest.mark.parametrize("params,requester,field", [
    ({"service": "service-a", "env": "staging\n", "reason": "r"}, "alice", "env"),
    ({"service": "service-a\n", "env": "staging", "reason": "r"}, "alice", "service"),
    ({"service": "service-a", "env": "staging", "to_version": "1.0\n", "reason": "r"}, "alice", "to_version"),
    ({"service": "service-a", "env": "staging", "reason": "r"}, "alice\n", "the run"),
])
def test_rollback_params(config, state, params, requester, field):
    with pytest.raises(PromotionError, match=f"^{field}"):
        plan_rollback(params, config, state, requester)


@pytest.mark.parametrize("edit,key", [
    (lambda raw: raw["environments"]["dev"].update(kubernetes_conn_id="k8s_dev\n"), "kubernetes_conn_id"),
    (lambda raw: raw["environments"]["prod"]["approval"].update(approvers=["alice\n"]), "approvers"),
    (lambda raw: raw["services"]["service-a"].update(image="registry.local:5000/service-a\n"), "image"),
])
def test_platform_config(edit, key):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    edit(raw)
    with pytest.raises(ConfigError, match=key):
        parse_config(yaml.safe_dump(raw, sort_keys=False))


def test_sandbox_api_refuses_a_name_with_a_trailing_newline():
    with pytest.raises(Invalid, match="metadata.name"):
        validate_core({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps-dev\n"}})
