"""A GitHub stand-in: the part of GitHub's REST API the platform calls, on 127.0.0.1.

Every request is checked against GitHub's own REST description (`openapi-subset.json`, a subset of
github/rest-api-description) with openapi-core, and every answer the stand-in gives is checked
against the same description, so a client that works here sends what GitHub accepts and reads
what GitHub returns. It refuses what GitHub refuses: 401 without a known token, 404 for an unknown
repository or path, 400 for a body that is not JSON, 422 with GitHub's error shape
({"message", "errors", "documentation_url"}) for a body the description forbids, 409 for a
deployment whose commit's statuses are not all green (GitHub's `required_contexts` default).

It keeps what it was sent (commit statuses, check runs, issue comments, deployments and their
statuses, SARIF uploads) and answers compare and pull request questions from what a test seeded.
Faults: a 5xx, a 403 rate limit (X-RateLimit-Remaining: 0, X-RateLimit-Reset, Retry-After) or
slowness, for the next N matching requests.

    with GitHubStandIn(repositories=["example-org/app"]) as github:
        github.seed_compare("a" * 40, "b" * 40, files=["services/service-a/app.py"])
        github.fail(503, count=2)
        ...
        github.state()["statuses"]

GET /_github/state (no token needed) lists the state as JSON for the sandbox's user.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import gzip
import itertools
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sandbox.http import ThreadedServer

log = logging.getLogger(__name__)

SPEC_PATH = Path(__file__).with_name("openapi-subset.json")
TOKEN = "sandbox-github-token"  # not a secret: the stand-in only listens on 127.0.0.1
WEBHOOK_SECRET = "sandbox-webhook-secret"  # not a secret either: what the sandbox signs its test pushes with
DEFAULT_REPOSITORY = "example-org/app"
SPEC_HOST = "https://api.github.com"  # the server the description names; paths are matched under it
STATE_PATH = "/_github/state"
DOCS = "https://docs.github.com/rest"
MAX_BODY = 30 * 1024 * 1024
COMPARE_FILES_MAX = 300  # GitHub lists at most 300 changed files in a comparison
COMPARE_COMMITS_DEFAULT = 250  # and at most 250 commits without paging parameters
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# The `resource` GitHub names in a 422's errors, per operation.
RESOURCES = {"repos/create-commit-status": "Status", "checks/create": "CheckRun", "checks/update": "CheckRun",
             "code-scanning/upload-sarif": "CodeScanningSarif", "repos/create-deployment": "Deployment",
             "repos/create-deployment-status": "DeploymentStatus", "issues/create-comment": "IssueComment",
             "issues/update-comment": "IssueComment"}


@functools.cache
def openapi():
    """GitHub's REST description as openapi-core reads it (about a second; once per process)."""
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(_null_in_nullable_enums(json.loads(SPEC_PATH.read_text(encoding="utf-8"))))


def _null_in_nullable_enums(node):
    """`nullable: true` beside an `enum` without null: GitHub means (and sends) null, e.g. a check
    run's `conclusion` while it runs; JSON Schema would refuse it unless the enum lists it."""
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _null_in_nullable_enums(value)
    return node


@functools.cache
def _path_finder():
    from openapi_core.templating.paths.finders import APICallPathFinder

    return APICallPathFinder(openapi().spec)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """The next `count` requests matching `method` and `path` (a full-match regex) fail or are slow."""

    status: int | None = None  # 5xx, or 403 for a rate limit; None: only slow
    count: int = 1
    method: str | None = None
    path: str = ".*"
    delay_seconds: float = 0.0
    retry_after: int | None = None  # rate limit: Retry-After header, seconds
    reset_in: int = 60  # rate limit: X-RateLimit-Reset = now + reset_in
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.hits < self.count and (self.method is None or self.method.upper() == method)
                and re.fullmatch(self.path, path) is not None)


@dataclass
class RecordedRequest:
    method: str
    path: str
    status: int
    body: Any = None
    at: float = field(default_factory=time.time)


@dataclass
class _Repo:
    owner: str
    name: str
    id: int
    statuses: list[dict] = field(default_factory=list)
    check_runs: dict[int, dict] = field(default_factory=dict)
    comments: dict[int, dict] = field(default_factory=dict)
    deployments: dict[int, dict] = field(default_factory=dict)
    deployment_statuses: dict[int, list[dict]] = field(default_factory=dict)
    sarifs: dict[str, dict] = field(default_factory=dict)
    compares: dict[tuple[str, str], dict] = field(default_factory=dict)
    commits: dict[str, dict] = field(default_factory=dict)  # sha -> what seed_compare said of it (files too)
    pulls: dict[int, dict] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _Request:
    """An aiohttp request as openapi-core's Request protocol sees it, under GitHub's own host."""

    def __init__(self, method: str, path: str, query, headers, body: bytes | None, content_type: str):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = SPEC_HOST
        self.path = path
        self.method = method.lower()
        self.body = body
        self.content_type = content_type
        self.parameters = RequestParameters(query=ImmutableMultiDict(list(query.items())),
                                            header=Headers(list(headers.items())), cookie=ImmutableMultiDict())


class _Response:
    def __init__(self, status: int, data: bytes, headers: dict):
        from werkzeug.datastructures import Headers

        self.status_code = status
        self.data = data
        self.content_type = "application/json"
        self.headers = Headers(list(headers.items()))


class GitHubError(Exception):
    def __init__(self, status: int, message: str, errors: list[dict] | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers or {}

    def response(self) -> web.Response:
        body: dict = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = DOCS
        body["status"] = str(self.status)
        return web.json_response(body, status=self.status, headers=self.headers)


class GitHubStandIn(ThreadedServer):
    thread_name = "github-stand-in"

    def __init__(self, repositories: list[str] | tuple[str, ...] = (DEFAULT_REPOSITORY,), *, port: int = 0,
                 tokens: tuple[str, ...] = (TOKEN,), validate_responses: bool = True):
        super().__init__(port)
        self.tokens = set(tokens)
        self.validate_responses = validate_responses
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._repos: dict[str, _Repo] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        for full_name in repositories:
            self.add_repository(full_name)

    # -- lifecycle (sandbox.http.ThreadedServer) ---------------------------------------------
    def on_start(self) -> None:
        openapi()  # load the description before the first request, not during it

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- what a test or the sandbox sets up -------------------------------------------------
    def add_repository(self, full_name: str) -> None:
        owner, name = full_name.split("/", 1)
        with self._lock:
            self._repos.setdefault(full_name.lower(), _Repo(owner, name, next(self._ids)))

    def airflow_connection(self, token: str = TOKEN) -> str:
        """An Airflow `github` connection (JSON form, for AIRFLOW_CONN_<ID>) to the stand-in:
        the host is the API URL, as for GitHub Enterprise."""
        return json.dumps({"conn_type": "github", "host": self.url, "password": token,
                           "description": "SANDBOX: GitHub stand-in on 127.0.0.1"})

    def fail(self, status: int = 503, count: int = 1, *, method: str | None = None, path: str = ".*",
             delay_seconds: float = 0.0) -> Fault:
        """The next `count` matching requests get `status` (5xx) with GitHub's error body."""
        if not 500 <= status <= 599:
            raise ValueError(f"status {status}: fail() injects 5xx; use rate_limit() for 403")
        return self._add_fault(Fault(status=status, count=count, method=method, path=path, delay_seconds=delay_seconds))

    def rate_limit(self, count: int = 1, *, retry_after: int | None = 1, reset_in: int = 60,
                   method: str | None = None, path: str = ".*") -> Fault:
        """The next `count` matching requests get GitHub's 403 rate limit answer."""
        return self._add_fault(Fault(status=403, count=count, method=method, path=path,
                                     retry_after=retry_after, reset_in=reset_in))

    def slow(self, seconds: float, count: int = 1, *, method: str | None = None, path: str = ".*") -> Fault:
        """The next `count` matching requests are answered only after `seconds`."""
        return self._add_fault(Fault(status=None, count=count, method=method, path=path, delay_seconds=seconds))

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def seed_compare(self, base: str, head: str, files: list[str | dict] = (), commits: list[dict] | None = None,
                     repository: str = DEFAULT_REPOSITORY, status: str = "ahead") -> None:
        """What GET /compare/{base}...{head} answers. `files`: paths (modified) or GitHub file
        objects' fields; `commits`: dicts with sha, message, author (name), login, email, date, and
        files (what GET /commits/{sha} then lists for that commit)."""
        repo = self._repo_or_raise(repository)
        file_objs = [self._file(repo, f if isinstance(f, dict) else {"filename": f}) for f in files]
        commit_objs = [self._commit(repo, c) for c in (commits or [])]
        with self._lock:
            repo.compares[(base, head)] = {"files": file_objs, "commits": commit_objs, "status": status}
            repo.commits.update({c["sha"]: c for c in commits or []})

    def seed_pull(self, number: int, head_sha: str, head_ref: str = "feature", base_ref: str = "main",
                  files: list[str | dict] = (), repository: str = DEFAULT_REPOSITORY, title: str = "A change",
                  user: str = "octocat") -> None:
        repo = self._repo_or_raise(repository)
        with self._lock:
            repo.pulls[number] = {"number": number, "head_sha": head_sha, "head_ref": head_ref, "base_ref": base_ref,
                                  "title": title, "user": user,
                                  "files": [self._file(repo, f if isinstance(f, dict) else {"filename": f}) for f in files]}

    # -- what a test reads ----------------------------------------------------------------
    def state(self, repository: str | None = None) -> dict:
        """Everything the stand-in keeps, per repository (or of one), as plain JSON data."""
        with self._lock:
            repos = [self._repo_or_raise(repository)] if repository else list(self._repos.values())
            out = {r.full_name: {
                "statuses": [dict(s) for s in r.statuses],
                "check_runs": [dict(c) for c in r.check_runs.values()],
                "comments": [dict(c) for c in r.comments.values()],
                "deployments": [{**d, "statuses": [dict(s) for s in r.deployment_statuses.get(d["id"], [])]}
                                for d in r.deployments.values()],
                "sarifs": [dict(s) for s in r.sarifs.values()],
            } for r in repos}
            return out[repos[0].full_name] if repository else out

    def statuses(self, sha: str | None = None, repository: str = DEFAULT_REPOSITORY) -> list[dict]:
        return [s for s in self.state(repository)["statuses"] if sha is None or s["sha"] == sha]

    def comments(self, issue_number: int | None = None, repository: str = DEFAULT_REPOSITORY) -> list[dict]:
        return [c for c in self.state(repository)["comments"] if issue_number is None or c["issue_number"] == issue_number]

    def deployments(self, environment: str | None = None, repository: str = DEFAULT_REPOSITORY) -> list[dict]:
        return [d for d in self.state(repository)["deployments"] if environment is None or d["environment"] == environment]

    def sarifs(self, repository: str = DEFAULT_REPOSITORY) -> list[dict]:
        return self.state(repository)["sarifs"]

    def check_runs(self, repository: str = DEFAULT_REPOSITORY) -> list[dict]:
        return self.state(repository)["check_runs"]

    def seen(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        return [r for r in list(self.requests) if (method is None or r.method == method) and path_contains in r.path]

    # -- HTTP ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api/v3/"):  # GitHub Enterprise's prefix: the same API below it
            path = path[len("/api/v3"):]
        body_bytes = await request.read() if request.can_read_body else b""
        record = RecordedRequest(request.method, request.path, 0, _json_or_none(body_bytes))
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
        try:
            if path.rstrip("/") == STATE_PATH and request.method == "GET":
                response = web.json_response(self.state())
            else:
                response = await self._api(request, path, body_bytes)
        except GitHubError as exc:
            response = exc.response()
        finally:
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()
        record.status = response.status
        return response

    def wait_idle(self, timeout: float = 30) -> bool:
        """Wait until no request is being answered (e.g. a slow one its client gave up on)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    async def _api(self, request: web.Request, path: str, body_bytes: bytes) -> web.Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or token.strip() not in self.tokens:
            raise GitHubError(401, "Requires authentication" if not auth else "Bad credentials")
        with self._lock:
            fault = next((f for f in self.faults if f.matches(request.method, path)), None)
            if fault:
                fault.hits += 1
        if fault:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status == 403:
                reset = int(time.time()) + fault.reset_in
                headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Used": "5000",
                           "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                raise GitHubError(403, "API rate limit exceeded for installation. If you reach out to GitHub Support "
                                       "for help, please include the request ID.", headers=headers)
            if fault.status:
                raise GitHubError(fault.status, "Server Error" if fault.status != 503 else "Service Unavailable")

        from openapi_core.templating.paths.exceptions import PathError

        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip() or "application/json"
        if body_bytes and content_type == "application/json" and _json_or_none(body_bytes) is None:
            raise GitHubError(400, "Problems parsing JSON")
        api_request = _Request(request.method, path, request.query, request.headers, body_bytes or None, content_type)
        try:
            _, operation, _, path_result, _ = _path_finder().find(api_request.method, SPEC_HOST + path)
        except PathError:
            raise GitHubError(404, "Not Found") from None
        params = {k: unquote(v) for k, v in path_result.variables.items()}
        repo = self._repos.get(f"{params.get('owner', '')}/{params.get('repo', '')}".lower())
        if repo is None:
            raise GitHubError(404, "Not Found")
        self._check_request(api_request, operation)

        handler = getattr(self, f"_op_{operation['operationId'].replace('/', '_').replace('-', '_')}", None)
        if handler is None:  # in the description, but nothing the platform calls: say so rather than pretend
            raise GitHubError(501, f"the GitHub stand-in does not model {operation['operationId']}")
        body = _json_or_none(body_bytes) or {}
        with self._lock:
            status, data, headers = handler(repo, params, body, request.query)
        raw = json.dumps(data).encode()
        if self.validate_responses:
            self._check_response(api_request, status, raw, headers)
        return web.Response(status=status, body=raw, content_type="application/json", headers=headers)

    def _check_request(self, api_request: _Request, operation) -> None:
        from openapi_core.validation.request.exceptions import (MissingRequestBody, RequestBodyValidationError,
                                                                RequestValidationError)

        try:
            openapi().validate_request(api_request)
        except MissingRequestBody:
            raise GitHubError(400, "Problems parsing JSON") from None
        except RequestBodyValidationError as exc:
            resource = RESOURCES.get(str(operation["operationId"]), str(operation["operationId"]))
            raise GitHubError(422, "Invalid request.", _schema_errors(exc, resource)) from None
        except RequestValidationError as exc:
            raise GitHubError(422, f"Invalid request. {exc}", []) from None

    def _check_response(self, api_request: _Request, status: int, raw: bytes, headers: dict) -> None:
        from openapi_core.validation.response.exceptions import ResponseValidationError

        try:
            openapi().validate_response(api_request, _Response(status, raw, headers))
        except ResponseValidationError as exc:
            detail = "; ".join(e.message for e in getattr(exc.__cause__, "schema_errors", ())[:5]) or str(exc)
            log.error("GitHub stand-in answer does not match GitHub's description: %s", detail)
            raise GitHubError(500, f"stand-in answer does not match GitHub's description: {detail}") from None

    def _repo_or_raise(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"the stand-in has no repository {full_name!r}; known: {', '.join(self._repos)}") from None

    # -- GitHub objects -------------------------------------------------------------------
    def _api_url(self, repo: _Repo, rest: str = "") -> str:
        return f"{SPEC_HOST}/repos/{repo.full_name}{rest}"

    def _html_url(self, repo: _Repo, rest: str = "") -> str:
        return f"https://github.com/{repo.full_name}{rest}"

    @staticmethod
    def _user(login: str = "release-platform[bot]", user_id: int = 1) -> dict:
        base = f"{SPEC_HOST}/users/{login}"
        return {"login": login, "id": user_id, "node_id": f"U_{user_id}", "avatar_url": "https://github.com/images/error/octocat_happy.gif",
                "gravatar_id": "", "url": base, "html_url": f"https://github.com/{login}",
                "followers_url": f"{base}/followers", "following_url": f"{base}/following{{/other_user}}",
                "gists_url": f"{base}/gists{{/gist_id}}", "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{base}/subscriptions", "organizations_url": f"{base}/orgs",
                "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
                "received_events_url": f"{base}/received_events", "type": "Bot" if login.endswith("[bot]") else "User",
                "site_admin": False}

    def _file(self, repo: _Repo, f: dict) -> dict:
        name = f["filename"]
        sha = f.get("sha") or uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:40].ljust(40, "0")
        out = {"sha": sha, "filename": name, "status": f.get("status", "modified"), "additions": f.get("additions", 1),
               "deletions": f.get("deletions", 0), "changes": f.get("changes", 1),
               "blob_url": self._html_url(repo, f"/blob/{sha}/{name}"), "raw_url": self._html_url(repo, f"/raw/{sha}/{name}"),
               "contents_url": self._api_url(repo, f"/contents/{name}")}
        if f.get("previous_filename"):
            out["previous_filename"] = f["previous_filename"]
        return out

    def _commit(self, repo: _Repo, c: dict) -> dict:
        sha = c["sha"]
        person = {"name": c.get("author", "A Developer"), "email": c.get("email", "dev@example.com"),
                  "date": c.get("date", _now())}
        login = c.get("login") or re.sub(r"[^A-Za-z0-9-]+", "-", person["name"]).strip("-").lower() or "developer"
        return {"url": self._api_url(repo, f"/commits/{sha}"), "sha": sha, "node_id": f"C_{sha[:12]}",
                "html_url": self._html_url(repo, f"/commit/{sha}"), "comments_url": self._api_url(repo, f"/commits/{sha}/comments"),
                "commit": {"url": self._api_url(repo, f"/git/commits/{sha}"), "author": person, "committer": person,
                           "message": c.get("message", "A change"), "comment_count": 0,
                           "tree": {"sha": sha, "url": self._api_url(repo, f"/git/trees/{sha}")}},
                "author": self._user(login, 2), "committer": self._user(login, 2),
                "parents": [{"sha": p, "url": self._api_url(repo, f"/commits/{p}")} for p in c.get("parents", [])]}

    def _deployment_status_obj(self, repo: _Repo, deployment: dict, body: dict) -> dict:
        sid = next(self._ids)
        stamp = _now()
        return {"url": self._api_url(repo, f"/deployments/{deployment['id']}/statuses/{sid}"), "id": sid,
                "node_id": f"DES_{sid}", "state": body["state"], "creator": self._user(),
                "description": body.get("description", ""), "environment": body.get("environment", deployment["environment"]),
                "target_url": body.get("target_url", body.get("log_url", "")), "log_url": body.get("log_url", body.get("target_url", "")),
                "environment_url": body.get("environment_url", ""), "created_at": stamp, "updated_at": stamp,
                "deployment_url": deployment["url"], "repository_url": self._api_url(repo)}

    # -- operations (named after the description's operationId) -----------------------------
    def _op_repos_create_commit_status(self, repo: _Repo, params, body, query):
        sha = params["sha"]
        if not SHA_RE.fullmatch(sha):
            raise GitHubError(422, "No commit found for SHA: " + sha)
        sid, stamp = next(self._ids), _now()
        status = {"url": self._api_url(repo, f"/statuses/{sha}"), "avatar_url": None, "id": sid, "node_id": f"SC_{sid}",
                  "state": body["state"], "description": body.get("description"), "target_url": body.get("target_url"),
                  "context": body.get("context", "default"), "created_at": stamp, "updated_at": stamp,
                  "creator": self._user()}
        repo.statuses.append({**status, "sha": sha})
        return 201, status, {}

    def _op_checks_create(self, repo: _Repo, params, body, query):
        if body.get("status") == "completed" or body.get("completed_at"):
            if not body.get("conclusion"):
                raise GitHubError(422, "Validation Failed", [{"resource": "CheckRun", "field": "conclusion", "code": "missing_field",
                                                              "message": "conclusion is required when status is completed"}])
        cid = next(self._ids)
        run = {"id": cid, "node_id": f"CR_{cid}", "head_sha": body["head_sha"], "name": body["name"],
               "external_id": body.get("external_id"), "url": self._api_url(repo, f"/check-runs/{cid}"),
               "html_url": self._html_url(repo, f"/runs/{cid}"), "details_url": body.get("details_url"),
               "status": body.get("status", "completed" if body.get("conclusion") else "queued"),
               "conclusion": body.get("conclusion"), "started_at": body.get("started_at", _now()),
               "completed_at": body.get("completed_at", _now() if body.get("conclusion") else None),
               "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                          "annotations_url": self._api_url(repo, f"/check-runs/{cid}/annotations"),
                          **{k: v for k, v in (body.get("output") or {}).items() if k in ("title", "summary", "text")}},
               "check_suite": {"id": 1}, "app": None, "pull_requests": []}
        repo.check_runs[cid] = run
        return 201, run, {}

    def _op_checks_update(self, repo: _Repo, params, body, query):
        cid = int(params["check_run_id"])
        run = repo.check_runs.get(cid)
        if run is None:
            raise GitHubError(404, "Not Found")
        if (body.get("status") == "completed" or body.get("completed_at")) and not (body.get("conclusion") or run["conclusion"]):
            raise GitHubError(422, "Validation Failed", [{"resource": "CheckRun", "field": "conclusion", "code": "missing_field",
                                                          "message": "conclusion is required when status is completed"}])
        for key in ("name", "details_url", "external_id", "started_at", "status", "conclusion", "completed_at"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion"):
            run["status"] = "completed"
            run["completed_at"] = run["completed_at"] or _now()
        if body.get("output"):
            run["output"].update({k: v for k, v in body["output"].items() if k in ("title", "summary", "text")})
        return 200, run, {}

    def _op_code_scanning_upload_sarif(self, repo: _Repo, params, body, query):
        try:
            sarif = json.loads(gzip.decompress(base64.b64decode(body["sarif"], validate=True)))
        except (binascii.Error, OSError, EOFError, ValueError):
            raise GitHubError(400, "A SARIF upload must be gzip-compressed and then base64-encoded") from None
        if not isinstance(sarif, dict) or not isinstance(sarif.get("runs"), list) or not sarif.get("version"):
            raise GitHubError(400, "Invalid SARIF: a log needs `version` and `runs`")
        sarif_id = str(uuid.uuid4())
        repo.sarifs[sarif_id] = {"id": sarif_id, "commit_sha": body["commit_sha"], "ref": body["ref"],
                                 "tool_names": sorted({(r.get("tool") or {}).get("driver", {}).get("name", "?") for r in sarif["runs"]}),
                                 "results": sum(len(r.get("results") or []) for r in sarif["runs"]),
                                 "sarif": sarif, "received_at": _now()}
        return 202, {"id": sarif_id, "url": self._api_url(repo, f"/code-scanning/sarifs/{sarif_id}")}, {}

    def _op_code_scanning_get_sarif(self, repo: _Repo, params, body, query):
        if params["sarif_id"] not in repo.sarifs:
            raise GitHubError(404, "Not Found")
        return 200, {"processing_status": "complete", "analyses_url": self._api_url(repo, "/code-scanning/analyses"),
                     "errors": None}, {}

    def _op_repos_compare_commits_with_basehead(self, repo: _Repo, params, body, query):
        base, sep, head = params["basehead"].partition("...")
        seeded = repo.compares.get((base, head)) if sep else None
        if seeded is None:
            raise GitHubError(404, "Not Found")
        paged = "page" in query or "per_page" in query
        page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 30 if paged else COMPARE_COMMITS_DEFAULT)), 250)
        commits = seeded["commits"]
        shown = commits[(page - 1) * per_page: page * per_page] if paged else commits[-COMPARE_COMMITS_DEFAULT:]
        base_commit = self._commit(repo, {"sha": base if SHA_RE.fullmatch(base) else "0" * 40, "message": "base"})
        data = {"url": self._api_url(repo, f"/compare/{base}...{head}"), "html_url": self._html_url(repo, f"/compare/{base}...{head}"),
                "permalink_url": self._html_url(repo, f"/compare/{base}...{head}"),
                "diff_url": self._html_url(repo, f"/compare/{base}...{head}.diff"),
                "patch_url": self._html_url(repo, f"/compare/{base}...{head}.patch"),
                "base_commit": base_commit, "merge_base_commit": base_commit, "status": seeded["status"],
                "ahead_by": len(commits), "behind_by": 0, "total_commits": len(commits), "commits": shown}
        if page == 1:  # GitHub lists the files on the first page only, at most 300
            data["files"] = seeded["files"][:COMPARE_FILES_MAX]
        return 200, data, {}

    def _op_repos_get_commit(self, repo: _Repo, params, body, query):
        """A commit seed_compare listed, with its files (all on one page: a test seeds few)."""
        seeded = repo.commits.get(params["ref"])
        if seeded is None:
            raise GitHubError(422, f"No commit found for SHA: {params['ref']}")
        files = [self._file(repo, f if isinstance(f, dict) else {"filename": f}) for f in seeded.get("files") or []]
        added, deleted = sum(f["additions"] for f in files), sum(f["deletions"] for f in files)
        return 200, {**self._commit(repo, seeded), "files": files,
                     "stats": {"additions": added, "deletions": deleted, "total": added + deleted}}, {}

    def _op_repos_list_deployments(self, repo: _Repo, params, body, query):
        found = [d for d in repo.deployments.values()
                 if all(query.get(k) in (None, d[k]) for k in ("sha", "ref", "task", "environment"))]
        found.sort(key=lambda d: d["id"], reverse=True)
        return 200, _page(found, query), {}

    def _op_repos_create_deployment(self, repo: _Repo, params, body, query):
        ref = body["ref"]
        if "required_contexts" not in body and SHA_RE.fullmatch(ref):
            # GitHub's default: every context reported on the commit must be green.
            latest = {s["context"]: s["state"] for s in repo.statuses if s["sha"] == ref}
            failed = sorted(c for c, state in latest.items() if state != "success")
            if failed:
                raise GitHubError(409, f"Conflict: Commit status checks failed for {ref}.",
                                  [{"contexts": [{"context": c, "state": latest[c]} for c in failed],
                                    "resource": "Deployment", "field": "required_contexts", "code": "invalid"}])
        did, stamp = next(self._ids), _now()
        environment = body.get("environment", "production")
        deployment = {"url": self._api_url(repo, f"/deployments/{did}"), "id": did, "node_id": f"DE_{did}",
                      "sha": ref if SHA_RE.fullmatch(ref) else uuid.uuid5(uuid.NAMESPACE_URL, ref).hex.ljust(40, "0")[:40],
                      "ref": ref, "task": body.get("task", "deploy"), "payload": body.get("payload", {}),
                      "original_environment": environment, "environment": environment,
                      "description": body.get("description"), "creator": self._user(), "created_at": stamp,
                      "updated_at": stamp, "statuses_url": self._api_url(repo, f"/deployments/{did}/statuses"),
                      "repository_url": self._api_url(repo),
                      "transient_environment": bool(body.get("transient_environment", False)),
                      "production_environment": bool(body.get("production_environment", environment == "production"))}
        repo.deployments[did] = deployment
        repo.deployment_statuses[did] = []
        return 201, deployment, {}

    def _op_repos_create_deployment_status(self, repo: _Repo, params, body, query):
        did = int(params["deployment_id"])
        deployment = repo.deployments.get(did)
        if deployment is None:
            raise GitHubError(404, "Not Found")
        status = self._deployment_status_obj(repo, deployment, body)
        repo.deployment_statuses[did].append(status)
        deployment["updated_at"] = status["created_at"]
        if body["state"] == "success" and body.get("auto_inactive", True):
            # GitHub: earlier successful deployments to the same non-transient, non-production
            # environment get an `inactive` status.
            for other in repo.deployments.values():
                history = repo.deployment_statuses.get(other["id"]) or []
                if (other["id"] != did and other["environment"] == deployment["environment"]
                        and not other["transient_environment"] and not other["production_environment"]
                        and history and history[-1]["state"] == "success"):
                    history.append(self._deployment_status_obj(repo, other, {"state": "inactive", "description": "superseded"}))
        return 201, status, {}

    def _comment_obj(self, repo: _Repo, cid: int, issue_number: int, body: str, created: str, updated: str) -> dict:
        return {"id": cid, "node_id": f"IC_{cid}", "url": self._api_url(repo, f"/issues/comments/{cid}"), "body": body,
                "html_url": self._html_url(repo, f"/pull/{issue_number}#issuecomment-{cid}"),
                "issue_url": self._api_url(repo, f"/issues/{issue_number}"), "user": self._user(),
                "created_at": created, "updated_at": updated, "author_association": "NONE", "issue_number": issue_number}

    def _op_issues_create_comment(self, repo: _Repo, params, body, query):
        number = int(params["issue_number"])
        if len(body["body"]) > 65536:
            raise GitHubError(422, "Validation Failed", [{"resource": "IssueComment", "field": "body", "code": "custom",
                                                          "message": "body is too long (maximum is 65536 characters)"}])
        cid, stamp = next(self._ids), _now()
        comment = self._comment_obj(repo, cid, number, body["body"], stamp, stamp)
        repo.comments[cid] = comment
        return 201, _public(comment), {}

    def _op_issues_update_comment(self, repo: _Repo, params, body, query):
        comment = repo.comments.get(int(params["comment_id"]))
        if comment is None:
            raise GitHubError(404, "Not Found")
        if len(body["body"]) > 65536:
            raise GitHubError(422, "Validation Failed", [{"resource": "IssueComment", "field": "body", "code": "custom",
                                                          "message": "body is too long (maximum is 65536 characters)"}])
        comment.update(body=body["body"], updated_at=_now())
        return 200, _public(comment), {}

    def _op_issues_list_comments(self, repo: _Repo, params, body, query):
        number = int(params["issue_number"])
        found = [_public(c) for c in sorted(repo.comments.values(), key=lambda c: c["id"]) if c["issue_number"] == number]
        return 200, _page(found, query), {}

    def _op_pulls_list_files(self, repo: _Repo, params, body, query):
        pull = repo.pulls.get(int(params["pull_number"]))
        if pull is None:
            raise GitHubError(404, "Not Found")
        return 200, _page(pull["files"], query), {}


def _public(comment: dict) -> dict:
    return {k: v for k, v in comment.items() if k != "issue_number"}


def _page(items: list, query) -> list:
    page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 30)), 100)
    return items[(page - 1) * per_page: page * per_page]


def _json_or_none(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _schema_errors(exc, resource: str) -> list[dict]:
    """openapi-core's schema errors in GitHub's 422 `errors` shape."""
    out = []
    for error in getattr(exc.__cause__, "schema_errors", None) or []:
        field_path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            out.append({"resource": resource, "field": ".".join(filter(None, [field_path, *missing])), "code": "missing_field",
                        "message": error.message})
        else:
            out.append({"resource": resource, "field": field_path, "code": "invalid", "message": error.message})
    return out or [{"resource": resource, "code": "invalid", "message": str(exc)}]
