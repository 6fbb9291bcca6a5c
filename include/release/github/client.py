"""The platform's one way to call GitHub: the provider's GithubHook, made safe for a mirror.

GitHub mirrors what the platform does (statuses, PR comments, SARIF, deployments); it is never
the source of truth, so nothing here may fail or hold up a deployment:

- every call returns a `GitHubResult` and never raises into the caller;
- a 5xx, a rate limit (403/429 with X-RateLimit-Remaining: 0 or Retry-After), a 422 or a
  connection error is tried again with backoff, within `max_attempts` and `budget_seconds`
  in all; a rate limit's Retry-After / X-RateLimit-Reset is honoured when it falls inside the
  budget, and the call gives up at once when it does not;
- a failure is logged as a warning once per outage (later failures while GitHub stays down go
  to debug, and GitHub answering again is logged once);
- with no `github:` section in the config, or no Airflow connection `github.conn_id`, every
  call is a no-op (`skipped`) and the process logs once that GitHub reporting is off.

The hook reads the connection (token, or GitHub App in the extras; host = API URL of GitHub
Enterprise or of the sandbox's stand-in); its authenticated client is rebuilt with PyGithub's
own retries off, so the bound above is the only one.

    client = get_client()            # from the platform config
    client.create_status(sha, "pending", context="release/build", target_url=url)
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({422, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_SECONDS = 10
PER_PAGE = 100
# A marker GitHub does not render, to find the platform's own PR comment again.
COMMENT_MARKER_FORMAT = "<!-- release-platform:{key} -->"

_off_reported = False
_off_lock = threading.Lock()
# Repositories GitHub is failing for right now, in this process: a failure is reported once per outage.
_outages: set[str] = set()


@dataclass(frozen=True)
class GitHubResult:
    """What a call to GitHub came to. Truthy when GitHub accepted it."""

    ok: bool
    data: Any = None  # the decoded JSON GitHub answered
    status: int | None = None  # the HTTP status of the last answer (None: no answer, or skipped)
    error: str | None = None  # one line, for a log or a run note
    attempts: int = 0
    skipped: bool = False  # GitHub reporting is off: nothing was sent
    headers: dict = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return self.ok


class _Failure(Exception):
    """One failed attempt, as the retry loop judges it."""

    def __init__(self, status: int | None, message: str, headers: dict | None = None, data: Any = None,
                 maybe_done: bool = False):
        super().__init__(message)
        self.status, self.message, self.headers, self.data = status, message, headers or {}, data
        self.maybe_done = maybe_done  # sent, but no answer: GitHub may have done it

    @property
    def rate_limited(self) -> bool:
        h = self.headers
        limit_said = h.get("x-ratelimit-remaining") == "0" or "retry-after" in h or "rate limit" in self.message.lower()
        return self.status == 429 or (self.status == 403 and limit_said)

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUSES or self.rate_limited

    def hinted_wait(self, now: float) -> float | None:
        """The wait GitHub asked for (Retry-After, else until X-RateLimit-Reset), in seconds."""
        if not self.rate_limited:
            return None
        try:
            if "retry-after" in self.headers:
                return max(0.0, float(self.headers["retry-after"]))
            if "x-ratelimit-reset" in self.headers:
                return max(0.0, float(self.headers["x-ratelimit-reset"]) - now + 1)
        except ValueError:
            pass
        return 60.0  # GitHub's advice for a secondary limit without a header: a minute


def report_off_once(reason: str) -> None:
    """Log once per process that GitHub reporting is off, and why."""
    global _off_reported
    with _off_lock:
        if _off_reported:
            return
        _off_reported = True
    log.info("GitHub reporting is off: %s; everything else works as usual", reason)


class GitHubClient:
    """Calls on one repository through one Airflow connection. Thread-safe enough for a task."""

    def __init__(self, repository: str | None, conn_id: str | None, *, max_attempts: int = 4,
                 budget_seconds: float = 30.0, backoff_seconds: float = 0.5, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
                 sleep: Callable[[float], None] = time.sleep,
                 off_reason: str | None = None):
        self.repository = repository
        self.conn_id = conn_id
        self.max_attempts = max_attempts
        self.budget_seconds = budget_seconds
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._off_reason = off_reason if (repository and conn_id) else (off_reason or "no `github:` section in the platform config")
        self._github = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config=None, **kwargs) -> GitHubClient:
        """The client the platform config asks for (`github:`); off when the section is absent."""
        if config is None:
            from release.domain.config import load_config

            config = load_config()
        gh = config.github
        if gh is None:
            return cls(None, None, **kwargs)
        return cls(gh.repository, gh.conn_id, **kwargs)

    # -- state ----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether calls reach GitHub (the config names a repository and its connection works)."""
        return self._connect() is not None

    @property
    def base_url(self) -> str | None:
        github = self._connect()
        return github.requester.base_url if github is not None else None

    def _connect(self):
        """The authenticated PyGithub client from the provider's hook, or None (reported once)."""
        if self._off_reason is not None:
            report_off_once(self._off_reason)
            return None
        with self._lock:
            if self._github is not None:
                return self._github
            try:
                from airflow.providers.github.hooks.github import GithubHook
                from github import Github

                hooked = GithubHook(github_conn_id=self.conn_id).get_conn()
                # Same auth and base URL, without PyGithub's own retries (which wait out a rate limit
                # for up to an hour) or write spacing: the bound in `call` is the only one.
                kwargs = {**hooked.requester.kwargs, "retry": None, "timeout": self.timeout_seconds,
                          "seconds_between_requests": None, "seconds_between_writes": None}
                self._github = Github(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a missing or broken connection turns GitHub off, never the platform
                self._off_reason = f"the Airflow connection {self.conn_id!r} is unusable ({_one_line(exc)})"
                report_off_once(self._off_reason)
                return None
            return self._github

    # -- the one way out ----------------------------------------------------------------------
    def call(self, method: str, path: str, *, body: Any = None, params: dict | None = None, what: str | None = None,
             idempotent: bool | None = None) -> GitHubResult:
        """`method` on `path` below /repos/{owner}/{repo} (e.g. "/statuses/<sha>"; a path starting with
        "/repos/" is taken as is), tried again within the bound; never raises.

        A request that was sent but got no answer (a read timeout) is tried again only when doing it
        twice is harmless (`idempotent`; default: GET, PATCH, PUT, and a commit status, which GitHub
        keeps per context): a second deployment or PR comment would be worse than none."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential_jitter

        github = self._connect()
        if github is None:
            return GitHubResult(ok=False, skipped=True, error="GitHub reporting is off")
        url = path if path.startswith("/repos/") else f"/repos/{self.repository}{path}"
        what = what or f"{method} {url}"
        backoff = wait_exponential_jitter(initial=self.backoff_seconds, max=8, jitter=self.backoff_seconds)

        def wait(state) -> float:
            hinted = state.outcome.exception().hinted_wait(time.time())
            return hinted if hinted is not None else backoff(state)

        def before_sleep(state) -> None:
            log.debug("GitHub %s failed (%s), attempt %d; trying again in %.1f s", what,
                      state.outcome.exception().message, state.attempt_number, state.upcoming_sleep)

        if idempotent is None:
            idempotent = method in ("GET", "PATCH", "PUT") or "/statuses/" in path and "/deployments/" not in path

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _Failure) and exc.retryable and (idempotent or not exc.maybe_done)

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            # stop_before_delay: a wait (a rate limit's reset) that would end past the budget is not waited out.
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.budget_seconds),
            wait=wait, sleep=self._sleep, before_sleep=before_sleep, reraise=True)
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    status, headers, data = self._send(github, method, url, params, body)
        except _Failure as failure:
            error = f"{what}: {'HTTP ' + str(failure.status) + ': ' if failure.status else ''}{failure.message}"
            self._report(error, attempts)
            return GitHubResult(ok=False, data=failure.data, status=failure.status, error=error, attempts=attempts,
                                headers=failure.headers)
        except Exception as exc:  # noqa: BLE001 - a bug or an odd answer must not reach the caller either
            error = f"{what}: {type(exc).__name__}: {_one_line(exc)}"
            self._report(error, attempts)
            return GitHubResult(ok=False, error=error, attempts=attempts)
        if self.repository in _outages:
            with _off_lock:
                _outages.discard(self.repository)
            log.info("GitHub answers again (%s)", what)
        return GitHubResult(ok=True, data=data, status=status, attempts=attempts, headers=headers)

    def _send(self, github, method: str, url: str, params: dict | None, body: Any) -> tuple[int, dict, Any]:
        import requests

        try:
            status, headers, output = github.requester.requestJson(method, url, parameters=params, input=body)
        except requests.RequestException as exc:
            maybe_done = isinstance(exc, requests.ReadTimeout)
            note = " (sent, no answer: GitHub may have done it)" if maybe_done else ""
            raise _Failure(None, f"{type(exc).__name__}: {_one_line(exc)}{note}", maybe_done=maybe_done) from None
        headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        try:
            data = json.loads(output) if output else None
        except ValueError:
            data = output
        if status >= 400:
            info = data if isinstance(data, dict) else {}
            message = _one_line(info.get("message") or f"HTTP {status}")
            if info.get("errors"):
                message += f" ({_one_line(json.dumps(info['errors']))[:300]})"
            raise _Failure(status, message, headers, data)
        return status, headers, data

    def _report(self, error: str, attempts: int) -> None:
        with _off_lock:
            known = self.repository in _outages
            _outages.add(self.repository)
        if known:
            log.debug("GitHub still failing: %s", error)
            return
        log.warning("GitHub call failed after %d attempt(s), carrying on without it: %s", attempts, error)

    # -- what the platform calls ------------------------------------------------------------------
    def create_status(self, sha: str, state: str, *, context: str, description: str | None = None,
                      target_url: str | None = None) -> GitHubResult:
        """A commit status (state: pending, success, failure, error). GitHub keeps the last per context."""
        body = {"state": state, "context": context}
        if description is not None:
            body["description"] = _one_line(description)[:140]  # GitHub's limit for a status description
        if target_url:
            body["target_url"] = target_url
        return self.call("POST", f"/statuses/{sha}", body=body, what=f"status {context}={state} on {sha[:12]}")

    def create_check_run(self, head_sha: str, name: str, **fields: Any) -> GitHubResult:
        """A check run (needs a GitHub App connection on real GitHub). `fields`: status, conclusion,
        details_url, external_id, started_at, completed_at, output."""
        return self.call("POST", "/check-runs", body={"name": name, "head_sha": head_sha, **fields},
                         what=f"check run {name} on {head_sha[:12]}")

    def update_check_run(self, check_run_id: int, **fields: Any) -> GitHubResult:
        return self.call("PATCH", f"/check-runs/{check_run_id}", body=fields, what=f"check run {check_run_id}")

    def list_issue_comments(self, number: int) -> GitHubResult:
        """Every comment on an issue or pull request (all pages); data: a list."""
        return self._all_pages(f"/issues/{number}/comments", what=f"comments of #{number}")

    def create_issue_comment(self, number: int, body: str) -> GitHubResult:
        return self.call("POST", f"/issues/{number}/comments", body={"body": body}, what=f"comment on #{number}")

    def update_issue_comment(self, comment_id: int, body: str) -> GitHubResult:
        return self.call("PATCH", f"/issues/comments/{comment_id}", body={"body": body}, what=f"comment {comment_id}")

    def upsert_issue_comment(self, number: int, body: str, key: str = "report") -> GitHubResult:
        """The platform's one comment `key` on #number: updated in place when it exists, else created.
        The body gets a hidden marker line that finds it again."""
        marker = COMMENT_MARKER_FORMAT.format(key=key)
        text = f"{marker}\n{body}"
        found = self.list_issue_comments(number)
        if not found.ok:
            return found
        mine = [c for c in found.data if marker in (c.get("body") or "")]
        if mine:
            return self.update_issue_comment(mine[0]["id"], text)
        return self.create_issue_comment(number, text)

    def upload_sarif(self, commit_sha: str, ref: str, sarif: dict | str | bytes, *, tool_name: str | None = None,
                     checkout_uri: str | None = None) -> GitHubResult:
        """A SARIF log to code scanning: gzip, then base64, as GitHub asks. data: {"id", "url"}."""
        raw = sarif if isinstance(sarif, bytes) else (sarif.encode() if isinstance(sarif, str) else json.dumps(sarif).encode())
        body: dict = {"commit_sha": commit_sha, "ref": ref, "sarif": base64.b64encode(gzip.compress(raw)).decode("ascii")}
        if tool_name:
            body["tool_name"] = tool_name
        if checkout_uri:
            body["checkout_uri"] = checkout_uri
        return self.call("POST", "/code-scanning/sarifs", body=body, what=f"SARIF upload for {commit_sha[:12]}")

    def get_sarif(self, sarif_id: str) -> GitHubResult:
        return self.call("GET", f"/code-scanning/sarifs/{quote(sarif_id, safe='')}", what=f"SARIF {sarif_id}")

    def create_deployment(self, ref: str, environment: str, *, description: str | None = None, payload: dict | None = None,
                          task: str = "deploy", production: bool | None = None, transient: bool = False,
                          required_contexts: list[str] | None = None, auto_merge: bool = False) -> GitHubResult:
        """A GitHub deployment of `ref` (a commit) to `environment`. `required_contexts` defaults to none:
        the platform has already judged the commit; GitHub's default would refuse on any non-green status."""
        body: dict = {"ref": ref, "environment": environment, "task": task, "auto_merge": auto_merge,
                      "required_contexts": list(required_contexts or []), "transient_environment": transient}
        if production is not None:
            body["production_environment"] = production
        if description is not None:
            body["description"] = _one_line(description)[:140]
        if payload is not None:
            body["payload"] = payload
        return self.call("POST", "/deployments", body=body, what=f"deployment of {ref[:12]} to {environment}")

    def create_deployment_status(self, deployment_id: int, state: str, *, description: str | None = None,
                                 log_url: str | None = None, environment_url: str | None = None,
                                 auto_inactive: bool | None = None) -> GitHubResult:
        """state: error, failure, inactive, in_progress, queued, pending, success."""
        body: dict = {"state": state}
        if description is not None:
            body["description"] = _one_line(description)[:140]
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        if auto_inactive is not None:
            body["auto_inactive"] = auto_inactive
        return self.call("POST", f"/deployments/{deployment_id}/statuses", body=body,
                         what=f"deployment {deployment_id} status {state}")

    def list_deployments(self, *, environment: str | None = None, sha: str | None = None, ref: str | None = None) -> GitHubResult:
        params = {k: v for k, v in (("environment", environment), ("sha", sha), ("ref", ref)) if v is not None}
        return self._all_pages("/deployments", params=params, what=f"deployments {params}")

    def compare(self, base: str, head: str) -> GitHubResult:
        """GitHub's comparison of two commits: data has `commits` (all pages) and `files` (GitHub lists
        at most 300) and `files_complete` (False when GitHub may have left files out)."""
        path = f"/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        what = f"compare {base[:12]}...{head[:12]}"
        first = self.call("GET", path, params={"per_page": PER_PAGE, "page": 1}, what=what)
        if not first.ok:
            return first
        data = dict(first.data)
        commits = list(data.get("commits") or [])
        page, attempts = 1, first.attempts
        while len(commits) < int(data.get("total_commits") or 0):
            page += 1
            more = self.call("GET", path, params={"per_page": PER_PAGE, "page": page}, what=what)
            attempts += more.attempts
            if not more.ok:
                return more
            if not more.data.get("commits"):
                break
            commits.extend(more.data["commits"])
        data["commits"] = commits
        data["files"] = list(data.get("files") or [])
        data["files_complete"] = len(data["files"]) < 300
        return GitHubResult(ok=True, data=data, status=first.status, attempts=attempts)

    def changed_files(self, base: str, head: str) -> GitHubResult:
        """The paths changed between two commits (renames give both names); data: {"paths": [...],
        "complete": bool}. `complete` is False when GitHub's list stopped at its 300-file limit."""
        found = self.compare(base, head)
        if not found.ok:
            return found
        paths: list[str] = []
        for f in found.data["files"]:
            for name in (f.get("previous_filename"), f.get("filename")):
                if name and name not in paths:
                    paths.append(name)
        return GitHubResult(ok=True, data={"paths": paths, "complete": found.data["files_complete"]},
                            status=found.status, attempts=found.attempts)

    def pull_files(self, number: int) -> GitHubResult:
        """The files of a pull request (all pages); data: a list of GitHub file objects."""
        return self._all_pages(f"/pulls/{number}/files", what=f"files of #{number}")

    def _all_pages(self, path: str, *, params: dict | None = None, what: str) -> GitHubResult:
        items: list = []
        page, attempts = 1, 0
        while True:
            result = self.call("GET", path, params={**(params or {}), "per_page": PER_PAGE, "page": page}, what=what)
            attempts += result.attempts
            if not result.ok:
                return result
            items.extend(result.data or [])
            if len(result.data or []) < PER_PAGE:
                return GitHubResult(ok=True, data=items, status=result.status, attempts=attempts)
            page += 1


def get_client(config=None, **kwargs) -> GitHubClient:
    """A client for the platform config's `github:` section (cheap: it connects on its first call)."""
    return GitHubClient.from_config(config, **kwargs)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())
