"""The Pod Security Standard "restricted" check: a compliant pod passes, each rule can fail,
and every violation names its field path."""

from __future__ import annotations

import copy

import pytest

from release.k8s.pod_security import declared_departures, restricted_violations
from release.k8s.steps import BUILDKIT_EXCEPTION

HARDENED = {"allowPrivilegeEscalation": False, "privileged": False, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def good_pod() -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "service-a-scan", "annotations": {
            "container.apparmor.security.beta.kubernetes.io/base": "runtime/default"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                                "seLinuxOptions": {"level": "s0:c123,c456"}},
            "initContainers": [{"name": "clone", "image": "alpine/git:2.47.1", "securityContext": dict(HARDENED)}],
            "containers": [{"name": "base", "image": "aquasec/trivy:0.58.1",
                            "securityContext": {**HARDENED, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                                                "appArmorProfile": {"type": "RuntimeDefault"},
                                                "seLinuxOptions": {"type": "container_t"}, "procMount": "Default"},
                            "ports": [{"containerPort": 8080}]}],
            "volumes": [{"name": "scratch-0", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "artifacts", "persistentVolumeClaim": {"claimName": "release-artifacts"}},
                        {"name": "secret-0", "secret": {"secretName": "cosign-key", "defaultMode": 256}},
                        {"name": "api-token", "projected": {"sources": []}},
                        {"name": "cfg", "configMap": {"name": "x"}}, {"name": "d", "downwardAPI": {"items": []}},
                        {"name": "c", "csi": {"driver": "x"}}, {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}}],
            "automountServiceAccountToken": False,
        },
    }


def test_a_compliant_pod_and_its_bare_spec_pass():
    assert restricted_violations(good_pod()) == []
    assert restricted_violations(good_pod()["spec"]) == []


def test_container_settings_may_stand_in_for_unset_pod_settings():
    pod = good_pod()
    del pod["spec"]["securityContext"]["runAsNonRoot"], pod["spec"]["securityContext"]["seccompProfile"]
    assert restricted_violations(pod) == []  # every container sets both itself


def _set(path: tuple, value):
    def mutate(pod):
        node = pod
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return mutate


_DELETE = object()
S, C, I = ("spec",), ("spec", "containers", 0), ("spec", "initContainers", 0)

BAD = [
    ("host network", _set((*S, "hostNetwork"), True), "spec.hostNetwork"),
    ("host PID", _set((*S, "hostPID"), True), "spec.hostPID"),
    ("host IPC", _set((*S, "hostIPC"), True), "spec.hostIPC"),
    ("HostProcess pod", _set((*S, "securityContext", "windowsOptions"), {"hostProcess": True}),
     "spec.securityContext.windowsOptions.hostProcess"),
    ("HostProcess container", _set((*C, "securityContext", "windowsOptions"), {"hostProcess": True}),
     "spec.containers[0].securityContext.windowsOptions.hostProcess"),
    ("hostPath volume", _set((*S, "volumes", 0), {"name": "h", "hostPath": {"path": "/"}}), "spec.volumes[0].hostPath"),
    ("gitRepo volume", _set((*S, "volumes", 1), {"name": "g", "gitRepo": {"repository": "x"}}), "spec.volumes[1].gitRepo"),
    ("nfs volume", _set((*S, "volumes", 1), {"name": "n", "nfs": {"server": "x", "path": "/"}}), "spec.volumes[1].nfs"),
    ("privileged", _set((*C, "securityContext", "privileged"), True), "spec.containers[0].securityContext.privileged"),
    ("privileged init container", _set((*I, "securityContext", "privileged"), True),
     "spec.initContainers[0].securityContext.privileged"),
    ("escalation allowed", _set((*C, "securityContext", "allowPrivilegeEscalation"), True),
     "spec.containers[0].securityContext.allowPrivilegeEscalation"),
    ("escalation unset in an init container", _set((*I, "securityContext", "allowPrivilegeEscalation"), _DELETE),
     "spec.initContainers[0].securityContext.allowPrivilegeEscalation"),
    ("capabilities not dropped", _set((*C, "securityContext", "capabilities"), {"drop": ["NET_RAW"]}),
     "spec.containers[0].securityContext.capabilities.drop"),
    ("capability added", _set((*I, "securityContext", "capabilities"), {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
     "spec.initContainers[0].securityContext.capabilities.add[0]"),
    ("pod runs as root", _set((*S, "securityContext", "runAsUser"), 0), "spec.securityContext.runAsUser"),
    ("container runs as root", _set((*C, "securityContext", "runAsUser"), 0), "spec.containers[0].securityContext.runAsUser"),
    ("pod allows root", _set((*S, "securityContext", "runAsNonRoot"), False), "spec.securityContext.runAsNonRoot"),
    ("container allows root", _set((*I, "securityContext", "runAsNonRoot"), False),
     "spec.initContainers[0].securityContext.runAsNonRoot"),
    ("non-root set nowhere", lambda p: [p["spec"]["securityContext"].pop("runAsNonRoot"),
                                       p["spec"]["initContainers"][0]["securityContext"].pop("runAsNonRoot")],
     "spec.initContainers[0].securityContext.runAsNonRoot"),
    ("pod seccomp unconfined", _set((*S, "securityContext", "seccompProfile"), {"type": "Unconfined"}),
     "spec.securityContext.seccompProfile.type"),
    ("container seccomp unconfined", _set((*C, "securityContext", "seccompProfile"), {"type": "Unconfined"}),
     "spec.containers[0].securityContext.seccompProfile.type"),
    ("seccomp set nowhere", lambda p: [p["spec"]["securityContext"].pop("seccompProfile"),
                                      p["spec"]["containers"][0]["securityContext"].pop("seccompProfile")],
     "spec.containers[0].securityContext.seccompProfile.type"),
    ("unmasked /proc", _set((*C, "securityContext", "procMount"), "Unmasked"), "spec.containers[0].securityContext.procMount"),
    ("unsafe sysctl", _set((*S, "securityContext", "sysctls"), [{"name": "kernel.msgmax", "value": "1"}]),
     "spec.securityContext.sysctls[0].name"),
    ("SELinux type", _set((*C, "securityContext", "seLinuxOptions"), {"type": "spc_t"}),
     "spec.containers[0].securityContext.seLinuxOptions.type"),
    ("SELinux user", _set((*S, "securityContext", "seLinuxOptions"), {"user": "system_u"}),
     "spec.securityContext.seLinuxOptions.user"),
    ("SELinux role", _set((*I, "securityContext", "seLinuxOptions"), {"role": "system_r"}),
     "spec.initContainers[0].securityContext.seLinuxOptions.role"),
    ("AppArmor unconfined", _set((*C, "securityContext", "appArmorProfile"), {"type": "Unconfined"}),
     "spec.containers[0].securityContext.appArmorProfile.type"),
    ("pod AppArmor unconfined", _set((*S, "securityContext", "appArmorProfile"), {"type": "Unconfined"}),
     "spec.securityContext.appArmorProfile.type"),
    ("AppArmor annotation unconfined", _set(("metadata", "annotations", "container.apparmor.security.beta.kubernetes.io/base"),
                                            "unconfined"),
     "metadata.annotations[container.apparmor.security.beta.kubernetes.io/base]"),
    ("host port", _set((*C, "ports", 0, "hostPort"), 80), "spec.containers[0].ports[0].hostPort"),
    ("ephemeral container", _set((*S, "ephemeralContainers"), [{"name": "debug", "image": "busybox:1.36"}]),
     "spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation"),
]


@pytest.mark.parametrize("mutate,path", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_rule_fails_naming_the_field(mutate, path):
    pod = copy.deepcopy(good_pod())
    mutate(pod)
    violations = restricted_violations(pod)
    assert path in {v.path for v in violations}, violations
    assert all(str(v).startswith(f"{v.path}: ") and v.message for v in violations)


def test_every_violation_is_reported_at_once():
    pod = good_pod()
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["initContainers"][0]["securityContext"] = {}
    paths = {v.path for v in restricted_violations(pod)}
    assert paths == {"spec.hostNetwork",
                     "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
                     "spec.initContainers[0].securityContext.capabilities.drop"}


def test_the_builder_exception_accounts_for_its_seccomp_and_apparmor_departures_only():
    pod = good_pod()
    unconfined = {"type": "Unconfined"}
    pod["spec"]["securityContext"]["seccompProfile"] = unconfined
    for c in (*pod["spec"]["initContainers"], *pod["spec"]["containers"]):
        c["securityContext"]["seccompProfile"] = unconfined
        c["securityContext"]["appArmorProfile"] = unconfined
    found = {v.path for v in restricted_violations(pod)}
    assert found == declared_departures(pod, BUILDKIT_EXCEPTION) == {
        "spec.securityContext.seccompProfile.type",
        "spec.initContainers[0].securityContext.seccompProfile.type",
        "spec.initContainers[0].securityContext.appArmorProfile.type",
        "spec.containers[0].securityContext.seccompProfile.type",
        "spec.containers[0].securityContext.appArmorProfile.type",
    }
    assert declared_departures(pod, None) == set()
