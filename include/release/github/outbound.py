"""What the platform tells GitHub: one place that gets the client and makes a call.

GitHub mirrors what the platform does; it never decides anything. Every call here goes through
the resilient client (release.github.client: retries with backoff within a bound, rate limits
honoured, errors logged once and swallowed, a no-op when GitHub is off), with a tighter bound
than its default, since these calls happen inside pipeline and deploy tasks: at most
`MAX_ATTEMPTS` tries within `BUDGET_SECONDS`. And once GitHub failed a call after its retries,
the calls that follow in the same process are skipped for `PAUSE_SECONDS` (or until a rate
limit's reset), so an outage costs a task one bounded call, not one per status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
BUDGET_SECONDS = 8.0
PAUSE_SECONDS = 60.0

_clients: dict[tuple, Any] = {}
_paused_until = 0.0
_lock = threading.Lock()


def repo_path(config, tail: str) -> str:
    """`/repos/<owner>/<name><tail>` for the configured repository."""
    return f"/repos/{config.github.repository}{tail}"


def client(config):
    """The process's client for the configured repository, or None when GitHub reporting is off
    (no `github:` section, or its Airflow connection missing or unusable: said once)."""
    gh = getattr(config, "github", None) if config is not None else None
    if gh is None:
        return None
    from release.github.client import GitHubClient

    # One per repository and connection; the connection's environment form is part of the key so
    # a process that gets the connection later (a test, `make run` re-reading it) is not stuck off.
    key = (gh.repository, gh.conn_id, os.environ.get(f"AIRFLOW_CONN_{gh.conn_id.upper()}"))
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = GitHubClient.from_config(config, max_attempts=MAX_ATTEMPTS,
                                                             budget_seconds=BUDGET_SECONDS)
    return found if found.enabled else None


def paused() -> bool:
    return time.monotonic() < _paused_until


def _pause(result) -> None:
    global _paused_until
    wait = PAUSE_SECONDS
    reset = (getattr(result, "headers", None) or {}).get("x-ratelimit-reset")
    if reset:
        try:
            wait = max(1.0, min(3600.0, float(reset) - time.time()))
        except ValueError:
            pass
    _paused_until = time.monotonic() + wait
    log.warning("GitHub: not asked again from this process for %.0f s (%s)", wait, result.error)


def call(config, method: str, tail: str, *, json: Any = None, params: dict | None = None) -> Any:
    """One request to the app repo (`tail` after /repos/<owner>/<name>): GitHub's JSON answer,
    or None (GitHub off, paused after a failure, or failing now: logged by the client)."""
    gh = client(config)
    if gh is None or paused():
        return None
    try:
        result = gh.call(method, tail, body=json, params=params)
    except Exception:  # noqa: BLE001 - the client never raises; this guards against the unforeseen
        log.exception("GitHub: %s %s failed", method, tail)
        return None
    if result.ok:
        return result.data if result.data is not None else {}
    if not result.skipped and (result.status is None or result.status >= 500 or result.status in (403, 429)):
        _pause(result)  # GitHub is down or limiting us: the next calls would only wait for the same
    return None


def reset() -> None:
    """Forget clients and any pause (tests; a process that changed its config)."""
    global _paused_until
    with _lock:
        _clients.clear()
        _paused_until = 0.0
