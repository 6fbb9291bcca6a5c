"""pytest fixtures for the GitHub stand-in (enable with `pytest_plugins = ["sandbox.github.pytest_plugin"]`).

- `github`: a fresh stand-in for one test with the repository `example-org/app`, and the Airflow
  connections the platform's default `github:` config names pointing at it: `github_default`
  (API URL and token) and `github_webhook` (password = `github.webhook_secret`).
"""

from __future__ import annotations

import pytest

from sandbox.github.mode import webhook_secret_connection
from sandbox.github.server import DEFAULT_REPOSITORY, WEBHOOK_SECRET, GitHubStandIn

API_CONN_ID = "github_default"
WEBHOOK_CONN_ID = "github_webhook"


@pytest.fixture
def github(monkeypatch):
    standin = GitHubStandIn([DEFAULT_REPOSITORY])
    standin.start()
    standin.conn_id = API_CONN_ID
    standin.webhook_secret = WEBHOOK_SECRET
    monkeypatch.setenv(f"AIRFLOW_CONN_{API_CONN_ID.upper()}", standin.airflow_connection())
    monkeypatch.setenv(f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}", webhook_secret_connection())
    try:
        yield standin
    finally:
        standin.stop()
