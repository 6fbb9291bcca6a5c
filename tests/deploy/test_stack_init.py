"""deploy/local/stack_init.py: what cluster-init writes and applies, and the users airflow-init creates."""

from __future__ import annotations

import json
import stat

import kubernetes_validate
import yaml

from tests.deploy.conftest import ROOT

ADMIN = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "default", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}],
    "users": [{"name": "default", "user": {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}}],
    "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    "current-context": "default",
}
IPS = {"registry.local": "172.18.0.5", "minio.local": "172.18.0.6"}


def test_admin_kubeconfig_points_at_the_k3s_service(stack_init, tmp_path):
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(ADMIN))
    config = stack_init.admin_kubeconfig(path, "https://k3s:6443")
    assert config["clusters"][0]["cluster"]["server"] == "https://k3s:6443"


def test_environment_kubeconfig_carries_only_the_service_account_token(stack_init):
    config = stack_init.env_kubeconfig(ADMIN, "prod", "apps-prod", "release-platform", "tok")
    assert config["users"] == [{"name": "release-platform@apps-prod", "user": {"token": "tok"}}]
    assert config["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}
    assert config["contexts"][0]["context"]["namespace"] == "apps-prod"
    assert "client-key-data" not in json.dumps(config)  # the admin's credentials stay behind

    from kubernetes.config.kube_config import KubeConfigLoader

    loader = KubeConfigLoader(config_dict=config)
    loader.set_active_context()
    assert loader.current_context["context"]["namespace"] == "apps-prod"


def test_every_environment_has_its_service_account(stack_init):
    for env in ("dev", "staging", "prod"):
        assert stack_init.service_account(stack_init.cluster_manifests(env), f"apps-{env}") == "release-platform"


def test_generated_objects_are_valid_kubernetes(stack_init):
    dns = stack_init.coredns_custom(IPS)
    egress = stack_init.stack_egress("apps-dev", IPS)
    for obj in (dns, egress):
        kubernetes_validate.validate(obj, "1.35", strict=True)
    server = dns["data"]["release-stack.server"]
    assert server.startswith("minio.local:53 registry.local:53 {")
    assert "172.18.0.5 registry.local" in server and server.count("{") == server.count("}")
    assert egress["spec"]["egress"][1] == {
        "to": [{"ipBlock": {"cidr": "172.18.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 5000}],
    }


def test_kubeconfig_file_is_private(stack_init, tmp_path):
    path = tmp_path / "k8s_dev.yaml"
    stack_init.write_private(path, {"token": "tok"})
    stack_init.write_private(path, {"token": "new"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == {"token": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["k8s_dev.yaml"]


def test_users_get_passwords_once(stack_init, tmp_path, monkeypatch, capsys):
    passwords = tmp_path / "passwords.json"
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,alice:op,bob:op")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    assert stack_init.create_users() == passwords
    first = json.loads(passwords.read_text())
    assert sorted(first) == ["admin", "alice", "bob"] and all(first.values())
    assert "Password for user 'alice'" in capsys.readouterr().out
    stack_init.create_users()
    assert json.loads(passwords.read_text()) == first


def test_usage(stack_init, capsys):
    assert stack_init.main([]) == 2
    assert stack_init.main(["nope"]) == 2
    assert "airflow,cluster" in capsys.readouterr().err


def test_compose_runs_the_steps_this_script_has(stack_init):
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    for service, step in (("airflow-init", "airflow"), ("cluster-init", "cluster")):
        command = compose["services"][service]["command"]
        assert command == ["python", "/opt/airflow/deploy/local/stack_init.py", step]


class FakeResource:
    def __init__(self, applied: list, kind: str):
        self.applied, self.kind = applied, kind

    def server_side_apply(self, body, field_manager, force_conflicts):
        assert body["kind"] == self.kind and field_manager == "release-stack" and force_conflicts
        self.applied.append(body)


def test_cluster_init_applies_rbac_and_writes_one_kubeconfig_per_environment(stack_init, tmp_path, monkeypatch):
    """The orchestration against stand-ins for the API (the real k3s cannot run here)."""
    import kubernetes.client
    import kubernetes.dynamic

    applied, tokens, patches = [], [], []

    class Dynamic:
        def __init__(self, api):
            self.resources = self

        def get(self, api_version, kind):
            return FakeResource(applied, kind)

    class Core:
        def __init__(self, api):
            pass

        def create_namespaced_service_account_token(self, name, namespace, body):
            tokens.append((namespace, name, body.spec.expiration_seconds))
            return kubernetes.client.AuthenticationV1TokenRequest(
                spec=body.spec, status=kubernetes.client.V1TokenRequestStatus(token=f"token-{namespace}", expiration_timestamp=None)
            )

    class Apps:
        def __init__(self, api):
            pass

        def patch_namespaced_deployment(self, name, namespace, body):
            patches.append((namespace, name))

    admin = tmp_path / "admin.yaml"
    admin.write_text(yaml.safe_dump(ADMIN))
    monkeypatch.setenv("K3S_ADMIN_KUBECONFIG", str(admin))
    monkeypatch.setenv("K3S_SERVER", "https://k3s:6443")
    monkeypatch.setenv("KUBE_DIR", str(tmp_path))
    monkeypatch.setattr(kubernetes.dynamic, "DynamicClient", Dynamic)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", Core)
    monkeypatch.setattr(kubernetes.client, "AppsV1Api", Apps)
    monkeypatch.setattr(stack_init.socket, "gethostbyname", lambda name: IPS[name])

    assert stack_init.main(["cluster"]) == 0

    kinds = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in applied]
    namespaces = [name for kind, _, name in kinds if kind == "Namespace"]
    assert namespaces == ["apps-dev", "apps-staging", "apps-prod", "argocd", "velero"]
    assert kinds.index(("ConfigMap", "kube-system", "coredns-custom")) < kinds.index(("ServiceAccount", "apps-dev", "release-platform"))
    assert ("Role", "argocd", "release-platform-prod") in kinds
    assert ("NetworkPolicy", "apps-prod", "release-platform-steps-local-stack") in kinds
    assert patches == [("kube-system", "coredns")]
    assert [t[:2] for t in tokens] == [("apps-dev", "release-platform"), ("apps-staging", "release-platform"), ("apps-prod", "release-platform")]
    for env in ("dev", "staging", "prod"):
        config = yaml.safe_load((tmp_path / f"k8s_{env}.yaml").read_text())
        assert config["users"][0]["user"] == {"token": f"token-apps-{env}"}
        assert config["clusters"][0]["cluster"]["server"] == "https://k3s:6443"
