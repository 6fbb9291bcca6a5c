"""The smoke checker (`python -m release.tools.smoke`): its core on an injected fetch, and its CLI
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release.tools import smoke


class Service(BaseHTTPRequestHandler):
    """/healthz answers 204 only; /flaky answers 503 the first `failures` times, then 204;
    /moved redirects to /healthz."""

    failures = 0
    requests: list[str]

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        if self.path == "/healthz":
            status = 204
        elif self.path == "/flaky":
            status = 503 if self.requests.count("/flaky") <= self.failures else 204
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/healthz")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    handler = type("Handler", (Service,), {"requests": [], "failures": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.handler = handler
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def termination_log(tmp_path) -> Path:
    path = tmp_path / "termination-log"
    path.write_text("")
    return path


def run(argv, termination_log, capsys) -> tuple[int, list[str], list[str], dict]:
    slept: list[float] = []
    code = smoke.main(argv, sleep=slept.append, termination_log=termination_log)
    captured = capsys.readouterr()
    summary = json.loads(termination_log.read_text())
    summary["slept"] = slept
    return code, captured.out.splitlines(), captured.err.splitlines(), summary


# -- check() with an injected fetch --------------------------------------------------------

def answers(*sequence):
    """A fetch that gives, per URL, the next of `sequence` (an int status or an exception)."""
    calls: dict[str, int] = {}

    def fetch(url, timeout):
        i = calls.get(url, 0)
        calls[url] = i + 1
        item = sequence[min(i, len(sequence) - 1)]
        if isinstance(item, BaseException):
            raise item
        return item

    fetch.calls = calls
    return fetch


def test_check_passes_only_on_the_exact_status():
    lines: list[str] = []
    result = smoke.check(["http://a/healthz"], expect_status=204, retries=0, fetch=answers(204), log=lines.append)
    assert result.passed and result.checks[0].status == 204 and result.checks[0].attempts == 1
    assert lines == ["http://a/healthz 204 (attempt 1/1)"]
    # 200 is a success to curl --fail, but not what this service promised.
    result = smoke.check(["http://a/healthz"], expect_status=204, retries=0, fetch=answers(200), log=lines.append)
    assert not result.passed and result.checks[0].status == 200
    assert result.failure() == "smoke test failed (expected status 204): http://a/healthz answered 200 after 1 attempt(s)"


def test_check_retries_a_wrong_status_and_errors_interval_apart_then_passes():
    slept: list[float] = []
    lines: list[str] = []
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    fetch = answers(refused, TimeoutError("timed out"), 503, 200)
    result = smoke.check(["http://a/ready"], retries=5, interval=2, fetch=fetch, sleep=slept.append, log=lines.append)
    assert result.passed and result.checks[0].attempts == 4
    assert slept == [2, 2, 2]  # between attempts only, never after the last
    assert lines == ["http://a/ready error: connection refused (attempt 1/6)", "http://a/ready error: timed out (attempt 2/6)",
                     "http://a/ready 503 (attempt 3/6)", "http://a/ready 200 (attempt 4/6)"]


def test_check_gives_up_after_the_retries_and_every_url_must_pass():
    slept: list[float] = []
    fetch = answers(200)
    bad = smoke.check(["http://a/healthz", "http://a/ready"], retries=2, interval=1, sleep=slept.append, log=lambda _: None,
                      fetch=lambda url, timeout: 500 if url.endswith("/ready") else fetch(url, timeout))
    assert not bad.passed
    assert [(c.url, c.status, c.attempts, c.passed) for c in bad.checks] == [
        ("http://a/healthz", 200, 1, True), ("http://a/ready", 500, 3, False)]
    assert fetch.calls == {"http://a/healthz": 1}  # a passed URL is not asked again
    assert slept == [1, 1]
    assert bad.summary() == {"passed": False, "expect_status": 200, "checks": [
        {"url": "http://a/healthz", "status": 200, "error": None, "attempts": 1, "passed": True},
        {"url": "http://a/ready", "status": 500, "error": None, "attempts": 3, "passed": False}]}


def test_the_termination_message_stays_within_what_kubernetes_keeps():
    urls = [f"http://service.apps-dev.svc.cluster.local:8080/endpoint-{i:03}" for i in range(60)]
    result = smoke.check(urls, retries=0, log=lambda _: None,
                         fetch=lambda url, timeout: 500 if url.endswith("-007") else 200)
    message = smoke.termination_message(result)
    assert len(message.encode()) <= smoke.TERMINATION_LIMIT
    summary = json.loads(message)
    assert summary["passed"] is False and summary["truncated"] is True
    assert [c["url"] for c in summary["checks"]] == [urls[7]]  # the failing one is kept


# -- the CLI against a real server ------------------------------------------------------------

def test_cli_passes_when_the_endpoint_answers_the_expected_204(server, termination_log, capsys):
    code, out, err, summary = run(["--expect-status", "204", "--retries", "3", "--interval", "2",
                                   f"{server.url}/healthz"], termination_log, capsys)
    assert code == 0 and err == []
    assert out == [f"{server.url}/healthz 204 (attempt 1/4)"]
    assert summary == {"passed": True, "expect_status": 204, "slept": [], "checks": [
        {"url": f"{server.url}/healthz", "status": 204, "error": None, "attempts": 1, "passed": True}]}


def test_cli_fails_on_204_when_200_is_expected_naming_the_url_and_both_codes(server, termination_log, capsys):
    code, out, err, summary = run(["--retries", "1", "--interval", "3", f"{server.url}/healthz"], termination_log, capsys)
    assert code == 1
    assert out == [f"{server.url}/healthz 204 (attempt 1/2)", f"{server.url}/healthz 204 (attempt 2/2)"]
    assert err[-1] == f"smoke test failed (expected status 200): {server.url}/healthz answered 204 after 2 attempt(s)"
    assert summary["passed"] is False and summary["expect_status"] == 200 and summary["slept"] == [3.0]
    assert summary["checks"][0]["status"] == 204 and summary["checks"][0]["passed"] is False
    assert server.handler.requests == ["/healthz", "/healthz"]


def test_cli_retries_while_the_service_fails_then_passes(server, termination_log, capsys):
    server.handler.failures = 2
    code, out, _, summary = run(["--expect-status", "204", "--retries", "3", "--interval", "5",
                                 f"{server.url}/flaky", f"{server.url}/healthz"], termination_log, capsys)
    assert code == 0
    assert out == [f"{server.url}/flaky 503 (attempt 1/4)", f"{server.url}/healthz 204 (attempt 1/4)",
                   f"{server.url}/flaky 503 (attempt 2/4)", f"{server.url}/flaky 204 (attempt 3/4)"]
    assert summary["slept"] == [5.0, 5.0] and [c["attempts"] for c in summary["checks"]] == [3, 1]


def test_cli_does_not_follow_a_redirect(server, termination_log, capsys):
    code, out, err, _ = run(["--expect-status", "204", "--retries", "0", f"{server.url}/moved"], termination_log, capsys)
    assert code == 1 and out == [f"{server.url}/moved 302 (attempt 1/1)"]
    assert server.handler.requests == ["/moved"]
    assert f"{server.url}/moved answered 302" in err[-1]


def test_cli_retries_a_refused_connection_then_fails(closed_port, termination_log, capsys):
    url = f"http://127.0.0.1:{closed_port}/healthz"
    code, out, err, summary = run(["--retries", "2", "--interval", "1", url], termination_log, capsys)
    assert code == 1
    assert out == [f"{url} error: connection refused (attempt {i}/3)" for i in (1, 2, 3)]
    assert summary["slept"] == [1.0, 1.0]
    assert summary["checks"] == [{"url": url, "status": None, "error": "connection refused", "attempts": 3, "passed": False}]
    assert err[-1] == f"smoke test failed (expected status 200): {url} answered error: connection refused after 3 attempt(s)"


def test_cli_times_out_a_service_that_does_not_answer(termination_log, capsys):
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/healthz"
        code, out, _, summary = run(["--retries", "0", "--timeout", "0.3", url], termination_log, capsys)
    assert code == 1 and out == [f"{url} error: timed out (attempt 1/1)"]
    assert summary["checks"][0]["error"] == "timed out"


@pytest.mark.parametrize(("argv", "named"), [
    (["--expect-status", "2004", "http://a/"], "--expect-status"),
    (["--retries", "-1", "http://a/"], "--retries"),
    (["ftp://a/healthz"], "URL"),
    (["http://a/x y"], "URL"),
    ([], "URL"),
])
def test_cli_refuses_bad_arguments_naming_them_before_any_request(argv, named, termination_log, capsys):
    def fetch(url, timeout):
        raise AssertionError("no request may be made")

    with pytest.raises(SystemExit) as exc:
        smoke.main(argv, fetch=fetch, termination_log=termination_log)
    assert exc.value.code == 2 and named in capsys.readouterr().err
    assert termination_log.read_text() == ""


def test_python_m_release_smoke_runs_as_the_pod_runs_it(server):
    """The module as the pod's command runs it: a real process, its exit code and its streams."""
    argv = [sys.executable, "-m", "release.tools.smoke", "--expect-status", "204", "--retries", "0"]
    env = {**os.environ, "NO_PROXY": "", "no_proxy": "", "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    ok = subprocess.run([*argv, f"{server.url}/healthz"], capture_output=True, text=True, env=env, timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{server.url}/healthz 204 (attempt 1/1)\n", "")
    bad = subprocess.run([*argv, f"{server.url}/missing"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1] == \
        f"smoke test failed (expected status 204): {server.url}/missing answered 404 after 1 attempt(s)"
