"""The GitOps store when its remote fails: a real bare repository that goes away and comes back, a
port nobody listens on, a push whose answer is lost. Tried again within the store's bound, then a
clear failure naming the remote (never a password); never a half-written or doubled commit.

A lost race with another writer (PushConflict) is covered in test_gitops_store.py
(test_lost_race_is_retried_on_the_new_head: the other writer's commit is kept, ours lands on top).
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import git
import pytest

from release.gitops.store import Credentials, GitOpsError, GitOpsStore, RemoteUnreachable
from tests.helpers import head


class Outage:
    """The remote's repository moved away (as when its volume is unmounted) and put back when the
    store has reported `tries` failed tries, reacting to the store's own retry log."""

    def __init__(self, url: str):
        self.path = Path(url.removeprefix("file://"))
        self.away = self.path.with_name(self.path.name + ".away")
        self.reported: list[str] = []
        self.back_after: int | None = None

    def begin(self) -> None:
        self.path.rename(self.away)

    def end(self) -> None:
        if self.away.exists():
            self.away.rename(self.path)

    # a logging handler: the store logs each failed try it will try again
    def handle(self, record: logging.LogRecord) -> None:
        if "unreachable" in record.getMessage():
            self.reported.append(record.getMessage())
            if self.back_after is not None and len(self.reported) >= self.back_after:
                self.end()


@pytest.fixture
def outage(gitops_url):
    o = Outage(gitops_url)
    handler = logging.Handler(logging.WARNING)
    handler.emit = o.handle
    logger = logging.getLogger("release.gitops.store")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield o
    logger.removeHandler(handler)
    logger.setLevel(level)
    o.end()


def quick(url: str, **kwargs) -> GitOpsStore:
    """The store with its real bound, and short waits between tries."""
    return GitOpsStore(url, "main", backoff_seconds=0.01, unreachable_backoff_seconds=0.02, **kwargs)


def commits(url: str) -> list[str]:
    return [c.message.strip() for c in git.Repo(url.removeprefix("file://")).iter_commits("main")]


def note(text: str):
    def apply(tree: Path) -> str:
        (tree / "notes.txt").write_text(text)
        return f"note {text}"
    return apply


def test_a_remote_gone_for_a_while_is_tried_again_and_the_change_lands_once(gitops_url, outage):
    before = commits(gitops_url)
    outage.begin()
    outage.back_after = 2  # two failed clones, then it is back
    result = quick(gitops_url).change(note("after the outage"))
    assert len(outage.reported) == 2 and "clone, try 1 of 6" in outage.reported[0]
    assert commits(gitops_url) == ["note after the outage", *before]
    assert result.sha == head(gitops_url) and result.attempts == 1


def test_a_remote_that_goes_away_before_the_push_gets_the_commit_when_it_is_back(gitops_url, outage):
    before = commits(gitops_url)
    outage.back_after = 1

    def apply(tree: Path) -> str:
        outage.begin()  # between our fetch and our push
        return note("pushed late")(tree)

    result = quick(gitops_url).change(apply)
    assert "push, try 1 of 6" in outage.reported[0]
    assert commits(gitops_url) == ["note pushed late", *before]  # once, whole
    assert result.sha == head(gitops_url)


def test_a_remote_gone_for_good_fails_within_the_bound_naming_it_and_writes_nothing(gitops_url, outage):
    before = head(gitops_url)
    outage.begin()
    store = quick(gitops_url, unreachable_attempts=3, unreachable_seconds=20)
    started = time.monotonic()
    with pytest.raises(RemoteUnreachable) as error:
        store.change(note("never"))
    assert time.monotonic() - started < 20
    message = str(error.value)
    assert message.startswith(f"GitOps remote {gitops_url} unreachable: clone failed 3 times over ")
    assert "(the store tries 3 times within 20s); nothing was written" in message
    assert "does not appear to be a git repository" in message
    assert len(outage.reported) == 2  # tried again twice
    outage.end()
    assert head(gitops_url) == before


def test_the_time_bound_stops_trying_before_the_attempts_run_out(gitops_url, outage):
    outage.begin()
    store = quick(gitops_url, unreachable_attempts=1000, unreachable_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(RemoteUnreachable, match=r"within 0.5s\); nothing was written"):
        store.read("registry/versions.yaml")
    assert time.monotonic() - started < 5
    assert 1 <= len(outage.reported) < 100


def test_a_push_that_fails_for_good_says_the_commit_was_not_pushed(gitops_url, outage):
    before = head(gitops_url)

    def apply(tree: Path) -> str:
        outage.begin()
        return note("lost")(tree)

    with pytest.raises(RemoteUnreachable, match=r"push failed 2 times.*the commit was not pushed"):
        quick(gitops_url, unreachable_attempts=2).change(apply)
    outage.end()
    assert head(gitops_url) == before


def test_an_unreachable_remote_is_named_without_its_password(caplog):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://release-bot:url-secret-1@127.0.0.1:{port}/platform/cd.git"
    store = quick(url, credentials=Credentials("release-bot", "token-secret-2"), unreachable_attempts=2)
    caplog.set_level(logging.INFO, logger="release.gitops.store")
    with pytest.raises(RemoteUnreachable) as error:
        store.read("registry/versions.yaml")
    shown = f"{error.value}\n{caplog.text}\n{store!r}\n{store.remote}"
    assert f"GitOps remote http://release-bot:***@127.0.0.1:{port}/platform/cd.git unreachable: clone failed 2 times" in shown
    assert "url-secret-1" not in shown and "token-secret-2" not in shown


def test_a_refusal_is_not_tried_again(gitops_url, caplog):
    caplog.set_level(logging.INFO, logger="release.gitops.store")
    with pytest.raises(GitOpsError, match="cannot clone .* \\(branch no-such-branch\\): .*not found") as error:
        GitOpsStore(gitops_url, "no-such-branch").read("x")
    assert not isinstance(error.value, RemoteUnreachable)
    assert "unreachable" not in caplog.text


def test_a_push_whose_answer_was_lost_is_not_made_twice(gitops_url, monkeypatch):
    """The push reached the remote but its answer did not reach us, and meanwhile another writer
    pushed on top: the store finds its commit in the remote's history instead of applying the
    change a second time."""
    from tests.integration.test_gitops_store import competing_push

    store = quick(gitops_url)
    real_push = GitOpsStore._push
    answers = []

    def answer_lost(self, repo):
        ok, error = real_push(self, repo)
        if answers:
            return ok, error
        answers.append(ok)
        competing_push(gitops_url, "theirs.txt")
        return False, "the remote end hung up unexpectedly"

    monkeypatch.setattr(GitOpsStore, "_push", answer_lost)
    applied = []
    result = store.change(lambda tree: (applied.append(1), note("ours")(tree))[1])
    assert answers == [True] and applied == [1]
    assert commits(gitops_url)[:2] == ["competing theirs.txt", "note ours"]
    assert result.sha == git.Repo(gitops_url.removeprefix("file://")).commit("main~1").hexsha
