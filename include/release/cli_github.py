"""`python -m release github ...`: try the webhook receiver, see what the sandbox's GitHub holds.

    python -m release github send-test-push [--path P ...] [--url URL]   # a signed push, as GitHub sends it
    python -m release github state                                       # the sandbox stand-in's statuses, ...
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import uuid
from datetime import datetime, timezone

DEFAULT_PATHS = ["services/service-a/app/main.py"]


def add_commands(sub) -> None:
    github = sub.add_parser("github", help="GitHub integration: test the webhook receiver, the sandbox's GitHub")
    actions = github.add_subparsers(dest="action", required=True)
    push = actions.add_parser("send-test-push", help="post a push signed with the configured webhook secret to the receiver")
    push.add_argument("--url", help="the receiver; default http://localhost:$PORT/release/webhooks/github "
                                    "(PORT, else AIRFLOW__API__PORT, else 8080; or AIRFLOW__API__BASE_URL)")
    push.add_argument("--path", dest="paths", action="append", help=f"a changed path (repeat; default {DEFAULT_PATHS[0]})")
    push.add_argument("--ref", default="refs/heads/main", help="default refs/heads/main")
    push.add_argument("--before", help="commit before the push (40 hex; default random)")
    push.add_argument("--after", help="the pushed commit (40 hex; default random)")
    push.set_defaults(func=_send_test_push)
    state = actions.add_parser("state", help="what the sandbox's GitHub stand-in was sent (statuses, comments, deployments, SARIF)")
    state.add_argument("--format", choices=["table", "json"], default="table")
    state.set_defaults(func=_state)


def receiver_url() -> str:
    base = os.environ.get("AIRFLOW__API__BASE_URL")
    if not base:
        port = os.environ.get("PORT") or os.environ.get("AIRFLOW__API__PORT") or "8080"
        base = f"http://localhost:{port}"
    return base.rstrip("/") + "/release/webhooks/github"


def push_payload(repository: str, paths: list[str], ref: str = "refs/heads/main", before: str | None = None,
              after: str | None = None) -> dict:
    """A push event as GitHub sends it for one commit changing `paths` (the keys the receiver reads,
    and GitHub's shape for the rest of a commit)."""
    before = before or secrets.token_hex(20)
    after = after or hashlib.sha1(f"{before}{paths}".encode()).hexdigest()  # noqa: S324 - a commit-shaped id, not a hash of anything secret
    owner, name = repository.split("/", 1)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    person = {"name": "Release Platform", "email": "release-platform@localhost", "username": "release-platform"}
    commit = {"id": after, "tree_id": hashlib.sha1(after.encode()).hexdigest(), "distinct": True,  # noqa: S324
              "message": "Test push from python -m release github send-test-push", "timestamp": stamp,
              "url": f"https://github.com/{repository}/commit/{after}", "author": person, "committer": person,
              "added": [], "removed": [], "modified": paths}
    return {"ref": ref, "before": before, "after": after, "created": False, "deleted": False, "forced": False,
            "base_ref": None, "compare": f"https://github.com/{repository}/compare/{before[:12]}...{after[:12]}",
            "commits": [commit], "head_commit": commit,
            "repository": {"name": name, "full_name": repository, "owner": {"login": owner, "name": owner},
                           "default_branch": "main", "html_url": f"https://github.com/{repository}"},
            "pusher": {"name": person["username"], "email": person["email"]}, "sender": {"login": person["username"]}}


def webhook_secret(config) -> str:
    """The secret the receiver checks: from the config's connection when this process sees one,
    else the running sandbox's (a `make run` in another terminal)."""
    from sandbox.github.mode import read_info

    conn_id = config.github.webhook_secret_conn_id
    if not os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") and (info := read_info()) is not None:
        return info["webhook_secret"]
    from airflow.models.connection import Connection

    try:
        secret = Connection.get_connection_from_secrets(conn_id).password
    except Exception as exc:  # noqa: BLE001 - said in one line below
        raise LookupError(f"no webhook secret: the Airflow connection {conn_id!r} is unusable ({type(exc).__name__}) "
                          "and no sandbox is running") from None
    if not secret:
        raise LookupError(f"the Airflow connection {conn_id!r} has no password (the webhook secret)")
    return secret


def send_test_push(config, url: str, paths: list[str], *, ref: str = "refs/heads/main", before: str | None = None,
                   after: str | None = None, http=None):
    """Post a signed test push to `url`; returns the HTTP response. `http`: an httpx client."""
    import httpx

    from release.web.github_webhooks import signature

    body = json.dumps(push_payload(config.github.repository, paths, ref, before, after)).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": signature(webhook_secret(config), body), "User-Agent": "release-platform-test-push"}
    client = http or httpx.Client(timeout=30)
    return client.post(url, content=body, headers=headers)


def _send_test_push(args) -> int:
    import httpx

    from release.domain.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if config.github is None:
        print("the platform config has no github: section: the receiver is off", file=sys.stderr)
        return 1
    url = args.url or receiver_url()
    try:
        answer = send_test_push(config, url, args.paths or DEFAULT_PATHS, ref=args.ref, before=args.before, after=args.after)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"cannot reach the receiver at {url}: {exc} (is `make run` running?)", file=sys.stderr)
        return 1
    try:
        reply = answer.json()
    except ValueError:
        reply = {"detail": answer.text[:300]}
    print(f"{answer.status_code} {reply.get('status', '')}: {reply.get('detail', '')}".strip())
    return 0 if answer.is_success else 1


def _state(args) -> int:
    import httpx

    from sandbox.github.mode import read_info
    from sandbox.github.server import STATE_PATH

    info = read_info()
    if info is None:
        print("no GitHub stand-in is running (make run starts one in sandbox mode)", file=sys.stderr)
        return 1
    state = httpx.get(info["url"] + STATE_PATH, timeout=10).json()
    if args.format == "json":
        print(json.dumps(state, indent=2))
        return 0
    from tabulate import tabulate

    for repository, held in state.items():
        print(f"{repository} (GitHub stand-in {info['url']})\n")
        print(tabulate([[s["sha"][:12], s["context"], s["state"], s["description"] or "", s["target_url"] or ""]
                        for s in held["statuses"]], headers=["commit", "status context", "state", "description", "link"]))
        print()
        print(tabulate([[d["id"], d["environment"], d["ref"][:12], d["description"] or "",
                         " -> ".join(s["state"] for s in d["statuses"])] for d in held["deployments"]],
                       headers=["deployment", "environment", "ref", "description", "statuses"]))
        print()
        print(tabulate([[c["html_url"].rsplit("/", 1)[-1].split("#")[0], c["id"], c["updated_at"],
                         (c["body"] or "").splitlines()[-1][:60] if c["body"] else ""] for c in held["comments"]],
                       headers=["PR", "comment", "updated", "last line"]))
        print()
        print(tabulate([[s["id"], s["commit_sha"][:12], s["ref"], ", ".join(s["tool_names"]), s["results"]] for s in held["sarifs"]],
                       headers=["SARIF upload", "commit", "ref", "tools", "results"]))
    return 0
