"""release.flows.notify without a network: notices, their rendering, redaction, failure notices,
channel selection, and the `notifications:` config section."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from types import SimpleNamespace

import pytest
import yaml

from release.flows import notify
from release.domain.config import DEFAULT_CONFIG_PATH, ConfigError, Notifications, parse_config

pytestmark = pytest.mark.usefixtures("fresh_masker")


def ti(**overrides):
    values = {"dag_id": "promote", "task_id": "deploy", "run_id": "manual__2026-01-02T03:04:05+00:00",
              "try_number": 2, "max_tries": 2, "map_index": -1}
    return SimpleNamespace(**{**values, **overrides})


# -- Notice ---------------------------------------------------------------------------------


def test_notice_validates_severity_and_needs_a_title():
    with pytest.raises(ValueError, match="severity: 'fatal' is not allowed; allowed: info, warning, error"):
        notify.Notice("x", "t", severity="fatal")
    with pytest.raises(ValueError, match="kind and a title"):
        notify.Notice("x", "")


def test_notice_text_lists_body_fields_and_link():
    n = notify.Notice(notify.PROMOTION_BLOCKED, "Promotion blocked", "gate_scan failed", "warning",
                      {"service": "service-a", "env": "prod"}, "https://airflow/x")
    assert n.text() == ("[promotion_blocked/warning] Promotion blocked\ngate_scan failed\n"
                        "  service: service-a\n  env: prod\n  link: https://airflow/x")


def test_slack_text_escapes_control_characters_and_links():
    n = notify.Notice("x", "a <b> & c", "<!channel> ping", "info", {"k<": "v>"}, "https://h/a|b")
    text = notify.slack_text(n)
    assert text.startswith(":information_source: *a &lt;b&gt; &amp; c*")
    assert "&lt;!channel&gt; ping" in text and "*k&lt;:* v&gt;" in text
    assert text.endswith("<https://h/a%7Cb|Open in Airflow>")


def test_email_is_escaped_html():
    n = notify.Notice("x", "<script>", "1 < 2 & {{ x }}", "error", {"a": "<b>"}, 'https://h/"q')
    body = notify.email_html(n)
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "1 &lt; 2 &amp; {{ x }}" in body and "&lt;b&gt;" in body and "https://h/&quot;q" in body
    assert notify.email_subject(n) == "[release error] <script>"


# -- redaction ------------------------------------------------------------------------------


def test_registered_secrets_and_sensitive_fields_are_masked_everywhere(task_log):
    from airflow.sdk.log import mask_secret

    mask_secret("hunter2-is-the-password")
    n = notify.Notice("x", "login hunter2-is-the-password failed", "token=hunter2-is-the-password",
                      fields={"password": "anything-at-all", "api_token": "tok-123456", "env": "prod"},
                      link="https://x/?p=hunter2-is-the-password")
    result = notify.send(n, {}, Notifications(slack_conn_id=None, email_conn_id=None))
    assert result == {"log": "sent", "slack": "not configured", "email": "not configured"}
    logged = task_log.text
    assert "hunter2-is-the-password" not in logged and "anything-at-all" not in logged and "tok-123456" not in logged
    assert "login *** failed" in logged and "password: ***" in logged and "env: prod" in logged


def test_a_variable_with_a_sensitive_name_is_masked_once_read(monkeypatch, task_log):
    from airflow.sdk import Variable

    monkeypatch.setenv("AIRFLOW_VAR_REGISTRY_API_TOKEN", "reg-token-0123456789")
    monkeypatch.setenv("AIRFLOW_VAR_REGISTRY_HOST", "registry.example.com")
    assert Variable.get("registry_api_token") == "reg-token-0123456789"
    assert Variable.get("registry_host") == "registry.example.com"
    notify.send(notify.Notice("x", "push to registry.example.com failed", "401 for reg-token-0123456789"), {},
                Notifications(slack_conn_id=None, email_conn_id=None))
    assert "push to registry.example.com failed" in task_log.text  # not a secret: left alone
    assert "401 for ***" in task_log.text and "reg-token-0123456789" not in task_log.text


def test_long_texts_are_clipped_and_titles_kept_on_one_line(task_log):
    n = notify.Notice("x", "two\nlines " + "t" * 500, "b" * 10_000)
    notify.send(n, {}, Notifications(slack_conn_id=None, email_conn_id=None))
    [record] = [r for r in task_log.records if r.levelno == logging.ERROR]
    first, body = record.getMessage().split("\n")[:2]
    assert first.startswith("[x/error] two lines ttt") and len(first) <= len("[x/error] ") + notify.MAX_TITLE
    assert len(body) == notify.MAX_BODY and body.endswith("…")


def test_the_log_level_follows_the_severity(task_log):
    none = Notifications(slack_conn_id=None, email_conn_id=None)
    for severity in notify.SEVERITIES:
        notify.send(notify.Notice("x", severity, severity=severity), {}, none)
    assert [r.levelname for r in task_log.records] == ["INFO", "WARNING", "ERROR"]


# -- channels -------------------------------------------------------------------------------


def test_no_connection_means_log_only(task_log):
    settings = Notifications(slack_conn_id="slack_absent", email_conn_id="smtp_absent", email_to=["ops@example.com"])
    result = notify.send(notify.Notice("x", "hello"), {}, settings)
    assert result == {"log": "sent", "slack": "not configured", "email": "not configured"}
    assert "[x/error] hello" in task_log.text


def test_email_needs_recipients_even_with_a_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": 1}))
    assert notify.send(notify.Notice("x", "hello"), {}, Notifications())["email"] == "not configured"


def test_settings_default_to_the_platform_config_and_survive_a_broken_one(monkeypatch, tmp_path, task_log):
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_RELEASE", raising=False)
    broken = tmp_path / "platform.yaml"
    broken.write_text("services: [")
    monkeypatch.setenv("RELEASE_PLATFORM_CONFIG", str(broken))
    assert notify.send(notify.Notice("x", "still logged"), {})["log"] == "sent"
    assert "platform config unreadable" in task_log.text and "still logged" in task_log.text


def test_context_adds_dag_run_task_and_the_ui_link(monkeypatch, task_log):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/base/")
    n = notify.Notice(notify.BACKUP_FAILED, "Backup failed", fields={"env": "prod"})
    notify.send(n, {"ti": ti(dag_id="velero-backups", task_id="backup_prod", map_index=3)},
                Notifications(slack_conn_id=None, email_conn_id=None))
    logged = task_log.text
    assert "env: prod\n  dag: velero-backups\n  task: backup_prod\n  run: manual__2026-01-02T03:04:05+00:00" in logged
    assert ("link: https://airflow.example.com/base/dags/velero-backups/runs/"
            "manual__2026-01-02T03%3A04%3A05%2B00%3A00/tasks/backup_prod/mapped/3") in logged


def test_ui_link_without_base_url_uses_the_api_port(monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__API__PORT", "9090")
    assert notify.ui_link("promote") == "http://localhost:9090/dags/promote"
    assert notify.ui_link("promote", "r 1") == "http://localhost:9090/dags/promote/runs/r%201"


# -- failure notices ------------------------------------------------------------------------


def test_task_failure_notice_names_dag_task_run_try_and_the_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com")
    n = notify.failure_notice({"ti": ti(), "exception": ValueError("gate_scan: 2 CRITICAL")})
    assert n.kind == notify.TASK_FAILED and n.severity == "error"
    assert n.title == "Task promote.deploy failed"
    assert n.body == "ValueError: gate_scan: 2 CRITICAL"
    assert n.fields == {"dag": "promote", "task": "deploy", "run": "manual__2026-01-02T03:04:05+00:00", "try": "2 of 3"}
    assert n.link == ("https://airflow.example.com/dags/promote/runs/"
                      "manual__2026-01-02T03%3A04%3A05%2B00%3A00/tasks/deploy")


def test_dag_failure_notice_names_the_run_and_reason():
    dag = SimpleNamespace(dag_id="rollback")
    n = notify.failure_notice({"dag": dag, "run_id": "r1", "reason": "timed_out"})
    assert n.kind == notify.DAG_FAILED and n.title == "DAG rollback failed"
    assert n.body == "Run r1 failed (timed_out)."
    assert n.link.endswith("/dags/rollback/runs/r1")


def test_failure_notifier_never_raises(monkeypatch, task_log):
    def broken_send(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(notify, "send", broken_send)
    notify.on_failure(Notifications())({"ti": ti(), "exception": ValueError("x")})
    assert "could not send the failure notice: RuntimeError" in task_log.text


def test_dag_callback_only_logs_when_the_failed_task_notified_itself(monkeypatch):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    settings = Notifications(slack_conn_id=None, email_conn_id=None)
    with DAG("n", schedule=None, start_date=datetime(2026, 1, 1),
             default_args={"on_failure_callback": notify.on_failure(settings)}) as dag:
        notified = EmptyOperator(task_id="notified")
        silent = EmptyOperator(task_id="silent", on_failure_callback=[])
    calls = []
    monkeypatch.setattr(notify, "send",
                        lambda notice, context, s, log_only=False: calls.append((notice.kind, log_only)))
    callback = notify.on_failure(settings)
    callback({"dag": dag, "task": notified, "ti": ti(dag_id="n", task_id="notified"), "reason": "task_failure"})
    callback({"dag": dag, "task": silent, "ti": ti(dag_id="n", task_id="silent"), "reason": "task_failure"})
    callback({"task": notified, "ti": ti(dag_id="n", task_id="notified"), "exception": ValueError("x")})
    assert calls == [(notify.DAG_FAILED, True), (notify.DAG_FAILED, False), (notify.TASK_FAILED, False)]


def test_on_failure_is_an_airflow_notifier_usable_in_default_args():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.bases.notifier import BaseNotifier

    callback = notify.on_failure()
    assert isinstance(callback, BaseNotifier)
    with DAG("n2", schedule=None, start_date=datetime(2026, 1, 1), on_failure_callback=callback,
             default_args={"on_failure_callback": callback}) as dag:
        EmptyOperator(task_id="t")
    assert dag.has_on_failure_callback
    assert any(isinstance(cb, notify.FailureNotifier) for cb in dag.get_task("t").on_failure_callback)


# -- config ---------------------------------------------------------------------------------


def _config_with(notifications) -> str:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["notifications"] = notifications
    return yaml.safe_dump(raw)


def test_config_notifications_default_and_parse():
    assert parse_config(_config_with({})).notifications == Notifications()
    d = Notifications()
    assert (d.slack_conn_id, d.slack_channel, d.email_conn_id, d.email_to, d.email_from) == (
        "slack_release", "#releases", "smtp_default", [], None)
    cfg = parse_config(_config_with({"slack_conn_id": "slack_ops", "slack_channel": "C0123ABC",
                                     "email_to": ["ops@example.com"], "email_from": "rel@example.com"}))
    assert cfg.notifications.slack_conn_id == "slack_ops" and cfg.notifications.email_to == ["ops@example.com"]


@pytest.mark.parametrize("section, expected", [
    ({"slack_chanel": "#x"}, "notifications.slack_chanel: unknown key; allowed keys: slack_conn_id, slack_channel"),
    ({"slack_channel": "#two words"}, "notifications.slack_channel: '#two words' is not a Slack channel"),
    ({"email_to": ["ops"]}, "notifications.email_to: 'ops' is not an e-mail address"),
    ({"email_to": "ops@example.com"}, "notifications.email_to: Input should be a valid list"),
    ({"email_conn_id": "smtp default"}, "notifications.email_conn_id: 'smtp default' is not an Airflow connection id"),
    ({"email_from": "a@b, c@d"}, "notifications.email_from: 'a@b, c@d' is not an e-mail address"),
])
def test_config_notifications_errors_name_the_key(section, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(_config_with(section))
    assert any(expected in line for line in err.value.errors), err.value.errors


@pytest.mark.parametrize("dag_id, task_id, kind, title", [
    ("promote", "gate_scan", notify.PROMOTION_BLOCKED, "Promotion blocked at gate_scan"),
    ("promote", "approve_prod", notify.PROMOTION_BLOCKED, "Promotion blocked at approve_prod"),
    ("promote", "validate", notify.PROMOTION_BLOCKED, "Promotion blocked at validate"),
    ("promote", "smoke_staging", notify.TASK_FAILED, "Task promote.smoke_staging failed"),
    ("velero-backups", "backup.wait", notify.BACKUP_FAILED, "Velero backup failed (backup.wait)"),
    ("velero-restore-drill", "drill_prod.report", notify.DRILL_FAILED, "Restore drill failed (prod)"),
    ("velero-restore-drill", "drill_prod.wait_restore", notify.TASK_FAILED, "Task velero-restore-drill.drill_prod.wait_restore failed"),
])
def test_failures_that_refuse_or_lose_something_are_named_for_what_they_are(dag_id, task_id, kind, title):
    assert notify.classify(dag_id, task_id) == (kind, title)
