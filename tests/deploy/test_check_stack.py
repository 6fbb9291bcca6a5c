"""scripts/check_stack.py: the repository passes, and each rule fails when it is broken."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.conftest import ROOT, STACK_SERVICES, readme_with

CLUSTER = "deploy/clusters/dev.yaml"
VALUES = "deploy/helm/values.yaml"
COMPOSE = "docker-compose.yaml"


def problems_of(checker, stack) -> list[str]:
    return checker.check(stack.root)


def assert_reported(problems: list[str], *fragments: str) -> None:
    assert any(all(f in p for f in fragments) for p in problems), f"no problem mentions {fragments}:\n" + "\n".join(problems)


def test_the_repository_passes(checker):
    """Needs README.md's "Run the full stack" section (its table names the services)."""
    assert checker.check(ROOT) == []


def test_a_faithful_copy_passes(checker, stack):
    assert problems_of(checker, stack) == []


# -- README ---------------------------------------------------------------------------------


def test_readme_table_is_parsed_from_its_section_only(checker):
    text = readme_with(["postgres", "k3s"]) + "| `not-this` | other section |\n"
    assert checker.readme_services(text) == ["postgres", "k3s"]
    assert checker.readme_services("# nothing here\n") is None


def test_missing_readme_section_is_reported(checker, stack):
    (stack.root / "README.md").write_text("# Release platform\n")
    assert_reported(problems_of(checker, stack), "README.md", "Run the full stack")


def test_service_named_in_readme_must_exist(checker, stack):
    (stack.root / "README.md").write_text(readme_with(STACK_SERVICES + ["vault"]))
    assert_reported(problems_of(checker, stack), "'vault'", "no such service")


# -- docker-compose.yaml --------------------------------------------------------------------


def test_compose_schema_violations_are_reported(checker, stack):
    def break_it(compose):
        compose["services"]["redis"]["healthchek"] = compose["services"]["redis"].pop("healthcheck")
        compose["services"]["postgres"]["ports"] = {"5432": "5432"}

    stack.edit(COMPOSE, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "services.redis", "healthchek", "Compose Specification")
    assert_reported(problems, "services.postgres.ports", "Compose Specification")
    assert_reported(problems, "services.redis: no healthcheck")


def test_duplicate_keys_are_reported(checker, stack):
    compose = stack.root / COMPOSE
    compose.write_text(compose.read_text().replace("\n  redis:\n", "\n  redis:\n    image: redis:6\n", 1))
    assert_reported(problems_of(checker, stack), COMPOSE, "duplicate key image")
    cluster = stack.root / CLUSTER
    cluster.write_text(cluster.read_text().replace("rules:\n", "rules: []\nrules:\n", 1))
    assert_reported(problems_of(checker, stack), CLUSTER, "duplicate key rules")


def test_disabled_healthcheck_counts_as_none(checker, stack):
    stack.edit(COMPOSE, lambda c: c["services"]["k3s"].update(healthcheck={"disable": True}))
    assert_reported(problems_of(checker, stack), "services.k3s", "no healthcheck", "README.md")


def test_one_shot_job_must_be_awaited_and_not_restarted(checker, stack):
    def break_it(compose):
        worker = compose["services"]["airflow-worker"]
        worker["depends_on"] = {k: v for k, v in worker["depends_on"].items() if k != "velero-install"}
        compose["services"]["minio-init"]["restart"] = "always"

    stack.edit(COMPOSE, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "services.velero-install", "service_completed_successfully")
    assert_reported(problems, "services.minio-init.restart", "rerun it forever")


def test_waiting_for_health_of_a_service_without_healthcheck_is_reported(checker, stack):
    def break_it(compose):
        compose["services"]["airflow-worker"]["depends_on"] = {
            **compose["services"]["airflow-worker"]["depends_on"], "minio-init": {"condition": "service_healthy"},
        }

    stack.edit(COMPOSE, break_it)
    assert_reported(problems_of(checker, stack), "depends_on.minio-init", "no healthcheck")


def test_every_environment_needs_a_kubernetes_connection(checker, stack):
    def break_it(compose):
        scheduler = compose["services"]["airflow-scheduler"]
        env = dict(scheduler["environment"])  # shared with the other services through the anchor
        del env["AIRFLOW_CONN_K8S_PROD"]
        env["AIRFLOW_CONN_K8S_DEV"] = env["AIRFLOW_CONN_K8S_DEV"].replace('"kubernetes"', '"http"')
        scheduler["environment"] = env

    stack.edit(COMPOSE, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "airflow-scheduler", "AIRFLOW_CONN_K8S_PROD", "missing", "'prod'")
    assert_reported(problems, "airflow-scheduler", "AIRFLOW_CONN_K8S_DEV", "conn_type")


def test_kubeconfig_must_be_on_a_mounted_volume(checker, stack):
    def break_it(compose):
        triggerer = compose["services"]["airflow-triggerer"]
        triggerer["volumes"] = [v for v in triggerer["volumes"] if not v.endswith("/opt/airflow/kube:ro")]

    stack.edit(COMPOSE, break_it)
    assert_reported(problems_of(checker, stack), "airflow-triggerer", "on no volume")


# -- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_must_match_pinned_airflow_and_hold_no_secrets(checker, stack):
    dockerfile = stack.root / "Dockerfile"
    text = dockerfile.read_text().replace("apache/airflow:3.3.2-python3.11", "apache/airflow:3.3.1-python3.12")
    dockerfile.write_text(text + "ENV VAULT_TOKEN=s.abc\n")
    problems = problems_of(checker, stack)
    assert_reported(problems, "Dockerfile", "expected apache/airflow:3.3.2-python3.11")
    assert_reported(problems, "Dockerfile", "VAULT_TOKEN")


# -- Kubernetes manifests and RBAC ----------------------------------------------------------


def role(docs: list[dict], namespace: str) -> dict:
    return next(d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace)


def test_wildcard_verb_is_reported(checker, stack):
    stack.edit(CLUSTER, lambda docs: role(docs, "apps-dev")["rules"][0].update(verbs=["*"]))
    assert_reported(problems_of(checker, stack), CLUSTER, "Role apps-dev/release-platform", "rules[0].verbs: wildcard")


@pytest.mark.parametrize("field, value", [("resources", ["*"]), ("apiGroups", ["*"]), ("resources", ["pods/*"])])
def test_wildcard_resources_and_groups_are_reported(checker, stack, field, value):
    stack.edit(CLUSTER, lambda docs: role(docs, "velero")["rules"][0].update({field: value}))
    assert_reported(problems_of(checker, stack), "Role velero/release-platform-dev", f"{field}: wildcard")


@pytest.mark.parametrize(
    "group, resource, verb",
    [("", "secrets", "list"), ("", "pods/exec", "create"), ("", "serviceaccounts/token", "create"),
     ("rbac.authorization.k8s.io", "rolebindings", "create"), ("", "pods", "deletecollection")],
)
def test_escalation_grants_are_reported(checker, stack, group, resource, verb):
    rule = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
    stack.edit(CLUSTER, lambda docs: role(docs, "apps-dev")["rules"].append(rule))
    assert_reported(problems_of(checker, stack), "Role apps-dev/release-platform", repr(verb if resource == "pods" else resource))


def test_reading_rbac_is_not_an_escalation(checker, stack):
    rule = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["get", "list"]}
    stack.edit(CLUSTER, lambda docs: role(docs, "apps-dev")["rules"].append(rule))
    assert not [p for p in problems_of(checker, stack) if "rolebindings" in p or "'roles'" in p]


def test_cluster_wide_rbac_is_reported(checker, stack):
    def break_it(docs):
        cluster_role = copy.deepcopy(role(docs, "apps-dev"))
        cluster_role["kind"] = "ClusterRole"
        del cluster_role["metadata"]["namespace"]
        docs.append(cluster_role)
        docs.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "release-platform-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "release-platform", "namespace": "apps-dev"}],
        })

    stack.edit(CLUSTER, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "ClusterRole release-platform", "cluster-wide")
    assert_reported(problems, "ClusterRoleBinding release-platform-admin", "cluster-wide")


def test_rolebinding_to_clusterrole_or_group_is_reported(checker, stack):
    def break_it(docs):
        binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "apps-dev")
        binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}
        binding["subjects"].append({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"})

    stack.edit(CLUSTER, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "RoleBinding apps-dev/release-platform", "roleRef.kind 'ClusterRole'")
    assert_reported(problems, "RoleBinding apps-dev/release-platform", "Group 'system:authenticated'")


def test_manifest_must_match_the_kubernetes_schema(checker, stack):
    stack.edit(CLUSTER, lambda docs: role(docs, "argocd").update(rulez=role(docs, "argocd").pop("rules")))
    assert_reported(problems_of(checker, stack), "Role argocd/release-platform-dev", "rulez", "Kubernetes 1.35 schema")


def test_unknown_kinds_and_secrets_are_reported(checker, stack):
    app_project = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "dev", "namespace": "argocd"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token", "namespace": "apps-dev"}, "stringData": {"token": "s.abc"}}
    stack.dump("deploy/extra/objects.yaml", [app_project, secret, {"just": "data"}])
    problems = problems_of(checker, stack)
    assert_reported(problems, "deploy/extra/objects.yaml", "AppProject", "Couldn't find schema")
    assert_reported(problems, "deploy/extra/objects.yaml", "Secret apps-dev/vault-token", "Vault")
    assert_reported(problems, "deploy/extra/objects.yaml (document 3)", "not a Kubernetes manifest")


# -- deploy/clusters/<env>.yaml -------------------------------------------------------------


def test_every_environment_needs_its_cluster_file(checker, stack):
    (stack.root / "deploy" / "clusters" / "staging.yaml").unlink()
    assert_reported(problems_of(checker, stack), "deploy/clusters/staging.yaml: missing", "'staging'")


def test_grants_outside_the_environment_are_reported(checker, stack):
    def break_it(docs):
        role(docs, "argocd")["rules"][0]["resourceNames"] = ["umbrella-prod"]
        elsewhere = copy.deepcopy(role(docs, "apps-dev"))
        elsewhere["metadata"]["namespace"] = "apps-prod"
        docs.append(elsewhere)

    stack.edit(CLUSTER, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, CLUSTER, "resourceNames must be [umbrella-dev]")
    assert_reported(problems, CLUSTER, "Role apps-prod/release-platform", "namespace 'apps-prod'")


def test_cluster_file_needs_its_network_policy_denying_by_default(checker, stack):
    def break_it(docs):
        policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
        policy["spec"]["policyTypes"] = ["Ingress"]

    stack.edit(CLUSTER, break_it)
    assert_reported(problems_of(checker, stack), "NetworkPolicy apps-dev/release-platform-steps", "policyTypes")
    stack.edit(CLUSTER, lambda docs: docs.remove(next(d for d in docs if d["kind"] == "NetworkPolicy")))
    assert_reported(problems_of(checker, stack), CLUSTER, "no NetworkPolicy in namespace apps-dev")


def test_binding_another_account_is_reported(checker, stack):
    def break_it(docs):
        binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "velero")
        binding["subjects"][0]["name"] = "default"

    stack.edit(CLUSTER, break_it)
    assert_reported(problems_of(checker, stack), "RoleBinding velero/release-platform-dev", "apps-dev/default")


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_grants_are_exactly_what_the_platform_uses(stack, env):
    """The contract of deploy/clusters/: widening it should be a decision, not an accident."""
    docs = stack.load(f"deploy/clusters/{env}.yaml")
    grants = {
        (d["metadata"]["namespace"], r, v, tuple(rule.get("resourceNames", ())))
        for d in docs if d["kind"] == "Role"
        for rule in d["rules"] for r in rule["resources"] for v in rule["verbs"]
    }
    ns, app = f"apps-{env}", (f"umbrella-{env}",)
    assert grants == {
        *((ns, "pods", v, ()) for v in ("create", "get", "list", "watch", "patch", "delete")),
        (ns, "pods/log", "get", ()),
        *((ns, "events", v, ()) for v in ("list", "watch")),
        *(("argocd", "applications", v, app) for v in ("get", "list", "watch", "patch")),
        *(("velero", r, v, ()) for r in ("backups", "restores") for v in ("create", "get", "list", "watch")),
        *(("velero", "downloadrequests", v, ()) for v in ("create", "get", "delete")),
    }
    cluster_wide = {(r, v, tuple(rule.get("resourceNames", ())))
                    for d in docs if d["kind"] == "ClusterRole" for rule in d["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # Only prod is drilled (the config's default): only prod may delete its drill copy, and only that.
    assert cluster_wide == ({("namespaces", v, ("drill-apps-prod",)) for v in ("get", "delete")} if env == "prod" else set())


@pytest.mark.parametrize("widen, reported", [
    (lambda rule: rule.update(resourceNames=["apps-prod"]), "cluster-wide RBAC"),
    (lambda rule: rule.update(verbs=["get", "delete", "create"]), "cluster-wide RBAC"),
    (lambda rule: rule.pop("resourceNames"), "cluster-wide RBAC"),
    (lambda rule: rule.update(resourceNames=["drill-apps-dev"]), "resourceNames must be [drill-apps-prod]"),
])
def test_the_drill_cleanup_grant_cannot_be_widened(checker, stack, widen, reported):
    def break_it(docs):
        widen(next(d for d in docs if d["kind"] == "ClusterRole")["rules"][0])

    stack.edit("deploy/clusters/prod.yaml", break_it)
    assert_reported(problems_of(checker, stack), "release-platform-drill-prod", reported)


# -- deploy/helm/values.yaml ----------------------------------------------------------------


def test_weakened_security_contexts_are_reported(checker, stack):
    def break_it(values):
        values["securityContexts"]["pod"]["runAsNonRoot"] = False
        del values["securityContexts"]["pod"]["seccompProfile"]
        values["securityContexts"]["containers"]["capabilities"]["drop"] = ["NET_RAW"]
        values["redis"]["securityContexts"]["container"]["allowPrivilegeEscalation"] = True
        values["statsd"]["securityContexts"]["pod"]["runAsNonroot"] = True  # a typo Helm would accept

    stack.edit(VALUES, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "securityContexts.pod.runAsNonRoot: must be true")
    assert_reported(problems, "securityContexts.pod.seccompProfile.type: must be RuntimeDefault")
    assert_reported(problems, "securityContexts.container.capabilities.drop: must include ALL")
    assert_reported(problems, "redis.securityContexts.container.allowPrivilegeEscalation")
    assert_reported(problems, "statsd.securityContexts", "runAsNonroot")


def test_literal_secrets_and_bundled_database_are_reported(checker, stack):
    def break_it(values):
        values["data"]["metadataConnection"] = {"user": "airflow", "pass": "hunter2"}
        values["jwtSecret"] = "not-so-secret"
        values["postgresql"]["enabled"] = True
        values["config"]["secrets"]["backend_kwargs"] = '{"url": "https://vault", "token": "s.abc"}'

    stack.edit(VALUES, break_it)
    problems = problems_of(checker, stack)
    assert_reported(problems, "data.metadataConnection.pass", "literal secret")
    assert_reported(problems, "jwtSecret", "literal secret")
    assert_reported(problems, "postgresql.enabled")
    assert_reported(problems, "backend_kwargs.token")


def test_main_prints_problems_and_exits_1(checker, stack, capsys):
    stack.edit(CLUSTER, lambda docs: role(docs, "apps-dev")["rules"][0].update(verbs=["*"]))
    assert checker.main([str(stack.root)]) == 1
    assert "wildcard" in capsys.readouterr().out


def test_a_drilled_environment_lets_its_smoke_pods_reach_the_copy(checker, stack):
    def break_it(docs):
        policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
        policy["spec"]["egress"] = [r for r in policy["spec"]["egress"]
                                    if "drill-apps-prod" not in str(r)]

    stack.edit("deploy/clusters/prod.yaml", break_it)
    assert_reported(problems_of(checker, stack), "no NetworkPolicy egress to namespace drill-apps-prod")
