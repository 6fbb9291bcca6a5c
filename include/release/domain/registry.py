"""The version registry: what runs where, since when, by whom, and what ran before.

Two files in the GitOps repository, always written together in one commit with the
umbrella charts generated from them:

- `registry/versions.yaml`: per environment, per service, the current deployment
  (`version`, `image` pinned by digest, `deployed_at`, `deployed_by`, `run_id`,
  `evidence` from the gates, with `approved_by` where a second person approved it).
- `registry/history.yaml`: every deployment and rollback ever recorded, newest last,
  each with the version it replaced and its outcome (`deployed`, `rolled_back`,
  `failed`), so "who put what where, and did it stick" is a query, not git archaeology.

`RegistryState` is the pure part (data in, data out); `Registry` binds it to a
`GitOpsStore` so every write is an atomic, retried commit.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml

from release.domain import registry_file
from release.domain.config import PlatformConfig
from release.gitops.store import Author, CommitResult, GitOpsStore
from release.domain.registry_file import RegistryFileError  # noqa: F401 - callers catch it from here

VERSIONS_FILE = "registry/versions.yaml"
HISTORY_FILE = "registry/history.yaml"
SCHEMA_VERSION = 1

Outcome = Literal["deployed", "rolled_back", "failed"]
Action = Literal["deploy", "rollback"]

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
MAX_REASON = 500

_HEADER = "# Written only by the release platform; every change is a commit. Do not edit by hand.\n"


class RegistryError(ValueError):
    """A request the registry refuses; the message names the field and what is allowed."""


class NoRollbackTarget(RegistryError):
    pass


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


def _text(value: Any) -> str:
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
    if not VERSION_RE.fullmatch(_text(req.version)):
        raise RegistryError(
            f"version: {str(req.version)[:80]!r} is not a version (letters, digits, '.', '_', '+', '-'; at most 128 characters)"
        )
    repository = config.services[req.service].image
    repo_part, _, digest = _text(req.image).partition("@")
    if repo_part != repository or not DIGEST_RE.fullmatch(digest):
        raise RegistryError(
            f"image: {str(req.image)[:120]!r} must be {repository}@sha256:<64 hex digits> (pinned by digest)"
        )
    if not isinstance(req.evidence, dict):
        raise RegistryError(f"evidence: must be a mapping of gate name to its record, got {type(req.evidence).__name__}")


def validate_user(field_name: str, value: Any) -> None:
    if not USER_RE.fullmatch(_text(value)):
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

    def undo(self, env: str, service: str, *, outcome: Outcome, by: str, run_id: str, reason: str, to_version: str | None = None, at: str | None = None,
             approved_by: str | None = None) -> HistoryEntry:
        """Put `service` in `env` back on an earlier version (default the rollback target),
        marking the version being replaced as `rolled_back` or `failed`.

        The version's evidence comes along, except who approved putting it there back then:
        the rollback is approved by `approved_by`, or by no one."""
        if outcome not in ("rolled_back", "failed"):
            raise RegistryError(f"outcome: {outcome!r} is not allowed; allowed: rolled_back, failed")
        if to_version is None:
            target = self.rollback_target(env, service)
        else:
            target = self.deployed_versions(env, service).get(to_version)
            current = self.environments.get(env, {}).get(service)
            if target is None or (current and current.version == to_version):
                allowed = [v for v in self.deployed_versions(env, service) if not current or v != current.version]
                raise NoRollbackTarget(
                    f"to_version: {to_version!r} was never successfully deployed to {env} before the current version; "
                    f"allowed: {', '.join(reversed(allowed)) or 'none'}"
                )
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


# -- the registry bound to the GitOps repository ----------------------------------------


class Registry:
    def __init__(self, store: GitOpsStore, config: PlatformConfig):
        self.store = store
        self.config = config

    @classmethod
    def from_config(cls, config: PlatformConfig, **store_kwargs: Any) -> Registry:
        from release.gitops.store import store_from_config

        return cls(store_from_config(config, **store_kwargs), config)

    # reads
    def snapshot(self) -> RegistryState:
        with self.store.checkout() as tree:
            return RegistryState.from_tree(tree)

    def state(self, env: str) -> dict[str, Deployment]:
        return self.snapshot().current(env)

    def history(self, **filters: Any) -> list[HistoryEntry]:
        return self.snapshot().history(**filters)

    def rollback_target(self, env: str, service: str) -> HistoryEntry:
        return self.snapshot().rollback_target(env, service)

    # writes: each is one commit holding the registry and every umbrella chart
    def _commit(self, mutate, *, by: str) -> CommitResult:
        from release.gitops import umbrella

        def apply(tree: Path) -> str | None:
            state = RegistryState.from_tree(tree)
            message = mutate(state)
            if message is None:
                return None
            state.write(tree, self.config.env_order)
            umbrella.write_all(tree, self.config, state)
            return message

        return self.store.change(apply, author=Author(by, f"{by}@users.release-platform"))

    def record_deployment(
        self, env: str, requests: list[DeployRequest], *, by: str, run_id: str, reason: str = ""
    ) -> CommitResult:
        """Record that `requests` now run in `env`: one commit for all of them."""
        if not requests:
            raise RegistryError("services: nothing to record")
        validate_actor(by, run_id, reason)
        seen = set()
        for req in requests:
            validate_request(self.config, env, req)
            if req.service in seen:
                raise RegistryError(f"service: {req.service!r} appears twice in one deployment")
            seen.add(req.service)

        def mutate(state: RegistryState) -> str:
            lines = []
            for req in requests:
                entry = state.deploy(env, req, by=by, run_id=run_id, reason=reason)
                lines.append(f"- {req.service}: {entry.previous_version or '(none)'} -> {req.version} ({req.image})")
            return _message(f"Deploy {_names(requests)} to {env}", lines, by, run_id, reason)

        return self._commit(mutate, by=by)

    def record_rollback(
        self,
        env: str,
        services: list[str],
        *,
        by: str,
        run_id: str,
        reason: str,
        to_version: str | None = None,
        outcome: Outcome = "rolled_back",
        approved_by: str | None = None,
    ) -> CommitResult:
        """Put services back on their previous (or a named) version: one new commit,
        history rewritten never. `outcome="failed"` marks the replaced version as a
        failed deployment (automatic rollback), `rolled_back` as undone by a person;
        `approved_by` names who approved the rollback where one was needed."""
        validate_actor(by, run_id, reason)
        if approved_by is not None:
            validate_user("approved_by", approved_by)
        validate_env(self.config, env)
        if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
            raise RegistryError(f"services: must be a list of service names; allowed: {', '.join(self.config.services_in(env))}")
        if len(set(services)) != len(services):
            raise RegistryError("services: a service is named twice")
        if to_version is not None and len(services) != 1:
            raise RegistryError("to_version: only allowed when rolling back a single service")
        if to_version is not None and not VERSION_RE.fullmatch(_text(to_version)):
            raise RegistryError(f"to_version: {str(to_version)[:80]!r} is not a version")

        def mutate(state: RegistryState) -> str:
            lines = []
            for service in services:
                entry = state.undo(env, service, outcome=outcome, by=by, run_id=run_id, reason=reason, to_version=to_version,
                                   approved_by=approved_by)
                lines.append(f"- {service}: {entry.previous_version} -> {entry.version} ({entry.image})")
            return _message(f"Roll back {', '.join(services)} in {env}", lines, by, run_id, reason)

        return self._commit(mutate, by=by)


    def record_evidence(self, env: str, updates: dict[str, dict[str, Any]], *, by: str, run_id: str) -> CommitResult:
        """Add gate evidence (e.g. a passed smoke test) to what runs in `env`: one commit.

        `updates` maps service -> {version, evidence keys...}; see `record_evidence_across`.
        """
        return self.record_evidence_across({env: updates}, by=by, run_id=run_id)

    def record_evidence_across(
        self, updates: dict[str, dict[str, dict[str, Any]]], *, by: str, run_id: str
    ) -> CommitResult:
        """Add gate evidence to what runs in several environments: one commit for all of them.

        `updates` maps env -> service -> {version, evidence keys...}, optionally with `image`
        to pin the exact digest too. An update for a version (or image) that no longer runs
        there is dropped, so late evidence never lands on the wrong version; when nothing is
        left, nothing is committed (the result's sha is None).
        """
        validate_actor(by, run_id, "")
        if not isinstance(updates, dict):
            raise RegistryError("updates: must map environment -> service -> {version, [image], evidence...}")
        for env, services in updates.items():
            validate_env(self.config, env)
            if not isinstance(services, dict):
                raise RegistryError(f"updates.{env}: must map service -> {{version, [image], evidence...}}")
            for service, update in services.items():
                if (not isinstance(update, dict) or not isinstance(update.get("version"), str)
                        or not isinstance(update.get("image", ""), str)):
                    raise RegistryError(f"updates.{env}.{str(service)[:80]}: must be a mapping with the version "
                                        "(and optionally the image) the evidence is for, and the evidence")

        def mutate(state: RegistryState) -> str | None:
            lines, envs = [], []
            for env in [e for e in self.config.env_order if e in updates]:
                for service, update in updates[env].items():
                    version, image = update["version"], update.get("image")
                    fields = {k: v for k, v in update.items() if k not in ("version", "image")}
                    current = state.environments.get(env, {}).get(service)
                    if current is None or current.version != version or (image is not None and current.image != image):
                        continue
                    evidence = canonical({**current.evidence, **fields})
                    state.environments[env][service] = replace(current, evidence=evidence)
                    i = state._latest_current_entry(env, service)
                    if i is not None:
                        state.entries[i] = replace(state.entries[i], evidence=evidence)
                    lines.append(f"- {env}: {service} {version}: {', '.join(sorted(fields))}"
                                 if len(updates) > 1 else f"- {service} {version}: {', '.join(sorted(fields))}")
                    if env not in envs:
                        envs.append(env)
            if not lines:
                return None
            return _message(f"Record evidence in {', '.join(envs)}", lines, by, run_id, "")

        return self._commit(mutate, by=by)


def _names(requests: list[DeployRequest]) -> str:
    names = [r.service for r in requests]
    return names[0] if len(names) == 1 else f"{len(names)} services"


def _message(title: str, lines: list[str], by: str, run_id: str, reason: str) -> str:
    body = "\n".join(lines)
    why = f"\nReason: {reason}" if reason else ""
    return f"{title}\n\n{body}\n\nBy: {by}\nRun: {run_id}{why}\n"
