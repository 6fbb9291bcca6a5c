"""Shared fixtures. Airflow reads its settings at import, so they are set here first.

Every pytest process (the only one, or each pytest-xdist worker, which imports this file on
its own) gets its own Airflow home, and with it its own metadata database, logs and data
folder: workers never share a database or a file.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")  # gw0, gw1, ... under pytest-xdist
_AIRFLOW_HOME = tempfile.mkdtemp(prefix=f"release-tests-airflow-{_WORKER}-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        # A test's config may change a DAG's tasks seconds after the last test wrote it; Airflow
        # would skip rewriting it for 30 s and the API would look tasks up in the old version.
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        # Each test gets its own data folder; nothing may fall back to the repo's .local/.
        "RELEASE_DATA_DIR": str(Path(_AIRFLOW_HOME) / "data-unset"),
    }
)
os.environ.pop("RELEASE_PLATFORM_CONFIG", None)

from release.domain.config import PlatformConfig, load_config  # noqa: E402
from release.gitops.store import GitOpsStore  # noqa: E402
from release.gitops.registry import Registry  # noqa: E402
from tests.helpers import make_gitops_repo  # noqa: E402

pytest_plugins = ["sandbox.pytest_plugin", "sandbox.github.pytest_plugin"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


# Longest first, so that no long test starts last and runs alone while the other workers idle
# (`make test` hands tests out one at a time in this order, see the Makefile): the end-to-end
# tests, then the DAG runs, then everything that starts servers, then the quick rest.
_ORDER = ("tests/e2e/", "tests/dags/", "tests/sandbox/", "tests/integration/", "tests/deploy/")


def _rank(item) -> int:
    if item.get_closest_marker("e2e"):
        return 0
    return next((i for i, prefix in enumerate(_ORDER) if item.nodeid.startswith(prefix)), len(_ORDER))


# An end-to-end test runs a whole `make run` (start, pipeline runs, stop): pyproject.toml's
# 300 s per test is too short for it on a loaded machine, unless the test sets its own.
E2E_TIMEOUT_SECONDS = 900


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_rank)  # stable: within a rank, the usual order
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_SECONDS))


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
    """A migrated metadata database for dag.test(); once per session (per xdist worker)."""
    from airflow.utils import db

    db.resetdb()
    _quick_dag_test_polls()
    yield


def _quick_dag_test_polls() -> None:
    """dag.test() sleeps a whole second whenever no task is ready: while trigger rules
    propagate skips one layer per pass, and while a task awaits a person's answer. That is
    seconds per run, minutes over the suite; let that loop look again after 0.1 s instead.
    Only dag.test()'s own sleep changes (recognised by its code object): tasks, triggers,
    the sandbox and the tests' own waits keep their timing."""
    import time

    from airflow.sdk.definitions.dag import DAG

    if getattr(time.sleep, "quick_dag_test_polls", False):
        return
    loop, sleep = DAG.test.__code__, time.sleep

    def quick_sleep(seconds):
        sleep(min(seconds, 0.1) if sys._getframe(1).f_code is loop else seconds)

    quick_sleep.quick_dag_test_polls = True
    time.sleep = quick_sleep


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
