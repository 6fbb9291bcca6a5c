"""Small helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from release import umbrella
from release.config import GITOPS_TEMPLATE_DIR, PlatformConfig
from release.gitops import create_bare_repo, local_repo_url
from release.registry import DeployRequest, RegistryState


def digest(char: str) -> str:
    return "sha256:" + (char * 64)[:64]


def request_for(config: PlatformConfig, service: str, version: str, char: str = "a", **evidence) -> DeployRequest:
    return DeployRequest(service, version, f"{config.services[service].image}@{digest(char)}", evidence)


def make_gitops_repo(path: Path, config: PlatformConfig, template: Path = GITOPS_TEMPLATE_DIR) -> str:
    """A real bare repository seeded from `template`, as `make run` creates it."""

    def prepare(tree: Path) -> None:
        state = RegistryState.from_tree(tree)
        state.write(tree, config.env_order)
        umbrella.write_all(tree, config, state)

    create_bare_repo(path, template, "main", prepare)
    return local_repo_url(path)


def head(url_or_path) -> str:
    import git

    path = str(url_or_path).removeprefix("file://")
    return git.Repo(path).commit("main").hexsha
