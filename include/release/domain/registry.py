"""The version registry: what runs where, since when, by whom, and what ran before.

Two files in the GitOps repository, always written together in one commit with the
umbrella charts generated from them:

- `registry/versions.yaml`: per environment, per service, the current deployment
  (`version`, `image` pinned by digest, `deployed_at`, `deployed_by`, `run_id`,
  `evidence` from the gates, with `approved_by` where a second person approved it).
- `registry/history.yaml`: every deployment and rollback ever recorded, newest last,
  each with the version it replaced and its outcome (`deployed`, `rolled_back`,
  `failed`), so "who put what where, and did it stick" is a query, not git archaeology.

This is the pure part (data in, data out); `release.gitops.registry.Registry` binds it to the
GitOps store so every write is one atomic, retried commit of the registry and the umbrella charts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml

from release.domain import registry_file
from release.domain.config import PlatformConfig
from release.domain.registry_file import RegistryFileError  # noqa: F401 - callers catch it from here
from release.domain.values import DIGEST_RE, MAX_REASON, USER_RE, VERSION_RE  # noqa: F401 - callers import them from here too

VERSIONS_FILE = "registry/versions.yaml"
HISTORY_FILE = "registry/history.yaml"
SCHEMA_VERSION = 1

Outcome = Literal["deployed", "rolled_back", "failed"]
Action = Literal["deploy", "rollback"]




def umbrella_dir(env: str) -> str:
    """Where an environment's umbrella chart lives in the GitOps tree."""
    return f"umbrella/{env}"


_HEADER = "# Written only by the release platform; every change is a commit. Do not edit by hand.\n"


class RegistryError(ValueError):
    """A request the registry refuses; the message names the field and what is allowed."""


class NoRollbackTarget(RegistryError):
    """There is nothing (or not that) to roll back to; `allowed` lists the versions that are,
    newest first, so each caller can name them in its own field's words."""

    def __init__(self, message: str, allowed: tuple[str, ...] = ()):
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class DeployRequest:
    """One service's part of a deployment: the exact digest to run."""

    service: str
    version: str
    image: str  # repository@sha256:<64 hex>
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    service: str
    version: str
    image: str
    deployed_at: str
    deployed_by: str
    run_id: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def approved_by(self) -> str | None:
        return _approver(self.evidence)

    def summary(self) -> dict[str, Any]:
        """What runs, for scripts (`registry show --format json`): SHOW_KEYS."""
        return {"version": self.version, "image": self.image, "deployed_at": self.deployed_at,
                "deployed_by": self.deployed_by, "approved_by": self.approved_by, "run_id": self.run_id}


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    env: str
    service: str
    version: str
    image: str
    previous_version: str | None
    action: Action
    outcome: Outcome
    at: str
    by: str
    run_id: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def approved_by(self) -> str | None:
        return _approver(self.evidence)

    def summary(self) -> dict[str, Any]:
        """One entry, for scripts (`registry history --format json`): HISTORY_KEYS, evidence left out."""
        return {k: self.approved_by if k == "approved_by" else getattr(self, k) for k in HISTORY_KEYS}


# The keys of `registry show` / `registry history --format json`: scripts rely on them.
SHOW_KEYS = ("version", "image", "deployed_at", "deployed_by", "approved_by", "run_id")
HISTORY_KEYS = ("id", "at", "env", "service", "previous_version", "version", "image", "action", "outcome",
                "by", "approved_by", "run_id", "reason")


def _approver(evidence: dict[str, Any]) -> str | None:
    """Who approved the deployment (promote's four-eyes approver), None where none was needed."""
    value = (evidence or {}).get("approved_by")
    return value if isinstance(value, str) and value else None


def utcnow() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(value: str | datetime) -> datetime:
    """A time to compare with the registry's: ISO-8601, UTC when it names no zone (2026-11-01 too)."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def dump_yaml(data: Any) -> str:
    # Keys keep the order the code builds them in (promotion order, fields in reading
    # order), so callers build dicts deterministically; free-form evidence is sorted.
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)


def canonical(value: Any) -> Any:
    """Free-form data (gate evidence) with keys sorted at every level."""
    if isinstance(value, dict):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


# -- validation of what callers ask to write -------------------------------------------


def as_text(value: Any) -> str:
    """`value` if it is a string, else '' (which no pattern check accepts): callers pass anything."""
    return value if isinstance(value, str) else ""


def validate_env(config: PlatformConfig, env: str) -> None:
    if not isinstance(env, str) or env not in config.environments:
        raise RegistryError(f"env: unknown environment {str(env)[:80]!r}; allowed: {', '.join(config.env_order)}")


def validate_request(config: PlatformConfig, env: str, req: DeployRequest) -> None:
    validate_env(config, env)
    allowed = config.services_in(env)
    if req.service not in allowed:
        raise RegistryError(f"service: {str(req.service)[:80]!r} does not run in {env}; allowed: {', '.join(allowed)}")
    if not VERSION_RE.fullmatch(as_text(req.version)):
        raise RegistryError(
            f"version: {str(req.version)[:80]!r} is not a version (letters, digits, '.', '_', '+', '-'; at most 128 characters)"
        )
    repository = config.services[req.service].image
    repo_part, _, digest = as_text(req.image).partition("@")
    if repo_part != repository or not DIGEST_RE.fullmatch(digest):
        raise RegistryError(
            f"image: {str(req.image)[:120]!r} must be {repository}@sha256:<64 hex digits> (pinned by digest)"
        )
    if not isinstance(req.evidence, dict):
        raise RegistryError(f"evidence: must be a mapping of gate name to its record, got {type(req.evidence).__name__}")


def validate_user(field_name: str, value: Any) -> None:
    if not USER_RE.fullmatch(as_text(value)):
        raise RegistryError(f"{field_name}: {str(value)[:80]!r} is not a user name (letters, digits, '.', '_', '@', '+', '-')")


def validate_actor(by: str, run_id: str, reason: str) -> None:
    validate_user("deployed_by", by)
    if not isinstance(run_id, str) or not run_id or len(run_id) > 250 or any(c in run_id for c in "\r\n\t"):
        raise RegistryError("run_id: must be a single-line run id of at most 250 characters")
    if not isinstance(reason, str) or len(reason) > MAX_REASON or any(ord(c) < 32 and c not in "\n" for c in reason):
        raise RegistryError(f"reason: at most {MAX_REASON} printable characters")


# -- the pure state --------------------------------------------------------------------


@dataclass
class RegistryState:
    environments: dict[str, dict[str, Deployment]] = field(default_factory=dict)
    entries: list[HistoryEntry] = field(default_factory=list)

    # reading and writing the two files
    @classmethod
    def parse(cls, versions_text: str | None, history_text: str | None) -> RegistryState:
        """The state the two files hold; RegistryFileError (file, line, what) if either is broken."""
        with registry_file.gc_paused():  # tens of MB make millions of objects: see gc_paused
            versions = registry_file.load(VERSIONS_FILE, versions_text, registry_file.VersionsFile)
            history = registry_file.load(HISTORY_FILE, history_text, registry_file.HistoryFile)
            envs = {
                env: {svc: Deployment(service=svc, **fields) for svc, fields in (services or {}).items()}
                for env, services in (versions.get("environments") or {}).items()
            }
            entries = [HistoryEntry(**e) for e in history.get("entries") or []]
        return cls(envs, entries)

    @classmethod
    def from_tree(cls, tree: Path) -> RegistryState:
        def read(name: str) -> str | None:
            p = tree / name
            return p.read_text(encoding="utf-8") if p.exists() else None

        return cls.parse(read(VERSIONS_FILE), read(HISTORY_FILE))

    def render(self, env_order: list[str]) -> dict[str, str]:
        # Configured environments in promotion order, then any the config no longer has.
        envs = {}
        for env in [*env_order, *sorted(set(self.environments) - set(env_order))]:
            envs[env] = {
                svc: {k: v for k, v in asdict(d).items() if k != "service"}
                for svc, d in sorted(self.environments.get(env, {}).items())
            }
        return {
            VERSIONS_FILE: _HEADER + dump_yaml({"schema_version": SCHEMA_VERSION, "environments": envs}),
            HISTORY_FILE: _HEADER + dump_yaml({"schema_version": SCHEMA_VERSION, "entries": [asdict(e) for e in self.entries]}),
        }

    def write(self, tree: Path, env_order: list[str]) -> None:
        for name, text in self.render(env_order).items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_text(text, encoding="utf-8")

    # queries
    def current(self, env: str) -> dict[str, Deployment]:
        return dict(self.environments.get(env, {}))

    def history(
        self,
        *,
        service: str | None = None,
        env: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        outcome: str | None = None,
    ) -> list[HistoryEntry]:
        lo = _parse_time(since) if since else None
        hi = _parse_time(until) if until else None
        out = []
        for e in self.entries:
            at = _parse_time(e.at)
            if (service and e.service != service) or (env and e.env != env) or (outcome and e.outcome != outcome):
                continue
            if (lo and at < lo) or (hi and at > hi):
                continue
            out.append(e)
        return out

    def rollback_target(self, env: str, service: str) -> HistoryEntry:
        """The newest version, other than the current one, that was deployed in `env`
        and stuck: entries that were rolled back or failed are never targets."""
        current = self.environments.get(env, {}).get(service)
        if current is None:
            raise NoRollbackTarget(f"{service} has never been deployed to {env}: nothing to roll back")
        for e in reversed(self.history(service=service, env=env)):
            if e.outcome == "deployed" and e.version != current.version:
                return e
        raise NoRollbackTarget(
            f"{service} in {env} runs {current.version} and no earlier version was successfully deployed there"
        )

    def deployed_versions(self, env: str, service: str) -> dict[str, HistoryEntry]:
        """Versions that were deployed in `env` and not undone, newest entry per version."""
        out: dict[str, HistoryEntry] = {}
        for e in self.history(service=service, env=env, outcome="deployed"):
            out[e.version] = e
        return out

    # transitions
    def _latest_current_entry(self, env: str, service: str) -> int | None:
        current = self.environments.get(env, {}).get(service)
        if current is None:
            return None
        for i in range(len(self.entries) - 1, -1, -1):
            e = self.entries[i]
            if e.env == env and e.service == service and e.version == current.version and e.outcome == "deployed":
                return i
        return None

    def deploy(
        self,
        env: str,
        req: DeployRequest,
        *,
        by: str,
        run_id: str,
        reason: str = "",
        at: str | None = None,
        action: Action = "deploy",
    ) -> HistoryEntry:
        at = at or utcnow()
        previous = self.environments.get(env, {}).get(req.service)
        self.environments.setdefault(env, {})[req.service] = Deployment(
            req.service, req.version, req.image, at, by, run_id, canonical(req.evidence)
        )
        entry = HistoryEntry(
            id=(self.entries[-1].id + 1) if self.entries else 1,
            env=env,
            service=req.service,
            version=req.version,
            image=req.image,
            previous_version=previous.version if previous else None,
            action=action,
            outcome="deployed",
            at=at,
            by=by,
            run_id=run_id,
            reason=reason,
            evidence=canonical(req.evidence),
        )
        self.entries.append(entry)
        return entry

    def undo_target(self, env: str, service: str, to_version: str | None = None,
                    image: str | None = None) -> HistoryEntry:
        """What undoing `service` in `env` puts back: by default the rollback target; else
        `to_version`, which must have been deployed there successfully (and not undone), must not
        be the current version, and, when `image` is given, must have run as exactly that digest.

        The one rule for every rollback: a person's (`plan_rollback`), the registry write
        (`undo`) and deploy-<env>'s check of a handed-over change (`check_against_registry`)."""
        if to_version is None:
            return self.rollback_target(env, service)
        current = self.environments.get(env, {}).get(service)
        if current is None:
            raise NoRollbackTarget(f"{service} has never been deployed to {env}: nothing to roll back")
        deployed = self.deployed_versions(env, service)
        allowed = tuple(v for v in reversed(deployed) if v != current.version)
        target = deployed.get(to_version)
        if target is None or to_version == current.version:
            raise NoRollbackTarget(
                f"to_version: {to_version!r} was never successfully deployed to {env} before "
                f"{current.version}; allowed: {', '.join(allowed) or 'none'}", allowed)
        if image is not None and image != target.image:
            raise NoRollbackTarget(f"image: {service} {to_version} ran in {env} as {target.image}, not {image}", allowed)
        return target

    def undo(self, env: str, service: str, *, outcome: Outcome, by: str, run_id: str, reason: str, to_version: str | None = None, at: str | None = None,
             approved_by: str | None = None) -> HistoryEntry:
        """Put `service` in `env` back on an earlier version (default the rollback target),
        marking the version being replaced as `rolled_back` or `failed`.

        The version's evidence comes along, except who approved putting it there back then:
        the rollback is approved by `approved_by`, or by no one."""
        if outcome not in ("rolled_back", "failed"):
            raise RegistryError(f"outcome: {outcome!r} is not allowed; allowed: rolled_back, failed")
        target = self.undo_target(env, service, to_version)
        replaced = self._latest_current_entry(env, service)
        if replaced is not None:
            self.entries[replaced] = replace(self.entries[replaced], outcome=outcome)
        evidence = {k: v for k, v in target.evidence.items() if k != "approved_by"}
        if approved_by:
            evidence["approved_by"] = approved_by
        return self.deploy(
            env,
            DeployRequest(service, target.version, target.image, evidence),
            by=by,
            run_id=run_id,
            reason=reason,
            at=at,
            action="rollback",
        )
