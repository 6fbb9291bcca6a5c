"""The one writer of the GitOps tree: the registry and the umbrella charts, always together.

`Registry` binds the registry's state (`release.domain.registry`) to the GitOps store: every write
is one atomic, retried commit that holds the registry files and every umbrella chart generated
from them (`write_tree`). The default local repository is seeded by the same function.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from release.domain.config import GITOPS_TEMPLATE_DIR, PlatformConfig
from release.domain.registry import (
    VERSION_RE,
    Deployment,
    DeployRequest,
    HistoryEntry,
    Outcome,
    RegistryError,
    RegistryState,
    as_text,
    canonical,
    validate_actor,
    validate_env,
    validate_request,
    validate_user,
)
from release.gitops import umbrella
from release.gitops.store import Author, CommitResult, GitOpsStore, create_bare_repo, default_repo_path, store_from_config


def write_tree(tree: Path, config: PlatformConfig, state: RegistryState) -> None:
    """Write `state` into a checkout: the registry files and every umbrella chart, consistent."""
    state.write(tree, config.env_order)
    umbrella.write_all(tree, config, state)


def seed_repo(path: Path, config: PlatformConfig, template: Path = GITOPS_TEMPLATE_DIR, branch: str = "main") -> bool:
    """Create a bare GitOps repository at `path` from `template`, its registry and umbrella
    charts written by `write_tree`; False when it existed."""
    return create_bare_repo(path, template, branch, lambda tree: write_tree(tree, config, RegistryState.from_tree(tree)))


def ensure_local_repo(config) -> Path | None:
    """Create the default local GitOps repository from the template, once.

    Returns its path when it was created, None when it existed or a remote is configured.
    """
    if config.gitops.url:
        return None
    path = default_repo_path()
    return path if seed_repo(path, config, GITOPS_TEMPLATE_DIR, config.gitops.branch) else None



class Registry:
    def __init__(self, store: GitOpsStore, config: PlatformConfig):
        self.store = store
        self.config = config

    @classmethod
    def from_config(cls, config: PlatformConfig, **store_kwargs: Any) -> Registry:
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
        def apply(tree: Path) -> str | None:
            state = RegistryState.from_tree(tree)
            message = mutate(state)
            if message is None:
                return None
            write_tree(tree, self.config, state)
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
        if to_version is not None and not VERSION_RE.fullmatch(as_text(to_version)):
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
