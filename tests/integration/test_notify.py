"""release.flows.notify against real servers on 127.0.0.1: the providers' own Slack notifiers talk
to a local HTTP server that answers like Slack, the SMTP notifier to a real SMTP server
(aiosmtpd) with login. Connections come from AIRFLOW_CONN_* variables, as in production."""

from __future__ import annotations

import email
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from release.flows import notify
from release.domain.config import Notifications

pytestmark = pytest.mark.usefixtures("fresh_masker")

# The SMTP test server takes a login without TLS (it is on 127.0.0.1); aiosmtpd warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SLACK_TOKEN = "xoxb-4242-slack-api-token-do-not-leak"
WEBHOOK_TOKEN = "T0001/B0001/webhookSecretDoNotLeak"
SMTP_PASSWORD = "smtp-password-do-not-leak"


class SlackServer:
    """Records every request; answers like Slack's Web API (chat.postMessage) or an
    incoming webhook, or fails the way Slack does, as `mode` says."""

    def __init__(self):
        self.requests: list[dict] = []
        self.mode = "ok"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                webhook = not self.path.startswith("/api/")
                if server.mode == "ok":
                    self._answer(200, "ok" if webhook else json.dumps({"ok": True, "channel": "C1", "ts": "1.2"}))
                elif server.mode == "error":
                    self._answer(200, json.dumps({"ok": False, "error": "channel_not_found"}))
                else:  # a broken proxy that echoes what it got, secrets included
                    self._answer(500, f"upstream error for {self.path} auth={self.headers.get('Authorization')}")

            def _answer(self, status: int, text: str):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text == "ok" or status == 500 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def texts(self) -> list[str]:
        return [json.loads(r["body"]).get("text", "") for r in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SmtpServer:
    """A real SMTP server (aiosmtpd) that requires a login and keeps what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[dict] = []
        self.logins: list[tuple[str, str]] = []
        self.password = SMTP_PASSWORD
        server = self

        class Handler:
            async def handle_DATA(self, _server, _session, envelope):
                raw = envelope.content.decode("utf-8", "replace")
                message = email.message_from_string(raw)
                # The parts decoded (the HTML body travels base64-encoded), with the headers.
                parts = [str(message)] + [part.get_payload(decode=True).decode()
                                          for part in message.walk() if not part.is_multipart()]
                server.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                        "subject": message["Subject"], "raw": raw, "data": "\n".join(parts)})
                return "250 Message accepted for delivery"

        def authenticator(_server, _session, _envelope, _mechanism, auth_data):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            server.logins.append((login, password))
            # handled=False: aiosmtpd answers "535 Authentication credentials invalid" itself.
            return AuthResult(success=(login, password) == ("notifier", server.password), handled=False)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     authenticator=authenticator, auth_require_tls=False, auth_required=True)
        self.controller.start()

    def close(self):
        self.controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack(no_proxy):
    server = SlackServer()
    yield server
    server.close()


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.close()


def slack_api_conn(monkeypatch, server: SlackServer, conn_id: str = "slack_release") -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "slack", "password": SLACK_TOKEN, "extra": {"base_url": f"http://127.0.0.1:{server.port}/api/"}}))


def slack_webhook_conn(monkeypatch, port: int, conn_id: str = "slack_release") -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{port}", "password": WEBHOOK_TOKEN}))


def smtp_conn(monkeypatch, port: int, conn_id: str = "smtp_release") -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": "notifier", "password": SMTP_PASSWORD,
         "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0,
                   "from_email": "release@example.com"}}))


SETTINGS = Notifications(slack_conn_id="slack_release", slack_channel="#ops-releases",
                         email_conn_id="smtp_release", email_to=["ops@example.com", "oncall@example.com"])

SECRETS = (SLACK_TOKEN, WEBHOOK_TOKEN, SMTP_PASSWORD, "webhookSecretDoNotLeak")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def leaky_notice(*secrets: str) -> notify.Notice:
    """A notice whose text carries what a careless exception message would: the secrets of
    the connections in use, and a template that would read them if it were rendered. (The
    masker knows the secrets of connections this process has read; those are the ones.)"""
    return notify.Notice(
        notify.BACKUP_FAILED, "Backup of prod failed",
        f"velero said: auth {' / '.join(secrets)} via https://hooks.slack.com/services/x\n"
        "{{ conn.slack_release.password }} {{ var.value.anything }} <!channel>",
        "error", {"env": "prod", "backup": "nightly-20260101"})


# -- Slack ------------------------------------------------------------------------------------


def test_slack_api_connection_posts_the_notice_to_the_channel(slack, smtp, monkeypatch, task_log):
    slack_api_conn(monkeypatch, slack)
    result = notify.send(notify.Notice(notify.PROMOTION_BLOCKED, "Promotion of service-a to prod blocked",
                                       "gate_scan: 2 CRITICAL findings", "warning", {"service": "service-a"}),
                         settings=SETTINGS.model_copy(update={"email_to": []}))

    assert result == {"log": "sent", "slack": "sent", "email": "not configured"}
    [request] = slack.requests
    assert request["path"] == "/api/chat.postMessage"
    assert request["headers"]["Authorization"] == f"Bearer {SLACK_TOKEN}"  # the transport, not the message
    payload = json.loads(request["body"])
    assert payload["channel"] == "#ops-releases"
    assert "Promotion of service-a to prod blocked" in payload["text"]
    assert "gate_scan: 2 CRITICAL findings" in payload["text"] and "service-a" in payload["text"]
    assert_no_secret(request["body"])
    assert "Promotion of service-a to prod blocked" in task_log.text
    assert smtp.messages == []  # no recipients: no e-mail although the connection would work


def test_slack_webhook_connection_posts_to_the_webhook(slack, monkeypatch, task_log):
    slack_webhook_conn(monkeypatch, slack.port)
    result = notify.send(notify.Notice(notify.RESCAN_FINDINGS, "Nightly re-scan: 3 new findings", "", "info"),
                         settings=SETTINGS)

    assert result["slack"] == "sent" and result["email"] == "not configured"  # no smtp_release connection
    [request] = slack.requests
    assert request["path"] == f"/{WEBHOOK_TOKEN}"
    assert "Nightly re-scan: 3 new findings" in json.loads(request["body"])["text"]
    assert "channel" not in json.loads(request["body"])  # a webhook posts where it was created


def test_secrets_and_templates_never_reach_slack_email_or_the_log(slack, smtp, monkeypatch, task_log):
    slack_api_conn(monkeypatch, slack)
    smtp_conn(monkeypatch, smtp.port)
    assert notify.send(leaky_notice(SLACK_TOKEN, SMTP_PASSWORD), settings=SETTINGS) == {
        "log": "sent", "slack": "sent", "email": "sent"}

    [text] = slack.texts
    assert "***" in text
    assert "{{ conn.slack_release.password }}" in text  # sent as typed, never rendered
    assert "&lt;!channel&gt;" in text  # no @channel ping from a message
    assert_no_secret(slack.requests[0]["body"], smtp.messages[0]["data"], smtp.messages[0]["raw"], task_log.text)


@pytest.mark.parametrize("mode", ["error", "500"])
def test_a_failing_slack_is_logged_without_secrets_and_does_not_raise(slack, monkeypatch, task_log, mode):
    slack.mode = mode
    slack_api_conn(monkeypatch, slack)
    result = notify.send(leaky_notice(SLACK_TOKEN), settings=SETTINGS)

    assert result["slack"] == "failed"
    assert "Backup of prod failed" in task_log.text  # the notice itself is in the log
    warning = [r.getMessage() for r in task_log.records if r.levelno == logging.WARNING]
    assert warning and "slack (connection slack_release) failed" in warning[0]
    expected = "channel_not_found" if mode == "error" else "upstream error for /api/chat.postMessage auth=Bearer ***"
    assert expected in warning[0]
    assert_no_secret(task_log.text)


def test_a_failing_webhook_echoing_its_token_is_redacted(slack, monkeypatch, task_log):
    slack.mode = "500"
    slack_webhook_conn(monkeypatch, slack.port)
    assert notify.send(leaky_notice(WEBHOOK_TOKEN), settings=SETTINGS)["slack"] == "failed"
    assert "upstream error for /***" in task_log.text
    assert_no_secret(task_log.text)


def test_an_unreachable_slack_does_not_stop_the_email(smtp, monkeypatch, task_log, no_proxy):
    slack_webhook_conn(monkeypatch, free_port())  # nothing listens there
    smtp_conn(monkeypatch, smtp.port)
    result = notify.send(notify.Notice(notify.DRILL_FAILED, "Restore drill failed", "pods not ready"),
                         settings=SETTINGS)

    assert result == {"log": "sent", "slack": "failed", "email": "sent"}
    assert len(smtp.messages) == 1
    assert_no_secret(task_log.text)


def test_a_slack_connection_of_another_type_is_reported_not_used(slack, monkeypatch, task_log):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_RELEASE", json.dumps({"conn_type": "http", "host": "127.0.0.1"}))
    assert notify.send(notify.Notice("x", "hello"), settings=SETTINGS)["slack"] == "failed"
    assert "has type 'http'" in task_log.text and slack.requests == []


# -- e-mail -----------------------------------------------------------------------------------


def test_email_goes_out_through_smtp_with_login(smtp, monkeypatch, task_log):
    smtp_conn(monkeypatch, smtp.port)
    result = notify.send(leaky_notice(SMTP_PASSWORD), settings=SETTINGS)

    assert result == {"log": "sent", "slack": "not configured", "email": "sent"}
    [message] = smtp.messages
    assert smtp.logins == [("notifier", SMTP_PASSWORD)]  # the hook logged in with the connection
    assert message["from"] == "release@example.com"
    assert sorted(message["to"]) == ["oncall@example.com", "ops@example.com"]
    assert message["subject"] == "[release error] Backup of prod failed"
    assert "nightly-20260101" in message["data"]
    assert "{{ conn.slack_release.password }}" in message["data"]  # not rendered
    assert "***" in message["data"]
    assert_no_secret(message["data"], message["raw"], task_log.text)
    assert "sent to e-mail (connection smtp_release)" in task_log.text


def test_email_sender_from_the_config_wins(smtp, monkeypatch):
    smtp_conn(monkeypatch, smtp.port)
    notify.send(notify.Notice("x", "hello", severity="info"),
                settings=SETTINGS.model_copy(update={"email_from": "platform@example.com"}))
    assert smtp.messages[0]["from"] == "platform@example.com"


def test_a_refused_login_is_logged_and_does_not_raise(smtp, monkeypatch, task_log):
    smtp_conn(monkeypatch, smtp.port)
    smtp.password = "the-server-wants-another-one"
    result = notify.send(notify.Notice("x", "hello"), settings=SETTINGS)
    assert result["email"] == "failed" and smtp.messages == []
    assert "e-mail (connection smtp_release) failed" in task_log.text
    assert "SMTPAuthenticationError: (535" in task_log.text
    assert_no_secret(task_log.text)


# -- failure callbacks under dag.test() --------------------------------------------------------


def _failing_dag(dag_id: str, settings: Notifications, *, task_level: bool, dag_level: bool):
    from datetime import datetime

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    def boom():
        from airflow.sdk import Connection

        # A realistic leak: the exception message carries a connection's URI.
        uri = Connection.get("smtp_release").get_uri()
        raise RuntimeError(f"deploy failed talking to {uri}")

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             default_args={"on_failure_callback": notify.on_failure(settings)} if task_level else {},
             on_failure_callback=notify.on_failure(settings) if dag_level else None) as dag:
        PythonOperator(task_id="deploy", python_callable=boom)
    return dag


def test_task_failure_callback_fires_under_dag_test(airflow_db, slack, smtp, monkeypatch, task_log):
    from tests.helpers import run_dag_test

    slack_webhook_conn(monkeypatch, slack.port)
    smtp_conn(monkeypatch, smtp.port)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    dr = run_dag_test(_failing_dag("notify-task-callback", SETTINGS, task_level=True, dag_level=False))

    assert dr.state == "failed"
    [text] = slack.texts
    assert "Task notify-task-callback.deploy failed" in text
    assert "RuntimeError: deploy failed talking to smtp://notifier:***@127.0.0.1" in text
    assert "<https://airflow.example.com/dags/notify-task-callback/runs/manual__" in text
    assert "/tasks/deploy|Open in Airflow>" in text
    assert "*try:* 1 of 1" in text
    [message] = smtp.messages
    assert message["subject"] == "[release error] Task notify-task-callback.deploy failed"
    assert "RuntimeError: deploy failed talking to" in message["data"]
    assert "[task_failed/error] Task notify-task-callback.deploy failed" in task_log.text
    assert_no_secret(slack.requests[0]["body"], message["data"], message["raw"], task_log.text)


def test_dag_failure_callback_fires_under_dag_test(airflow_db, slack, monkeypatch, task_log):
    from tests.helpers import run_dag_test

    slack_webhook_conn(monkeypatch, slack.port)
    smtp_conn(monkeypatch, free_port())
    dr = run_dag_test(_failing_dag("notify-dag-callback", SETTINGS, task_level=False, dag_level=True))

    assert dr.state == "failed"
    [text] = slack.texts
    assert "DAG notify-dag-callback failed" in text
    assert "failed (task_failure). Last failed task: deploy." in text
    assert "[dag_failed/error] DAG notify-dag-callback failed" in task_log.text
    assert "e-mail (connection smtp_release) failed" in task_log.text  # nothing listens: logged, not raised
