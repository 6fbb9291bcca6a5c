"""Charts checked with real Helm (v4, in-process) and the Kubernetes OpenAPI schemas.

Every service chart and every generated umbrella chart must render and lint for each
environment's values, and every rendered object must be one a real API server accepts.
"""

from __future__ import annotations

import logging

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from release.domain.config import GITOPS_TEMPLATE_DIR
from tests.helpers import digest, request_for

KUBE_VERSION = "1.35"
ENVS = ["dev", "staging", "prod"]
SERVICES = ["service-a", "service-b", "service-c"]

helm.disable_logging()
logging.getLogger("helm_python").setLevel(logging.WARNING)


def env_values(env: str) -> dict:
    return yaml.safe_load((GITOPS_TEMPLATE_DIR / "environments" / env / "values.yaml").read_text()) or {}


def objects(rendered: dict[str, str]) -> list[dict]:
    out = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            out += [d for d in yaml.safe_load_all(text) if d]
    return out


def validate_all(objs: list[dict]) -> None:
    for obj in objs:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def lint_errors(path, values) -> list[str]:
    report = helm.lint(str(path), values, strict=True, namespace="apps", kube_version=f"v{KUBE_VERSION}.0")
    # Severity 1 (info) such as "icon is recommended" is advice, not a defect.
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("service", SERVICES)
def test_service_chart_renders_lints_and_validates(service, env):
    chart_dir = GITOPS_TEMPLATE_DIR / "services" / service
    values = {**env_values(env).get(service, {}), "image": {"digest": digest("a")}, "version": "1.2.3"}
    assert lint_errors(chart_dir, values) == []
    objs = objects(helm.Chart.load(chart_dir).render(values, name=service, namespace=f"apps-{env}"))
    validate_all(objs)

    kinds = sorted({o["kind"] for o in objs})
    assert {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"} <= set(kinds)
    (deployment,) = by_kind(objs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith(f"@{digest('a')}")
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "512Mi"}
    assert container["resources"]["requests"]
    assert container["livenessProbe"] != container["readinessProbe"]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    deny = [n for n in by_kind(objs, "NetworkPolicy") if n["metadata"]["name"].endswith("-default-deny")]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny[0]["spec"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3"


def test_autoscaling_follows_the_environment():
    def render(env):
        return objects(helm.Chart.load(GITOPS_TEMPLATE_DIR / "services/service-a").render(
            env_values(env).get("service-a", {}), name="service-a", namespace="x"))

    dev, prod = render("dev"), render("prod")
    assert by_kind(dev, "HorizontalPodAutoscaler") == []
    assert by_kind(dev, "Deployment")[0]["spec"]["replicas"] == 1
    (hpa,) = by_kind(prod, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert "replicas" not in by_kind(prod, "Deployment")[0]["spec"]  # the HPA owns it


def test_rbac_only_where_a_service_asks_for_it():
    def kinds(service):
        return {o["kind"] for o in objects(helm.Chart.load(GITOPS_TEMPLATE_DIR / "services" / service).render(
            {}, name=service, namespace="x"))}

    assert "Role" not in kinds("service-a")
    assert {"Role", "RoleBinding"} <= kinds("service-c")


def test_invalid_values_are_caught_by_the_schema_check():
    objs = objects(helm.Chart.load(GITOPS_TEMPLATE_DIR / "services/service-a").render(
        {"port": "not-a-port"}, name="service-a", namespace="x"))
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all(objs)


@pytest.mark.parametrize("env", ENVS)
def test_generated_umbrella_charts_render_lint_and_validate(registry, config, env):
    registry.record_deployment(env, [request_for(config, "service-a", "1.0.0", "a"),
                                     request_for(config, "service-c", "3.0.0", "c")], by="alice", run_id="r")
    with registry.store.checkout() as tree:
        chart_dir = tree / "umbrella" / env
        helm.dependency_update(chart_dir)
        values = yaml.safe_load((chart_dir / "values.yaml").read_text())
        merged = helm.Chart.load(chart_dir).merge_values(env_values(env))
        assert lint_errors(chart_dir, env_values(env)) == []
        rendered = helm.Chart.load(chart_dir).render(env_values(env), name=f"umbrella-{env}",
                                                     namespace=config.environments[env].namespace)
    objs = objects(rendered)
    validate_all(objs)
    images = sorted(c["image"] for d in by_kind(objs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"])
    assert images == sorted(f"{values[s]['image']['repository']}@{values[s]['image']['digest']}" for s in ("service-a", "service-c"))
    assert images[0].endswith(digest("a"))
    assert merged["service-a"]["image"]["digest"] == digest("a")
    notes = [v for k, v in rendered.items() if k.endswith("NOTES.txt")]
    assert notes and "service-a: 1.0.0" in notes[0] and "service-c: 3.0.0" in notes[0]


def test_empty_umbrella_chart_is_valid(registry):
    with registry.store.checkout() as tree:
        assert lint_errors(tree / "umbrella/prod", {}) == []
        assert objects(helm.Chart.load(tree / "umbrella/prod").render({}, name="umbrella-prod", namespace="p")) == []


def test_applicationset_and_template_yaml_parse():
    appset = yaml.safe_load((GITOPS_TEMPLATE_DIR / "argocd/applicationset.yaml").read_text())
    assert appset["kind"] == "ApplicationSet"
    envs = [e["env"] for e in appset["spec"]["generators"][0]["list"]["elements"]]
    assert envs == ENVS
    assert appset["spec"]["template"]["spec"]["source"]["path"] == "umbrella/{{ .env }}"
    assert "automated" not in appset["spec"]["template"]["spec"]["syncPolicy"]
