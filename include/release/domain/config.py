"""The platform config: `include/config/platform.yaml`, validated by typed models.

Everything the DAGs generate (one pipeline per service, the environment order that
promotion follows, who may approve prod) comes from this one file, so a mistake in it
must stop everything with a message that names the file, the key and what is allowed,
before any run is created.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from release.domain.values import DNS1123_LABEL, USER_ALLOWED, USER_RE, Strict

CONFIG_ENV_VAR = "RELEASE_PLATFORM_CONFIG"
DATA_DIR_ENV_VAR = "RELEASE_DATA_DIR"

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # include/release
INCLUDE_DIR = PACKAGE_DIR.parent
PROJECT_DIR = INCLUDE_DIR.parent
DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "platform.yaml"
GITOPS_TEMPLATE_DIR = INCLUDE_DIR / "gitops-template"

# Helm's own rule for release names (a DNS-1123 subdomain of at most 53 characters: Helm
# appends suffixes to it when it names the release's Secrets).
HELM_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HELM_RELEASE_MAX = 53
DNS1123_RULE = "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
# Airflow connection ids end up in URLs and env var names; keep them plain.
CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


class ConfigError(Exception):
    """The platform config is unusable. `errors` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid platform config {source}:\n{lines}")


def _check_dns_label(value: str) -> str:
    if not DNS1123_LABEL.fullmatch(value):
        raise ValueError(f"{value!r} is not {DNS1123_RULE}")
    return value


DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]


def _check_scan_policy(value: dict | None) -> dict | None:
    """A scan policy (override) as release.domain.scan.ScanPolicy reads it, checked when the config loads
    rather than when a scan gate first merges it."""
    from release.domain.scan import ScanPolicy

    if value is not None:
        try:
            ScanPolicy.model_validate(value)
        except ValidationError as exc:
            raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None
    return value


ScanPolicyOverride = Annotated[dict, AfterValidator(_check_scan_policy)]


class SmokeTest(Strict):
    """HTTP checks run against the service after each deployment."""

    endpoints: list[str] = Field(default_factory=lambda: ["/healthz"], min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    expect_status: int = Field(200, ge=100, le=599)
    retries: int = Field(5, ge=0, le=100)
    interval_seconds: int = Field(5, ge=1, le=600)

    @field_validator("endpoints")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or any(c.isspace() for c in path):
                raise ValueError(f"endpoint {path!r} must be an absolute URL path such as /healthz (no spaces)")
        return value


class Service(Strict):
    path: str = Field(description="folder of the service in the application monorepo")
    image: str = Field(description="image repository, without tag or digest")
    chart: str = Field(description="chart folder in the GitOps repository")
    owners: list[str] = Field(min_length=1)
    watch: list[str] = Field(default_factory=list, description="extra app-repo paths whose change rebuilds the service")
    environments: list[str] | None = Field(None, description="environments the service runs in; default all")
    smoke: SmokeTest = Field(default_factory=SmokeTest)
    platforms: list[Literal["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x", "linux/ppc64le"]] = Field(
        default_factory=lambda: ["linux/amd64", "linux/arm64"], min_length=1)
    coverage_threshold: int = Field(70, ge=0, le=100, description="minimum line coverage of the unit tests, in %")
    scan_policy: ScanPolicyOverride | None = Field(None, description="overrides of the scan policy for this service")

    @field_validator("path", "chart")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        parts = Path(value).parts
        if not value or value.startswith("/") or ".." in parts:
            raise ValueError(f"{value!r} must be a relative path inside the repository (no leading '/', no '..')")
        return value

    @field_validator("image")
    @classmethod
    def _image_repository(cls, value: str) -> str:
        # A repository reference only: the platform pins images by digest itself.
        if not re.fullmatch(r"^[a-z0-9]+([._:-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", value):
            raise ValueError(
                f"{value!r} is not an image repository (lowercase host[:port]/path, no tag or digest, e.g. registry.example.com/team/app)"
            )
        return value

    @field_validator("watch")
    @classmethod
    def _watch_patterns(cls, value: list[str]) -> list[str]:
        # The class behind pathspec's "gitwildmatch" name, without its deprecation warning.
        from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

        for pattern in value:
            try:
                GitIgnoreSpecPattern(pattern)
            except Exception as exc:  # pathspec raises several types for bad patterns
                raise ValueError(f"watch pattern {pattern!r} is not a gitignore-style pattern: {exc}") from None
        return value


class Approval(Strict):
    required: bool = False
    required_for_rollback: bool = False
    approvers: list[str] = Field(default_factory=list)
    response_timeout_minutes: float = Field(240, gt=0, le=7 * 24 * 60, description="no answer in time counts as a rejection")

    @field_validator("approvers")
    @classmethod
    def _user_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not USER_RE.fullmatch(name):
                raise ValueError(f"approver {name!r} is not a user name ({USER_ALLOWED})")
        return value

    @model_validator(mode="after")
    def _approvers_when_required(self) -> Approval:
        if (self.required or self.required_for_rollback) and not self.approvers:
            raise ValueError("approval is required but 'approvers' is empty: name at least one approver")
        return self


class ArgoCD(Strict):
    application: DnsLabel | None = Field(None, description="default umbrella-<env>")
    namespace: DnsLabel = "argocd"
    sync_timeout_minutes: int = Field(15, ge=1, le=24 * 60)


def _check_helm_release(value: str) -> str:
    if len(value) > HELM_RELEASE_MAX or not HELM_RELEASE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Helm release name: lowercase letters, digits, '-' and '.', "
                         f"starting and ending with a letter or digit, at most {HELM_RELEASE_MAX} characters")
    return value


class Helm(Strict):
    """The `helm` deploy strategy: a pod runs `helm upgrade --install --atomic --wait` of the
    environment's umbrella chart, checked out at the GitOps commit the platform just wrote."""

    release: Annotated[str, AfterValidator(_check_helm_release)] | None = Field(
        None, description="Helm release name; default umbrella-<env>, the name Argo CD gives it")
    timeout_minutes: int = Field(10, ge=1, le=24 * 60,
                                 description="helm --timeout: how long the rollout (and --atomic's undo) may take")
    service_account: DnsLabel = Field("release-platform-helm",
                                      description="ServiceAccount in the namespace whose token the helm container deploys with")
    gitops_secret: DnsLabel | None = Field(
        None, description="Kubernetes secret with read access to the GitOps repository: its key .gitconfig becomes "
                          "git's global config (a credential helper, http.extraHeader or core.sshCommand naming files "
                          "of the same secret under /gitops-credentials)")


class FreezeWindow(Strict):
    start: datetime
    end: datetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _order(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone, e.g. 2026-12-20T00:00:00Z")
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self


class Backup(Strict):
    """How `velero-backups` backs this environment up and whether `velero-restore-drill` proves it."""

    enabled: bool = True
    namespaces: list[DnsLabel] | None = Field(None, description="default: the environment's namespace")
    ttl_days: int | None = Field(None, ge=1, le=3650, description="default 30 for the last environment, 7 for the others")
    storage_location: DnsLabel = "default"
    snapshot_volumes: bool = True
    velero_namespace: DnsLabel = "velero"
    drill: bool | None = Field(None, description="restore-drill this environment; default: the last environment only")
    drill_excluded_resources: list[str] = Field(
        default_factory=lambda: ["ingresses.networking.k8s.io", "cronjobs.batch", "jobs.batch"],
        description="kinds the drill does not restore into its copy (Velero excludedResources)")


class Environment(Strict):
    kubernetes_conn_id: str
    namespace: DnsLabel
    deploy_strategy: Literal["argocd", "helm"] = "argocd"
    approval: Approval = Field(default_factory=Approval)
    argocd: ArgoCD = Field(default_factory=ArgoCD)
    helm: Helm = Field(default_factory=Helm, description="settings of the helm deploy strategy")
    scan_policy: ScanPolicyOverride | None = Field(None, description="overrides of the scan policy in this environment")
    freeze: list[FreezeWindow] = Field(default_factory=list, description="deploy freeze windows")
    freeze_policy: Literal["wait", "fail"] = Field("wait", description="a promotion during a freeze waits for its end, or fails")
    backup: Backup = Field(default_factory=lambda: Backup(), description="Velero backups of this environment's cluster")

    def active_freeze(self, at: datetime) -> FreezeWindow | None:
        return next((w for w in self.freeze if w.start <= at < w.end), None)

    @field_validator("kubernetes_conn_id")
    @classmethod
    def _conn_id(cls, value: str) -> str:
        if not CONN_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an Airflow connection id (letters, digits, '_', '.', '-')")
        return value


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ValueError(f"{value!r} is not a URL with scheme {' or '.join(schemes)}")
    if parsed.scheme == "file":
        if not parsed.path.startswith("/"):
            raise ValueError(f"{value!r}: a file URL needs an absolute path (file:///...)")
    elif not parsed.netloc:
        raise ValueError(f"{value!r} has no host")
    return value


class Author(Strict):
    name: str = "Release Platform"
    email: str = "release-platform@localhost"


class GitOps(Strict):
    url: str | None = Field(None, description="remote URL; default a local bare repository in the data folder")
    branch: str = "main"
    conn_id: str | None = Field(None, description="Airflow connection holding the credentials for url")
    author: Author = Field(default_factory=Author)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, ("file", "https", "http", "ssh"))

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not re.fullmatch(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$", value) or ".." in value or value.endswith((".lock", "/")):
            raise ValueError(f"{value!r} is not a valid branch name")
        return value


class Artifacts(Strict):
    base_url: str | None = Field(None, description="where reports go; default a local folder in the data folder")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, ("file", "https", "http", "s3", "gs"))


_IMAGE_REF = re.compile(r"(?P<repo>([a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?/)?[a-z0-9._-]+(/[a-z0-9._-]+)*)"
                        r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?")


def pinned_image_ref(value: str) -> str:
    """A pinned image reference: a digest, or a version tag. `latest` or no tag at all would run
    whatever was pushed last under that name, so a tool could change under a pipeline unseen."""
    match = _IMAGE_REF.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not an image reference (repository:tag or repository[:tag]@sha256:digest)")
    if not match["digest"] and (match["tag"] is None or match["tag"] == "latest"):
        raise ValueError(f"{value!r} is not pinned: give a version tag other than 'latest' "
                         "(e.g. aquasec/trivy:0.58.1) or a digest (repository@sha256:<64 hex>)")
    return value


ImageRef = Annotated[str, AfterValidator(pinned_image_ref)]


class Tools(Strict):
    """Images of the tools the pipeline pods run, each pinned: a version tag (never `latest`) or,
    better once mirrored, a digest."""

    buildkit: ImageRef = "moby/buildkit:v0.17.3-rootless"
    syft: ImageRef = "anchore/syft:v1.18.1"
    trivy: ImageRef = "aquasec/trivy:0.58.1"
    cosign: ImageRef = "cgr.dev/chainguard/cosign:2.4.1"
    helm: ImageRef = "alpine/helm:3.16.3"
    kubeconform: ImageRef = "ghcr.io/yannh/kubeconform:v0.6.7"
    curl: ImageRef = "curlimages/curl:8.11.1"
    git: ImageRef = "alpine/git:2.47.1"
    # The platform image of this platform version (pyproject.toml; deploy/helm/values.yaml's tag).
    verify: ImageRef = Field("registry.local:5000/release/platform:0.1.0",
                             description="the platform image: runs the service's tests, flake8, pylint")


class Pipelines(Strict):
    app_repo: str = Field("https://git.example.com/org/app.git", description="the application monorepo")
    builds_pool_slots: int = Field(4, ge=1, le=256, description="size of the Airflow pool `builds`")
    cosign_key_secret: DnsLabel = Field("cosign-key", description="Kubernetes secret with cosign.key and the password")
    tools: Tools = Field(default_factory=Tools)
    scan_policy: ScanPolicyOverride = Field(default_factory=dict, description="the default scan policy (release.domain.scan.ScanPolicy)")

    @field_validator("app_repo")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("https", "http", "ssh", "file"))


def _cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday), e.g. '0 2 * * *'")
    return value


Cron = Annotated[str, AfterValidator(_cron)]


class BackupSchedule(Strict):
    schedule: Cron = Field("0 2 * * *", description="UTC")
    timeout_minutes: float = Field(120, gt=0, le=24 * 60, description="a backup still running after this fails")


class DrillSchedule(Strict):
    schedule: Cron = Field("0 4 * * 0", description="UTC; weekly by default")
    timeout_minutes: float = Field(120, gt=0, le=24 * 60, description="a restore still running after this fails")


class RescanSchedule(Strict):
    schedule: Cron = Field("0 3 * * *", description="UTC")
    pool_slots: int = Field(4, ge=1, le=256, description="size of the Airflow pool `rescans`: scans at once")


class Nightly(Strict):
    poll_seconds: float = Field(10, ge=0.1, le=600, description="how often waits ask Velero how far it got")
    backups: BackupSchedule = Field(default_factory=BackupSchedule)
    restore_drill: DrillSchedule = Field(default_factory=DrillSchedule)
    rescan: RescanSchedule = Field(default_factory=RescanSchedule)


class Notifications(Strict):
    """Where platform notices go besides the task log (release.flows.notify). A channel is used
    only while its Airflow connection exists, so the defaults send nothing anywhere else."""

    slack_conn_id: str | None = Field(
        "slack_release", description="connection of type slack (API token; posts to slack_channel) or slackwebhook")
    slack_channel: str = Field("#releases", description="channel for a slack (API token) connection")
    email_conn_id: str | None = Field("smtp_default", description="SMTP connection; e-mail goes out only with email_to")
    email_to: list[str] = Field(default_factory=list, description="recipients; empty: no e-mail")
    email_from: str | None = Field(None, description="default: the connection's from_email")

    @field_validator("slack_conn_id", "email_conn_id")
    @classmethod
    def _conn_id(cls, value: str | None) -> str | None:
        if value is not None and not CONN_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an Airflow connection id (letters, digits, '_', '.', '-')")
        return value

    @field_validator("slack_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not re.fullmatch(r"^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$", value):
            raise ValueError(f"{value!r} is not a Slack channel (#name, @user or a channel id)")
        return value

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$", address):
                raise ValueError(f"{address!r} is not an e-mail address (name@example.com)")
        return value

    @field_validator("email_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$", value):
            raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")
        return value


# GitHub's own rules: an owner is up to 39 letters, digits or single hyphens; a repository name
# up to 100 letters, digits, '.', '_' or '-' (and not "." or "..").
GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$")


class GitHub(Strict):
    """The application monorepo on GitHub: webhooks in, statuses, comments, SARIF and deployments out.
    GitHub mirrors what the platform does; it is never the source of truth. Absent: GitHub is off."""

    repository: str = Field(description="owner/name of the application monorepo on GitHub")
    conn_id: str = Field("github_default", description="Airflow `github` connection (token or GitHub App; "
                                                        "host = API URL of a GitHub Enterprise server)")
    webhook_secret_conn_id: str = Field("github_webhook", description="Airflow connection whose password is the webhook secret")

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not GITHUB_REPOSITORY.fullmatch(value):
            raise ValueError(f"{value!r} is not a GitHub repository: owner/name (owner: letters, digits, single '-', "
                             "at most 39; name: letters, digits, '.', '_', '-', at most 100)")
        return value

    @field_validator("conn_id", "webhook_secret_conn_id")
    @classmethod
    def _conn_id(cls, value: str) -> str:
        if not CONN_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an Airflow connection id (letters, digits, '_', '.', '-')")
        return value

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


class PlatformConfig(Strict):
    services: dict[DnsLabel, Service] = Field(min_length=1)
    environments: dict[DnsLabel, Environment] = Field(min_length=1, description="in promotion order")
    gitops: GitOps = Field(default_factory=GitOps)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    pipelines: Pipelines = Field(default_factory=Pipelines)
    nightly: Nightly = Field(default_factory=Nightly)
    notifications: Notifications = Field(default_factory=Notifications)
    github: GitHub | None = Field(None, description="the app monorepo on GitHub; absent: GitHub integration off")

    @model_validator(mode="after")
    def _references(self) -> PlatformConfig:
        known = list(self.environments)
        for name, service in self.services.items():
            for env in service.environments or []:
                if env not in self.environments:
                    raise ValueError(
                        f"services.{name}.environments: unknown environment {env!r}; known: {', '.join(known)}"
                    )
        for name, env in self.environments.items():
            default = self.helm_release(name)
            if env.deploy_strategy == "helm" and env.helm.release is None and len(default) > HELM_RELEASE_MAX:
                raise ValueError(f"environments.{name}.helm.release: the default {default!r} is longer than "
                                 f"{HELM_RELEASE_MAX} characters; name the release")
        return self

    # -- derived facts the DAGs ask for -------------------------------------------------
    @property
    def env_order(self) -> list[str]:
        return list(self.environments)

    def next_env(self, env: str) -> str | None:
        order = self.env_order
        i = order.index(env)
        return order[i + 1] if i + 1 < len(order) else None

    def services_in(self, env: str) -> list[str]:
        return [n for n, s in self.services.items() if s.environments is None or env in s.environments]

    def argocd_application(self, env: str) -> tuple[str, str]:
        """(namespace, name) of the Argo CD Application that deploys `env`."""
        a = self.environments[env].argocd
        return a.namespace, a.application or f"umbrella-{env}"

    def backup_ttl_days(self, env: str) -> int:
        return self.environments[env].backup.ttl_days or (30 if env == self.env_order[-1] else 7)

    def drill_envs(self) -> list[str]:
        """Environments the restore drill proves: those marked `backup.drill`, else the last one."""
        marked = {e: b.backup.drill for e, b in self.environments.items() if b.backup.enabled}
        if any(v is not None for v in marked.values()):
            return [e for e, v in marked.items() if v]
        last = self.env_order[-1]
        return [last] if last in marked else []

    def backup_namespaces(self, env: str) -> list[str]:
        e = self.environments[env]
        return list(e.backup.namespaces or [e.namespace])

    def helm_release(self, env: str) -> str:
        """The Helm release the helm strategy upgrades in `env`: by default the one Argo CD
        would manage, so an environment can switch strategies without a second release."""
        return self.environments[env].helm.release or f"umbrella-{env}"

    def artifacts_dir(self) -> Path:
        """The local folder behind a file:// artifact store (the default)."""
        url = self.artifacts.base_url
        if url is None:
            return data_dir() / "artifacts"
        if not url.startswith("file://"):
            raise ValueError(f"artifacts.base_url {url!r}: only file:// stores are readable by the workers so far")
        return Path(urlparse(url).path)


# -- loading ------------------------------------------------------------------------------


def config_path(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def data_dir() -> Path:
    """Where the local defaults live (bare GitOps repo, artifacts): git-ignored."""
    return Path(os.environ.get(DATA_DIR_ENV_VAR) or PROJECT_DIR / ".local")


def _loc(loc: tuple) -> str:
    # A key that is not a plain name (a newline, a space, an empty key) is quoted, so the path stays one readable line.
    text = ".".join(str(p) if re.fullmatch(r"[A-Za-z0-9_.@-]+", str(p)) else repr(p) for p in loc if p != "[key]") or "(top level)"
    return f"{text} (the name)" if loc and loc[-1] == "[key]" else text


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class a key path points into, to list the keys it allows."""
    from typing import get_args

    model: type[BaseModel] = PlatformConfig
    parts = list(loc[:-1])
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        annotation = field.annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        if getattr(annotation, "__origin__", None) is dict or (args and getattr(args[0], "__origin__", None) is dict):
            if not parts:
                return None
            parts.pop(0)  # the entry's name
            annotation = get_args(annotation)[1]
        elif args:
            annotation = args[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _describe(error: dict) -> str:
    kind = error["type"]
    where = _loc(error["loc"])
    if kind == "extra_forbidden":
        model = _model_at(error["loc"])
        allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model else ""
        return f"{where}: unknown key{allowed}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{where}: {error['input']!r} is not allowed; allowed values: {allowed}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{where}: {msg}"


def _duplicate_key_loader():
    """A SafeLoader that refuses duplicate keys (YAML silently keeps the last one)."""

    # libyaml's parser when present: a config of 1,000 services parses 10x faster.
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # `? [a, b]`: a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not {type(key).__name__} {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return loader.construct_mapping(node, deep=deep)

    def construct_timestamp(loader, node):
        # `2026-13-45` looks like a date to YAML; the standard constructor then fails with a bare ValueError.
        try:
            return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(None, None, f"{node.value!r} is not a date or time: {exc}",
                                                    node.start_mark) from None

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor("tag:yaml.org,2002:timestamp", construct_timestamp)
    return Loader


def _non_string_keys(node, path: tuple = (), seen: set | None = None):
    """Keys YAML read as something other than a name: `no:`, `on:`, `1.0:` are a bool and a number."""
    seen = set() if seen is None else seen
    if id(node) in seen or not isinstance(node, (dict, list)):
        return
    seen.add(id(node))  # an alias may point back at its own mapping
    for key, value in node.items() if isinstance(node, dict) else enumerate(node):
        if isinstance(node, dict) and not isinstance(key, str):
            yield (f"{_loc((*path, key))}: the key {key!r} is a {type(key).__name__}, not a name; quote it "
                   "(YAML reads yes, no, on, off, true, false, null and numbers as values)")
        else:
            yield from _non_string_keys(value, (*path, key), seen)


def parse_config(text: str, source: str = "<string>") -> PlatformConfig:
    try:
        raw = yaml.load(text, Loader=_duplicate_key_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"the file must be a mapping with keys {', '.join(PlatformConfig.model_fields)}"])
    if errors := list(_non_string_keys(raw)):
        raise ConfigError(source, errors)
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None


def load_config(path: str | os.PathLike | None = None) -> PlatformConfig:
    """Read and validate the config; raise ConfigError naming every problem."""
    p = config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_config(text, str(p))
