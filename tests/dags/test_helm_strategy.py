"""The `helm` deploy strategy: pipeline, promote and rollback deploy the exact GitOps commit
they wrote with a hardened `helm upgrade --install --atomic --wait` pod instead of Argo CD.

Real operators through dag.test() against the sandbox cluster, real GitOps repository; the
helm pod's arguments are also replayed with real git and real Helm (in-process).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release.gitops.registry import ensure_local_repo
from release.gitops.registry import Registry
from tests.dags.test_promote import as_user, last_run, override_config, promote, release, world  # noqa: F401 - shared fixtures
from tests.dags.test_rollback import rollback, staging  # noqa: F401 - shared fixtures
from tests.dags.test_service_pipeline import NEW_DIGEST, run, scenario
from tests.helpers import assert_pods_meet_restricted, digest

HELM_FAILED = ["Error: UPGRADE FAILED: release umbrella-{env} failed, and has been rolled back due to atomic being set: "
               "context deadline exceeded"]


def use_helm(tmp_path, monkeypatch, *envs: str, **helm) -> None:
    def mutate(raw):
        for env in envs:
            raw["environments"][env]["deploy_strategy"] = "helm"
            if helm:
                raw["environments"][env]["helm"] = dict(helm)
    override_config(tmp_path, monkeypatch, mutate)


def failing_helm(step: str, env: str, base: dict) -> dict:
    rule = {"match": {"labels": {"release-platform/step": step}}, "exit_code": 1,
            "logs": [line.format(env=env) for line in HELM_FAILED]}
    return {**base, "pods": [rule, *base.get("pods", [])]}


def pods_by_step(sandbox) -> dict[str, dict]:
    return {e[3]["metadata"]["labels"]["release-platform/step"]: e[3]
            for e in sandbox.call(lambda: list(sandbox.store.events)) if e[1] == "pods" and e[2] == "ADDED"}


def commits(registry) -> list[tuple[str, str]]:
    """(sha, subject) of the GitOps branch, newest first."""
    import git

    repo = git.Repo(registry.store.url.removeprefix("file://"))
    return [(c.hexsha, c.summary) for c in repo.iter_commits("main")]


def newest(registry, subject_prefix: str) -> str:
    return next(sha for sha, subject in commits(registry) if subject.startswith(subject_prefix))


def no_sync_requested(sandbox) -> bool:
    return not sandbox.seen("PATCH", "/applications/")


def assert_helm_pod(pod: dict, sha: str, namespace: str, release: str, env: str) -> None:
    """The pod deploys exactly `sha` of the umbrella chart of `env`, hardened in every container."""
    spec = pod["spec"]
    assert pod["metadata"]["namespace"] == namespace
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    (helm,) = spec["containers"]
    init = {c["name"]: c for c in spec["initContainers"]}
    assert list(init) == ["fetch-gitops", "verify-gitops", "helm-dependencies"]
    for container in [helm, *init.values()]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True, container["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert container["resources"]["limits"] and container["resources"]["requests"], container["name"]
        assert all(isinstance(a, str) for a in container["args"]), container["name"]
    args = helm["args"]
    assert helm["command"] == ["helm"] and " ".join(args).startswith("upgrade --install --atomic --wait")
    assert args[-2:] == [release, f"/workspace/gitops/umbrella/{env}"]
    assert args[args.index("--namespace") + 1] == namespace and f"GitOps commit {sha} or later" in args
    assert args[args.index("--timeout") + 1].endswith("m")
    # The branch tip is deployed once it is proven to contain the commit the registry write made.
    assert "--no-checkout" not in init["fetch-gitops"]["args"]
    assert init["verify-gitops"]["args"][-3:] == ["--is-ancestor", sha, "HEAD"] and "merge-base" in init["verify-gitops"]["args"]
    assert init["helm-dependencies"]["args"] == ["dependency", "update", "--skip-refresh", f"/workspace/gitops/umbrella/{env}"]
    # Only helm talks to the Kubernetes API: its container alone mounts the ServiceAccount token.
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert token in {m["mountPath"] for m in helm["volumeMounts"]}
    assert all(token not in {m["mountPath"] for m in c["volumeMounts"]} for c in init.values())
    assert spec["serviceAccountName"] == "release-platform-helm"
    assert "Kubernetes API" in pod["metadata"]["annotations"]["release-platform/security-exception"]


def replay_with_real_helm(pod: dict, gitops_url: str, tmp_path: Path) -> list[dict]:
    """Do what the pod's containers do, with real git and real Helm, and return what helm would apply."""
    import git
    import helm_python as helm

    from release.gitops.charts import render_objects

    init = {c["name"]: c for c in pod["spec"]["initContainers"]}
    workspace = tmp_path / "workspace"
    local = lambda p: str(p).replace("/workspace", str(workspace))  # noqa: E731 - the pod's emptyDir, here
    clone = init["fetch-gitops"]["args"]
    assert clone[-2] == gitops_url
    git.Git().execute(["git", *clone[:-2], gitops_url, local(clone[-1])])
    git.Git().execute(["git", *[local(a) for a in init["verify-gitops"]["args"]]])  # raises unless contained
    chart = Path(local(init["helm-dependencies"]["args"][-1]))
    helm.dependency_update(chart)  # the library chart is a symlink in each service chart
    args = pod["spec"]["containers"][0]["args"]
    values: dict = {}
    for i, arg in enumerate(args):
        if arg == "--values":
            merge(values, yaml.safe_load(Path(local(args[i + 1])).read_text()) or {})
    return render_objects(chart, values, args[-2], args[args.index("--namespace") + 1])


def merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def images(objects: list[dict]) -> list[str]:
    return sorted(c["image"] for o in objects if o.get("kind") == "Deployment"
                  for c in o["spec"]["template"]["spec"]["containers"])


# -- the service pipeline (dev) -----------------------------------------------------------------


@pytest.fixture
def helm_dev(tmp_path, monkeypatch, airflow_db, data_dir, config, sandbox):
    """dev deploys with helm and runs service-a 1.0.0; its Argo CD Application exists but must stay untouched."""
    use_helm(tmp_path, monkeypatch, "dev")
    ensure_local_repo(config)
    registry = Registry.from_config(config)
    registry.record_deployment("dev", [release(config, "service-a", "1.0.0", "1")], by="alice", run_id="earlier")
    sandbox.artifacts_dir = data_dir / "artifacts"
    sandbox.call(sandbox.ensure_application, *config.argocd_application("dev"), "dev")
    return registry


def deploy_tasks(deploy_runs) -> dict[str, str]:
    from tests.dags.conftest import deploy_result

    [(dag_id, run_id)] = deploy_runs
    return deploy_result(dag_id, run_id)[2]


def test_pipeline_in_a_helm_dev_deploys_the_exact_commit_with_a_hardened_helm_pod(helm_dev, sandbox, config, tmp_path,
                                                                                  deploy_runs):
    sandbox.scenario = scenario()
    dagrun, states = run({})
    assert dagrun.state == "success", states
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "success" and tasks["smoke[0]"] == "success" and tasks["undo"] == "skipped", tasks
    converge = pods_by_step(sandbox)["helm-dev"]["metadata"]["labels"]["task_id"]
    assert converge == "converge"  # the helm pod is deploy-dev's rollout: no Argo CD sensor in a helm environment
    current = helm_dev.state("dev")["service-a"]
    assert (current.version, current.image) == ("1.1.0", f"{config.services['service-a'].image}@{NEW_DIGEST}")

    created = [r for r in sandbox.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert created and all(r.status == 201 for r in created)  # every pod passed the API server's validation
    sha = newest(helm_dev, "Deploy service-a")
    pod = pods_by_step(sandbox)["helm-dev"]
    assert_helm_pod(pod, sha, "apps-dev", "umbrella-dev", "dev")
    assert_pods_meet_restricted(sandbox, {"build", "helm-dev", "smoke-dev"})  # helm's init containers too
    assert no_sync_requested(sandbox)
    assert "operation" not in sandbox.get("applications", "argocd", "umbrella-dev")

    # What the pod would apply, replayed with real git and Helm: the new digest, from that commit.
    objects = replay_with_real_helm(pod, helm_dev.store.url, tmp_path / "first")
    assert images(objects) == [f"{config.services['service-a'].image}@{NEW_DIGEST}"]

    # A later release lands before this pod gets its turn: the pod deploys the newer state, never
    # putting the older digest back over it.
    helm_dev.record_deployment("dev", [release(config, "service-a", "1.2.0", "7")], by="bob", run_id="later")
    objects = replay_with_real_helm(pod, helm_dev.store.url, tmp_path / "late")
    assert images(objects) == [f"{config.services['service-a'].image}@{digest('7')}"]


def test_failing_helm_pod_in_dev_rolls_dev_back_with_helm_and_fails(helm_dev, sandbox, config, capfd, deploy_runs):
    sandbox.scenario = failing_helm("helm-dev", "dev", scenario())
    dagrun, states = run({})
    assert dagrun.state == "failed" and states["hand_over"] == "failed"
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "failed" and tasks["smoke_targets"] == "upstream_failed", tasks
    assert tasks["undo"] == "success" and tasks["converge_undo"] == "success" and tasks["smoke_after_undo[0]"] == "success"
    assert tasks["report"] == "failed"  # the run fails, naming what happened
    assert helm_dev.state("dev")["service-a"].version == "1.0.0"
    story = [(e.version, e.action, e.outcome) for e in helm_dev.history(service="service-a", env="dev")]
    assert story == [("1.0.0", "deploy", "deployed"), ("1.1.0", "deploy", "failed"), ("1.0.0", "rollback", "deployed")]

    pods = pods_by_step(sandbox)
    rollback_sha = newest(helm_dev, "Roll back service-a")
    assert_helm_pod(pods["helm-rollback-dev"], rollback_sha, "apps-dev", "umbrella-dev", "dev")
    assert pods["helm-dev"]["spec"]["initContainers"][1]["args"][-2] == newest(helm_dev, "Deploy service-a")
    assert no_sync_requested(sandbox)
    out = capfd.readouterr().out
    assert "the helm upgrade in dev failed after pipeline of service-a 1.1.0; rollback commit" in out
    assert "UPGRADE FAILED" in out  # helm's own words are in the task log
    state, note = last_run("service-a-pipeline")
    assert state == "failed" and note.startswith("the helm upgrade in dev failed after pipeline of service-a 1.1.0; "
                                                 "rolled dev back to service-a 1.0.0"), note


def test_failed_smoke_after_a_helm_deploy_names_the_smoke_test(helm_dev, sandbox, capfd, deploy_runs):
    sandbox.scenario = scenario(smoke_exit=22)
    dagrun, states = run({})
    assert dagrun.state == "failed"
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "success" and tasks["smoke[0]"] == "failed" and tasks["converge_undo"] == "success", tasks
    assert helm_dev.state("dev")["service-a"].version == "1.0.0"
    assert "the smoke test of service-a in dev failed after pipeline of service-a 1.1.0" in capfd.readouterr().out


# -- promote ------------------------------------------------------------------------------------


def test_promote_to_a_helm_staging_deploys_the_promotion_commit_with_helm(world, config, sandbox, as_user,  # noqa: F811
                                                                          tmp_path, monkeypatch, deploy_runs):
    use_helm(tmp_path, monkeypatch, "staging", release="apps", timeout_minutes=7)
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "weekly"})
    assert states["hand_over"] == "success", states
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "success" and tasks["smoke[0]"] == "success" and tasks["record_smoke"] == "success"
    promoted = world.state("staging")["service-a"]
    assert promoted.version == "1.1" and promoted.evidence["smoke"]["passed"] is True
    pod = pods_by_step(sandbox)["helm-staging"]
    assert_helm_pod(pod, newest(world, "Deploy service-a"), "apps-staging", "apps", "staging")
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--timeout") + 1] == "7m"
    assert no_sync_requested(sandbox)


def test_failing_helm_pod_in_a_promotion_rolls_back_with_helm(world, config, sandbox, as_user, capfd,  # noqa: F811
                                                              tmp_path, monkeypatch, deploy_runs):
    use_helm(tmp_path, monkeypatch, "staging")
    sandbox.scenario = failing_helm("helm-staging", "staging", {"default_pod": {"duration_seconds": 0.1}})
    states, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "weekly"})
    assert states["hand_over"] == "failed", states
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "failed" and tasks["smoke_targets"] == "upstream_failed", tasks
    assert tasks["undo"] == "success" and tasks["converge_undo"] == "success" and tasks["smoke_after_undo[0]"] == "success"
    assert tasks["report"] == "failed"
    assert world.state("staging")["service-a"].version == "1.0"
    story = [(e.version, e.action, e.outcome) for e in world.history(env="staging", service="service-a")]
    assert story[-2:] == [("1.1", "deploy", "failed"), ("1.0", "rollback", "deployed")]
    pods = pods_by_step(sandbox)
    assert_helm_pod(pods["helm-rollback-staging"], newest(world, "Roll back service-a"), "apps-staging",
                    "umbrella-staging", "staging")
    assert no_sync_requested(sandbox)
    state, note = last_run("promote")
    assert state == "failed" and note.startswith("the helm upgrade in staging failed after promotion of service-a 1.1; "
                                                 "rolled staging back to service-a 1.0"), note


# -- rollback -----------------------------------------------------------------------------------


def test_rollback_in_a_helm_environment_deploys_the_rollback_commit_with_helm(
        staging, as_user, sandbox, tmp_path, monkeypatch, deploy_runs):  # noqa: F811
    use_helm(tmp_path, monkeypatch, "staging")
    states = rollback({})
    assert states["hand_over"] == "success", states
    tasks = deploy_tasks(deploy_runs)
    assert tasks["converge"] == "success" and tasks["smoke[0]"] == "success" and tasks["record_smoke"] == "success"
    assert staging.state("staging")["service-a"].version == "1.1"
    assert_helm_pod(pods_by_step(sandbox)["helm-staging"], newest(staging, "Roll back service-a"), "apps-staging",
                    "umbrella-staging", "staging")
    assert no_sync_requested(sandbox)


# -- config and pools ---------------------------------------------------------------------------


def _config_with(helm: dict):
    from release.domain.config import DEFAULT_CONFIG_PATH, parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["environments"]["staging"].update(deploy_strategy="helm", helm=helm)
    return parse_config(yaml.safe_dump(raw, sort_keys=False), "platform.yaml")


@pytest.mark.parametrize("helm,message", [
    ({"timeout_minutes": 0}, "environments.staging.helm.timeout_minutes: Input should be greater than or equal to 1"),
    ({"release": "Umbrella_Staging"}, "environments.staging.helm.release: 'Umbrella_Staging' is not a Helm release name"),
    ({"release": "r" * 54}, "is not a Helm release name"),
    ({"gitops_secret": "creds/../x"}, "environments.staging.helm.gitops_secret: 'creds/../x' is not a DNS-1123 label"),
    ({"atomic": False}, "environments.staging.helm.atomic: unknown key; allowed keys: release, timeout_minutes, "
                        "service_account, gitops_secret"),
])
def test_bad_helm_settings_are_refused_naming_the_key(helm, message):
    from release.domain.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        _config_with(helm)
    assert any(message in e for e in exc.value.errors), exc.value.errors


def test_helm_settings_and_the_credentials_secret():
    """A named release and a GitOps read secret: mounted read-only in the fetching container only."""
    config = _config_with({"release": "apps", "timeout_minutes": 5, "gitops_secret": "gitops-read"})
    from release.k8s import steps

    step = steps.helm_deploy(config, "staging", "f" * 40)
    assert step.args[-2:] == ["apps", "/workspace/gitops/umbrella/staging"] and "5m" in step.args
    fetch, verify, deps = step.init
    assert fetch.secret_volumes[0].secret == "gitops-read" and fetch.env["GIT_CONFIG_GLOBAL"].startswith("/gitops-credentials/")
    assert not verify.secret_volumes and not deps.secret_volumes and not step.secret_volumes
    assert "gitops-read" not in " ".join(fetch.args + step.args)


def test_a_password_in_the_gitops_url_never_reaches_a_pod():
    from release.k8s import steps
    from release.domain.config import DEFAULT_CONFIG_PATH, parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for url, clean in [("https://bot:s3cret@git.example.com/platform/cd.git", "https://git.example.com/platform/cd.git"),
                       ("https://ghp_T0KEN@github.com/org/cd.git", "https://github.com/org/cd.git"),
                       ("ssh://git:pw@git.example.com/platform/cd.git", "ssh://git@git.example.com/platform/cd.git"),
                       ("https://git.example.com/platform/cd.git", "https://git.example.com/platform/cd.git")]:
        raw["gitops"]["url"] = url
        config = parse_config(yaml.safe_dump(raw, sort_keys=False))
        assert steps.gitops_clone_url(config) == clean


def test_pools_sync_creates_one_slot_per_helm_environment(airflow_db, tmp_path, monkeypatch):
    from airflow.models.pool import Pool

    from release.cli import main
    from release.domain.config import load_config
    from release.flows.deploy import build_deploy_dag

    use_helm(tmp_path, monkeypatch, "dev")
    assert main(["pools", "sync"]) == 0
    pool = Pool.get_pool("helm-dev")
    assert pool.slots == 1 and pool.include_deferred is True  # a deferred helm pod still holds the release
    dag = build_deploy_dag(load_config(), "dev")
    assert dag.get_task("converge").pool == dag.get_task("converge_undo").pool == "helm-dev"
