"""GitHub webhooks in: a signed push or pull request starts `release-dispatch`.

POST /release/webhooks/github (this router, in the one app of release.web):

- the body is at most 25 MB (413), signed: X-Hub-Signature-256 is the HMAC-SHA256 of the raw
  body with the secret in the Airflow connection `github.webhook_secret_conn_id`, compared in
  constant time (401 when missing or wrong); the secret is never logged;
- the body is JSON (400 for another content type or malformed JSON), with X-GitHub-Event and
  X-GitHub-Delivery;
- `ping` is answered; `push` to a branch (with commits) or of a tag (a tag is a release of every
  service) and `pull_request` opened / synchronize / reopened / ready_for_review on the configured
  repository trigger release-dispatch with before, after, ref, pr and changed_paths, and for a
  push the commit's time (`head_commit.timestamp`, DORA's change lead time starts there; a pull
  request's payload does not carry its head commit, so it has none); anything
  else (other events, actions, deletions, draft pull requests, other repositories) is 202 with a
  one-line reason and triggers nothing;
- the run id is derived from X-GitHub-Delivery, so a redelivery, in this process or another,
  after a restart too, triggers nothing new and says so;
- a push whose commit list may be incomplete (no paths listed, 20 or more commits, 3,000 or
  more files, forced, a new branch) asks GitHub's compare API for the changed files; a pull
  request's files come from GitHub's pull request files API. When GitHub cannot answer, the
  delivery fails with 502 and nothing is triggered: GitHub shows it, and it can be redelivered.

Nothing is triggered before every check has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)

DISPATCH_DAG_ID = "release-dispatch"
MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
PR_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
INCOMPLETE_COMMITS = 20  # GitHub's push payload may list only this many commits
INCOMPLETE_FILES = 3000  # ... and this many files
ZERO_SHA = "0" * 40
DELIVERY_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
RUN_ID_PREFIX = "github__"

router = APIRouter()


class _Payload(BaseModel):
    # Only the keys the receiver reads, checked; GitHub's other keys pass untouched.
    model_config = ConfigDict(extra="ignore")


class _Repository(_Payload):
    full_name: str
    default_branch: str | None = None


class _Commit(_Payload):
    added: list[str] = []
    removed: list[str] = []
    modified: list[str] = []


class _HeadCommit(_Payload):
    id: str
    timestamp: str | None = None


class _Account(_Payload):
    name: str | None = None
    login: str | None = None


class PushEvent(_Payload):
    ref: str
    before: str | None = None
    after: str
    created: bool = False
    deleted: bool = False
    forced: bool = False
    commits: list[_Commit] = []
    head_commit: _HeadCommit | None = None
    repository: _Repository
    pusher: _Account | None = None
    sender: _Account | None = None


class _Head(_Payload):
    sha: str


class _PullRequest(_Payload):
    draft: bool = False
    head: _Head
    user: _Account | None = None


class PullRequestEvent(_Payload):
    action: str
    number: int
    before: str | None = None
    pull_request: _PullRequest
    repository: _Repository


def _parse(model: type[_Payload], payload: dict):
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise WebhookRefused(400, f"{model.__name__} payload: {where}: {first['msg']}") from None


class WebhookRefused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Trigger:
    """What a delivery asks release-dispatch to do."""

    event: str
    before: str | None
    after: str
    ref: str
    pr: int | None
    changed_paths: list[str]
    summary: str
    notes: list[str] = field(default_factory=list)
    commit_time: str | None = None  # when `after` was committed, where the payload says

    @property
    def conf(self) -> dict:
        conf = {"before": self.before, "after": self.after, "ref": self.ref, "pr": self.pr, "changed_paths": self.changed_paths}
        return {**conf, "commit_time": self.commit_time} if self.commit_time else conf


def run_id_for(delivery: str) -> str:
    """The release-dispatch run a delivery starts: the same delivery always names the same run."""
    return f"{RUN_ID_PREFIX}{delivery}"


def signature(secret: str, body: bytes) -> str:
    """X-Hub-Signature-256 as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _reply(status: int, state: str, detail: str, **extra) -> JSONResponse:
    return JSONResponse({"status": state, "detail": detail, **extra}, status_code=status)


@router.post("")
async def receive(request: Request) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    try:
        body = await _read_body(request)
        return await run_in_threadpool(handle, dict(request.headers), body)
    except WebhookRefused as refused:
        log.info("GitHub webhook refused (%d): %s", refused.status, refused.detail)
        return _reply(refused.status, "refused", refused.detail)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise WebhookRefused(413, f"body of {int(declared)} bytes is over GitHub's limit of {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRefused(413, f"body is over GitHub's limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def handle(headers: dict[str, str], body: bytes, config=None, client=None) -> JSONResponse:
    """One delivery, from its headers (lower-case names) and raw body; raises WebhookRefused."""
    from release.domain.config import load_config

    config = config or load_config()
    if config.github is None:
        raise WebhookRefused(404, "GitHub integration is off: the platform config has no github: section")
    _verify(headers.get("x-hub-signature-256"), body, config.github.webhook_secret_conn_id)

    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise WebhookRefused(400, f"content type {content_type or '(none)'!r} is not application/json: "
                                  "set the webhook's content type to application/json")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRefused(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "body is not a JSON object")
    event = headers.get("x-github-event", "")
    delivery = headers.get("x-github-delivery", "")
    if not re.fullmatch(r"^[a-z_]{1,64}$", event):
        raise WebhookRefused(400, "X-GitHub-Event is missing or not an event name")
    if not DELIVERY_RE.fullmatch(delivery):
        raise WebhookRefused(400, "X-GitHub-Delivery is missing or not a delivery id (letters, digits, '-')")

    if event == "ping":
        return _reply(200, "pong", f"pong: hook {payload.get('hook_id', '?')} reaches the release platform")
    repository = payload.get("repository")
    repository = repository.get("full_name") if isinstance(repository, dict) else None
    if event not in ("push", "pull_request"):
        return _reply(202, "ignored", f"event {event!r} is not handled (push, pull_request, ping)")
    if not isinstance(repository, str) or repository.lower() != config.github.repository.lower():
        return _reply(202, "ignored", f"repository {repository!r} is not the configured {config.github.repository!r}")

    run_id = run_id_for(delivery)
    if (existing := _existing_run(run_id)) is not None:
        return _reply(200, "duplicate", f"delivery {delivery} already triggered {DISPATCH_DAG_ID} run {run_id}; "
                                        "nothing new triggered", run_id=run_id, dag_id=DISPATCH_DAG_ID, run_state=existing)
    trigger = (_push if event == "push" else _pull_request)(payload, config, client)
    if isinstance(trigger, str):
        return _reply(202, "ignored", trigger)
    return _trigger(trigger, delivery, run_id, config)


def _verify(header: str | None, body: bytes, conn_id: str) -> None:
    """Constant-time check of the signature; the secret stays in this function."""
    secret = _webhook_secret(conn_id)
    if not header:
        raise WebhookRefused(401, "X-Hub-Signature-256 is missing: the webhook needs a secret")
    if not hmac.compare_digest(header.strip().encode(), signature(secret, body).encode()):
        raise WebhookRefused(401, "X-Hub-Signature-256 does not match the body signed with the webhook secret")


def _webhook_secret(conn_id: str) -> str:
    try:
        from airflow.models.connection import Connection

        secret = Connection.get_connection_from_secrets(conn_id).password
    except Exception as exc:  # noqa: BLE001 - no connection: no delivery can be trusted
        raise WebhookRefused(503, f"the webhook secret's Airflow connection {conn_id!r} is unusable "
                                  f"({type(exc).__name__})") from None
    if not secret:
        raise WebhookRefused(503, f"the Airflow connection {conn_id!r} has no password (the webhook secret)")
    return secret


def _existing_run(run_id: str) -> str | None:
    from airflow.models.dagrun import DagRun

    found = DagRun.find_duplicate(dag_id=DISPATCH_DAG_ID, run_id=run_id)
    return str(found.state) if found is not None else None


def _push(payload: dict, config, client) -> Trigger | str:
    event = _parse(PushEvent, payload)
    ref, after = event.ref, event.after
    if event.deleted or after == ZERO_SHA:
        return f"{ref} was deleted: nothing to build"
    pusher = (event.pusher and event.pusher.name) or (event.sender and event.sender.login) or "someone"
    before = None if event.before in (None, ZERO_SHA) else event.before
    # The built commit's time, only when head_commit is that commit (release-dispatch checks its form).
    head = event.head_commit
    commit_time = head.timestamp if head is not None and head.id == after else None
    if ref.startswith("refs/tags/"):
        # A tag is a release: every service is built and shipped at the tagged commit.
        paths = [s.path for s in config.services.values()]
        return Trigger("push", before, after, ref, None, paths, f"tag {ref.removeprefix('refs/tags/')} by {pusher}",
                       ["a tag releases every service"], commit_time)
    if not ref.startswith("refs/heads/"):
        return f"{ref} is neither a branch nor a tag"

    commits = event.commits
    listed: list[str] = []
    for commit in commits:
        for path in (*commit.added, *commit.removed, *commit.modified):
            if path not in listed:
                listed.append(path)
    reasons = [why for why, applies in (
        ("a new branch", event.created or before is None),
        ("a forced push", event.forced),
        ("no changed paths listed", not listed),
        (f"{len(commits)} commits (GitHub lists at most {INCOMPLETE_COMMITS})", len(commits) >= INCOMPLETE_COMMITS),
        (f"{len(listed)}+ files (GitHub lists at most {INCOMPLETE_FILES})", len(listed) >= INCOMPLETE_FILES),
    ) if applies]
    trigger = Trigger("push", before, after, ref, None, listed, f"push to {ref.removeprefix('refs/heads/')} by {pusher}",
                      commit_time=commit_time)
    if reasons:
        base = before or event.repository.default_branch or "main"
        trigger.changed_paths, note = _compare(config, client, base, after)
        trigger.notes.append(f"changed files from GitHub's compare {base[:12]}...{after[:12]} ({', '.join(reasons)})")
        if note:
            trigger.notes.append(note)
    return trigger


def _compare(config, client, base: str, head: str) -> tuple[list[str], str | None]:
    client = client or _client(config)
    found = client.changed_files(base, head)
    if not found.ok:
        raise WebhookRefused(502, f"could not ask GitHub which files changed: {found.error}; redeliver once GitHub answers")
    paths = found.data["paths"]
    if found.data["complete"]:
        return paths, None
    # GitHub lists at most 300 files of a comparison: rather than miss a service, rebuild every one.
    extra = [s.path for s in config.services.values() if s.path not in paths]
    return paths + extra, "GitHub's file list is cut at 300: every service is rebuilt"


def _pull_request(payload: dict, config, client) -> Trigger | str:
    action = payload.get("action")
    if action not in PR_ACTIONS:
        return f"pull_request action {str(action)[:40]!r} is not handled ({', '.join(PR_ACTIONS)})"
    event = _parse(PullRequestEvent, payload)
    number, pr = event.number, event.pull_request
    if pr.draft and action != "ready_for_review":
        return f"pull request #{number} is a draft: it is built when marked ready for review"
    before = event.before if action == "synchronize" else None
    client = client or _client(config)
    files = client.pull_files(number)
    if not files.ok:
        raise WebhookRefused(502, f"could not ask GitHub for the files of #{number}: {files.error}; redeliver once GitHub answers")
    paths: list[str] = []
    for f in files.data:
        for name in (f.get("previous_filename"), f.get("filename")):
            if name and name not in paths:
                paths.append(name)
    author = (pr.user and pr.user.login) or "someone"
    return Trigger("pull_request", before, pr.head.sha, f"refs/pull/{number}/head", number, paths,
                   f"pull request #{number} {action} by {author}")


def _client(config):
    from release.github.client import GitHubClient

    # GitHub waits about 10 s for an answer: two tries at most, within 5 s.
    return GitHubClient.from_config(config, max_attempts=2, budget_seconds=5, timeout_seconds=4)


def _trigger(trigger: Trigger, delivery: str, run_id: str, config) -> JSONResponse:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    from release.domain.plans import plan_dispatch as plan
    from release.domain.plans import ParamError

    try:
        planned = plan(trigger.conf, config)  # what release-dispatch would refuse, refused now
    except ParamError as exc:
        raise WebhookRefused(422, f"{trigger.summary}: {exc}") from None
    note = f"GitHub {trigger.summary} (delivery {delivery})" + "".join(f"; {n}" for n in trigger.notes)
    try:
        trigger_dag(DISPATCH_DAG_ID, triggered_by=DagRunTriggeredByType.REST_API, triggering_user_name="github",
                    run_id=run_id, conf=trigger.conf, note=note[:1000])
    except DagRunAlreadyExists:  # a redelivery racing the first delivery, in another process
        return _reply(200, "duplicate", f"delivery {delivery} already triggered {DISPATCH_DAG_ID} run {run_id}; "
                                        "nothing new triggered", run_id=run_id, dag_id=DISPATCH_DAG_ID)
    except DagNotFound:
        raise WebhookRefused(503, f"{DISPATCH_DAG_ID} is not loaded yet; redeliver once Airflow has parsed it") from None
    log.info("GitHub %s: triggered %s run %s", trigger.summary, DISPATCH_DAG_ID, run_id)
    return _reply(201, "triggered", f"{trigger.summary}: {DISPATCH_DAG_ID} run {run_id} affects "
                                    f"{', '.join(planned.services) or 'no service'}",
                  dag_id=DISPATCH_DAG_ID, run_id=run_id, conf=trigger.conf, services=planned.services, notes=trigger.notes)
