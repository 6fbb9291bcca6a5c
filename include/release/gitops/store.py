"""The GitOps repository as a store: every change is one commit, pushed or nothing.

A change is a function applied to a fresh checkout of the branch tip. If another writer
pushed first, the change is re-applied on the new tip and pushed again (bounded, with
jittered backoff), so concurrent promotions never overwrite each other and never need
a merge. A change that raises, or a push that finally fails, leaves the remote as it was:
the checkout is a throwaway clone.

A remote that cannot be reached (connection refused or reset, DNS, a 5xx from the Git host,
a repository path that is gone for a while) is tried again, each clone, fetch and push on
its own, up to `unreachable_attempts` times and never past `unreachable_seconds` from that
operation's first try; then the store fails naming the remote (never a password) and
nothing is written. Refusals that trying again cannot cure (authentication, a protected
branch, a repository that does not exist on the host) fail at once.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # GitPython costs ~80 ms to import: only writers pay it, not DAG parsing
    import git

log = logging.getLogger(__name__)

# The credential helper reads the secret from the environment of the git process, so it
# never appears in a command line, a remote URL, .git/config or an error message.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && echo "username=$RELEASE_GIT_USERNAME" && echo "password=$RELEASE_GIT_PASSWORD"; }; f'
)
# Markers git prints when someone else moved the branch between our fetch and our push.
_CONFLICT_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref", "cannot lock ref", "stale info")
# What git prints when the remote could not be reached, as opposed to refusing us.
_UNREACHABLE = re.compile(
    r"could not read from remote repository|does not appear to be a git repository|failed to connect|couldn't connect"
    r"|could not resolve host|temporary failure in name resolution|connection (refused|reset|timed out)"
    r"|network is unreachable|no route to host|operation timed out|operation too slow|early eof|unexpected disconnect"
    r"|the remote end hung up unexpectedly|rpc failed|returned error: 5\d\d|empty reply from server|recv failure"
    r"|ssl_error_syscall|gnutls_handshake",
    re.IGNORECASE)
# ...and what says the remote was reached and said no: trying again cannot help.
_REFUSED = re.compile(
    r"authentication failed|permission denied|host key verification failed|returned error: 40[0-9]|not found",
    re.IGNORECASE)

T = TypeVar("T")


class GitOpsError(Exception):
    """The GitOps repository could not be read or written."""


class PushConflict(GitOpsError):
    """Every attempt lost the race to another writer."""


class RemoteUnreachable(GitOpsError):
    """The remote could not be reached within the store's bound (attempts and seconds)."""


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the secret, even in a traceback's locals
        return f"Credentials(username={self.username!r}, password='***')"


@dataclass(frozen=True)
class CommitResult:
    sha: str | None  # None: the change needed no commit
    attempts: int
    message: str | None


# A change edits the checked-out tree and returns the commit message, or None when
# there is nothing to do.
Change = Callable[[Path], "str | None"]


class GitOpsStore:
    def __init__(
        self,
        url: str,
        branch: str = "main",
        *,
        committer: Author = Author("Release Platform", "release-platform@localhost"),
        credentials: Credentials | None = None,
        max_attempts: int = 15,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 2.0,
        serialize_locally: bool = True,
        lock_timeout_seconds: float = 120.0,
        unreachable_attempts: int = 6,
        unreachable_seconds: float = 30.0,
        unreachable_backoff_seconds: float = 0.5,
    ):
        self.url = url
        self.branch = branch
        self.committer = committer
        self._credentials = credentials
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.serialize_locally = serialize_locally
        self.lock_timeout_seconds = lock_timeout_seconds
        # An unreachable remote: each clone, fetch or push is tried at most this many times, and
        # never again once this many seconds have passed since its first try; the waits between
        # tries double from unreachable_backoff_seconds (jittered, at most 8 s each).
        self.unreachable_attempts = unreachable_attempts
        self.unreachable_seconds = unreachable_seconds
        self.unreachable_backoff_seconds = unreachable_backoff_seconds

    @property
    def remote(self) -> str:
        """The remote's URL as it may be shown: any password in it replaced by ***."""
        return _without_password(self.url)

    def __repr__(self) -> str:
        return f"GitOpsStore({self.remote!r}, branch={self.branch!r})"

    def _scrub(self, text: str) -> str:
        """`text` (git's stderr) without the URL's password or the push token."""
        secrets = [urlsplit(self.url).password or "", self._credentials.password if self._credentials else ""]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    # -- plumbing ---------------------------------------------------------------------
    def _env(self, author: Author | None = None) -> dict[str, str]:
        author = author or self.committer
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": self.committer.name,
            "GIT_COMMITTER_EMAIL": self.committer.email,
        }
        if self._credentials:
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": _CREDENTIAL_HELPER,
                "RELEASE_GIT_USERNAME": self._credentials.username,
                "RELEASE_GIT_PASSWORD": self._credentials.password,
            }
        return env

    def _reaching(self, what: str, operation: Callable[[], T], written: str = "nothing was written") -> T:
        """Run a git operation that talks to the remote, trying again while it is unreachable."""
        import git
        from tenacity import (
            RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential_jitter,
        )

        def unreachable(exc: BaseException) -> bool:
            text = f"{getattr(exc, 'stderr', '') or ''}\n{getattr(exc, 'stdout', '') or ''}"
            return isinstance(exc, git.GitCommandError) and bool(_UNREACHABLE.search(text)) and not _REFUSED.search(text)

        def waiting(state: RetryCallState) -> None:
            log.warning("GitOps remote %s unreachable (%s, try %d of %d): %s; trying again in %.1fs", self.remote, what,
                        state.attempt_number, self.unreachable_attempts,
                        self._scrub(_stderr(state.outcome.exception())), state.upcoming_sleep)

        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.unreachable_attempts)) | stop_before_delay(self.unreachable_seconds),
            wait=wait_exponential_jitter(initial=self.unreachable_backoff_seconds, max=8.0,
                                         jitter=self.unreachable_backoff_seconds),
            retry=retry_if_exception(unreachable), before_sleep=waiting, reraise=True)
        try:
            return retrying(operation)
        except git.GitCommandError as exc:
            if not unreachable(exc):
                raise
            tries = retrying.statistics.get("attempt_number", 1)
            raise RemoteUnreachable(
                f"GitOps remote {self.remote} unreachable: {what} failed {tries} time{'s' if tries != 1 else ''} over "
                f"{time.monotonic() - started:.1f}s (the store tries {self.unreachable_attempts} times within "
                f"{self.unreachable_seconds:g}s); {written}. Last error: {self._scrub(_stderr(exc))}") from None

    @contextmanager
    def _clone(self) -> Iterator[git.Repo]:
        import git

        tmp = tempfile.mkdtemp(prefix="gitops-")
        work = Path(tmp) / "repo"

        def clone() -> git.Repo:
            shutil.rmtree(work, ignore_errors=True)  # what a cut-off try left behind
            return git.Repo.clone_from(self.url, work, branch=self.branch, single_branch=True, env=self._env())

        try:
            try:
                repo = self._reaching("clone", clone)
            except git.GitCommandError as exc:
                raise GitOpsError(
                    f"cannot clone {self.remote} (branch {self.branch}): {self._scrub(_stderr(exc))}") from None
            repo.git.update_environment(**self._env())
            yield repo
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def checkout(self) -> Iterator[Path]:
        """A throwaway checkout of the branch tip, for reading."""
        with self._clone() as repo:
            yield Path(repo.working_tree_dir)

    def read(self, path: str) -> str | None:
        with self.checkout() as tree:
            f = tree / path
            return f.read_text(encoding="utf-8") if f.exists() else None

    @contextmanager
    def _local_turn(self) -> Iterator[None]:
        """Writers on one host take turns instead of racing.

        Correctness never depends on this lock (the push retry does that, across hosts
        too); it only saves the wasted attempts of writers that would lose the race
        anyway. If the lock is not had in time, the writer goes ahead and races.
        """
        if not self.serialize_locally:
            yield
            return
        import hashlib

        from filelock import FileLock, Timeout

        key = hashlib.sha256(f"{self.url}\0{self.branch}".encode()).hexdigest()[:16]
        lock = FileLock(Path(tempfile.gettempdir()) / f"release-gitops-{key}.lock")
        try:
            lock.acquire(timeout=self.lock_timeout_seconds)
        except Timeout:
            log.warning("no local turn for %s within %ss; racing instead", self.url, self.lock_timeout_seconds)
            yield
            return
        try:
            yield
        finally:
            lock.release()

    # -- the one way to write ---------------------------------------------------------
    def change(self, apply: Change, *, author: Author | None = None) -> CommitResult:
        """Apply `apply` to the branch tip, commit and push; retry on a lost race."""
        import git

        with self._clone() as repo, self._local_turn():
            tree = Path(repo.working_tree_dir)
            last_error = ""
            pushed: tuple[str, str] | None = None  # the commit of the last push that did not succeed, its message
            for attempt in range(1, self.max_attempts + 1):
                # The clone may be stale by the time this writer's turn came.
                try:
                    self._reaching("fetch", lambda: repo.git.fetch("origin", self.branch))
                except git.GitCommandError as exc:
                    raise GitOpsError(f"cannot fetch {self.remote}@{self.branch}; nothing was written: "
                                      f"{self._scrub(_stderr(exc))}") from None
                if pushed and repo.is_ancestor(pushed[0], f"origin/{self.branch}"):
                    # A push whose answer was lost (the connection dropped) had landed after all.
                    log.info("pushed %s to %s@%s (attempt %d)", pushed[0][:12], self.remote, self.branch, attempt - 1)
                    return CommitResult(pushed[0], attempt - 1, pushed[1])
                repo.git.reset("--hard", f"origin/{self.branch}")
                repo.git.clean("-fdx")
                message = apply(tree)
                if message is None:
                    return CommitResult(None, attempt, None)
                repo.git.add("--all")
                if not repo.git.status("--porcelain"):
                    return CommitResult(None, attempt, message)
                with repo.git.custom_environment(**self._env(author)):
                    repo.git.commit("--quiet", "--no-verify", "-m", message)
                sha = repo.head.commit.hexsha
                ok, last_error = self._push(repo)
                if ok:
                    log.info("pushed %s to %s@%s (attempt %d)", sha[:12], self.remote, self.branch, attempt)
                    return CommitResult(sha, attempt, message)
                pushed = (sha, message)
                log.info("push attempt %d lost the race: %s", attempt, last_error)
                self._sleep(attempt)
            raise PushConflict(
                f"gave up after {self.max_attempts} attempts to push to {self.remote}@{self.branch}; "
                f"nothing was written. Last error: {last_error}"
            )

    def _push(self, repo: git.Repo) -> tuple[bool, str]:
        import git

        try:
            self._reaching("push", lambda: repo.git.push("--porcelain", "origin", f"HEAD:refs/heads/{self.branch}"),
                           written="the commit was not pushed (a push is whole or nothing: nothing is half-written)")
            return True, ""
        except git.GitCommandError as exc:
            text = f"{exc.stdout or ''}\n{exc.stderr or ''}"
            if any(marker in text for marker in _CONFLICT_MARKERS):
                return False, self._scrub(_stderr(exc) or text.strip())
            raise GitOpsError(
                f"push to {self.remote}@{self.branch} failed; nothing was written: {self._scrub(_stderr(exc))}") from None

    def _sleep(self, attempt: int) -> None:
        # Full jitter: writers that collided once should not collide again in lockstep.
        cap = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        time.sleep(random.uniform(0, cap))


def _stderr(exc: git.GitCommandError) -> str:
    return " ".join(str(exc.stderr or "").replace("stderr:", "").split()).strip("'\" ")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# -- creating the local default repository ----------------------------------------------


def local_repo_url(path: Path) -> str:
    return path.resolve().as_uri()


def create_bare_repo(path: Path, template: Path, branch: str = "main", prepare: Change | None = None) -> bool:
    """Create a bare repository at `path` seeded from `template`; False if it exists.

    `prepare` runs on the seeded tree before the first commit (e.g. to generate the
    umbrella charts), so the first commit is already consistent.
    """
    import git

    if (path / "HEAD").exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="gitops-init-", dir=path.parent))
    try:
        bare = staging / "repo.git"
        git.Repo.init(bare, bare=True, initial_branch=branch)
        work = git.Repo.init(staging / "work", initial_branch=branch)
        shutil.copytree(template, work.working_tree_dir, dirs_exist_ok=True, symlinks=True)
        if prepare:
            prepare(Path(work.working_tree_dir))
        work.git.add("--all")
        env = {
            "GIT_AUTHOR_NAME": "Release Platform",
            "GIT_AUTHOR_EMAIL": "release-platform@localhost",
            "GIT_COMMITTER_NAME": "Release Platform",
            "GIT_COMMITTER_EMAIL": "release-platform@localhost",
        }
        with work.git.custom_environment(**env):
            work.git.commit("--quiet", "-m", "Create the GitOps repository from the platform template")
        work.git.push(str(bare), f"HEAD:refs/heads/{branch}")
        try:
            os.rename(bare, path)  # atomic: a half-made repository is never visible
        except OSError:
            if (path / "HEAD").exists():
                return False  # someone else created it meanwhile
            raise
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- from the platform config -------------------------------------------------------------


def default_repo_path() -> Path:
    from release.domain.config import data_dir

    return data_dir() / "gitops.git"


def store_from_config(config, **kwargs) -> GitOpsStore:
    """The store the config names; push credentials come from its Airflow connection."""
    g = config.gitops
    url = g.url or local_repo_url(default_repo_path())
    credentials = None
    if g.conn_id:
        from airflow.sdk import BaseHook  # only where a remote repository is configured

        conn = BaseHook.get_connection(g.conn_id)
        credentials = Credentials(conn.login or "git", conn.password or "")
    return GitOpsStore(url, g.branch, committer=Author(g.author.name, g.author.email), credentials=credentials, **kwargs)
