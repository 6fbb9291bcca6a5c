"""Loads scripts/check_stack.py and deploy/local/stack_init.py (scripts, not packages) and builds
a copy of the repository's stack files that a test may break."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# The long-running services, as the README's "Run the full stack" table lists them.
STACK_SERVICES = [
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "airflow-worker", "postgres", "redis", "k3s", "registry", "minio",
]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def checker():
    return _load("check_stack", ROOT / "scripts" / "check_stack.py")


@pytest.fixture(scope="session")
def stack_init():
    return _load("stack_init", ROOT / "deploy" / "local" / "stack_init.py")


def readme_with(services: list[str]) -> str:
    rows = "".join(f"| `{name}` | what it does |\n" for name in services)
    return f"# Release platform\n\n## Run the full stack\n\n| service | what |\n|---|---|\n{rows}\n## Next\n"


class Stack:
    """A writable copy of what the checker reads, with helpers to break one thing at a time."""

    def __init__(self, root: Path):
        self.root = root

    def load(self, rel: str):
        docs = list(yaml.safe_load_all((self.root / rel).read_text()))
        return docs[0] if len(docs) == 1 else docs

    def dump(self, rel: str, data) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, list):
            path.write_text(yaml.safe_dump_all(data, sort_keys=False))
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False))

    def edit(self, rel: str, change) -> None:
        data = self.load(rel)
        change(data)
        self.dump(rel, data)


@pytest.fixture
def stack(tmp_path) -> Stack:
    root = tmp_path / "repo"
    root.mkdir()
    for rel in ("Dockerfile", "docker-compose.yaml", "requirements.txt"):
        shutil.copy(ROOT / rel, root / rel)
    shutil.copytree(ROOT / "deploy", root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "include" / "config").mkdir(parents=True)
    shutil.copy(ROOT / "include" / "config" / "platform.yaml", root / "include" / "config" / "platform.yaml")
    (root / "README.md").write_text(readme_with(STACK_SERVICES))
    return Stack(root)
