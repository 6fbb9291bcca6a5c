"""`python -m release.tools.smoke`: the smoke test of a deployed service, run inside the platform image by a pod.

    python -m release.tools.smoke --expect-status 204 --retries 3 --interval 2 --timeout 10 URL [URL...]

Each URL is requested with GET and passes only when it answers exactly the expected status: a
redirect is its own status (never followed), and a wrong status, a refused connection or a
timeout is tried again, up to `--retries` more times, `--interval` seconds apart. Every URL must
pass. One line per attempt goes to stdout; a JSON summary goes to /dev/termination-log (the
task's result); the exit code is 0 only if every URL passed, else 1 with a last stderr line that
names each failing URL, what it answered and what was expected.

`check()` is the whole logic, free of I/O of its own: it takes the request and the sleep as
functions, so tests (and the sandbox's kubelet) run it with a fetch of their own and no waiting.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

TERMINATION_LOG = Path("/dev/termination-log")
# Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_LIMIT = 4096

Fetch = Callable[[str, float], int]


@dataclass
class UrlCheck:
    url: str
    status: int | None = None  # the last answer's status code; None when the last attempt got no answer
    error: str | None = None  # why the last attempt got no answer
    attempts: int = 0
    passed: bool = False

    def answer(self) -> str:
        return str(self.status) if self.error is None else f"error: {self.error}"


@dataclass
class Result:
    passed: bool
    expect_status: int
    checks: list[UrlCheck]

    def summary(self) -> dict:
        return {"passed": self.passed, "expect_status": self.expect_status, "checks": [asdict(c) for c in self.checks]}

    def failure(self) -> str:
        """One line naming each failing URL, what it answered and what was expected."""
        failing = [f"{c.url} answered {c.answer()} after {c.attempts} attempt(s)" for c in self.checks if not c.passed]
        return f"smoke test failed (expected status {self.expect_status}): " + "; ".join(failing)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 - urllib's signature
        return None  # urllib then raises HTTPError with the 3xx status: the answer is the redirect itself


# No proxy: a smoke test calls the service inside the cluster, never through an egress proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_status(url: str, timeout: float) -> int:
    """The status code of a GET of `url`, redirects not followed. Raises OSError (refused,
    unreachable, timed out) or http.client.HTTPException when there is no HTTP answer."""
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "release-platform-smoke"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:  # 3xx, 4xx, 5xx: an answer, not an error
        e.close()
        return e.code


def describe(exc: BaseException) -> str:
    """A short reason for a failed request: "connection refused", "timed out", ..."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def check(urls: Sequence[str], expect_status: int = 200, retries: int = 5, interval: float = 5.0,
          timeout: float = 10.0, fetch: Fetch = http_status, sleep: Callable[[float], None] = time.sleep,
          log: Callable[[str], None] = print) -> Result:
    """Request every URL until it answers `expect_status`, at most 1 + `retries` times each.

    Attempts go in rounds: every URL not yet passed is tried once, then, if any is still
    failing and attempts remain, one `interval` is slept before the next round."""
    checks = [UrlCheck(url) for url in urls]
    total = retries + 1
    for attempt in range(1, total + 1):
        pending = [c for c in checks if not c.passed]
        if not pending:
            break
        if attempt > 1:
            sleep(interval)
        for c in pending:
            c.attempts = attempt
            try:
                c.status, c.error = fetch(c.url, timeout), None
            except (OSError, http.client.HTTPException) as exc:
                c.status, c.error = None, describe(exc)
            c.passed = c.status == expect_status
            log(f"{c.url} {c.answer()} (attempt {attempt}/{total})")
    return Result(all(c.passed for c in checks), expect_status, checks)


def termination_message(result: Result) -> str:
    """The JSON summary, within the size Kubernetes keeps: if too long, the passed checks go first."""
    summary = result.summary()
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT:
        summary["checks"] = [c for c in summary["checks"] if not c["passed"]]
        summary["truncated"] = True
        text = json.dumps(summary, separators=(",", ":"))
    return text.encode()[:TERMINATION_LIMIT].decode(errors="ignore")


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL with a host")
    return value


def _bounded(kind, low, high=None):
    def parse(value: str):
        number = kind(value)
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high if high is not None else ''}")
        return number
    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m release.tools.smoke",
                                description="GET each URL until it answers the expected status; all must pass.")
    p.add_argument("--expect-status", type=_bounded(int, 100, 599), default=200, help="the exact status each URL must answer")
    p.add_argument("--retries", type=_bounded(int, 0, 100), default=5, help="attempts after the first, per URL")
    p.add_argument("--interval", type=_bounded(float, 0, 600), default=5.0, help="seconds between attempts")
    p.add_argument("--timeout", type=_bounded(float, 0.1, 600), default=10.0, help="seconds one request may take")
    p.add_argument("urls", nargs="+", type=_url, metavar="URL")
    return p


def main(argv: list[str] | None = None, fetch: Fetch = http_status,
         sleep: Callable[[float], None] = time.sleep, termination_log: Path = TERMINATION_LOG) -> int:
    args = parser().parse_args(argv)  # a bad argument exits 2 naming it, before any request
    result = check(args.urls, args.expect_status, args.retries, args.interval, args.timeout, fetch=fetch, sleep=sleep,
                   log=lambda line: print(line, flush=True))
    if termination_log.parent.exists() and termination_log.exists():
        termination_log.write_text(termination_message(result))
    if not result.passed:
        print(result.failure(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
