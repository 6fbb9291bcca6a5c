"""The one factory for every pod the platform runs, and the operator that runs them.

Every pipeline step is a `PodStep`: a tool image, an argument list (never a shell
string), and the resources it needs. `pod_operator()` turns a step into a
KubernetesPodOperator that is hardened by default: non-root, every capability dropped,
no privilege escalation, read-only root filesystem with an emptyDir for scratch, the
RuntimeDefault seccomp profile, no service-account token, requests and limits, and
labels that say which service, commit and step the pod belongs to. A step that truly
needs an exception (rootless BuildKit) carries it in its own `PodStep`, with the reason.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import models as k8s

ARTIFACTS_MOUNT = "/artifacts"
ARTIFACTS_CLAIM = "release-artifacts"  # a ReadWriteMany volume the workers see as artifacts.base_url
RUN_AS_USER = 65532  # "nonroot" in distroless and Chainguard images

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
class PodStep:
    step: str
    image: str
    args: list[str]
    cmds: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    resources: Resources = Resources()
    scratch: tuple[str, ...] = ("/tmp",)  # writable emptyDirs under a read-only root
    artifacts: bool = False  # mount the artifact store
    exception: SecurityException | None = None


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


def pod_operator(
    task_id: str,
    step: PodStep,
    *,
    service: str,
    commit: str,
    namespace: str,
    kubernetes_conn_id: str,
    **kwargs: Any,
):
    """A ReleasePodOperator for `step`; kwargs pass through (pool, retries, trigger_rule...)."""
    from release.operators import ReleasePodOperator

    pod_ctx, container_ctx = security_contexts(step.exception)
    volumes = [_m(k8s.V1Volume, name=f"scratch-{i}", empty_dir=_m(k8s.V1EmptyDirVolumeSource, size_limit="1Gi"))
               for i, _ in enumerate(step.scratch)]
    mounts = [_m(k8s.V1VolumeMount, name=f"scratch-{i}", mount_path=path) for i, path in enumerate(step.scratch)]
    if step.artifacts:
        volumes.append(_m(k8s.V1Volume, name="artifacts", persistent_volume_claim=_m(k8s.V1PersistentVolumeClaimVolumeSource, claim_name=ARTIFACTS_CLAIM)))
        mounts.append(_m(k8s.V1VolumeMount, name="artifacts", mount_path=ARTIFACTS_MOUNT))
    for i, sv in enumerate(step.secret_volumes):
        volumes.append(_m(k8s.V1Volume, name=f"secret-{i}",
                          secret=_m(k8s.V1SecretVolumeSource, secret_name=sv.secret, default_mode=0o400)))
        mounts.append(_m(k8s.V1VolumeMount, name=f"secret-{i}", mount_path=sv.mount_path, read_only=True))
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
        retries=2,
        log_events_on_failure=True,
    )
    return ReleasePodOperator(
        task_id=task_id,
        name=label_value(f"{service}-{step.step}"),
        namespace=namespace,
        kubernetes_conn_id=kubernetes_conn_id,
        image=step.image,
        cmds=step.cmds,
        arguments=list(step.args),
        env_vars=env,
        labels={"app.kubernetes.io/part-of": "release-platform", "release-platform/service": label_value(service),
                "release-platform/step": label_value(step.step),
                # A template is rendered at run time to the validated 40-hex commit, a valid label as it is.
                "release-platform/commit": commit if "{{" in commit else label_value(commit)},
        annotations=annotations,
        container_resources=step.resources.to_k8s(),
        security_context=pod_ctx,
        container_security_context=container_ctx,
        volumes=volumes,
        volume_mounts=mounts,
        automount_service_account_token=False,
        image_pull_policy="IfNotPresent",
        termination_message_policy="FallbackToLogsOnError",
        **(defaults | kwargs),
    )


def parse_result(message: str | None) -> Any:
    """What a pod said in /dev/termination-log: JSON when it is JSON, else the text."""
    if not message:
        return None
    try:
        return json.loads(message)
    except json.JSONDecodeError:
        return message.strip()
