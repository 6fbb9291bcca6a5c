"""A pipeline run as GitHub shows it, reported from task events (plugins/release_github.py).

The listener hands every task event here (running, success, failed) in the process that ran
the task; this decides what GitHub hears of it, and nothing else:
- a stage task of `<service>-pipeline` (or the smoke test of the deploy-<first env> run it
  handed over to): a commit status on the commit it built (release.github.statuses);
- `scan_sarif` done: the scan's SARIF to code scanning (release.github.sarif);
- PR mode (`pr` set), once every stage it shows has settled: the PR's report comment
  (release.github.pr_comment).

It never raises and costs nothing for other tasks, or when GitHub is off. A finished task's
state is recorded before its listeners run, so no result waits on GitHub; a task's start waits at
most for one call, bounded (release.github.outbound).
"""

from __future__ import annotations

import logging
import re

from release.flows import xcoms
from release.github import statuses

log = logging.getLogger(__name__)

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
SARIF_TASK = "scan_sarif"
# What the PR comment shows, and when it is written: once every stage it shows has settled (done,
# or never to run because a task before it failed), by the task that settled last. The scan gate
# and the chart validation run in parallel branches; whichever ends second sees the other's end
# (a task's state is recorded before its listeners run), so the comment is written once per run,
# complete, and never overwritten by a stale view.
PR_STAGES = {"verify": "verify", "build": "build", "scan_gate": "scan gate", "chart_validate": "chart validation"}
UPSTREAM = {"build": ("verify",), "image_ref": ("build", "verify"), "scan": ("image_ref", "build", "verify"),
            "scan_gate": ("scan", "image_ref", "build", "verify")}
FAIL_ONLY = {"verify", "build", "image_ref", "scan"}  # their failure settles what comes after them
SETTLED = {"success", "failed", "upstream_failed", "skipped", "removed"}


def on_task_event(ti, event: str, error: BaseException | None = None) -> None:
    """`event`: running, success or failed (a try that will be retried counts as running)."""
    try:
        dag_id, task_id = getattr(ti, "dag_id", ""), getattr(ti, "task_id", "")
        if dag_id.endswith("-pipeline") and (task_id in statuses.PIPELINE_STAGES or task_id in FAIL_ONLY
                                             or task_id == SARIF_TASK):
            _pipeline_event(ti, event, error)
        elif dag_id.startswith("deploy-") and task_id == statuses.SMOKE_TASK:
            _smoke_event(ti, event, error)
    except Exception:  # noqa: BLE001 - GitHub mirrors the run; it never breaks it
        log.exception("GitHub: %s of %s.%s not reported", event, getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"))


def _config():
    from release.domain.config import load_config
    from release.github import outbound

    config = load_config()
    return config if outbound.client(config) is not None else None


def _retrying(ti) -> bool:
    return str(getattr(ti, "state", "")) in ("up_for_retry", "TaskInstanceState.UP_FOR_RETRY")


def _state(ti, event: str) -> str:
    if event == "running" or (event == "failed" and _retrying(ti)):
        return "pending"
    return "success" if event == "success" else "failure"


def _outcome(ti, task_id: str | None = None) -> str | None:
    from release.flows import outcome

    said = ti.xcom_pull(task_ids=task_id or ti.task_id, key=outcome.KEY)
    return str(said) if said else None


def _description(ti, event: str, state: str, error: BaseException | None) -> str | None:
    task_id = ti.task_id
    if state == "pending":
        return f"retrying after: {error}" if event == "failed" else None
    if state == "failure":
        return _outcome(ti) or (f"failed: {error}" if error else None)
    if task_id == xcoms.SCAN_GATE:
        scan = xcoms.scan_summary(ti) or {}
        counts = " ".join(f"{k}={v}" for k, v in (scan.get("counts") or {}).items())
        return f"passed at threshold {scan.get('threshold')}; counts {counts}" if scan else None
    if task_id == xcoms.CHART_VALIDATE:
        envs = xcoms.chart_envs(ti)
        return f"renders, lints and validates for {', '.join(envs)}" if envs else None
    if task_id == "hand_over":
        return _outcome(ti)
    return None


def _pipeline_event(ti, event: str, error: BaseException | None) -> None:
    config = _config()
    if config is None:
        return
    service = ti.dag_id.removesuffix("-pipeline")
    params = ti.get_template_context()["params"]
    commit, ref, pr = params.get("commit"), params.get("ref"), params.get("pr")
    if service not in config.services or not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
        return  # validate refuses the run; there is no commit to report on
    task_id = ti.task_id
    if task_id == SARIF_TASK:
        if event == "success":
            from release.github import sarif

            sarif.upload(config, config.artifacts_dir() / service / commit / "trivy.sarif", commit, ref)
        return
    state = _state(ti, event)
    if task_id in statuses.PIPELINE_STAGES:
        stage = statuses.PIPELINE_STAGES[task_id].format(env=config.env_order[0])
        statuses.post(config, commit, statuses.status_body(state, service, stage, ti.log_url,
                                                           _description(ti, event, state, error)))
    if pr and state != "pending" and (task_id in ("scan_gate", "chart_validate") or
                                      (task_id in FAIL_ONLY and state == "failure")):
        _pr_report(config, ti, service, commit, int(pr), state, error)


def settled(states: dict[str, str]) -> bool:
    """Whether every stage the PR comment shows is done, or will never run (a task before it failed)."""
    def done(task_id: str) -> bool:
        before = UPSTREAM.get(task_id, ())
        return states.get(task_id) in SETTLED or any(states.get(u) in ("failed", "upstream_failed") for u in before)
    return all(done(t) for t in PR_STAGES)


def _smoke_event(ti, event: str, error: BaseException | None) -> None:
    """The smoke test of a pipeline's deploy-<first env> run: a status on the pipeline's commit."""
    config = _config()
    if config is None or ti.dag_id != f"deploy-{config.env_order[0]}":
        return
    change = ti.get_template_context()["params"].get("change") or {}
    caller = change.get("caller") or {}
    if change.get("kind") != "pipeline" or not caller.get("dag_id") or not change.get("items"):
        return
    facts = xcoms.pipeline_facts(ti, dag_id=caller["dag_id"], run_id=caller.get("run_id"))
    commit, service = facts.commit if facts else None, change["items"][0].get("service")
    if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit) or service not in config.services:
        return
    state = _state(ti, event)
    env = config.env_order[0]
    description = {"pending": f"smoke-testing {service} in {env}", "success": f"{service} answers as expected in {env}",
                   "failure": f"smoke test failed in {env}: {error}" if error else f"smoke test failed in {env}"}[state]
    statuses.post(config, commit, statuses.status_body(state, service, "smoke", ti.log_url, description))


def _pr_report(config, ti, service: str, commit: str, pr: int, state: str, error: BaseException | None) -> None:
    from release.github import pr_comment

    now = ti.task_id
    watched = sorted({*PR_STAGES, *UPSTREAM, *FAIL_ONLY})
    states = {t: str(s) for t, s in (ti.get_task_states(dag_id=ti.dag_id, task_ids=watched, run_ids=[ti.run_id])
                                     .get(ti.run_id, {}) or {}).items()}
    states[now] = "success" if state == "success" else "failed"
    if not settled(states):
        return  # a stage still runs: the task that settles last writes the comment

    def shown(task_id: str) -> str:
        s = str(states.get(task_id) or "not run")
        return {"upstream_failed": "not run", "none": "not run", "queued": "running", "scheduled": "running",
                "deferred": "running", "up_for_retry": "running"}.get(s, s)

    report = pr_comment.ServiceReport(service=service, commit=commit, run_id=ti.run_id,
                                      run_url=ti.log_url.split("/tasks/", 1)[0],
                                      stages={name: shown(t) for t, name in PR_STAGES.items()})
    gate = shown("scan_gate")
    if gate == "success":
        report.scan = xcoms.scan_summary(ti)
    elif gate == "failed":
        report.scan, report.scan_error = _blocked_summary(config, service, commit)
    else:
        report.scan_error = "not run" if gate == "not run" else "running"
    charts = shown("chart_validate")
    if charts == "success":
        report.charts = xcoms.chart_envs(ti)
    elif charts == "failed":
        report.chart_error = f"failed: {error}" if now == "chart_validate" and error else "failed (see the run)"
    else:
        report.chart_error = "not run" if charts == "not run" else "running"
    pr_comment.update(config, pr, report)


def _blocked_summary(config, service: str, commit: str) -> tuple[dict | None, str | None]:
    """The gate's verdict on a report it refused, judged again as the gate judged it."""
    import json

    from release.domain.gates import scan_policy_for
    from release.domain.scan import ScanReportError, evaluate_report, utc_today

    path = config.artifacts_dir() / service / commit / "trivy.json"
    try:
        report = json.loads(path.read_text())
        return evaluate_report(report, scan_policy_for(config, service, config.env_order[0]), utc_today()).to_dict(), None
    except (OSError, ValueError, ScanReportError) as exc:
        return None, f"could not read the scan report: {exc}"
