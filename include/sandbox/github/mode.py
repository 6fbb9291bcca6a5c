"""The GitHub stand-in in `make run`'s sandbox mode.

`python -m release sandbox` starts it beside the simulated cluster when the config has a
`github:` section, and writes where it listens to `<data dir>/sandbox/github.json`. The sandbox's
environment (`cluster sandbox-env`) then points the config's two GitHub connections at it,
unless a real GitHub connection is configured (as AIRFLOW_CONN_* or in the metadata database):
a real GitHub is never shadowed. `python -m release github send-test-push` reads the same file
for the secret to sign with when no connection holds one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from release.domain.config import PlatformConfig, data_dir
from sandbox.github.server import TOKEN, WEBHOOK_SECRET, GitHubStandIn


def info_path() -> Path:
    return data_dir() / "sandbox" / "github.json"


def webhook_secret_connection(secret: str = WEBHOOK_SECRET) -> str:
    """An Airflow connection (JSON form) whose password is a webhook secret."""
    return json.dumps({"conn_type": "generic", "password": secret,
                       "description": "secret GitHub signs webhook deliveries with (X-Hub-Signature-256)"})


def start(config: PlatformConfig, port: int = 0) -> GitHubStandIn | None:
    """The stand-in holding the configured repository, its address written for the other processes."""
    if config.github is None:
        return None
    standin = GitHubStandIn([config.github.repository], port=port).start()
    path = info_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": standin.url, "repository": config.github.repository, "token": TOKEN,
                                "webhook_secret": WEBHOOK_SECRET, "pid": os.getpid()}) + "\n")
    return standin


def read_info() -> dict | None:
    """Where the running sandbox's stand-in listens, or None when there is none."""
    try:
        info = json.loads(info_path().read_text())
        os.kill(int(info["pid"]), 0)  # the sandbox that wrote it still runs
        return info
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop(standin: GitHubStandIn | None) -> None:
    if standin is not None:
        standin.stop()
        info_path().unlink(missing_ok=True)


def sandbox_github_environment(config: PlatformConfig, environ: Mapping[str, str] = os.environ,
                               in_database=None) -> dict[str, str]:
    """AIRFLOW_CONN_* for the config's GitHub connections, pointing at the running stand-in;
    nothing for a connection that is already configured (in `environ`, or among the ids
    `in_database(ids)` returns), or without a stand-in."""
    info = read_info()
    if config.github is None or info is None:
        return {}
    wanted = {config.github.conn_id: json.dumps({"conn_type": "github", "host": info["url"], "password": info["token"],
                                                 "description": "SANDBOX: GitHub stand-in on 127.0.0.1"}),
              config.github.webhook_secret_conn_id: webhook_secret_connection(info["webhook_secret"])}
    configured = {c for c in wanted if environ.get(f"AIRFLOW_CONN_{c.upper()}")}
    if in_database is not None:
        configured |= set(in_database(list(wanted)))
    return {f"AIRFLOW_CONN_{c.upper()}": value for c, value in wanted.items() if c not in configured}
