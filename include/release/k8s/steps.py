"""The tool pods of a service pipeline, as data: which image, which arguments.

Values that come from a run are rendered by Airflow into single arguments: the commit from the
run's params (`COMMIT`, checked by the pipeline's first task), and what an earlier task produced
(the built image, a GitOps commit) as a `RunValue` the DAG builder passes in: an XComArg of that
task, resolved when the pod starts. Nothing passes through a shell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from release.domain.config import PlatformConfig
from release.k8s.pods import ARTIFACTS_MOUNT, InitContainer, PodStep, Resources, SecretEnv, SecretVolume, SecurityException

if TYPE_CHECKING:
    from airflow.sdk import XComArg

COMMIT = "{{ params.commit }}"
# What an earlier task of the run produced: the value itself, or (as the DAG builders pass it) an
# XComArg of that task. Inside a longer argument ("registry:<image>") an XComArg formats as
# Airflow's own template of itself, rendered like the rest of the pod's arguments.
RunValue = Union[str, "XComArg"]


def artifact_dir(service: str) -> str:
    return f"{ARTIFACTS_MOUNT}/{service}/{COMMIT}"


def verify(config: PlatformConfig, service: str) -> PodStep:
    s = config.services[service]
    return PodStep(
        "verify", config.pipelines.tools.verify,
        cmds=["python", "-m", "release.tools.verify"],
        args=["--repo", config.pipelines.app_repo, "--commit", COMMIT, "--path", s.path,
              "--coverage-min", str(s.coverage_threshold), "--pylint-min", "8.0"],
        resources=Resources(cpu="500m", memory="512Mi", cpu_limit="1000m", memory_limit="512Mi"),
    )


BUILDKIT_EXCEPTION = SecurityException(
    reason="rootless BuildKit creates user namespaces for its build containers, which the "
           "RuntimeDefault seccomp and AppArmor profiles forbid; it still runs as non-root "
           "with no capabilities and no privilege escalation",
    seccomp="Unconfined", apparmor_unconfined=True, read_only_root=False, run_as_user=1000,
)


def build(config: PlatformConfig, service: str) -> PodStep:
    s = config.services[service]
    context = f"{config.pipelines.app_repo}#{COMMIT}:{s.path.rstrip('/')}"
    return PodStep(
        "build", config.pipelines.tools.buildkit,
        cmds=["buildctl-daemonless.sh"],
        args=["build", "--frontend", "dockerfile.v0",
              "--opt", f"context={context}", "--opt", f"dockerfile={context}",
              "--opt", f"platform={','.join(s.platforms)}",
              "--output", f"type=image,name={s.image}:{COMMIT},push=true",
              "--export-cache", f"type=registry,ref={s.image}:buildcache,mode=max",
              "--import-cache", f"type=registry,ref={s.image}:buildcache",
              # BuildKit's metadata (with containerimage.digest) becomes the task's result.
              "--metadata-file", "/dev/termination-log"],
        env={"BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox"},
        resources=Resources(cpu="1000m", memory="2Gi", cpu_limit="2000m", memory_limit="4Gi"),
        scratch=("/tmp", "/home/user/.local/share/buildkit"),
        exception=BUILDKIT_EXCEPTION,
    )


def sbom(config: PlatformConfig, service: str, image: RunValue) -> PodStep:
    """The SBOM of the built `image` (repository@digest), straight from the registry."""
    return PodStep(
        "sbom", config.pipelines.tools.syft,
        args=["scan", f"registry:{image}", "--output", f"spdx-json={artifact_dir(service)}/sbom.spdx.json"],
        artifacts=True,
    )


def trivy_args(image: RunValue, output: str) -> list[str]:
    """Trivy's vulnerability scan of `image` into the JSON report `output`: the pipeline's scan
    and the nightly re-scan of what runs (release.flows.rescan) run exactly this."""
    return ["image", "--format", "json", "--output", output, "--scanners", "vuln", "--cache-dir", "/tmp/trivy", image]


def scan(config: PlatformConfig, service: str, image: RunValue | None = None) -> PodStep:
    """Trivy's scan of the built `image`; with no image, no arguments: the caller gives each pod
    its own (the nightly re-scan of what runs, release.flows.rescan)."""
    return PodStep(
        "scan", config.pipelines.tools.trivy,
        args=trivy_args(image, f"{artifact_dir(service)}/trivy.json") if image is not None else [],
        resources=Resources(cpu="500m", memory="512Mi"),
        artifacts=True,
    )


def scan_sarif(config: PlatformConfig, service: str) -> PodStep:
    return PodStep(
        "scan-sarif", config.pipelines.tools.trivy,
        args=["convert", "--format", "sarif", "--output", f"{artifact_dir(service)}/trivy.sarif",
              f"{artifact_dir(service)}/trivy.json"],
        artifacts=True,
    )


COSIGN_KEY_DIR = "/cosign"


def _cosign(config: PlatformConfig) -> dict:
    # The key stays in the cluster: a read-only secret volume, its password an env var from
    # the same secret. The pod needs no API access (and gets no service-account token).
    secret = config.pipelines.cosign_key_secret
    return {"secret_env": (SecretEnv("COSIGN_PASSWORD", secret, "cosign.password"),),
            "secret_volumes": (SecretVolume(secret, COSIGN_KEY_DIR),)}


def verify_signatures(config: PlatformConfig) -> PodStep:
    """`cosign verify` of the digests a promotion moves; its arguments are `verify_signatures_args`
    of the run's plan, given to the pod when it runs."""
    return PodStep("verify-signatures", config.pipelines.tools.cosign, args=[],
                   secret_volumes=(SecretVolume(config.pipelines.cosign_key_secret, COSIGN_KEY_DIR),))


def verify_signatures_args(images: list[str]) -> list[str]:
    return ["verify", "--key", f"{COSIGN_KEY_DIR}/cosign.pub", "--insecure-ignore-tlog=true", "--output", "json", *images]


def sign(config: PlatformConfig, service: str, image: RunValue) -> PodStep:
    return PodStep(
        "sign", config.pipelines.tools.cosign,
        args=["sign", "--yes", "--tlog-upload=false", "--key", f"{COSIGN_KEY_DIR}/cosign.key", image],
        **_cosign(config),
    )


def attest_sbom(config: PlatformConfig, service: str, image: RunValue) -> PodStep:
    return PodStep(
        "attest-sbom", config.pipelines.tools.cosign,
        args=["attest", "--yes", "--tlog-upload=false", "--type", "spdxjson",
              "--predicate", f"{artifact_dir(service)}/sbom.spdx.json",
              "--key", f"{COSIGN_KEY_DIR}/cosign.key", image],
        artifacts=True,
        **_cosign(config),
    )


def smoke(config: PlatformConfig, service: str, env: str, namespace: str | None = None) -> PodStep:
    """The service's smoke test in `env`, or in `namespace` (a restored copy of it): `python -m
    release.tools.smoke` in the platform image, with the service's own endpoints, port, expected
    status, retries and interval."""
    s = config.services[service]
    host = f"http://{service}.{namespace or config.environments[env].namespace}.svc.cluster.local:{s.smoke.port}"
    return PodStep(
        f"smoke-{env}", config.pipelines.tools.verify,
        cmds=["python", "-m", "release.tools.smoke"],
        args=["--expect-status", str(s.smoke.expect_status), "--retries", str(s.smoke.retries),
              "--interval", str(s.smoke.interval_seconds), "--timeout", "10",
              *[f"{host}{path}" for path in s.smoke.endpoints]],
        resources=Resources(cpu="50m", memory="64Mi", cpu_limit="200m", memory_limit="128Mi"),
    )


# -- the helm deploy strategy ------------------------------------------------------------

GITOPS_CHECKOUT = "/workspace/gitops"
GITOPS_CREDENTIALS_DIR = "/gitops-credentials"
# readOnlyRootFilesystem: helm's config, cache and data, and git's HOME, live on the /tmp emptyDir.
HELM_ENV = {"HOME": "/tmp", "HELM_CACHE_HOME": "/tmp/helm/cache", "HELM_CONFIG_HOME": "/tmp/helm/config",
            "HELM_DATA_HOME": "/tmp/helm/data"}


def helm_pool(env: str) -> str:
    """One slot per environment: two `helm upgrade`s of one release at once fail ("another
    operation is in progress"), so pipelines, promotions and rollbacks take turns."""
    return f"helm-{env}"


def gitops_clone_url(config: PlatformConfig) -> str:
    """The repository the registry writes to, without a password a URL might carry: pods
    authenticate with `helm.gitops_secret`, never with something in their arguments."""
    from urllib.parse import urlparse

    from release.domain.config import data_dir

    # Same default as release.gitops.store.default_repo_path(); importing gitops (GitPython) here
    # would cost every DAG parse.
    url = config.gitops.url or (data_dir() / "gitops.git").resolve().as_uri()
    parsed = urlparse(url)
    userinfo, at, host = parsed.netloc.rpartition("@")
    if not at:
        return url
    # Over http(s) a lone user name is often a token (https://<token>@github.com/...): drop it
    # all. An ssh user (git@) is an account name, not a secret; its password part still goes.
    keep = f"{userinfo.split(':', 1)[0]}@" if parsed.scheme == "ssh" else ""
    return parsed._replace(netloc=f"{keep}{host}").geturl()


def _fetch_gitops(config: PlatformConfig, env: str, revision: RunValue) -> tuple[InitContainer, InitContainer]:
    """Clone the tip of the GitOps branch, and prove `revision` (the commit this run wrote) is in it.

    The tip, not `revision` itself: upgrades of a release queue in a pool, not in commit
    order, so an older run deploying its own commit after a newer one would put the newer
    one's services back. Everything on the branch passed its gates; a missing `revision`
    means the history was rewritten, and the pod fails before helm runs."""
    secret = config.environments[env].helm.gitops_secret
    git_env = {"HOME": "/tmp", "GIT_TERMINAL_PROMPT": "0"}
    mounts: tuple[SecretVolume, ...] = ()
    if secret:
        # The secret's .gitconfig is git's global config: credentials stay in files of the
        # read-only volume, out of the arguments, the environment and the logs.
        git_env["GIT_CONFIG_GLOBAL"] = f"{GITOPS_CREDENTIALS_DIR}/.gitconfig"
        mounts = (SecretVolume(secret, GITOPS_CREDENTIALS_DIR),)
    git = config.pipelines.tools.git
    clone = InitContainer(
        "fetch-gitops", git, cmds=["git"], env=git_env, secret_volumes=mounts,
        args=["clone", "--quiet", "--single-branch", "--branch", config.gitops.branch,
              gitops_clone_url(config), GITOPS_CHECKOUT])
    verify = InitContainer(
        "verify-gitops", git, cmds=["git"], env={"HOME": "/tmp"},
        args=["-C", GITOPS_CHECKOUT, "merge-base", "--is-ancestor", revision, "HEAD"])
    return clone, verify


def helm_deploy(config: PlatformConfig, env: str, revision: RunValue, step: str | None = None) -> PodStep:
    """`helm upgrade --install --atomic --wait` of `env`'s umbrella chart at the GitOps branch
    tip, which contains `revision`: what Argo CD would sync, with the same release name and the
    same values files as the ApplicationSet gives it.

    `revision` is the commit, or (as `deploy-<env>` passes it) a reference to the XCom of the task
    that wrote it, which Airflow resolves when the pod starts: as an argument of its own, and inside
    the description, where an XComArg formats as Airflow's own template of itself."""
    from release.domain.registry import umbrella_dir

    environment = config.environments[env]
    chart = f"{GITOPS_CHECKOUT}/{umbrella_dir(env)}"
    clone, checkout = _fetch_gitops(config, env, revision)
    # umbrella/<env>/charts/ is git-ignored (Argo CD builds it itself), so helm must package
    # the service charts named in Chart.yaml first; all are file:// paths in the checkout
    # (their service-lib link included), so nothing is fetched and no repository refreshed.
    dependencies = InitContainer("helm-dependencies", config.pipelines.tools.helm, cmds=["helm"], env=HELM_ENV,
                                 args=["dependency", "update", "--skip-refresh", chart])
    return PodStep(
        step or f"helm-{env}", config.pipelines.tools.helm,
        cmds=["helm"],
        args=["upgrade", "--install", "--atomic", "--wait", "--timeout", f"{environment.helm.timeout_minutes}m",
              "--namespace", environment.namespace,
              # `helm history` then says which GitOps commit each revision deployed.
              "--description", f"GitOps commit {revision} or later",
              "--values", f"{chart}/values.yaml",
              "--values", f"{GITOPS_CHECKOUT}/environments/{env}/values.yaml",
              config.helm_release(env), chart],
        env=HELM_ENV,
        scratch=("/tmp", "/workspace"),
        init=(clone, checkout, dependencies),
        exception=SecurityException(
            reason="helm deploys the release through the Kubernetes API, so its container (not the git "
                   f"containers before it) gets the token of ServiceAccount {environment.helm.service_account}; "
                   "otherwise fully hardened",
            api_service_account=environment.helm.service_account),
    )
