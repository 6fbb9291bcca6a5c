"""Print Airflow's default SQLite file when `make run` is to use it, else nothing.

    python scripts/default_sqlite.py <airflow.cfg> <AIRFLOW_HOME>

`make run` tunes that default file (a 60 s lock wait, WAL journaling: scripts/run.sh says why).
A database you configured yourself — in the environment or airflow.cfg, in `[database]` or the
older `[core]`, also by `_cmd` or `_secret`, or another SQLite file — is none of its business.
"""

from __future__ import annotations

import configparser
import os
import re
import sys

KEYS = ("sql_alchemy_conn", "sql_alchemy_conn_cmd", "sql_alchemy_conn_secret")


def default_sqlite(cfg: str, home: str, environ: dict[str, str]) -> str | None:
    default = f"sqlite:///{os.path.abspath(home)}/airflow.db"
    if any(re.fullmatch(r"AIRFLOW__(DATABASE|CORE)__SQL_ALCHEMY_CONN(_CMD|_SECRET)?", k) for k in environ):
        return None
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg)
    configured = {(section, key): parser.get(section, key) for section in ("database", "core")
                  if parser.has_section(section) for key in parser.options(section) if key in KEYS}
    # Airflow writes the default URL into the airflow.cfg it creates: that is still the default.
    if configured in ({}, {("database", "sql_alchemy_conn"): default}):
        return default[len("sqlite:///"):]
    return None


if __name__ == "__main__":
    path = default_sqlite(sys.argv[1], sys.argv[2], dict(os.environ))
    if path:
        print(path)
