"""Shared fixtures. Airflow reads its settings at import, so they are set here first."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="release-tests-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        # Each test gets its own data folder; nothing may fall back to the repo's .local/.
        "RELEASE_DATA_DIR": str(Path(_AIRFLOW_HOME) / "data-unset"),
    }
)
os.environ.pop("RELEASE_PLATFORM_CONFIG", None)

from release.config import PlatformConfig, load_config  # noqa: E402
from release.gitops import GitOpsStore  # noqa: E402
from release.registry import Registry  # noqa: E402
from tests.helpers import make_gitops_repo  # noqa: E402

pytest_plugins = ["release.sandbox.pytest_plugin"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def config() -> PlatformConfig:
    return load_config()


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("RELEASE_DATA_DIR", str(d))
    return d


@pytest.fixture
def gitops_url(tmp_path, config) -> str:
    return make_gitops_repo(tmp_path / "gitops.git", config)


@pytest.fixture
def store(gitops_url) -> GitOpsStore:
    return GitOpsStore(gitops_url, "main", backoff_seconds=0.01)


@pytest.fixture
def registry(store, config) -> Registry:
    return Registry(store, config)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database for dag.test(); once per session."""
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture
def fresh_masker():
    """No registered secrets: a secret is masked because the test's own code path registered
    it, not because an earlier test happened to."""
    from airflow._shared.secrets_masker import reset_secrets_masker as reset_core
    from airflow.sdk._shared.secrets_masker import reset_secrets_masker as reset_sdk

    reset_sdk()
    reset_core()
    yield
    reset_sdk()
    reset_core()


@pytest.fixture
def task_log():
    """What was logged to the task logger (where notifications and task messages go)."""
    from tests.helpers import Records

    handler = Records()
    logger = logging.getLogger("airflow.task")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
