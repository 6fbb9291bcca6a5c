"""The read model's source: the registry at the GitOps branch's tip, cached by commit.

A page view must not clone or parse the repository. `ReleasesCache` asks the remote for the
branch's tip (`git ls-remote`, at most once per `ttl_seconds`); only when the commit is new does it
fetch into a local mirror and read the two registry files at that commit (`git cat-file`), and
only the history entries whose text changed since the last commit are parsed again: history is
appended to, and an undo or new evidence rewrites a few entries, so a new commit costs a few
entries, not the whole file. The first load parses everything, strictly, as `registry show` does.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from release.domain import registry_file
from release.domain.config import PlatformConfig
from release.gitops.store import GitOpsError, GitOpsStore
from release.domain.registry import HISTORY_FILE, VERSIONS_FILE, Deployment, HistoryEntry, RegistryState
from release.releases.model import ReleaseView

_ENTRIES = "\nentries:\n"


@dataclass
class Loaded:
    commit: str
    view: ReleaseView
    load_seconds: float
    parsed_entries: int  # history entries parsed for this commit (the rest came from the last one)


def split_history(text: str) -> list[str] | None:
    """The history file's entries as they are written (one block per `- id:` at column 0), or
    None when the text is not laid out the way the platform writes it."""
    at = text.find(_ENTRIES)
    if at < 0:
        return [] if "\nentries: []" in text or not text.strip() else None
    return _blocks(text[at + len(_ENTRIES):])


def _blocks(body: str) -> list[str] | None:
    """Entries as written, one `- ` block each (without it); None when `body` does not start with one.
    The blocks are the parsers' cache keys: a whole file and an appended tail must split alike."""
    if not body.startswith("- "):
        return None
    return body[2:].rstrip("\n").split("\n- ")


class HistoryParser:
    """History entries by the exact text of their block: unchanged blocks are not parsed again."""

    def __init__(self):
        self._known: dict[str, HistoryEntry] = {}
        self._text: str | None = None  # the last text read, and its entries
        self._entries: list[HistoryEntry] = []
        self.kept = 0

    def parse(self, text: str | None) -> tuple[list[HistoryEntry], int]:
        """The entries of `text`, and how many were parsed. After it, `kept` says how many leading
        entries are the very objects the last parse returned (the rest were appended), else 0."""
        last = self._entries
        appended = self._appended(text or "")
        entries, parsed = appended or self._parse(text)
        self.kept = len(last) if appended else 0
        self._text, self._entries = text or "", entries
        return entries, parsed

    def _appended(self, text: str) -> tuple[list[HistoryEntry], int] | None:
        """The common case, a deployment that only added entries: the last text is the start of
        this one, so only what follows it is split and parsed (no pass over the whole file)."""
        last = self._text
        if not last or not self._known or not last.endswith("\n") or len(text) <= len(last) or not text.startswith(last):
            return None
        blocks = _blocks(text[len(last):])
        if blocks is None:
            return None
        try:
            new = [_entry(block) for block in blocks]
        except Exception:  # noqa: BLE001 - the block-by-block read below, or the strict whole-file parse, says what and where
            return None
        self._known.update(zip(blocks, new))
        return self._entries + new, len(new)

    def _parse(self, text: str | None) -> tuple[list[HistoryEntry], int]:
        blocks = split_history(text or "")
        if blocks is None or not self._known:
            entries = RegistryState.parse(None, text).entries  # strict, whole file: names a broken line
            self._known = dict(zip(blocks, entries)) if blocks is not None and len(blocks) == len(entries) else {}
            return entries, len(entries)
        known, entries, parsed = {}, [], 0
        for block in blocks:
            entry = self._known.get(block)
            if entry is None:
                try:
                    entry = _entry(block)
                except Exception:  # noqa: BLE001 - the strict whole-file parse says what and where
                    self._known = {}
                    return self._parse(text)
                parsed += 1
            known[block] = entry
            entries.append(entry)
        self._known = known
        return entries, parsed


def _entry(block: str) -> HistoryEntry:
    """One history block (without its leading '- '), strictly."""
    data = yaml.load("- " + block, Loader=registry_file.StrictLoader)
    registry_file.HistoryFile.model_validate({"entries": data})
    return HistoryEntry(**data[0])


_ENVIRONMENTS = "\nenvironments:\n"
_ENV_SPLIT = re.compile(r"\n(?=  [^ ])")
_SERVICE_SPLIT = re.compile(r"\n(?=    [^ ])")


def split_versions(text: str) -> list[tuple[str, list[str]]] | None:
    """versions.yaml as it is written: per environment, one block per service; None when the
    text is laid out otherwise."""
    at = text.find(_ENVIRONMENTS)
    if at < 0:
        return None
    out = []
    for part in _ENV_SPLIT.split(text[at + len(_ENVIRONMENTS):].rstrip("\n")):
        head, _, rest = part.partition("\n")
        name = head.strip()
        if not head.startswith("  ") or head.startswith("   ") or not name.endswith(":") and not name.endswith(": {}"):
            return None
        if name.endswith(": {}"):
            if rest:
                return None
            out.append((name[:-4], []))
        else:
            out.append((name[:-1], _SERVICE_SPLIT.split(rest) if rest else []))
    return out


class VersionsParser:
    """What runs where, by the exact text of each service's block: unchanged blocks are not parsed again."""

    def __init__(self):
        self._known: dict[tuple[str, str], tuple[str, Deployment]] = {}

    def parse(self, text: str | None) -> dict[str, dict[str, Deployment]]:
        envs = split_versions(text or "")
        if envs is None or not self._known:
            versions = registry_file.load(VERSIONS_FILE, text, registry_file.VersionsFile)  # strict: names a broken line
            state = {env: {svc: Deployment(service=svc, **fields) for svc, fields in (services or {}).items()}
                     for env, services in (versions.get("environments") or {}).items()}
            if envs is not None and [(e, len(b)) for e, b in envs] == [(e, len(s)) for e, s in state.items()]:
                self._known = {(env, block): (svc, d) for (env, blocks), (_, services) in zip(envs, state.items())
                               for block, (svc, d) in zip(blocks, services.items())}
            return state
        known, state = {}, {}
        for env, blocks in envs:
            services = state.setdefault(env, {})
            for block in blocks:
                hit = self._known.get((env, block))
                if hit is None:
                    try:
                        data = registry_file.load(VERSIONS_FILE, f"environments:\n  {env}:\n{block}\n",
                                                  registry_file.VersionsFile)
                        ((svc, fields),) = data["environments"][env].items()
                        hit = (svc, Deployment(service=svc, **fields))
                    except Exception:  # noqa: BLE001 - the strict whole-file parse says what and where
                        self._known = {}
                        return self.parse(text)
                known[(env, block)] = hit
                services[hit[0]] = hit[1]
        self._known = known
        return state


class ReleasesCache:
    """One ReleaseView per GitOps commit, kept until the branch moves on."""

    def __init__(self, config: PlatformConfig, store: GitOpsStore, mirror: Path, *, ttl_seconds: float = 2.0):
        self.config = config
        self.store = store
        self.mirror = mirror
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._checked_at = -1e9
        self._head: str | None = None
        self._loaded: Loaded | None = None
        self._history = HistoryParser()
        self._versions = VersionsParser()
        # A repository on this machine (the default) is read where it is; a remote one through a mirror.
        local = store.url.removeprefix("file://") if store.url.startswith("file://") else None
        self._git_dir = Path(local) if local else mirror

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.store._env()}
        done = subprocess.run(["git", *args], env=env, capture_output=True, timeout=120)
        if check and done.returncode != 0:
            raise GitOpsError(f"git {args[0]} for the Releases view failed on {self.store.remote}: "
                              f"{self.store._scrub(done.stderr.decode(errors='replace').strip())}")
        return done

    def head(self, *, force: bool = False) -> str:
        """The branch tip's commit; asked of the remote at most once per ttl_seconds."""
        now = time.monotonic()
        if force or self._head is None or now - self._checked_at >= self.ttl_seconds:
            out = self._git("ls-remote", "--", self.store.url, f"refs/heads/{self.store.branch}").stdout.decode()
            if not out.strip():
                raise GitOpsError(f"{self.store.remote} has no branch {self.store.branch}")
            self._head, self._checked_at = out.split()[0], now
        return self._head

    def _fetch(self, commit: str) -> None:
        if self._git_dir != self.mirror:
            return
        if not (self.mirror / "HEAD").exists():
            self.mirror.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", str(self.mirror))
        if self._git("--git-dir", str(self.mirror), "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode:
            self._git("--git-dir", str(self.mirror), "fetch", "--quiet", "--no-tags", "--", self.store.url,
                      f"+refs/heads/{self.store.branch}:refs/heads/{self.store.branch}")

    def _read(self, commit: str, path: str) -> str | None:
        # Only stdout piped and no timeout (a local repository, no network): one read of the whole
        # blob instead of a poll loop over two pipes, which costs a second on tens of MB.
        done = subprocess.run(["git", "--git-dir", str(self._git_dir), "cat-file", "blob", f"{commit}:{path}"],
                              env={**os.environ, **self.store._env()}, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        return done.stdout.decode("utf-8") if done.returncode == 0 else None

    def load(self, commit: str | None = None) -> Loaded:
        """The view at `commit` (default the branch tip), built only if it is not the cached one."""
        with self._lock:
            commit = commit or self.head()
            if self._loaded is not None and self._loaded.commit == commit:
                return self._loaded
            t0 = time.perf_counter()
            self._fetch(commit)
            with registry_file.gc_paused():  # the view is millions of objects: no collector passes over them meanwhile
                envs = self._versions.parse(self._read(commit, VERSIONS_FILE))
                entries, parsed = self._history.parse(self._read(commit, HISTORY_FILE))
                # A deployment appends entries and rewrites a few services' versions: the last
                # view's indexes and rows of everything else are reused, not rebuilt.
                view = ReleaseView(self.config, RegistryState(envs, entries), commit,
                                   previous=self._loaded.view if self._loaded else None, kept=self._history.kept)
            self._loaded = Loaded(commit, view, time.perf_counter() - t0, parsed)
            return self._loaded


_cached: tuple[tuple, ReleasesCache] | None = None
_cached_lock = threading.Lock()


def cache_for(config: PlatformConfig) -> ReleasesCache:
    """The process's cache for the GitOps repository `config` names; another config object (a
    changed config file) or another repository starts a new one."""
    global _cached
    from release.domain.config import data_dir
    from release.gitops.store import default_repo_path, store_from_config

    key = (id(config), config.gitops.url or str(default_repo_path()), config.gitops.branch)
    with _cached_lock:
        if _cached is None or _cached[0] != key:
            cache = ReleasesCache(config, store_from_config(config), data_dir() / "cache" / "releases-mirror.git")
            _cached = (key, cache)
        return _cached[1]
