"""The platform config: every mistake is named with its file, key path and what is allowed."""

from __future__ import annotations

import textwrap
import tomllib

import pytest
import yaml

from release.cli import main
from release.domain.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config

VALID = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def with_change(path: str | tuple, value, base=None) -> str:
    """The shipped config with one key replaced (value None deletes it)."""
    import copy

    data = copy.deepcopy(base or VALID)
    *parents, last = path.split(".") if isinstance(path, str) else path
    node = data
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "platform.yaml")
    return exc.value.errors


def test_shipped_config_is_valid_and_ordered():
    config = load_config()
    assert config.env_order == ["dev", "staging", "prod"]
    assert list(config.services) == ["service-a", "service-b", "service-c"]
    assert config.next_env("dev") == "staging" and config.next_env("prod") is None
    assert config.environments["prod"].approval.required
    assert config.services["service-a"].watch == ["shared/**"]


MALFORMED = [
    ("unknown top-level key", with_change("registry", {"x": 1}),
     "registry: unknown key; allowed keys: services, environments, gitops, artifacts"),
    ("typo in a service key", with_change("services.service-a.ownrs", ["@x"]),
     "services.service-a.ownrs: unknown key; allowed keys: path, image, chart, owners"),
    ("typo in approval", with_change("environments.prod.approval.aprovers", ["x"]),
     "environments.prod.approval.aprovers: unknown key; allowed keys: required, required_for_rollback, approvers, response_timeout_minutes"),
    ("service name with capitals", with_change("services.Service_A", VALID["services"]["service-a"]),
     "services.Service_A (the name): 'Service_A' is not a DNS-1123 label"),
    ("service name too long", with_change("services." + "s" * 64, VALID["services"]["service-a"]),
     "(the name): '" + "s" * 64 + "' is not a DNS-1123 label"),
    ("environment name with a dot", with_change(("environments", "pre.prod"), VALID["environments"]["dev"]),
     "environments.pre.prod (the name): 'pre.prod' is not a DNS-1123 label"),
    ("missing image", with_change("services.service-b.image", None),
     "services.service-b.image: required key is missing"),
    ("image with a tag", with_change("services.service-b.image", "registry.local/x:latest"),
     "services.service-b.image: 'registry.local/x:latest' is not an image repository"),
    ("tool image on latest", with_change("pipelines", {"tools": {"verify": "registry.local:5000/release/platform:latest"}}),
     "pipelines.tools.verify: 'registry.local:5000/release/platform:latest' is not pinned: "
     "give a version tag other than 'latest'"),
    ("tool image without a tag", with_change("pipelines", {"tools": {"trivy": "aquasec/trivy"}}),
     "pipelines.tools.trivy: 'aquasec/trivy' is not pinned"),
    ("tool image not a reference", with_change("pipelines", {"tools": {"curl": "curlimages/curl:8.11.1\n"}}),
     "pipelines.tools.curl: 'curlimages/curl:8.11.1\\n' is not an image reference"),
    ("unknown deploy strategy", with_change("environments.dev.deploy_strategy", "kubectl"),
     "environments.dev.deploy_strategy: 'kubectl' is not allowed; allowed values: 'argocd' or 'helm'"),
    ("approval without approvers", with_change("environments.prod.approval", {"required": True, "approvers": []}),
     "environments.prod.approval: approval is required but 'approvers' is empty"),
    ("unknown environment reference", with_change("services.service-c.environments", ["dev", "qa"]),
     "services.service-c.environments: unknown environment 'qa'; known: dev, staging, prod"),
    ("bad gitops URL", with_change("gitops.url", "ftp://git.example.com/cd.git"),
     "gitops.url: 'ftp://git.example.com/cd.git' is not a URL with scheme file or https or http or ssh"),
    ("URL without host", with_change("gitops.url", "https:///cd.git"),
     "gitops.url: 'https:///cd.git' has no host"),
    ("bad artifacts URL", with_change("artifacts", {"base_url": "artifacts/local"}),
     "artifacts.base_url: 'artifacts/local' is not a URL with scheme file or https or http or s3 or gs"),
    ("path escaping the repository", with_change("services.service-a.path", "../secrets/"),
     "services.service-a.path: '../secrets/' must be a relative path inside the repository"),
    ("absolute chart path", with_change("services.service-a.chart", "/etc/chart"),
     "services.service-a.chart: '/etc/chart' must be a relative path"),
    ("no owners", with_change("services.service-a.owners", []),
     "services.service-a.owners: List should have at least 1 item"),
    ("smoke endpoint not a path", with_change("services.service-a.smoke", {"endpoints": ["healthz"]}),
     "services.service-a.smoke.endpoints: endpoint 'healthz' must be an absolute URL path"),
    ("namespace not DNS", with_change("environments.dev.namespace", "Apps_Dev"),
     "environments.dev.namespace: 'Apps_Dev' is not a DNS-1123 label"),
    ("connection id with spaces", with_change("environments.dev.kubernetes_conn_id", "k8s dev"),
     "environments.dev.kubernetes_conn_id: 'k8s dev' is not an Airflow connection id"),
    ("timeout out of range", with_change("environments.prod.approval.response_timeout_minutes", 0),
     "environments.prod.approval.response_timeout_minutes: Input should be greater than 0"),
    ("freeze window backwards", with_change("environments.prod.freeze", [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-20T00:00:00Z", "reason": "holidays"}]),
     "environments.prod.freeze.0: end 2026-12-20T00:00:00+00:00 is not after start 2026-12-24T00:00:00+00:00"),
    ("freeze window without time zone", with_change("environments.prod.freeze", [{"start": "2026-12-20T00:00:00", "end": "2026-12-24T00:00:00", "reason": "x"}]),
     "environments.prod.freeze.0: start and end need a time zone"),
    ("unknown freeze policy", with_change("environments.prod.freeze_policy", "ignore"),
     "environments.prod.freeze_policy: 'ignore' is not allowed; allowed values: 'wait' or 'fail'"),
    ("approver with a space", with_change("environments.prod.approval.approvers", ["bob smith"]),
     "environments.prod.approval.approvers: approver 'bob smith' is not a user name"),
    ("bad branch", with_change("gitops.branch", "main..x"),
     "gitops.branch: 'main..x' is not a valid branch name"),
    ("no environments", with_change("environments", {}),
     "environments: Dictionary should have at least 1 item"),
    ("duplicate service name", textwrap.dedent("""\
        services:
          service-a: {path: a/, image: r/a, chart: c/a, owners: [x]}
          service-a: {path: b/, image: r/b, chart: c/b, owners: [y]}
        environments:
          dev: {kubernetes_conn_id: k, namespace: dev}
        """), "duplicate key 'service-a' (first at line 2)"),
    ("not YAML", "services: [unclosed", "not valid YAML"),
    ("not a mapping", "- a\n- b\n", "the file must be a mapping with keys services, environments"),
]


@pytest.mark.parametrize("text,expected", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_problem(text, expected):
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_every_problem_is_reported_at_once():
    text = with_change("environments.dev.deploy_strategy", "kubectl", yaml.safe_load(with_change("gitops.branch", "a..b")))
    errors = errors_of(text)
    assert len(errors) == 2
    assert str(ConfigError("platform.yaml", errors)).startswith("invalid platform config platform.yaml:\n  - ")


def test_env_var_overrides_the_path(tmp_path, monkeypatch):
    other = tmp_path / "other.yaml"
    other.write_text(with_change("environments", {"qa": VALID["environments"]["dev"]}))
    monkeypatch.setenv("RELEASE_PLATFORM_CONFIG", str(other))
    assert load_config().env_order == ["qa"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="(?s)nope.yaml.*cannot read the file"):
        load_config(tmp_path / "nope.yaml")


def test_cli_check_ok(capsys):
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.strip() == "OK"


def test_cli_check_prints_every_error_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_change("environments.dev.deploy_strategy", "kubectl"))
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "environments.dev.deploy_strategy" in err and "'argocd' or 'helm'" in err


def test_cli_check_refuses_an_unpinned_tool_image_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_change("pipelines", {"tools": {"helm": "alpine/helm:latest", "git": "alpine/git"}}))
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "pipelines.tools.helm: 'alpine/helm:latest' is not pinned" in err
    assert "pipelines.tools.git: 'alpine/git' is not pinned" in err


def test_every_default_tool_image_is_pinned_and_a_digest_pins_too():
    from release.domain.config import Tools, pinned_image_ref

    tools = Tools().model_dump()
    assert all(pinned_image_ref(image) == image for image in tools.values())
    assert all(":latest" not in image for image in tools.values())
    # The platform image the verify step runs is this platform's version, as deployed.
    version = tomllib.loads((DEFAULT_CONFIG_PATH.parents[2] / "pyproject.toml").read_text())["project"]["version"]
    assert tools["verify"].endswith(f"/release/platform:{version}")
    pinned = "registry.local:5000/release/platform@sha256:" + "0" * 64
    config = parse_config(with_change("pipelines", {"tools": {"verify": pinned}}))
    assert config.pipelines.tools.verify == pinned


def test_services_limited_to_environments():
    config = parse_config(with_change("services.service-c.environments", ["dev"]))
    assert config.services_in("prod") == ["service-a", "service-b"]
    assert "service-c" in config.services_in("dev")
