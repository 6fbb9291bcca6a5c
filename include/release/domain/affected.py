"""Which services a change affects: the `release-dispatch` change-detection step.

A service is affected when a changed path lies under its `path` or matches its
`watch` patterns (gitignore-style, as pathspec's 'gitwildmatch' implements them; within
one service's list the last matching pattern wins, so `!pattern` excludes).

A monorepo push can touch 100,000 files and the config can list thousands of services,
so `AffectedIndex` avoids the paths x services x patterns loop of `naive_affected`:
  - service folders and watch patterns that are plain folder prefixes (`shared/**`,
    `proto/search/**`) go into dicts keyed by folder; each changed path costs a walk up
    its parent folders, and parents already walked are skipped;
  - the remaining patterns (`*.md`, `docs/**/*.md`) are de-duplicated across services,
    compiled once, skipped when every service watching them is already affected or when
    a literal every match needs (`.md`, `docs/`) occurs in no path, and otherwise
    tested only until the first path that matches;
  - services whose list has a `!` exclusion keep pathspec's ordered evaluation.
`naive_affected` is the reference the tests and bench/affected.py compare against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from pathspec import PathSpec

# The class pathspec registers as 'gitwildmatch' subclasses this one only to add a
# DeprecationWarning (pathspec >= 1.0); the matching is identical.
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern as _Pattern

if TYPE_CHECKING:
    from release.domain.config import PlatformConfig

Services = Mapping[str, tuple[str, Sequence[str]]]  # name -> (folder, watch patterns)

MAX_PATH_LENGTH = 4096  # PATH_MAX on Linux; a longer "path" in a webhook is not a path

_LEADING = re.compile(r"^(?:\.?/)+")  # './', '/', './/', '././' ...
# A pathspec regex that is only "starts with <literal folder>/" (or "is <folder> or
# starts with <folder>/"): `shared/**` compiles to `^shared/`. Recognised by the regex
# text, so anything else (or another pathspec version's form) just takes the slow path.
_LITERAL = r"(?:[^\\.^$*+?{}\[\]|()]|\\[^0-9A-Za-z])+"
_FOLDER_REGEX = re.compile(rf"\^(?P<folder>{_LITERAL})(?:/|\(\?P<ps_d>/\)|(?P<self>\(\?:\(\?P<ps_d>/\)\|\$\)))")


def _normalise(path: str) -> str:
    return _LEADING.sub("", path, count=1) if path.startswith(("/", "./")) else path


def _folder_key(path: str) -> str:
    """`services/service-a/`, `./services/service-a` -> `services/service-a`; the root -> ''."""
    key = _normalise(path).rstrip("/")
    return "" if key == "." else key


def _required_literals(regex: re.Pattern) -> tuple[str, ...]:
    """Substrings every match of `regex` contains: its literal runs outside groups and
    classes, less any char a quantifier makes optional. Returns () when unsure (a
    top-level '|', '{', flags): that only costs speed, the caller then scans every path."""
    text, runs, run, depth, i, prev_literal = regex.pattern, [], "", 0, 0, False
    if regex.flags & (re.I | re.X):
        return ()
    while i < len(text):
        c, atom = text[i], None  # atom: the literal char just read, if any
        if c == "\\":
            nxt = text[i + 1:i + 2]
            atom = nxt if nxt and not nxt.isalnum() else None  # \d, \b, \A are not literals
            i += 1
        elif c == "[":  # skip the class; a ']' right after '[' or '[^' is a member
            i += 2 if text.startswith("[^", i) else 1
            i += text[i] == "]"
            while text[i] != "]":
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif (c == "|" and depth == 0) or c == "{":
            return ()
        elif c in "*+?":
            run = run[:-1] if prev_literal else run
        elif c not in ".^$":
            atom = c
        prev_literal = atom is not None and depth == 0
        if prev_literal:
            run += atom
        elif run:
            runs.append(run)
            run = ""
        i += 1
    return tuple(r for r in [*runs, run] if r)


def services_of(config: PlatformConfig) -> dict[str, tuple[str, list[str]]]:
    return {name: (s.path, list(s.watch)) for name, s in config.services.items()}


class AffectedIndex:
    """Built once per config; `affected(paths)` is then cheap for any number of paths."""

    def __init__(self, services: Services):
        self.names = list(services)
        self._root: set[int] = set()  # services whose folder is the whole repository
        self._under: dict[str, set[int]] = {}  # hit when the key is a parent folder of a path
        self._exact: dict[str, set[int]] = {}  # hit when the key is the path itself
        regexes: dict[str, tuple[re.Pattern, tuple[str, ...], set[int]]] = {}
        specs: dict[tuple[str, ...], tuple[PathSpec, list, set[int]]] = {}
        compiled: dict[str, _Pattern] = {}
        for i, (path, watch) in enumerate(services.values()):
            key = _folder_key(path)
            if key:  # the folder itself counts as under it (a submodule bump, a renamed folder)
                self._under.setdefault(key, set()).add(i)
                self._exact.setdefault(key, set()).add(i)
            else:
                self._root.add(i)
            for w in watch:
                if w not in compiled:
                    compiled[w] = _Pattern(w)
            patterns = [compiled[w] for w in watch if compiled[w].include is not None]  # not comments
            if any(not p.include for p in patterns):
                # Order matters once there is an exclusion: evaluate the list as pathspec does.
                includes = [(p.regex, _required_literals(p.regex)) for p in patterns if p.include]
                if includes:
                    specs.setdefault(tuple(watch), (PathSpec(patterns), includes, set()))[2].add(i)
                continue
            for p in patterns:
                m = _FOLDER_REGEX.fullmatch(p.regex.pattern)
                if m and not p.regex.flags & (re.I | re.M | re.X):
                    folder = re.sub(r"\\(.)", r"\1", m["folder"], flags=re.S)
                    self._under.setdefault(folder, set()).add(i)
                    if m["self"]:
                        self._exact.setdefault(folder, set()).add(i)
                else:
                    regexes.setdefault(p.regex.pattern, (p.regex, _required_literals(p.regex), set()))[2].add(i)
        self._regexes = list(regexes.values())
        self._specs = list(specs.values())

    @classmethod
    def from_config(cls, config: PlatformConfig) -> AffectedIndex:
        return cls(services_of(config))

    def affected(self, paths: Iterable[str]) -> list[str]:
        """Affected service names in config order. Check webhook input with validate_paths first."""
        if isinstance(paths, str):  # iterating a str would test its characters one by one
            raise TypeError("paths must be a collection of paths, not one string")
        changed = {_normalise(p) for p in paths}
        changed.discard("")
        if not changed:
            return []
        hit = set(self._root)
        # Every parent folder of every path, each walked once: paths share most of theirs.
        folders: set[str] = set()
        for folder in {p.rpartition("/")[0] for p in changed}:
            while folder and folder not in folders:
                folders.add(folder)
                folder = folder.rpartition("/")[0]
        for key in self._under.keys() & folders:
            hit |= self._under[key]
        for key in self._exact.keys() & changed:
            hit |= self._exact[key]
        # Pattern checks: skipped when already decided or when a substring every match
        # needs occurs in no path (one C-speed search of all paths joined), else stopped
        # at the first matching path.
        joined = None

        def possible(literals: tuple[str, ...]) -> bool:
            nonlocal joined
            joined = "\n".join(changed) if joined is None else joined
            return all(lit in joined for lit in literals)

        for regex, literals, ids in self._regexes:
            if not ids <= hit and possible(literals) and any(map(regex.search, changed)):
                hit |= ids
        # Ordered lists: only paths one of their include patterns matches can count;
        # filter() finds those in C, once per include pattern.
        included: dict[str, list[str]] = {}
        for spec, includes, ids in self._specs:
            for rx, literals in includes:
                if ids <= hit or not possible(literals):
                    continue
                if rx.pattern not in included:
                    included[rx.pattern] = list(filter(rx.search, changed))
                if any(map(spec.match_file, included[rx.pattern])):
                    hit |= ids
        return [self.names[i] for i in sorted(hit)]


def naive_affected(services: Services, paths: Iterable[str]) -> list[str]:
    """The reference: every path against every service's folder and whole pathspec."""
    checks = []
    for name, (path, watch) in services.items():
        key = _folder_key(path)
        checks.append((name, key, key + "/", PathSpec.from_lines(_Pattern, watch)))
    hit = set()
    for raw in paths:
        path = _normalise(raw)
        if not path:
            continue
        for name, key, under, spec in checks:
            if not key or path == key or path.startswith(under) or spec.match_file(path):
                hit.add(name)
    return [name for name in services if name in hit]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_paths(paths: Iterable[str]) -> list[str]:
    """Normalised paths, or ValueError naming the first entry that is not a repository path.

    Paths come from webhook payloads: refuse what git would never report instead of
    guessing what it means (`services/x/../y` would otherwise dodge service x's folder).
    """
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise ValueError(f"paths must be a list of repository paths, got {_show(paths)}")
    result = []
    for i, raw in enumerate(paths):
        path, problem = "", None
        if not isinstance(raw, str):
            problem = f"is a {type(raw).__name__}, not a string"
        elif len(raw) > MAX_PATH_LENGTH:
            problem = f"is longer than {MAX_PATH_LENGTH} characters"
        elif "\0" in raw or "\n" in raw or "\r" in raw:
            problem = "contains a NUL or newline character"
        elif not (path := _normalise(raw)):
            problem = "is empty"
        else:
            bad = [s for s in path.removesuffix("/").split("/") if s in ("", ".", "..")]
            if bad:
                problem = f"has a {bad[0]!r} segment" if bad[0] else "has an empty segment ('//')"
        if problem:
            raise ValueError(f"paths[{i}] {_show(raw)} {problem}")
        result.append(path)
    return result
