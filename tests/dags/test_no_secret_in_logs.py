"""No secret in any log: a whole pipeline to dev and a promotion to staging, run with every secret
the platform handles set to a known value, leave none of them in a task log, in what the platform
printed, in what the cluster received or in the GitOps repository.

The secrets are used for real: the Kubernetes connections carry the cluster's bearer token (the
sandbox refuses any other), and the GitOps repository is served over smart HTTP behind basic
auth, so every clone and push goes through the `gitops.conn_id` connection's password."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release.gitops.store import default_repo_path
from release.gitops.registry import ensure_local_repo
from tests.dags.test_promote import override_config, promote
from tests.dags.test_service_pipeline import run as run_pipeline
from tests.dags.test_service_pipeline import scenario, world  # noqa: F401 - the pipeline's world
from tests.helpers import secret_leaks

SECRETS = {
    "cluster token": "k8s-token-Zq7tWv1xUs9",
    "kubernetes connection password": "k8s-conn-pw-Hn3cR8yTe5",
    "gitops token": "gitops-token-Pb6mKd2jQa4",
    "cosign key": "cosign-key-Lx5fGs8nVr0",
    "cosign password": "cosign-pw-Yc1hDk7wMe3",
    "slack token": "xoxb-slack-token-Tg4nBq9zPf2",
    "smtp password": "smtp-pw-Wr2sJv6cKy8",
}


def leaks(where: str, text: str) -> list[str]:
    return secret_leaks(SECRETS, where, text)


class GitHTTP(ThreadingHTTPServer):
    """A Git smart-HTTP server (git http-backend) for one folder of bare repositories, behind basic
    auth: only `bot` with the GitOps token gets in, as with a real Git host."""

    daemon_threads = True

    def __init__(self, root: Path, password: str):
        self.root, self.password, self.authorized = root, password, 0
        super().__init__(("127.0.0.1", 0), _GitHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _GitHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the test reads what the platform printed, not this
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        expected = "Basic " + base64.b64encode(f"bot:{self.server.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="gitops"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.authorized += 1
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": "bot", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "PATH": "/usr/bin:/bin"}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def secret_world(world, sandbox, config, tmp_path, monkeypatch):  # noqa: F811
    """The pipeline's world with every secret set: the cluster's token, the connections' passwords
    and extras, the GitOps push token (the repository now behind HTTP auth), the cosign key Secret
    in the cluster and the notification connections."""
    import sandbox.server as sandbox_server

    # The cluster accepts only the new token; the kubeconfig file and the environments'
    # connections (inline kubeconfig in the extras, plus a password) carry it.
    monkeypatch.setattr(sandbox_server, "TOKEN", SECRETS["cluster token"])
    sandbox.write_kubeconfig(sandbox.kubeconfig_path)
    for env in config.environments.values():
        kube_config = sandbox.kubeconfig(env.namespace)
        monkeypatch.setenv(f"AIRFLOW_CONN_{env.kubernetes_conn_id.upper()}", json.dumps({
            "conn_type": "kubernetes", "login": "platform", "password": SECRETS["kubernetes connection password"],
            "extra": {"kube_config": json.dumps(kube_config), "namespace": env.namespace}}))
    sandbox.call(sandbox.ensure_application, *config.argocd_application("staging"), "staging")
    # The GitOps repository behind basic auth; the store pushes with the connection's password.
    ensure_local_repo(config)
    server = GitHTTP(default_repo_path().parent, SECRETS["gitops token"])
    monkeypatch.setenv("AIRFLOW_CONN_GITOPS_REPO", json.dumps(
        {"conn_type": "http", "login": "bot", "password": SECRETS["gitops token"]}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RELEASE", json.dumps(
        {"conn_type": "slack", "password": SECRETS["slack token"], "extra": {"timeout": 2}}))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
        {"conn_type": "email", "host": "127.0.0.1", "port": 1, "login": "release", "password": SECRETS["smtp password"]}))

    def mutate(raw):
        raw["gitops"] |= {"url": f"{server.url}/{default_repo_path().name}", "conn_id": "gitops_repo"}
    override_config(tmp_path, monkeypatch, mutate)
    # The cosign key as the cluster holds it: the sign pod must mount it by name, never carry it.
    for ns in {"default", *(env.namespace for env in config.environments.values())}:
        sandbox.call(sandbox.store.create, sandbox.resource("secrets"), ns, {
            "metadata": {"name": config.pipelines.cosign_key_secret},
            "data": {"cosign.key": base64.b64encode(SECRETS["cosign key"].encode()).decode(),
                     "cosign.password": base64.b64encode(SECRETS["cosign password"].encode()).decode()}})
    yield server
    server.shutdown()


def test_a_pipeline_and_a_promotion_leave_no_secret_anywhere(secret_world, sandbox, config, capfd, request):
    from airflow.configuration import conf

    sandbox.scenario = scenario()
    dagrun, states = run_pipeline({})
    assert dagrun.state == "success", states
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1}, "applications": [{"delay_seconds": 0.1}]}
    promoted, _ = promote({"services": ["service-a"], "from_env": "dev", "to_env": "staging", "reason": "weekly"})
    assert promoted["hand_over"] == "success", promoted

    # The secrets were really used: git went through the authenticated server, the cluster's
    # requests carried the token (it refuses others), the sign pod mounts the cosign key Secret.
    assert secret_world.authorized > 0
    found = leaks("the GitOps repository", subprocess.run(
        ["git", "log", "-p", "--all", "--format=%H%n%an <%ae>%n%B"], cwd=default_repo_path(),
        capture_output=True, text=True, check=True).stdout)
    staging = subprocess.run(["git", "show", "HEAD:registry/versions.yaml"], cwd=default_repo_path(),
                             capture_output=True, text=True, check=True).stdout
    assert "run_id" in staging and "staging" in staging  # the promotion was committed there

    posted = [r for r in sandbox.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert any(r.body["metadata"]["labels"].get("release-platform/step") == "sign" for r in posted)
    found += leaks("the pod specs the cluster received", json.dumps([r.body for r in sandbox.requests if r.body]))
    sign = next(r.body for r in posted if r.body["metadata"]["labels"].get("release-platform/step") == "sign")
    assert config.pipelines.cosign_key_secret in json.dumps(sign["spec"]["volumes"])  # by name

    # dag.test() runs each task in this process and writes its task log to stdout rather than to
    # a file; any log file it or a handler did write is searched as well.
    log_folder = Path(conf.get("logging", "base_log_folder"))
    for path in (p for p in log_folder.rglob("*") if p.is_file()):
        found += leaks(f"task log {path.relative_to(log_folder)}", path.read_text(errors="replace"))
    # What reached the process's stdout and stderr, and what loggers set up earlier wrote to the
    # session's capture of them.
    out, err = capfd.readouterr()
    earlier_out, earlier_err = request.config.pluginmanager.getplugin("capturemanager").read_global_capture()
    out, err = out + earlier_out, err + earlier_err
    assert "::endgroup::" in out and "deployed service-a 1.1.0 to staging" in out  # the task logs are here
    found += leaks("stdout", out) + leaks("stderr", err)
    assert not found, found
