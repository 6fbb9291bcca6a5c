"""Platform notices: always the task log, plus Slack and e-mail when their connections exist.

A notice is plain data (`Notice`). `send()` writes it to the task log (the `airflow.task`
logger, so it shows in the UI's task log) and hands it to the providers' own notifiers:
`SlackNotifier` for a connection of type `slack` (API token, posts to
`notifications.slack_channel`), `SlackWebhookNotifier` for type `slackwebhook`, and
`SmtpNotifier` for e-mail when `notifications.email_to` names someone. A channel whose
connection does not exist is skipped; a channel that fails is logged (without secrets) and
the others still go out, so a broken Slack never hides the failure being reported.

Failures of DAGs and tasks:

    from release.flows import notify

    DAG(..., default_args={"on_failure_callback": notify.on_failure(config.notifications)})

Secrets never leave in a notice: title, body and fields pass through Airflow's secrets
masker (connection passwords and extras, variables with sensitive names, anything given to
`mask_secret`), and the notifiers are called without Jinja rendering, so a message that
happens to contain `{{ conn.x.password }}` is sent as typed.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk.bases.notifier import BaseNotifier

if TYPE_CHECKING:
    from release.domain.config import Notifications

log = logging.getLogger("airflow.task")

SEVERITIES = ("info", "warning", "error")
# The kinds the platform sends; others are allowed (a kind is a label, not a switch).
TASK_FAILED = "task_failed"
DAG_FAILED = "dag_failed"
PROMOTION_BLOCKED = "promotion_blocked"
BACKUP_FAILED = "backup_failed"
DRILL_FAILED = "drill_failed"
RESCAN_FINDINGS = "rescan_findings"

DEFAULT_SENDER = "release-platform@localhost"
MAX_TITLE = 200
MAX_BODY = 3000
MAX_FIELD = 300
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SLACK_ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":red_circle:"}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Notice:
    """One thing worth telling people. `fields` are short facts shown as a list (dag, run,
    service, env, ...); `link` points at where to look (default: the task in the UI)."""

    kind: str
    title: str
    body: str = ""
    severity: str = "error"
    fields: dict[str, Any] = field(default_factory=dict)
    link: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: {self.severity!r} is not allowed; allowed: {', '.join(SEVERITIES)}")
        if not self.kind or not self.title:
            raise ValueError("a notice needs a kind and a title")

    def text(self) -> str:
        """Plain text, as the task log and the e-mail's text show it."""
        lines = [f"[{self.kind}/{self.severity}] {self.title}"]
        if self.body:
            lines.append(self.body)
        lines += [f"  {k}: {v}" for k, v in self.fields.items()]
        if self.link:
            lines.append(f"  link: {self.link}")
        return "\n".join(lines)


# -- secrets ----------------------------------------------------------------------------


def redact(value: Any) -> Any:
    """`value` with every registered secret masked ("***"), through the task SDK's secrets
    masker and, where it is loaded, the core one (API server, scheduler)."""
    from airflow.sdk._shared.secrets_masker import redact as sdk_redact

    value = sdk_redact(value)
    try:
        from airflow._shared.secrets_masker import redact as core_redact
    except ImportError:  # a worker with the task SDK only
        return value
    return core_redact(value)


def _mask(secret: str | None) -> None:
    if secret:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


def _redacted(notice: Notice) -> Notice:
    fields = redact({str(k): v for k, v in notice.fields.items()})
    return replace(
        notice,
        title=_clip(" ".join(str(redact(notice.title)).split()), MAX_TITLE),
        body=_clip(str(redact(notice.body)), MAX_BODY),
        fields={k: _clip(" ".join(str(v).split()), MAX_FIELD) for k, v in fields.items() if v not in (None, "")},
        link=redact(notice.link) if notice.link else None,
    )


# -- context: links and facts of the running task ---------------------------------------------


def _conf():
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - older layouts
        from airflow.configuration import conf
    return conf


def ui_link(dag_id: str, run_id: str | None = None, task_id: str | None = None, map_index: int | None = None) -> str:
    """The Airflow UI page of a DAG, a run or a task instance. The host is `[api] base_url`
    when set, else http://localhost:<[api] port> (what Airflow's own log_url does)."""
    conf = _conf()
    base = conf.get("api", "base_url", fallback=None) or f"http://localhost:{conf.get('api', 'port', fallback='8080')}"
    url = f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}"
    if run_id:
        url += f"/runs/{quote(run_id, safe='')}"
        if task_id:
            url += f"/tasks/{quote(task_id, safe='')}"
            if map_index is not None and map_index >= 0:
                url += f"/mapped/{map_index}"
    return url


def _facts(context: dict | None) -> dict[str, Any]:
    """dag, task, run, try and map index of the context's task instance (what is known)."""
    if not context:
        return {}
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    facts = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "max_tries": getattr(ti, "max_tries", None),
        "map_index": getattr(ti, "map_index", None),
    }
    return {k: v for k, v in facts.items() if v is not None}


def _current_context() -> dict | None:
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:  # not inside a running task
        return None


def _complete(notice: Notice, context: dict | None) -> Notice:
    facts = _facts(context)
    if not facts.get("dag_id"):
        return notice
    fields = dict(notice.fields)
    fields.setdefault("dag", facts["dag_id"])
    if facts.get("task_id"):
        fields.setdefault("task", facts["task_id"])
    if facts.get("run_id"):
        fields.setdefault("run", facts["run_id"])
    link = notice.link or ui_link(facts["dag_id"], facts.get("run_id"), facts.get("task_id"), facts.get("map_index"))
    return replace(notice, fields=fields, link=link)


# -- channels -------------------------------------------------------------------------------


def _settings() -> Notifications:
    from release.domain.config import Notifications, load_config

    try:
        return load_config().notifications
    except Exception as exc:  # a broken config must not cost the notice itself
        log.warning("notifications: platform config unreadable, using the default channels: %s",
                    _clip(str(redact(str(exc))), 500))
        return Notifications()


def _connection(conn_id: str | None):
    """The connection, or None when it does not exist (any secrets backend, AIRFLOW_CONN_*).
    Its password and extras are registered with the secrets masker."""
    if not conn_id:
        return None
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        log.warning("notifications: connection %s could not be read (%s); channel skipped", conn_id, type(exc).__name__)
        return None
    if conn is None:
        return None
    _mask(conn.password)
    try:
        conn.extra_dejson  # noqa: B018 - masks sensitive extras (token, webhook_url, ...) as a side effect
    except Exception:
        pass
    return conn


def _slack_escape(text: str) -> str:
    # Slack's control characters: '<!channel>' in an error message must not ping anyone.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notice: Notice) -> str:
    """The Slack message (mrkdwn) of a notice."""
    lines = [f"{_SLACK_ICONS[notice.severity]} *{_slack_escape(notice.title)}*"]
    if notice.body:
        lines.append(_slack_escape(notice.body))
    lines += [f"• *{_slack_escape(k)}:* {_slack_escape(str(v))}" for k, v in notice.fields.items()]
    if notice.link:
        lines.append(f"<{notice.link.replace('|', '%7C').replace('>', '%3E')}|Open in Airflow>")
    return "\n".join(lines)


def email_subject(notice: Notice) -> str:
    return f"[release {notice.severity}] {notice.title}"


def email_html(notice: Notice) -> str:
    """The e-mail body of a notice: everything escaped, nothing rendered."""
    esc = html.escape
    rows = "".join(f"<tr><th align='left'>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in notice.fields.items())
    parts = [f"<h3>{esc(notice.title)}</h3>"]
    if notice.body:
        parts.append(f"<pre style='white-space:pre-wrap'>{esc(notice.body)}</pre>")
    if rows:
        parts.append(f"<table>{rows}</table>")
    if notice.link:
        parts.append(f"<p><a href=\"{esc(notice.link)}\">Open in Airflow</a></p>")
    return "\n".join(parts)


def _failed(channel: str, conn_id: str, exc: BaseException) -> str:
    message = _clip(" ".join(str(redact(f"{type(exc).__name__}: {exc}")).split()), 500)
    log.warning("notifications: %s (connection %s) failed, notice not delivered there: %s", channel, conn_id, message)
    return "failed"


def _slack_notifier(notice: Notice, settings: Notifications, conn):
    text = slack_text(notice)
    if conn.conn_type == "slackwebhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(slack_webhook_conn_id=conn.conn_id, text=text,
                                    unfurl_links=False, unfurl_media=False)
    if conn.conn_type == "slack":
        from airflow.providers.slack.notifications.slack import SlackNotifier

        return SlackNotifier(slack_conn_id=conn.conn_id, channel=settings.slack_channel, text=text,
                             username="Release platform", unfurl_links=False, unfurl_media=False)
    return None


def _smtp_notifier(notice: Notice, settings: Notifications, conn):
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    sender = settings.email_from or conn.extra_dejson.get("from_email") or DEFAULT_SENDER
    return SmtpNotifier(to=list(settings.email_to), from_email=sender, subject=email_subject(notice),
                        html_content=email_html(notice), smtp_conn_id=conn.conn_id)


def _deliver(channel: str, notifier, conn_id: str, context: dict | None) -> str:
    try:
        # notify(), not notifier(context): __call__ would render the text as a Jinja template
        # (a message could then read connections and variables) and log errors unredacted.
        notifier.notify(context or {})
    except Exception as exc:
        return _failed(channel, conn_id, exc)
    log.info("notifications: sent to %s (connection %s)", channel, conn_id)
    return "sent"


def send(notice: Notice, context: dict | None = None, settings: Notifications | None = None,
         *, log_only: bool = False) -> dict[str, str]:
    """Write `notice` to the task log, then to Slack and e-mail where configured.

    `context` is the task's Airflow context (default: the running task's, if any): it adds
    dag/task/run fields and the UI link. `settings` default to the platform config's
    `notifications:`. Never raises for a channel; returns what happened per channel:
    {"log": "sent", "slack": "sent" | "failed" | "not configured", "email": ...}.
    """
    if context is None:
        context = _current_context()
    settings = settings if settings is not None else _settings()
    # Connections first: reading them registers their secrets with the masker, so the
    # redaction below also covers them.
    slack_conn = None if log_only else _connection(settings.slack_conn_id)
    email_conn = None if log_only or not settings.email_to else _connection(settings.email_conn_id)
    notice = _redacted(_complete(notice, context))

    log.log(_LEVELS[notice.severity], "%s", notice.text())
    results = {"log": "sent", "slack": "not configured", "email": "not configured"}

    if slack_conn is not None:
        notifier = _slack_notifier(notice, settings, slack_conn)
        if notifier is None:
            log.warning("notifications: connection %s has type %r; Slack needs type slack or slackwebhook",
                        slack_conn.conn_id, slack_conn.conn_type)
            results["slack"] = "failed"
        else:
            results["slack"] = _deliver("slack", notifier, slack_conn.conn_id, context)
    if email_conn is not None:
        try:
            notifier = _smtp_notifier(notice, settings, email_conn)
        except Exception as exc:
            results["email"] = _failed("e-mail", email_conn.conn_id, exc)
        else:
            results["email"] = _deliver("e-mail", notifier, email_conn.conn_id, context)
    return results


# -- failure callbacks -------------------------------------------------------------------------


def _exception_text(exc: Any) -> str:
    if exc is None:
        return ""
    if isinstance(exc, BaseException):
        message = str(exc)
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return str(exc)


def failure_notice(context: dict) -> Notice:
    """The notice of a failed task (task callback) or run (DAG callback, `reason` set)."""
    facts = _facts(context)
    dag_id = facts.get("dag_id", "?")
    task_id, run_id = facts.get("task_id"), facts.get("run_id")
    fields: dict[str, Any] = {"dag": dag_id, "task": task_id, "run": run_id}
    if facts.get("try_number") is not None:
        tries = facts.get("max_tries")
        fields["try"] = f"{facts['try_number']} of {tries + 1}" if isinstance(tries, int) else facts["try_number"]
    if facts.get("map_index") is not None and facts["map_index"] >= 0:
        fields["map_index"] = facts["map_index"]
    link = ui_link(dag_id, run_id, task_id, facts.get("map_index"))
    if "reason" in context:  # a DAG callback
        reason = context.get("reason") or "failed"
        body = f"Run {run_id} failed ({reason})." + (f" Last failed task: {task_id}." if task_id else "")
        return Notice(DAG_FAILED, f"DAG {dag_id} failed", body, "error", fields, link)
    error = _exception_text(context.get("exception"))
    kind, title = classify(dag_id, task_id or "")
    return Notice(kind, title, error, "error", fields, link)


def classify(dag_id: str, task_id: str) -> tuple[str, str]:
    """What a failed task means to the people told about it: (kind, title)."""
    from release.domain.backups import BACKUP_GROUP, BACKUPS_DAG_ID, DRILL_DAG_ID, DRILL_REPORT, drilled_env
    from release.domain.gates import blocks_promotion

    if dag_id == "promote" and blocks_promotion(task_id):
        return PROMOTION_BLOCKED, f"Promotion blocked at {task_id}"
    if dag_id == BACKUPS_DAG_ID and task_id.startswith(f"{BACKUP_GROUP}."):
        return BACKUP_FAILED, f"Velero backup failed ({task_id})"
    if dag_id == DRILL_DAG_ID and task_id.endswith(f".{DRILL_REPORT}") and (env := drilled_env(task_id)):
        return DRILL_FAILED, f"Restore drill failed ({env})"
    return TASK_FAILED, f"Task {dag_id}.{task_id} failed"


def _task_notifies(context: dict) -> bool:
    """Whether the failed task of a DAG callback carries a FailureNotifier itself."""
    task = context.get("task")
    callbacks = getattr(task, "on_failure_callback", None) or []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    return any(isinstance(cb, FailureNotifier) for cb in callbacks)


class FailureNotifier(BaseNotifier):
    """An Airflow notifier for on_failure_callback, of tasks (default_args) or of a DAG.

    As a DAG callback it adds a run-level notice; when the failed task already notified
    through its own FailureNotifier, that notice only goes to the log (no double pings).
    """

    template_fields = ()

    def __init__(self, settings: Notifications | None = None):
        super().__init__()
        self.settings = settings

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Nothing to render (no template fields), and a DAG callback under dag.test() gets a
        # SerializedDAG, which has no Jinja environment to ask for.
        return None

    def notify(self, context) -> None:
        try:
            notice = failure_notice(context)
        except Exception as exc:  # the callback must still say something
            notice = Notice(TASK_FAILED, "A platform task failed", f"(notice incomplete: {type(exc).__name__})")
        log_only = notice.kind == DAG_FAILED and _task_notifies(context)
        try:
            send(notice, context, self.settings, log_only=log_only)
        except Exception as exc:  # never let notifying hide the failure itself
            log.warning("notifications: could not send the failure notice: %s", type(exc).__name__)


def on_failure(settings: Notifications | None = None) -> FailureNotifier:
    """The callback for `default_args["on_failure_callback"]` and/or the DAG's
    `on_failure_callback`. `settings`: the config's `notifications:` (default: read the
    platform config when a failure happens).

    In default_args it runs in the worker after the task's last try failed: the notice
    carries the exception and lands in that task's log. On the DAG it runs in the
    dag-processor (its log, not a task log) and also covers runs that fail without a
    failing task (reason such as a run timeout); wiring both is fine (see FailureNotifier).
    """
    return FailureNotifier(settings)
