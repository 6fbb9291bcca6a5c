"""The GitOps repository as a store: every change is one commit, pushed or nothing.

A change is a function applied to a fresh checkout of the branch tip. If another writer
pushed first, the change is re-applied on the new tip and pushed again (bounded, with
jittered backoff), so concurrent promotions never overwrite each other and never need
a merge. A change that raises, or a push that finally fails, leaves the remote as it was:
the checkout is a throwaway clone.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

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


class GitOpsError(Exception):
    """The GitOps repository could not be read or written."""


class PushConflict(GitOpsError):
    """Every attempt lost the race to another writer."""


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

    def __repr__(self) -> str:
        return f"GitOpsStore({self.url!r}, branch={self.branch!r})"

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

    @contextmanager
    def _clone(self) -> Iterator[git.Repo]:
        import git

        tmp = tempfile.mkdtemp(prefix="gitops-")
        try:
            try:
                repo = git.Repo.clone_from(
                    self.url, tmp, branch=self.branch, single_branch=True, env=self._env()
                )
            except git.GitCommandError as exc:
                raise GitOpsError(f"cannot clone {self.url} (branch {self.branch}): {_stderr(exc)}") from None
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
        with self._clone() as repo, self._local_turn():
            tree = Path(repo.working_tree_dir)
            last_error = ""
            for attempt in range(1, self.max_attempts + 1):
                # The clone may be stale by the time this writer's turn came.
                repo.git.fetch("origin", self.branch)
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
                ok, last_error = self._push(repo)
                if ok:
                    sha = repo.head.commit.hexsha
                    log.info("pushed %s to %s@%s (attempt %d)", sha[:12], self.url, self.branch, attempt)
                    return CommitResult(sha, attempt, message)
                log.info("push attempt %d lost the race: %s", attempt, last_error)
                self._sleep(attempt)
            raise PushConflict(
                f"gave up after {self.max_attempts} attempts to push to {self.url}@{self.branch}; "
                f"nothing was written. Last error: {last_error}"
            )

    def _push(self, repo: git.Repo) -> tuple[bool, str]:
        import git

        try:
            repo.git.push("--porcelain", "origin", f"HEAD:refs/heads/{self.branch}")
            return True, ""
        except git.GitCommandError as exc:
            text = f"{exc.stdout or ''}\n{exc.stderr or ''}"
            if any(marker in text for marker in _CONFLICT_MARKERS):
                return False, _stderr(exc) or text.strip()
            raise GitOpsError(f"push to {self.url}@{self.branch} failed; nothing was written: {_stderr(exc)}") from None

    def _sleep(self, attempt: int) -> None:
        # Full jitter: writers that collided once should not collide again in lockstep.
        cap = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        time.sleep(random.uniform(0, cap))


def _stderr(exc: git.GitCommandError) -> str:
    return " ".join(str(exc.stderr or "").replace("stderr:", "").split()).strip("'\" ")


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
    from release.config import data_dir

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


def ensure_local_repo(config) -> Path | None:
    """Create the default local GitOps repository from the template, once.

    Returns its path when it was created, None when it existed or a remote is configured.
    """
    if config.gitops.url:
        return None
    from release.config import GITOPS_TEMPLATE_DIR
    from release.registry import RegistryState
    from release import umbrella

    def prepare(tree: Path) -> None:
        state = RegistryState.from_tree(tree)
        state.write(tree, config.env_order)
        umbrella.write_all(tree, config, state)

    path = default_repo_path()
    return path if create_bare_repo(path, GITOPS_TEMPLATE_DIR, config.gitops.branch, prepare) else None
