"""Do the services' `owners` agree with the app repository's CODEOWNERS?

GitHub reads `.github/CODEOWNERS` line by line: a gitignore-style pattern, then owners (@user,
@org/team or an e-mail address); for a file, the LAST matching line wins, and a matching line
without owners means nobody owns it. GitHub skips lines it cannot read (a `!` negation, a `[ ]`
range, an owner that is no owner): they are reported too.

A service's owners per CODEOWNERS are those of a file directly in its folder, the review a
change to the service asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from release.domain.config import PlatformConfig

OWNER_RE = re.compile(r"^@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:/[A-Za-z0-9._-]+)?$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROBE = "CODEOWNERS-probe"  # a file name no pattern but `*`-like ones names


@dataclass(frozen=True)
class Rule:
    line: int
    pattern: str
    owners: tuple[str, ...]
    spec: object  # the compiled pattern


@dataclass(frozen=True)
class Disagreement:
    service: str
    path: str
    configured: tuple[str, ...]
    codeowners: tuple[str, ...] | None  # None: no line covers the folder
    rule: Rule | None

    def describe(self) -> str:
        where = (f"CODEOWNERS line {self.rule.line} `{self.rule.pattern}` gives {' '.join(self.codeowners) or 'no owner'}"
                 if self.rule else "no CODEOWNERS line covers it")
        return f"services.{self.service}.owners: {' '.join(self.configured)} for {self.path}, but {where}"


def parse(text: str) -> tuple[list[Rule], list[str]]:
    """The rules GitHub uses, and one line per line it would skip."""
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

    rules, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = re.split(r"\s+#", line, maxsplit=1)[0]  # a comment after the owners
        pattern, *owners = line.split()
        pattern = pattern.replace("\\#", "#")
        if pattern.startswith("!") or "[" in pattern:
            problems.append(f"CODEOWNERS line {number}: `{pattern}`: GitHub does not support negation or [ ] ranges; "
                            "the line is skipped")
            continue
        if bad := [o for o in owners if not OWNER_RE.fullmatch(o)]:
            problems.append(f"CODEOWNERS line {number}: {', '.join(bad)} is not an owner (@user, @org/team or an e-mail); "
                            "GitHub skips the line")
            continue
        try:
            spec = GitIgnoreSpecPattern(pattern)
        except Exception as exc:  # noqa: BLE001 - pathspec raises several types for bad patterns
            problems.append(f"CODEOWNERS line {number}: `{pattern}` is not a pattern ({exc}); the line is skipped")
            continue
        rules.append(Rule(number, pattern, tuple(owners), spec))
    return rules, problems


def owners_of(rules: list[Rule], path: str) -> Rule | None:
    """The rule GitHub applies to `path`: the last one that matches."""
    return next((r for r in reversed(rules) if r.spec.match_file(path) is not None), None)


def check(config: PlatformConfig, text: str) -> tuple[list[Disagreement], list[str]]:
    rules, problems = parse(text)
    found = []
    for name, service in config.services.items():
        folder = service.path.rstrip("/")
        rule = owners_of(rules, f"{folder}/{PROBE}")
        configured = tuple(service.owners)
        actual = rule.owners if rule else None
        if actual is None or {o.lower() for o in actual} != {o.lower() for o in configured}:
            found.append(Disagreement(name, f"{folder}/", configured, actual, rule))
    return found, problems


def check_file(config: PlatformConfig, path: Path) -> tuple[list[Disagreement], list[str]]:
    return check(config, Path(path).read_text(encoding="utf-8"))
