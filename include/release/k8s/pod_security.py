"""The Kubernetes Pod Security Standard "restricted" profile, as a check of one pod.

`restricted_violations(pod)` returns every way a Pod (or a bare PodSpec), as JSON sent to the
API server, breaks the profile (which includes "baseline"), each with the field path that
breaks it: https://kubernetes.io/docs/concepts/security/pod-security-standards/

Every container counts: containers, initContainers and ephemeralContainers. The platform's
pods are built by `release.k8s.pods`; the one step allowed to depart from the profile (rootless
BuildKit) declares its `SecurityException`, and `declared_departures()` says which violations
that exception accounts for, so a check can require exactly those and no more.
"""

from __future__ import annotations

from typing import Any, NamedTuple

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
ALLOWED_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                  "persistentVolumeClaim", "projected", "secret"})
ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")
ALLOWED_APPARMOR = ("RuntimeDefault", "Localhost")
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# Volume fields that are not a volume source.
_VOLUME_META = frozenset({"name"})


class Violation(NamedTuple):
    path: str  # e.g. spec.initContainers[0].securityContext.allowPrivilegeEscalation
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _containers(spec: dict, prefix: str):
    for key in CONTAINER_LISTS:
        for i, container in enumerate(spec.get(key) or []):
            yield f"{prefix}{key}[{i}]", container


def _seccomp_ok(context: dict) -> bool | None:
    """True/False when the context sets a seccomp profile, None when it leaves it unset."""
    profile = (context or {}).get("seccompProfile")
    if profile is None:
        return None
    return profile.get("type") in ALLOWED_SECCOMP


def restricted_violations(pod: dict[str, Any]) -> list[Violation]:
    """The violations of the "restricted" profile in one Pod (with metadata and spec) or PodSpec."""
    if "spec" in pod:
        spec, prefix, metadata = pod.get("spec") or {}, "spec.", pod.get("metadata") or {}
    else:
        spec, prefix, metadata = pod, "", {}
    out: list[Violation] = []

    def bad(path: str, message: str) -> None:
        out.append(Violation(path, message))

    # Host namespaces and HostProcess.
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            bad(f"{prefix}{key}", "must be unset or false")
    pod_ctx = spec.get("securityContext") or {}
    pctx = f"{prefix}securityContext"
    if (pod_ctx.get("windowsOptions") or {}).get("hostProcess"):
        bad(f"{pctx}.windowsOptions.hostProcess", "must be unset or false")

    # Volumes: no hostPath, and only the allowed types.
    for i, volume in enumerate(spec.get("volumes") or []):
        for kind in sorted(set(volume) - _VOLUME_META):
            if kind not in ALLOWED_VOLUME_TYPES:
                bad(f"{prefix}volumes[{i}].{kind}",
                    f"volume type {kind!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_VOLUME_TYPES))}")

    # Pod-level settings.
    if pod_ctx.get("runAsUser") == 0:
        bad(f"{pctx}.runAsUser", "must not be 0 (root)")
    if pod_ctx.get("runAsNonRoot") is False:
        bad(f"{pctx}.runAsNonRoot", "must be true")
    if _seccomp_ok(pod_ctx) is False:
        bad(f"{pctx}.seccompProfile.type", f"must be one of {', '.join(ALLOWED_SECCOMP)}")
    _apparmor(pod_ctx, pctx, bad)
    _selinux(pod_ctx, pctx, bad)
    for i, sysctl in enumerate(pod_ctx.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad(f"{pctx}.sysctls[{i}].name", f"{sysctl.get('name')!r} is not a safe sysctl")
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (value == "runtime/default" or value.startswith("localhost/")):
            bad(f"metadata.annotations[{key}]", "must be runtime/default or localhost/<profile>")

    # Every container.
    for path, container in _containers(spec, prefix):
        ctx = container.get("securityContext") or {}
        cctx = f"{path}.securityContext"
        if ctx.get("privileged"):
            bad(f"{cctx}.privileged", "must be unset or false")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            bad(f"{cctx}.windowsOptions.hostProcess", "must be unset or false")
        if ctx.get("allowPrivilegeEscalation") is not False:
            bad(f"{cctx}.allowPrivilegeEscalation", "must be false")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            bad(f"{cctx}.capabilities.drop", "must include ALL")
        for j, cap in enumerate(capabilities.get("add") or []):
            if cap not in ALLOWED_ADDED_CAPABILITIES:
                bad(f"{cctx}.capabilities.add[{j}]", f"{cap!r} may not be added; allowed: NET_BIND_SERVICE")
        if ctx.get("runAsUser") == 0:
            bad(f"{cctx}.runAsUser", "must not be 0 (root)")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_ctx.get("runAsNonRoot") is not True):
            bad(f"{cctx}.runAsNonRoot", f"must be true (here or in {pctx})")
        seccomp = _seccomp_ok(ctx)
        if seccomp is False or (seccomp is None and _seccomp_ok(pod_ctx) is not True):
            bad(f"{cctx}.seccompProfile.type", f"must be one of {', '.join(ALLOWED_SECCOMP)} (here or in {pctx})")
        if ctx.get("procMount") not in (None, "Default"):
            bad(f"{cctx}.procMount", "must be unset or Default")
        _apparmor(ctx, cctx, bad)
        _selinux(ctx, cctx, bad)
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                bad(f"{path}.ports[{j}].hostPort", "must be unset or 0")
    return out


def _apparmor(ctx: dict, path: str, bad) -> None:
    profile = ctx.get("appArmorProfile")
    if profile is not None and profile.get("type") not in ALLOWED_APPARMOR:
        bad(f"{path}.appArmorProfile.type", f"must be one of {', '.join(ALLOWED_APPARMOR)}")


def _selinux(ctx: dict, path: str, bad) -> None:
    options = ctx.get("seLinuxOptions") or {}
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        bad(f"{path}.seLinuxOptions.type", f"must be unset or one of {', '.join(t for t in ALLOWED_SELINUX_TYPES if t)}")
    for key in ("user", "role"):
        if options.get(key):
            bad(f"{path}.seLinuxOptions.{key}", "must be unset")


def declared_departures(pod: dict[str, Any], exception) -> set[str]:
    """The field paths at which a pod built by `release.k8s.pods` for a step with `exception` (a
    `release.k8s.pods.SecurityException`) departs from "restricted" by design: its seccomp profile
    when the exception names one other than RuntimeDefault, its AppArmor profile when the
    exception runs unconfined. Init containers get the step's security contexts from the
    factory, so they depart alike."""
    spec = pod.get("spec", pod)
    prefix = "spec." if "spec" in pod else ""
    paths: set[str] = set()
    if exception is None:
        return paths
    containers = [path for path, _ in _containers(spec, prefix)]
    if exception.seccomp not in ALLOWED_SECCOMP:
        paths.add(f"{prefix}securityContext.seccompProfile.type")
        paths.update(f"{path}.securityContext.seccompProfile.type" for path in containers)
    if exception.apparmor_unconfined:
        paths.update(f"{path}.securityContext.appArmorProfile.type" for path in containers)
    return paths
