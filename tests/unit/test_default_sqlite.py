"""scripts/default_sqlite.py: `make run` tunes Airflow's default SQLite file and never a database
the user configured."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "default_sqlite.py"
spec = importlib.util.spec_from_file_location("default_sqlite", SCRIPT)
default_sqlite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(default_sqlite)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "airflow"


def cfg(home: Path, text: str) -> str:
    home.mkdir(exist_ok=True)
    (home / "airflow.cfg").write_text(text)
    return str(home / "airflow.cfg")


def test_no_config_yet_and_the_config_airflow_writes_are_the_default_file(home):
    assert default_sqlite.default_sqlite(str(home / "airflow.cfg"), str(home), {}) == f"{home}/airflow.db"
    written = cfg(home, f"[core]\ndags_folder = /x\n[database]\nsql_alchemy_conn = sqlite:///{home}/airflow.db\n")
    assert default_sqlite.default_sqlite(written, str(home), {"PATH": "/bin"}) == f"{home}/airflow.db"


@pytest.mark.parametrize("text", [
    "[database]\nsql_alchemy_conn = postgresql+psycopg2://airflow@db/airflow\n",
    "[database]\nsql_alchemy_conn = sqlite:////srv/shared/airflow.db\n",  # another SQLite file: theirs
    "[database]\nsql_alchemy_conn_cmd = cat /run/secrets/db\n",
    "[database]\nsql_alchemy_conn_secret = db_url\n",
    "[core]\nsql_alchemy_conn = postgresql://airflow@db/airflow\n",  # the pre-3.0 place Airflow still reads
])
def test_a_database_in_airflow_cfg_is_left_as_configured(home, text):
    assert default_sqlite.default_sqlite(cfg(home, text), str(home), {}) is None


@pytest.mark.parametrize("variable", ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
                                      "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"])
def test_a_database_in_the_environment_is_left_as_configured(home, variable):
    assert default_sqlite.default_sqlite(str(home / "airflow.cfg"), str(home), {variable: "postgresql://db/x"}) is None


def test_the_script_prints_the_file_or_nothing(home):
    out = subprocess.run([sys.executable, str(SCRIPT), str(home / "airflow.cfg"), str(home)], capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout == f"{home}/airflow.db\n"
    out = subprocess.run([sys.executable, str(SCRIPT), str(home / "airflow.cfg"), str(home)], capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "x"})
    assert out.stdout == ""
