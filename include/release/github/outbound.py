"""What the platform tells GitHub: one place that gets the client and makes a call.

GitHub mirrors what the platform does; it never decides anything. Every call here goes through
the resilient client (release.github.client): bounded retries, errors logged and swallowed, a
no-op when GitHub is off. So a caller gets the response body, or None, and carries on.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def repo_path(config, tail: str) -> str:
    """`/repos/<owner>/<name><tail>` for the configured repository."""
    return f"/repos/{config.github.repository}{tail}"


def client(config):
    """The client for the configured repository, or None when GitHub reporting is off."""
    if config is None or getattr(config, "github", None) is None:
        return None
    from release.github.client import client_for

    return client_for(config)


def call(config, method: str, tail: str, *, json: Any = None, params: dict | None = None) -> Any:
    """One request to the app repo (`tail` after /repos/<owner>/<name>); the body, or None."""
    gh = client(config)
    if gh is None:
        return None
    try:
        return gh.request(method, repo_path(config, tail), json=json, params=params)
    except Exception:  # noqa: BLE001 - the client swallows GitHub's errors; this guards against the rest
        log.exception("GitHub: %s %s failed", method, tail)
        return None
