"""The one factory for every pod the platform runs, and the operator that runs them.

Every pipeline step is a `PodStep`: a tool image, an argument list (never a shell
string), and the resources it needs. `pod_operator()` turns a step into a
KubernetesPodOperator that is hardened by default: non-root, every capability dropped,
no privilege escalation, read-only root filesystem with an emptyDir for scratch, the
RuntimeDefault seccomp profile, no service-account token, requests and limits, and
labels that say which service, commit and step the pod belongs to. A step that truly
needs an exception (rootless BuildKit; helm's API token) carries it in its own `PodStep`,
with the reason. Init containers a step declares (fetching what its tool needs) are
hardened alike.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import models as k8s

ARTIFACTS_MOUNT = "/artifacts"
ARTIFACTS_CLAIM = "release-artifacts"  # a ReadWriteMany volume the workers see as artifacts.base_url
RUN_AS_USER = 65532  # "nonroot" in distroless and Chainguard images
# Where Kubernetes clients (helm, kubectl, client-go) look for in-cluster credentials.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Each kubernetes model built without a configuration copies the client's default one,
# which costs more than everything else in a DAG file; one shared copy keeps parsing
# 1,000 pipelines cheap.
@functools.cache
def _shared_configuration():
    from kubernetes.client import Configuration

    return Configuration()


def _m(model, **fields):
    return model(local_vars_configuration=_shared_configuration(), **fields)


@dataclass(frozen=True)
class Resources:
    cpu: str = "250m"
    memory: str = "256Mi"
    cpu_limit: str = "1000m"
    memory_limit: str = "512Mi"

    def to_k8s(self) -> k8s.V1ResourceRequirements:
        return _m(k8s.V1ResourceRequirements,
            requests={"cpu": self.cpu, "memory": self.memory},
            limits={"cpu": self.cpu_limit, "memory": self.memory_limit},
        )


@dataclass(frozen=True)
class SecurityException:
    """A visible, reasoned departure from the hardened default for one step."""

    reason: str
    seccomp: str = "RuntimeDefault"  # or "Unconfined"
    apparmor_unconfined: bool = False
    read_only_root: bool = True
    run_as_user: int = RUN_AS_USER
    # A step that drives the Kubernetes API itself (helm) gets this ServiceAccount's token,
    # in its own container only: init containers and every other step get none.
    api_service_account: str | None = None


@dataclass(frozen=True)
class SecretEnv:
    name: str  # environment variable in the container
    secret: str  # Kubernetes secret
    key: str


@dataclass(frozen=True)
class SecretVolume:
    secret: str
    mount_path: str  # read-only, files readable by the owner only


@dataclass(frozen=True)
class InitContainer:
    """A container that runs to completion before the step's own, to fetch or prepare what
    the tool needs. Same hardening, resources and scratch volumes as the step; secrets of
    its own, which the step's container does not see."""

    name: str
    image: str
    args: list[str]
    cmds: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_volumes: tuple[SecretVolume, ...] = ()


@dataclass(frozen=True)
class PodStep:
    step: str
    image: str
    args: list[str]
    cmds: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    resources: Resources = Resources()
    scratch: tuple[str, ...] = ("/tmp",)  # writable emptyDirs under a read-only root, shared by every container
    artifacts: bool = False  # mount the artifact store
    exception: SecurityException | None = None
    init: tuple[InitContainer, ...] = ()  # run in order before the step's container


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return cleaned or "none"


def security_contexts(exception: SecurityException | None) -> tuple[k8s.V1PodSecurityContext, k8s.V1SecurityContext]:
    e = exception or SecurityException(reason="")
    pod = _m(k8s.V1PodSecurityContext,
        run_as_non_root=True, run_as_user=e.run_as_user, run_as_group=e.run_as_user, fs_group=e.run_as_user,
        seccomp_profile=_m(k8s.V1SeccompProfile, type=e.seccomp),
    )
    container = _m(k8s.V1SecurityContext,
        allow_privilege_escalation=False, privileged=False, run_as_non_root=True,
        read_only_root_filesystem=e.read_only_root, capabilities=_m(k8s.V1Capabilities, drop=["ALL"]),
        seccomp_profile=_m(k8s.V1SeccompProfile, type=e.seccomp),
    )
    if e.apparmor_unconfined:
        container.app_armor_profile = _m(k8s.V1AppArmorProfile, type="Unconfined")
    return pod, container


def pod_labels(service: str, step: str, commit: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels every platform pod carries: what it is part of, which service, step and commit,
    plus `extra` (e.g. the environment a re-scan pod looks at), each made a valid label value."""
    labels = {"app.kubernetes.io/part-of": "release-platform", "release-platform/service": label_value(service),
              "release-platform/step": label_value(step),
              # A template is rendered at run time to the validated 40-hex commit, a valid label as it is.
              "release-platform/commit": commit if "{{" in commit else label_value(commit)}
    labels.update({key: label_value(value) for key, value in (extra or {}).items()})
    return labels


# What differs between the pods of one mapped pod_operator; everything else (image, security
# contexts, volumes, resources, pool, retries) is fixed by the factory for all of them.
MAPPED_KEYS = ("name", "arguments", "labels")


def mapped_pod_kwargs(step: PodStep, *, service: str, commit: str, args: list[str] | None = None,
                      extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """One pod of a mapped `pod_operator(..., expand_kwargs=...)`: its name, arguments and labels."""
    return {"name": label_value(f"{service}-{step.step}"),
            "arguments": [str(a) for a in (step.args if args is None else args)],
            "labels": pod_labels(service, step.step, commit, extra_labels)}


def _secret_mounts(prefix: str, secret_volumes: tuple[SecretVolume, ...]) -> tuple[list, list]:
    volumes = [_m(k8s.V1Volume, name=f"{prefix}-{i}",
                  secret=_m(k8s.V1SecretVolumeSource, secret_name=sv.secret, default_mode=0o400))
               for i, sv in enumerate(secret_volumes)]
    mounts = [_m(k8s.V1VolumeMount, name=f"{prefix}-{i}", mount_path=sv.mount_path, read_only=True)
              for i, sv in enumerate(secret_volumes)]
    return volumes, mounts


def _api_token() -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    """What automountServiceAccountToken would mount, as a volume one container can mount alone."""
    sources = [
        _m(k8s.V1VolumeProjection, service_account_token=_m(k8s.V1ServiceAccountTokenProjection, path="token",
                                                             expiration_seconds=3600)),
        _m(k8s.V1VolumeProjection, config_map=_m(k8s.V1ConfigMapProjection, name="kube-root-ca.crt",
                                                  items=[_m(k8s.V1KeyToPath, key="ca.crt", path="ca.crt")])),
        _m(k8s.V1VolumeProjection, downward_api=_m(k8s.V1DownwardAPIProjection, items=[
            _m(k8s.V1DownwardAPIVolumeFile, path="namespace",
               field_ref=_m(k8s.V1ObjectFieldSelector, field_path="metadata.namespace"))])),
    ]
    volume = _m(k8s.V1Volume, name="api-token", projected=_m(k8s.V1ProjectedVolumeSource, sources=sources))
    return volume, _m(k8s.V1VolumeMount, name="api-token", mount_path=SERVICE_ACCOUNT_DIR, read_only=True)


def _init_containers(step: PodStep, container_ctx, scratch_mounts: list) -> tuple[list, list]:
    volumes, containers = [], []
    for init in step.init:
        init_volumes, init_mounts = _secret_mounts(f"{init.name}-secret", init.secret_volumes)
        volumes += init_volumes
        containers.append(_m(k8s.V1Container,
            name=init.name, image=init.image, command=init.cmds, args=list(init.args),
            env=[_m(k8s.V1EnvVar, name=k, value=v) for k, v in sorted(init.env.items())],
            resources=step.resources.to_k8s(), security_context=container_ctx,
            volume_mounts=scratch_mounts + init_mounts, image_pull_policy="IfNotPresent",
            termination_message_policy="FallbackToLogsOnError",
        ))
    return volumes, containers


def pod_operator(
    task_id: str,
    step: PodStep,
    *,
    namespace: str,
    kubernetes_conn_id: str,
    service: str | None = None,
    commit: str | None = None,
    expand_kwargs: Any = None,
    **kwargs: Any,
):
    """A ReleasePodOperator for `step`; kwargs pass through (pool, retries, trigger_rule...).

    With `expand_kwargs` (an XComArg resolving to a list of `mapped_pod_kwargs()` dicts) it is a
    mapped operator instead: one pod per item, all built here and hardened alike, differing only
    in `MAPPED_KEYS`. An item that tried to set anything else the factory sets fails the task.
    """
    from release.k8s.operators import INFRASTRUCTURE_RETRIES, ReleasePodOperator

    pod_ctx, container_ctx = security_contexts(step.exception)
    volumes = [_m(k8s.V1Volume, name=f"scratch-{i}", empty_dir=_m(k8s.V1EmptyDirVolumeSource, size_limit="1Gi"))
               for i, _ in enumerate(step.scratch)]
    mounts = [_m(k8s.V1VolumeMount, name=f"scratch-{i}", mount_path=path) for i, path in enumerate(step.scratch)]
    init_volumes, init_containers = _init_containers(step, container_ctx, list(mounts))
    if step.artifacts:
        volumes.append(_m(k8s.V1Volume, name="artifacts", persistent_volume_claim=_m(k8s.V1PersistentVolumeClaimVolumeSource, claim_name=ARTIFACTS_CLAIM)))
        mounts.append(_m(k8s.V1VolumeMount, name="artifacts", mount_path=ARTIFACTS_MOUNT))
    secret_volumes, secret_mounts = _secret_mounts("secret", step.secret_volumes)
    volumes += secret_volumes + init_volumes
    mounts += secret_mounts
    service_account = step.exception.api_service_account if step.exception else None
    if service_account:
        token_volume, token_mount = _api_token()
        volumes.append(token_volume)
        mounts.append(token_mount)
    env = [_m(k8s.V1EnvVar, name=k, value=v) for k, v in sorted(step.env.items())]
    env += [_m(k8s.V1EnvVar, name=s.name, value_from=_m(k8s.V1EnvVarSource, secret_key_ref=_m(k8s.V1SecretKeySelector, name=s.secret, key=s.key)))
            for s in step.secret_env]
    annotations = {}
    if step.exception:
        annotations["release-platform/security-exception"] = step.exception.reason
    defaults = dict(
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=300,
        deferrable=True,
        **INFRASTRUCTURE_RETRIES,
        log_events_on_failure=True,
    )
    common = dict(
        namespace=namespace,
        kubernetes_conn_id=kubernetes_conn_id,
        image=step.image,
        cmds=step.cmds,
        env_vars=env,
        annotations=annotations,
        container_resources=step.resources.to_k8s(),
        security_context=pod_ctx,
        container_security_context=container_ctx,
        volumes=volumes,
        volume_mounts=mounts,
        init_containers=init_containers,
        service_account_name=service_account,
        automount_service_account_token=False,  # a token, if any, is the api-token volume above
        image_pull_policy="IfNotPresent",
        termination_message_policy="FallbackToLogsOnError",
        **(defaults | kwargs),
    )
    if expand_kwargs is not None:
        if clash := sorted(set(kwargs) & set(MAPPED_KEYS)):
            raise TypeError(f"pod_operator({task_id!r}): {', '.join(clash)} come from expand_kwargs in a mapped operator")
        return ReleasePodOperator.partial(task_id=task_id, **common).expand_kwargs(expand_kwargs)
    if service is None or commit is None:
        raise TypeError(f"pod_operator({task_id!r}): service and commit are required (or expand_kwargs)")
    return ReleasePodOperator(
        task_id=task_id,
        name=label_value(f"{service}-{step.step}"),
        arguments=list(step.args),
        labels=pod_labels(service, step.step, commit),
        **common,
    )
