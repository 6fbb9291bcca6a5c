"""The `github:` section: optional, strict, and every mistake named with its key path."""

from __future__ import annotations

import pytest

from release.domain.config import load_config, parse_config
from tests.unit.test_config import VALID, errors_of, with_change


def test_shipped_config_names_the_app_repository_and_its_connections():
    github = load_config().github
    assert (github.repository, github.owner, github.name) == ("example-org/app", "example-org", "app")
    assert (github.conn_id, github.webhook_secret_conn_id) == ("github_default", "github_webhook")


def test_without_the_section_github_is_off():
    assert parse_config(with_change("github", None)).github is None


def test_defaults_for_the_connections():
    github = parse_config(with_change("github", {"repository": "Org-1/app.repo_2"})).github
    assert (github.conn_id, github.webhook_secret_conn_id) == ("github_default", "github_webhook")


@pytest.mark.parametrize("value", [
    "app", "org/", "/app", "org/app/extra", "-org/app", "org-/app", "or--g/app", "o" * 40 + "/app", "org/" + "a" * 101,
    "org/..", "org/.", "org/app\n", "org/app name", "org/app;rm",
])
def test_repository_must_be_owner_slash_name(value):
    errors = errors_of(with_change("github", {"repository": value}))
    assert len(errors) == 1 and errors[0].startswith("github.repository: ") and "is not a GitHub repository: owner/name" in errors[0]


def test_missing_repository_and_unknown_keys_are_named():
    assert errors_of(with_change("github", {"conn_id": "gh"})) == ["github.repository: required key is missing"]
    errors = errors_of(with_change("github", {"repository": "o/a", "secret": "x"}))
    assert errors == ["github.secret: unknown key; allowed keys: repository, conn_id, webhook_secret_conn_id"]


@pytest.mark.parametrize("key", ["conn_id", "webhook_secret_conn_id"])
def test_connection_ids_are_plain(key):
    errors = errors_of(with_change("github", {"repository": "o/a", key: "github default"}))
    assert errors == [f"github.{key}: 'github default' is not an Airflow connection id (letters, digits, '_', '.', '-')"]


def test_section_must_be_a_mapping():
    errors = errors_of(with_change("github", "example-org/app"))
    assert len(errors) == 1 and errors[0].startswith("github: ")
    assert VALID["github"]["repository"] == "example-org/app"
