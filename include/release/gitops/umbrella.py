"""Umbrella charts: `umbrella/<env>/` generated from the registry, never edited by hand.

Argo CD (or `helm upgrade`) deploys one umbrella chart per environment. It depends on
each deployed service's chart and pins each image by digest, so the chart and the
registry cannot disagree: every registry write regenerates them in the same commit.
Output is a pure function of (registry, service charts): unchanged inputs, no diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from release.domain.config import PlatformConfig
from release.domain.registry import RegistryState, dump_yaml, umbrella_dir

_HEADER = "# Generated from registry/versions.yaml by the release platform. Do not edit by hand.\n"
CHART_VERSION = "1.0.0"


class UmbrellaError(ValueError):
    pass


def _service_chart(tree: Path, chart_path: str, service: str) -> dict:
    chart_file = tree / chart_path / "Chart.yaml"
    if not chart_file.exists():
        raise UmbrellaError(f"services.{service}.chart: no chart at {chart_path}/Chart.yaml in the GitOps repository")
    meta = yaml.safe_load(chart_file.read_text(encoding="utf-8")) or {}
    if not meta.get("name") or not meta.get("version"):
        raise UmbrellaError(f"{chart_path}/Chart.yaml: needs 'name' and 'version'")
    return meta


def render(tree: Path, config: PlatformConfig, state: RegistryState, env: str) -> dict[str, str]:
    """The files of `umbrella/<env>/`, keyed by their path in the repository."""
    deployed = state.current(env)
    dependencies = []
    values: dict = {"global": {"environment": env, "namespace": config.environments[env].namespace}}
    for service in sorted(deployed):
        if service not in config.services:
            continue  # removed from the config; the registry keeps its history
        d = deployed[service]
        chart_path = config.services[service].chart
        meta = _service_chart(tree, chart_path, service)
        dep = {
            "name": meta["name"],
            "version": str(meta["version"]),
            "repository": "file://" + os.path.relpath(chart_path, umbrella_dir(env)),
        }
        if meta["name"] != service:
            dep["alias"] = service
        dependencies.append(dep)
        repository, _, digest = d.image.partition("@")
        values[service] = {"image": {"repository": repository, "digest": digest}, "version": d.version}
    chart = {
        "apiVersion": "v2",
        "name": f"umbrella-{env}",
        "description": f"Every service the registry records in {env}, pinned by digest.",
        "type": "application",
        "version": CHART_VERSION,
        "dependencies": dependencies,
    }
    base = umbrella_dir(env)
    listing = "".join(f"  {s}: {deployed[s].version}\n" for s in sorted(deployed) if s in config.services)
    listing = listing or "  nothing yet\n"
    return {
        f"{base}/Chart.yaml": _HEADER + dump_yaml(chart),
        f"{base}/values.yaml": _HEADER + dump_yaml(values),
        # Shown by `helm install/upgrade`; also gives the chart the templates/ folder lint expects.
        f"{base}/templates/NOTES.txt": f"{env} (namespace {{{{ .Release.Namespace }}}}) runs:\n{listing}",
    }


def render_all(tree: Path, config: PlatformConfig, state: RegistryState) -> dict[str, str]:
    files: dict[str, str] = {}
    for env in config.env_order:
        files |= render(tree, config, state, env)
    return files


def drift(tree: Path, config: PlatformConfig, state: RegistryState) -> list[str]:
    """Paths whose content differs from what the registry says they must be."""
    out = []
    for path, text in render_all(tree, config, state).items():
        f = tree / path
        if not f.exists() or f.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def write_all(tree: Path, config: PlatformConfig, state: RegistryState) -> list[str]:
    changed = []
    for path, text in render_all(tree, config, state).items():
        f = tree / path
        if f.exists() and f.read_text(encoding="utf-8") == text:
            continue
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed


def reconcile(registry) -> tuple[list[str], str | None]:
    """Regenerate drifted umbrella charts in one commit. Returns (drifted paths, commit sha)."""
    found: list[str] = []

    def apply(tree: Path) -> str | None:
        state = RegistryState.from_tree(tree)
        found[:] = write_all(tree, registry.config, state)
        if not found:
            return None
        listing = "\n".join(f"- {p}" for p in found)
        return f"Regenerate umbrella charts that drifted from the registry\n\n{listing}\n"

    result = registry.store.change(apply)
    return list(found), result.sha
