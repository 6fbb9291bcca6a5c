"""Scenarios: what the simulated cluster does with each pod, Application, Backup and request.

A scenario is plain data (a YAML file for `python -m release sandbox --scenario`, or a
dict in a test). Rules are tried in order; the first that matches an object decides its
fate, and objects no rule matches get the defaults: pods succeed quickly, Applications
sync and turn healthy, backups and restores complete. Smoke-test pods (`python -m release.tools.smoke`)
that no pod rule names run the real checker against the `http` rules: each request gets the
status of the first rule matching its host and path, 200 if none does. `prior_backups` puts Completed backups
in place before anything runs (sandbox.seed), as an environment that has been running
holds them.
"""

from __future__ import annotations

import fnmatch
import threading
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PodMatch(_Rule):
    """Every given condition must hold. `image` and `name` are glob patterns."""

    task_id: str | None = None
    dag_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    name: str | None = None

    def matches(self, pod: dict) -> bool:
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        if self.task_id is not None and labels.get("task_id") != self.task_id:
            return False
        if self.dag_id is not None and labels.get("dag_id") != self.dag_id:
            return False
        if any(labels.get(k) != v for k, v in self.labels.items()):
            return False
        if self.name is not None and not fnmatch.fnmatchcase(meta.get("name", ""), self.name):
            return False
        if self.image is not None:
            images = [c.get("image", "") for c in pod.get("spec", {}).get("containers", [])]
            if not any(fnmatch.fnmatchcase(i, self.image) for i in images):
                return False
        return True


class Artifact(_Rule):
    """A file the pod 'writes' to the artifact store, as the real tool would.

    `dest` may use {namespace}, {pod}, {dag_id}, {task_id}, {run_id}, and any pod
    label or annotation as {label:NAME} or {annotation:NAME}.
    """

    source: str
    dest: str


PodOutcome = Literal["succeeded", "failed", "oom_killed", "image_pull_backoff", "never_scheduled", "evicted"]


class PodBehaviour(_Rule):
    outcome: PodOutcome | None = None  # default: succeeded for exit 0, failed otherwise
    exit_code: int = 0
    duration_seconds: float = Field(0.2, ge=0)
    schedule_seconds: float = Field(0.05, ge=0)
    logs: list[str] = Field(default_factory=list)
    termination_message: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)

    @property
    def resolved_outcome(self) -> str:
        if self.outcome:
            return self.outcome
        return "succeeded" if self.exit_code == 0 else "failed"


class PodRule(PodBehaviour):
    match: PodMatch = Field(default_factory=PodMatch)


class NameMatch(_Rule):
    name: str | None = None  # glob
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def matches(self, obj: dict) -> bool:
        meta = obj.get("metadata", {})
        if self.name is not None and not fnmatch.fnmatchcase(meta.get("name", ""), self.name):
            return False
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels.items())


class ApplicationRule(_Rule):
    match: NameMatch = Field(default_factory=NameMatch)
    delay_seconds: float = Field(0.2, ge=0)
    sync: Literal["Synced", "OutOfSync"] = "Synced"
    health: Literal["Healthy", "Degraded", "Progressing", "Missing"] = "Healthy"
    message: str | None = None


class VeleroRule(_Rule):
    match: NameMatch = Field(default_factory=NameMatch)
    phase: Literal["Completed", "PartiallyFailed", "Failed"] = "Completed"
    delay_seconds: float = Field(0.3, ge=0)
    stuck: bool = False  # stays InProgress for ever
    items: int = Field(42, ge=0)
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    failure_reason: str | None = None


class PriorBackups(_Rule):
    """Backups that exist when the sandbox starts, as the nightly `velero-backups` run left them:
    one Completed backup of every environment the platform backs up, finished `hours_ago` hours
    before the start. The sandbox then stands for environments that have been running, as a
    real one would, so a restore drill has something to restore from its first minute."""

    hours_ago: float = Field(20, gt=0)
    items: int = Field(42, ge=0)


class FaultMatch(_Rule):
    method: str | None = None
    path: str | None = None  # glob over the URL path
    watch: bool | None = None

    def matches(self, method: str, path: str, watch: bool) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.watch is None or self.watch == watch


_ANSWERING = threading.Lock()


class HttpMatch(_Rule):
    """Both are glob patterns: `host` over the URL's host name, `path` over its path."""

    host: str | None = None
    path: str | None = None

    def matches(self, host: str, path: str) -> bool:
        return (self.host is None or fnmatch.fnmatchcase(host, self.host)) and \
            (self.path is None or fnmatch.fnmatchcase(path, self.path))


class HttpRule(_Rule):
    """What a service in the sandbox answers a smoke test's request: `status`, after answering
    503 to the first `fail_times` requests (a service still starting, to exercise retries)."""

    match: HttpMatch = Field(default_factory=HttpMatch)
    status: int = Field(200, ge=100, le=599)
    fail_times: int = Field(0, ge=0)
    _answered: int = PrivateAttr(0)

    def answer(self) -> int:
        with _ANSWERING:  # smoke pods run at once, each in a thread of its own
            self._answered += 1
            return 503 if self._answered <= self.fail_times else self.status


class Fault(_Rule):
    """The next `count` matching requests fail, slow down, or have their watch dropped."""

    match: FaultMatch = Field(default_factory=FaultMatch)
    count: int = Field(1, ge=1)
    status: Literal[429, 500, 503] | None = None
    delay_seconds: float = Field(0, ge=0)
    drop_watch_after_seconds: float | None = Field(None, ge=0)
    retry_after_seconds: int = 1


class Scenario(_Rule):
    pods: list[PodRule] = Field(default_factory=list)
    default_pod: PodBehaviour = Field(default_factory=PodBehaviour)
    applications: list[ApplicationRule] = Field(default_factory=list)
    backups: list[VeleroRule] = Field(default_factory=list)
    restores: list[VeleroRule] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    http: list[HttpRule] = Field(default_factory=list)
    prior_backups: PriorBackups | None = None  # none: Velero holds no backup until one is made
    base_dir: Path | None = Field(None, description="where relative artifact sources are read from")

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data.setdefault("base_dir", str(path.parent.resolve()))
        return cls.model_validate(data)

    def pod_rule(self, pod: dict) -> PodRule | None:
        """The first pod rule that names this pod, if any."""
        return next((rule for rule in self.pods if rule.match.matches(pod)), None)

    def pod_behaviour(self, pod: dict) -> PodBehaviour:
        return self.pod_rule(pod) or self.default_pod

    def http_status(self, host: str, path: str) -> int:
        """What the service at `host` answers a GET of `path`."""
        rule = next((r for r in self.http if r.match.matches(host, path)), None)
        return rule.answer() if rule else 200

    def application_rule(self, app: dict) -> ApplicationRule:
        return next((r for r in self.applications if r.match.matches(app)), ApplicationRule())

    def velero_rule(self, kind: str, obj: dict) -> VeleroRule:
        rules = self.backups if kind == "Backup" else self.restores
        return next((r for r in rules if r.match.matches(obj)), VeleroRule())
