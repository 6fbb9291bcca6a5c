"""Chart validation with real Helm (in-process, offline) and the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path

import yaml

from release.domain.config import PlatformConfig

KUBE_VERSION = "1.35"


class ChartError(ValueError):
    pass


def render_objects(chart_dir: Path, values: dict, name: str, namespace: str) -> list[dict]:
    import helm_python as helm

    rendered = helm.Chart.load(chart_dir).render(values, name=name, namespace=namespace)
    return [doc for path, text in rendered.items() if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]


def lint_problems(chart_dir: Path, values: dict, namespace: str) -> list[str]:
    import helm_python as helm

    report = helm.lint(str(chart_dir), values, strict=True, namespace=namespace, kube_version=f"v{KUBE_VERSION}.0")
    # Severity 1 (info, e.g. "icon is recommended") is advice, not a defect.
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + list(report["errors"])


def schema_problems(objects: list[dict]) -> list[str]:
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc.message}")
    return problems


def validate_service_chart(tree: Path, config: PlatformConfig, service: str) -> list[str]:
    """Lint and render the service's chart with each environment's values and validate
    every object; returns the environments checked, raises ChartError listing problems."""
    chart_dir = tree / config.services[service].chart
    problems, checked = [], []
    for env in config.env_order:
        if service not in config.services_in(env):
            continue
        env_file = tree / "environments" / env / "values.yaml"
        values = (yaml.safe_load(env_file.read_text()) or {}).get(service, {}) if env_file.exists() else {}
        namespace = config.environments[env].namespace
        found = lint_problems(chart_dir, values, namespace)
        if not found:
            found = schema_problems(render_objects(chart_dir, values, service, namespace))
        problems += [f"{env}: {p}" for p in found]
        checked.append(env)
    if problems:
        raise ChartError(f"chart {config.services[service].chart} of {service} is invalid:\n" + "\n".join(problems))
    return checked
