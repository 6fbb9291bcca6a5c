"""Fuzzed platform config: any text gives a config every DAG can be built from, or ConfigError
whose lines name the key path (or say the file is not YAML, or not a mapping)."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from release.domain.config import DEFAULT_CONFIG_PATH, HELM_RELEASE_MAX, ConfigError, _loc, parse_config
from release.domain.gates import scan_policy_for
from tests.unit.fuzzing import fuzz, junk, nasty_text, scalar_junk

TEXT = DEFAULT_CONFIG_PATH.read_text()
RAW = yaml.safe_load(TEXT)

# Key paths into the default config (and a few keys it leaves at their defaults).
EXTRA_PATHS = [
    ("pipelines", "scan_policy"), ("environments", "prod", "scan_policy"), ("services", "service-a", "scan_policy"),
    ("environments", "dev", "freeze"), ("environments", "dev", "helm"), ("environments", "prod", "deploy_strategy"),
    ("pipelines", "tools", "verify"), ("gitops", "url"), ("services", "service-b", "environments"),
    ("environments", "staging", "backup", "namespaces"), ("environments", "dev", "approval", "required_for_rollback"),
]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


KEY_PATHS = sorted(set(_paths(RAW)) | set(EXTRA_PATHS))

# Values a hand might put in the right place: plausible, wrong in one detail.
plausible = st.one_of(
    st.sampled_from([
        {"threshold": "bogus"}, {"threshold": "critical", "allow": [{"id": "CVE-2024-1", "reason": "x", "expires": "2026-01-01"}]},
        {"allow": [{"id": "CVE-2024-12345", "reason": " ", "expires": 20260101}]}, {"ignore_unfixed": "yes"},
        [{"start": "2026-12-20T00:00:00Z", "end": "2026-12-19T00:00:00Z", "reason": "x"}],
        [{"start": "2026-12-20T00:00:00", "end": "2026-12-21T00:00:00", "reason": "x"}],
        {"release": "x" * 60}, "helm", "argocd\n", "alpine/helm:latest", "file://relative", "ssh://", ["prod", "qa"],
        ["UPPER"], ["apps-dev\n"], "*/5 * * *", "0 2 * * * *", 0, -1, 10**20, 1.5, True, [], {}, None,
    ]),
    junk,
)


@st.composite
def edited(draw) -> tuple[str, tuple]:
    """The default config with one key set to something else, removed or renamed."""
    raw = yaml.safe_load(TEXT)
    path = draw(st.sampled_from(KEY_PATHS))
    parent = raw
    for key in path[:-1]:
        parent = parent.setdefault(key, {}) if isinstance(parent, dict) else {}
    action = draw(st.sampled_from(["set", "set", "delete", "rename"]))
    if action == "set":
        parent[path[-1]] = draw(plausible)
    elif action == "delete":
        parent.pop(path[-1], None)
    else:
        new = draw(st.one_of(nasty_text, st.text(max_size=10), scalar_junk.filter(lambda v: v is None or isinstance(v, (bool, int)))))
        parent[new] = parent.pop(path[-1], None)
        path = (*path[:-1], new)
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), path


# YAML a hand edit or a bad merge produces.
BROKEN_YAML = [
    "? [a, b]\n: c\n", "services:\n  ? {a: 1}\n  : x\n", "services: {a: 1, a: 2}\n", "a: !!python/object:os.system x\n",
    "a: &x [*x]\n", "services: &s {a: *s}\n", "\t- x\n", "---\n---\n", "- a\n- b\n", "42\n", "''\n", "~\n",
    "services: !!binary aGVsbG8=\n", "environments:\n  dev: 2026-13-45\n", "<<: *nope\n", "services:\n- {<<: 1}\n",
    "services: {? [x]: 1}\n", "environments: {dev: {namespace: [1, [2, [3]]]}}\n",
]


def text_variants():
    lines = TEXT.splitlines(keepends=True)
    cut = st.builds(lambda i, j: "".join(lines[:i] + lines[j:]), st.integers(0, len(lines)), st.integers(0, len(lines)))
    insert = st.builds(lambda i, s: "".join(lines[:i] + [s] + lines[i:]), st.integers(0, len(lines)),
                       st.one_of(st.sampled_from(BROKEN_YAML), st.text(max_size=40)))
    return st.one_of(st.sampled_from(BROKEN_YAML), cut, insert, st.text(max_size=200), nasty_text)


# A key path: plain names joined by '.', any other key quoted ('a:b', '\n').
_KEY = r"(?:[A-Za-z0-9_.@-]+|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
LINE = re.compile(rf"(?:\(top level\)|{_KEY}(?:\.{_KEY})*)(?: \(the name\))?: .+", re.S)


def check(text: str):
    try:
        config = parse_config(text, "platform.yaml")
    except ConfigError as exc:
        assert exc.source == "platform.yaml" and exc.errors, exc
        for line in exc.errors:
            if line.startswith("not valid YAML: "):
                assert "line " in line or "position " in line, line  # where in the file
            elif not line.startswith("the file must be a mapping with keys services, environments"):
                assert LINE.fullmatch(line), line  # "<key path>: what is wrong and what is allowed"
        return exc
    # What the DAG files and tasks derive from a config must work for every service and environment.
    assert config.env_order and config.services
    for env in config.env_order:
        config.argocd_application(env), config.backup_namespaces(env), config.backup_ttl_days(env)
        assert len(config.helm_release(env)) <= HELM_RELEASE_MAX or config.environments[env].deploy_strategy != "helm"
        for service in config.services_in(env):
            scan_policy_for(config, service, env)
    return config


@fuzz(150)
@given(edited())
@example((TEXT.replace("services:\n", "services:\n  ? [a, b]\n  : x\n", 1), ("services",)))  # TypeError: unhashable
@example((yaml.safe_dump({**RAW, "pipelines": {"scan_policy": {"threshold": "bogus"}}}), ("pipelines",)))
@example((yaml.safe_dump({**RAW, "environments": {**RAW["environments"], "prod": {
    **RAW["environments"]["prod"], "scan_policy": {"allow": [{"id": "CVE-2024-1", "reason": "x", "expires": "soon"}]}}}}),
    ("environments", "prod")))
@example((TEXT.replace("artifacts: {}", "artifacts: {':': 1}"), ("artifacts", ":")))
def test_an_edited_config_is_valid_or_names_the_key(case):
    text, path = case
    result = check(text)
    if isinstance(result, ConfigError):
        named = _loc(path[:2])  # as errors print a key path
        assert any(named in line or line.startswith("not valid YAML") for line in result.errors), (path, result.errors)


@fuzz(150)
@given(text_variants())
@example("environments:\n  dev: 2026-13-45\n")  # ValueError from YAML's date constructor
@example("nightly: {backups: {schedule: 2026-01-01 25:00:00}}\n")
def test_any_text_is_a_valid_config_or_a_config_error(text):
    check(text)


@pytest.mark.parametrize("text", ["? [a, b]\n: c\n", "services:\n  ? {a: 1}\n  : x\n", "services: {? [x]: 1}\n"])
def test_an_unhashable_key_is_a_config_error(text):
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config(text)


@pytest.mark.parametrize("where,policy,key", [
    (("pipelines",), {"threshold": "bogus"}, "pipelines.scan_policy"),
    (("environments", "prod"), {"ignore_unfixed": "sometimes"}, "environments.prod.scan_policy"),
    (("services", "service-a"), {"allow": [{"id": "CVE-2024-12345", "reason": "x"}]}, "services.service-a.scan_policy"),
    (("services", "service-a"), {"alow": []}, "services.service-a.scan_policy"),
])
def test_a_bad_scan_policy_is_refused_when_the_config_loads(where, policy, key):
    raw = yaml.safe_load(TEXT)
    node = raw
    for part in where:
        node = node.setdefault(part, {})
    node["scan_policy"] = policy
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_dump(raw))
    assert any(line.startswith(f"{key}: ") for line in exc.value.errors), exc.value.errors


@pytest.mark.parametrize("text,line", [
    ("services: {}\nenvironments: {no: {kubernetes_conn_id: k, namespace: n}}\n",
     "environments.False: the key False is a bool, not a name; quote it"),
    ("services: {1.0: {}}\nenvironments: {}\n", "services.1.0: the key 1.0 is a float, not a name; quote it"),
    ("false: 1\n", "False: the key False is a bool, not a name"),
])
def test_a_key_yaml_reads_as_a_value_is_named(text, line):
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert any(e.startswith(line) for e in exc.value.errors), exc.value.errors
