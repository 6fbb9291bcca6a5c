"""Set up the local stack; run by the one-shot services of docker-compose.yaml.

    python deploy/local/stack_init.py airflow   # airflow-init: config check, database, users, GitOps repo
    python deploy/local/stack_init.py cluster   # cluster-init: k3s namespaces, RBAC, DNS; one kubeconfig per environment

Both steps are idempotent: `docker compose up` runs them again on every start.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

DEPLOY_DIR = Path(__file__).resolve().parents[1]
# Where the platform's Roles for Argo CD Applications and Velero Backups live.
EXTRA_NAMESPACES = ("argocd", "velero")
# Compose services that pods in k3s reach by name; k3s's CoreDNS cannot ask Docker's resolver.
STACK_HOSTS = {"registry.local": [5000], "minio.local": [9000]}
# Local only; every `docker compose up` mints fresh tokens.
TOKEN_SECONDS = 30 * 24 * 3600
FIELD_MANAGER = "release-stack"


# -- airflow-init -------------------------------------------------------------------------


def airflow_init() -> None:
    from release.cli import main as release

    if release(["config", "check"]) != 0:
        raise SystemExit("the platform config is invalid; nothing else was set up")
    # Also writes the shared airflow.cfg with its generated fernet key and JWT secret, before
    # any other component starts (they wait for this service).
    subprocess.run(["airflow", "db", "migrate"], check=True)
    print(f"Passwords: {create_users()}")
    if release(["gitops", "init"]) != 0:
        raise SystemExit("could not create the local GitOps repository")
    # builds, rescans and helm-<env>: without them those tasks would wait for a pool forever.
    if release(["pools", "sync"]) != 0:
        raise SystemExit("could not create the Airflow pools")


def create_users() -> Path:
    """Airflow's own code gives every user of simple_auth_manager_users a password in the shared
    passwords file and prints the new ones; the api-server then only reads the file."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    SimpleAuthManager().init()
    return Path(SimpleAuthManager.get_generated_password_file())


# -- cluster-init: pure parts -------------------------------------------------------------


def cluster_manifests(env: str) -> list[dict]:
    path = DEPLOY_DIR / "clusters" / f"{env}.yaml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def service_account(docs: list[dict], namespace: str) -> str:
    (name,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["namespace"] == namespace]
    return name


def admin_kubeconfig(path: Path, server: str) -> dict:
    """k3s writes its admin kubeconfig for https://127.0.0.1:6443; other containers use `server`."""
    config = yaml.safe_load(path.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    return config


def env_kubeconfig(admin: dict, env: str, namespace: str, account: str, token: str) -> dict:
    """A kubeconfig that can do only what the environment's ServiceAccount may."""
    cluster = admin["clusters"][0]["cluster"]
    user = f"{account}@{namespace}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k3s", "cluster": {k: cluster[k] for k in ("server", "certificate-authority-data")}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": env, "context": {"cluster": "k3s", "user": user, "namespace": namespace}}],
        "current-context": env,
    }


def coredns_custom(ips: dict[str, str]) -> dict:
    """k3s's CoreDNS imports *.server files from this ConfigMap."""
    hosts = "".join(f"        {ip} {name}\n" for name, ip in sorted(ips.items()))
    zones = " ".join(f"{name}:53" for name in sorted(ips))
    server = f"{zones} {{\n    hosts {{\n{hosts}    }}\n}}\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coredns-custom", "namespace": "kube-system"},
        "data": {"release-stack.server": server},
    }


def stack_egress(namespace: str, ips: dict[str, str]) -> dict:
    """Local-only addition to deploy/clusters' policy: the stack's registry and MinIO speak plain
    HTTP on their own ports, which production's HTTPS-only egress rightly refuses."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "release-platform-steps-local-stack", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"kubernetes_pod_operator": "True"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": f"{ips[name]}/32"}}], "ports": [{"protocol": "TCP", "port": p} for p in ports]}
                for name, ports in sorted(STACK_HOSTS.items())
            ],
        },
    }


def write_private(path: Path, data: dict) -> None:
    """Atomically, readable by the owner only: the file holds a token."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)


# -- cluster-init: talking to k3s ---------------------------------------------------------


def retry(call, what: str, attempts: int = 60, delay: float = 2.0):
    """k3s reports healthy before every controller (service accounts, CRDs) has caught up."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (ApiException, HTTPError, OSError) as exc:
            status = getattr(exc, "status", None)
            if status is not None and 400 <= status < 500 and status not in (404, 409, 429):
                raise
            if attempt == attempts:
                raise
            print(f"{what}: {exc.__class__.__name__} {status or ''}; retrying", file=sys.stderr)
            time.sleep(delay)


def cluster_init() -> None:
    from kubernetes import client
    from kubernetes.config import new_client_from_config_dict
    from kubernetes.dynamic import DynamicClient

    from release.domain.config import load_config

    platform = load_config()
    admin = admin_kubeconfig(Path(os.environ["K3S_ADMIN_KUBECONFIG"]), os.environ["K3S_SERVER"])
    api = new_client_from_config_dict(admin)
    dynamic = retry(lambda: DynamicClient(api), "API discovery")
    core = client.CoreV1Api(api)

    def apply(doc: dict) -> None:
        kind = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        retry(lambda: resource.server_side_apply(body=doc, field_manager=FIELD_MANAGER, force_conflicts=True), kind)
        print(f"applied {kind}")

    namespaces = [env.namespace for env in platform.environments.values()] + list(EXTRA_NAMESPACES)
    for ns in namespaces:
        apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    ips = {name: socket.gethostbyname(name) for name in STACK_HOSTS}
    dns = coredns_custom(ips)
    apply(dns)
    # CoreDNS reads imported files at start only: roll it when the addresses change.
    digest = hashlib.sha256(dns["data"]["release-stack.server"].encode()).hexdigest()[:16]
    patch = {"spec": {"template": {"metadata": {"annotations": {"release-stack/hosts": digest}}}}}
    retry(lambda: client.AppsV1Api(api).patch_namespaced_deployment("coredns", "kube-system", patch), "restart CoreDNS")

    kube_dir = Path(os.environ.get("KUBE_DIR", "/opt/airflow/kube"))
    for env_name, env in platform.environments.items():
        docs = cluster_manifests(env_name)
        for doc in docs + [stack_egress(env.namespace, ips)]:
            apply(doc)
        account = service_account(docs, env.namespace)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
        )
        token = retry(
            lambda: core.create_namespaced_service_account_token(account, env.namespace, request),
            f"token for {env.namespace}/{account}",
        ).status.token
        path = kube_dir / f"{env.kubernetes_conn_id}.yaml"
        write_private(path, env_kubeconfig(admin, env_name, env.namespace, account, token))
        print(f"{env.kubernetes_conn_id}: {path} ({env.namespace}/{account})")


def main(argv: list[str]) -> int:
    steps = {"airflow": airflow_init, "cluster": cluster_init}
    if len(argv) != 1 or argv[0] not in steps:
        print(f"usage: stack_init.py {{{','.join(steps)}}}", file=sys.stderr)
        return 2
    steps[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
