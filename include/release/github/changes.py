"""What an approver lets through: per service, the commits and merged pull requests between the
version the target environment runs and the one being promoted.

The registry records the app-repo commit every version was built from (`evidence.commit`, set
by the pipeline that deployed it first and carried along by promotions and rollbacks). GitHub's
compare API lists the commits between the two; only those touching the service's folder or
its watched paths count (a commit's files come from GitHub's commit API, asked only when the
comparison touches the service at all). A merged pull request is read from its merge or squash
commit's subject (`Merge pull request #12 from ...`, `Fix the thing (#12)`).

GitHub off, down or not knowing a commit: the approval request says the list is unavailable
and why, and the promotion goes on as before (GitHub only informs the approver).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from release.github import outbound

if TYPE_CHECKING:
    from release.domain.plan_models import PromotedItem, Promotion

MAX_COMMITS = 50      # listed per service; the rest are counted
MAX_LOOKUPS = 50      # commit lookups per service (their files decide whether a commit touches it)
MAX_PLAN_LOOKUPS = 200  # commit lookups per promotion, all services together
GITHUB_FILES_LIMIT = 300  # a comparison lists at most this many files: a full list may be cut short
_MERGE = re.compile(r"Merge pull request #(\d+)\b")
_SQUASH = re.compile(r"\(#(\d+)\)\s*$")


@dataclass
class Commit:
    sha: str
    title: str
    author: str
    pr: int | None = None


@dataclass
class ServiceChanges:
    service: str
    base: str | None          # commit the target environment runs
    head: str | None          # commit of the version being promoted
    commits: list[Commit] = field(default_factory=list)
    more: int = 0             # commits in the range not shown (beyond the limits): not checked against its paths
    unavailable: str | None = None  # why there is no list

    @property
    def prs(self) -> list[int]:
        return sorted({c.pr for c in self.commits if c.pr})

    @property
    def authors(self) -> list[str]:
        return sorted({c.author for c in self.commits})


def pr_number(message: str) -> int | None:
    subject = (message or "").splitlines()[0] if message else ""
    m = _MERGE.search(subject) or _SQUASH.search(subject)
    return int(m.group(1)) if m else None


def _author(c: dict) -> str:
    login = (c.get("author") or {}).get("login")
    return login or ((c.get("commit") or {}).get("author") or {}).get("name") or "unknown"


def touches(config, service: str, paths: list[str]) -> bool:
    from release.domain.affected import AffectedIndex

    s = config.services[service]
    return bool(paths) and bool(AffectedIndex({service: (s.path, list(s.watch))}).affected(paths))


class Lookups:
    """A plan's commit lookups: each commit's files asked once, whichever services share it, and
    at most `MAX_PLAN_LOOKUPS` in all, so promoting every service stays a bounded number of calls."""

    def __init__(self, limit: int = 0):
        self.left = limit or MAX_PLAN_LOOKUPS
        self.files: dict[str, list[str] | None] = {}

    def of(self, config, sha: str) -> list[str] | None:
        """The commit's files, or None (GitHub did not say, or the budget is spent)."""
        if sha not in self.files:
            if self.left <= 0:
                return None
            self.left -= 1
            detail = outbound.call(config, "GET", f"/commits/{sha}")
            self.files[sha] = ([f.get("filename", "") for f in detail.get("files") or []]
                               if isinstance(detail, dict) else None)
        return self.files[sha]


def between(config, service: str, base: str | None, head: str | None, lookups: Lookups | None = None) -> ServiceChanges:
    """The commits touching `service` in base..head (newest last, as GitHub lists them)."""
    lookups = lookups or Lookups()
    result = ServiceChanges(service, base, head)
    if not head:
        result.unavailable = "the registry records no commit for the version being promoted"
        return result
    if not base:
        result.unavailable = "the target environment runs no version with a recorded commit (first deployment)"
        return result
    if base == head:
        return result
    compared = outbound.call(config, "GET", f"/compare/{base}...{head}", params={"per_page": 100})
    if not isinstance(compared, dict):
        result.unavailable = "GitHub did not answer the comparison"
        return result
    files = [name for f in compared.get("files") or [] for name in (f.get("previous_filename"), f.get("filename")) if name]
    if files and len(compared["files"]) < GITHUB_FILES_LIMIT and not touches(config, service, files):
        return result  # the whole range's files (GitHub listed them all) do not touch the service
    listed = compared.get("commits") or []
    # Commits GitHub did not list on this page, or that are not looked up: counted, not shown.
    result.more = max(0, int(compared.get("total_commits") or len(listed)) - len(listed))
    if len(listed) > MAX_LOOKUPS:
        result.more += len(listed) - MAX_LOOKUPS
        listed = listed[-MAX_LOOKUPS:]  # the newest
    for c in listed:
        changed = lookups.of(config, c["sha"])
        if changed is None:
            result.more += 1  # not known to touch the service or not: counted, not shown
            continue
        if not touches(config, service, changed):
            continue
        message = (c.get("commit") or {}).get("message") or ""
        result.commits.append(Commit(c["sha"], message.splitlines()[0][:120] if message else "", _author(c),
                                     pr_number(message)))
    if len(result.commits) > MAX_COMMITS:
        result.more += len(result.commits) - MAX_COMMITS
        result.commits = result.commits[-MAX_COMMITS:]
    return result


def for_plan(config, items: Iterable[PromotedItem]) -> list[ServiceChanges]:
    """Per promoted item: what changed between what `to_env` runs and what is promoted."""
    out, lookups = [], Lookups()
    for item in items:
        head = item.evidence.get("commit") if isinstance(item.evidence, dict) else None
        out.append(between(config, item.service, item.replaces_commit, head, lookups))
    return out


def markdown(changes: list[ServiceChanges], repository: str) -> list[str]:
    """Lines for the approval request's body."""
    url = f"https://github.com/{repository}"
    lines = ["", "**What is being approved** (commits touching each service since the version it replaces):"]
    for ch in changes:
        if ch.unavailable:
            lines.append(f"- **{ch.service}**: list unavailable: {ch.unavailable}")
            continue
        if not ch.commits and not ch.more:
            lines.append(f"- **{ch.service}**: no commit touches it between `{(ch.base or '')[:12]}` and "
                         f"`{(ch.head or '')[:12]}`")
            continue
        prs = ", ".join(f"[#{n}]({url}/pull/{n})" for n in ch.prs) or "none"
        lines.append(f"- **{ch.service}**: {len(ch.commits)} commit(s) by {', '.join(ch.authors) or 'nobody'}; "
                     f"merged PRs: {prs} ([compare]({url}/compare/{ch.base}...{ch.head}))")
        for c in ch.commits:
            lines.append(f"  - [`{c.sha[:12]}`]({url}/commit/{c.sha}) {c.title} ({c.author}"
                         + (f", #{c.pr}" if c.pr else "") + ")")
        if ch.more:
            lines.append(f"  - and {ch.more} more commit(s) in the range, not listed here: see the comparison")
    return lines


def summary(changes: list[ServiceChanges]) -> str:
    """One line for the run's note: per service, how many commits, which PRs, whose."""
    parts = []
    for ch in changes:
        if ch.unavailable:
            parts.append(f"{ch.service}: changes unavailable")
        else:
            n = f"{len(ch.commits)}{'+' if ch.more else ''}"
            prs = f", PRs {', '.join(f'#{p}' for p in ch.prs)}" if ch.prs else ""
            parts.append(f"{ch.service}: {n} commit(s){prs}" + (f" by {', '.join(ch.authors)}" if ch.authors else ""))
    return "changes: " + "; ".join(parts)


def describe_changes(config, plan: Promotion) -> Promotion:
    """With GitHub on: add the per-service changes to the plan's approval body and its one-line
    summary as `changes` (for the run's note). Never fails the plan."""
    if outbound.client(config) is None:
        return plan
    import logging

    try:
        found = for_plan(config, plan.items)
    except Exception:  # noqa: BLE001 - the approver still gets the request, without the list
        logging.getLogger(__name__).exception("GitHub: the changes being promoted could not be listed")
        return plan
    return plan.model_copy(update={"body": "\n".join([plan.body, *markdown(found, config.github.repository)]),
                                   "changes": summary(found)})
