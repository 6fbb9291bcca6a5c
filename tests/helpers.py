"""Small helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from release.domain.config import GITOPS_TEMPLATE_DIR, PlatformConfig
from release.domain.registry import DeployRequest
from release.gitops.registry import seed_repo
from release.gitops.store import local_repo_url


def digest(char: str) -> str:
    return "sha256:" + (char * 64)[:64]


def request_for(config: PlatformConfig, service: str, version: str, char: str = "a", **evidence) -> DeployRequest:
    return DeployRequest(service, version, f"{config.services[service].image}@{digest(char)}", evidence)


def make_gitops_repo(path: Path, config: PlatformConfig, template: Path = GITOPS_TEMPLATE_DIR) -> str:
    """A real bare repository seeded from `template`, as `make run` creates it."""
    seed_repo(path, config, template, "main")
    return local_repo_url(path)


def head(url_or_path) -> str:
    import git

    path = str(url_or_path).removeprefix("file://")
    return git.Repo(path).commit("main").hexsha


def many_services(tmp: Path, count: int) -> tuple[PlatformConfig, Path]:
    """A config with `count` services and a GitOps template holding a chart for each."""
    import shutil

    import yaml

    from release.domain.config import DEFAULT_CONFIG_PATH, parse_config

    template = tmp / "template"
    shutil.copytree(GITOPS_TEMPLATE_DIR, template, symlinks=True)
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base = raw["services"]["service-a"]
    raw["services"] = {}
    for i in range(1, count + 1):
        name = f"svc-{i:02d}"
        chart = template / "services" / name
        shutil.copytree(template / "services" / "service-a", chart, symlinks=True)
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "name": name}))
        raw["services"][name] = {**base, "path": f"services/{name}/", "chart": f"services/{name}",
                                 "image": f"registry.local:5000/release/{name}"}
    return parse_config(yaml.safe_dump(raw)), template


def run_dag_test(dag, **kwargs):
    """dag.test() for a DAG built inside a test rather than read from dags/.

    dag.test() only runs DAGs it finds serialized in a bundle, so the DAG is written to
    the metadata database first, as the dag-processor would.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder="/dev/null")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(**kwargs)


def answer_approval(dag_id: str, task_id: str, user: str, option: str = "Approve", timeout: float = 60.0) -> dict:
    """Answer a waiting human-in-the-loop task through the real Core API, as `user` would
    from the UI: waits for the task to park in awaiting_input, then PATCHes hitlDetails
    with a JWT issued for that user. Returns {"status": HTTP status, "body": ...}."""
    import time

    from airflow.api_fastapi.app import create_app
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient

    deadline = time.monotonic() + timeout
    ti = None
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = (session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                                                      TaskInstance.state == "awaiting_input").first())
            if ti is not None:
                run_id, map_index = ti.run_id, ti.map_index
                break
        time.sleep(0.2)
    if ti is None:
        return {"status": None, "body": "never awaited input"}
    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
    resp = client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
                        json={"chosen_options": [option]}, headers={"Authorization": f"Bearer {token}"})
    return {"status": resp.status_code, "body": resp.json()}


class Records(logging.Handler):
    """Keeps every log record it is given (attach it to a logger to read what was logged)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


def assert_pods_meet_restricted(sandbox, steps: set[str] | None = None) -> list[dict]:
    """Every Pod the sandbox was asked to create meets the Pod Security Standard "restricted" and
    runs pinned images; the build pod departs from it exactly where the declared rootless-BuildKit
    exception says (no more, no less) and says why on the pod. With `steps`, those steps must be
    among the pods. Returns the pods."""
    from release.domain.config import pinned_image_ref
    from release.k8s.pod_security import CONTAINER_LISTS, declared_departures, restricted_violations
    from release.k8s.steps import BUILDKIT_EXCEPTION

    pods = sandbox.received("pods")
    assert pods, "the sandbox received no pod"
    seen = set()
    for pod in pods:
        step = pod["metadata"]["labels"]["release-platform/step"]
        seen.add(step)
        exception = BUILDKIT_EXCEPTION if step == "build" else None
        violations = restricted_violations(pod)
        assert {v.path for v in violations} == declared_departures(pod, exception), (step, [str(v) for v in violations])
        if exception:
            assert violations  # the exception is real, and these are all of it
            assert pod["metadata"]["annotations"]["release-platform/security-exception"] == exception.reason
        for key in CONTAINER_LISTS:
            for container in pod["spec"].get(key) or []:
                pinned_image_ref(container["image"])  # raises naming the image if it is not pinned
    assert steps is None or steps <= seen, (sorted(steps - seen), sorted(seen))
    return pods


def secret_forms(secret: str) -> set[str]:
    """A secret as it may slip out: plain, base64 (a Secret's data, a basic-auth header with a
    user name before it) and URL-encoded (a URL's userinfo)."""
    import base64
    import urllib.parse

    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for raw in (secret, f"git:{secret}", f"bot:{secret}"):
        encoded = base64.b64encode(raw.encode()).decode()
        forms |= {encoded, encoded.rstrip("=")}
    return forms


def secret_leaks(secrets: dict[str, str], where: str, text: str) -> list[str]:
    """"<name> in <where>" for every secret (by name) found in `text` in any of its forms."""
    return [f"{name} in {where}" for name, secret in secrets.items() if any(f in text for f in secret_forms(secret))]
