"""Commit statuses: each pipeline stage of a service on the app repo's commit it built.

One status context per service and stage (`release/<service>/<stage>`), so a monorepo commit
that starts several pipelines shows each service's stages side by side. A stage is `pending`
while its task runs, then `success` or `failure` with one line saying what happened (the run's
recorded outcome where the task recorded one); its link opens the Airflow task.

    verify, build, scan gate, chart validation   tasks of <service>-pipeline
    deploy to <first env>                        its hand_over (the deploy-<env> run it waits for)
    smoke                                        the smoke task of that deploy-<env> run
"""

from __future__ import annotations

from release.github import outbound

# pipeline task id -> stage (as it reads in the status context)
PIPELINE_STAGES = {"verify": "verify", "build": "build", "scan_gate": "scan-gate",
                   "chart_validate": "chart-validation", "hand_over": "deploy-{env}"}
SMOKE_TASK = "smoke"
MAX_DESCRIPTION = 140  # GitHub's limit for a status description

DONE = {"pending": "running", "success": "passed", "failure": "failed (see the task log)"}


def context_name(service: str, stage: str) -> str:
    return f"release/{service}/{stage}"


def one_line(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def status_body(state: str, service: str, stage: str, target_url: str, description: str | None = None) -> dict:
    """The request body of one commit status (POST /repos/{owner}/{repo}/statuses/{sha})."""
    if state not in DONE:
        raise ValueError(f"state: {state!r} is not allowed; allowed: {', '.join(DONE)}")
    return {"state": state, "context": context_name(service, stage), "target_url": target_url,
            "description": one_line(description or f"{stage.replace('-', ' ')} {DONE[state]}")}


def post(config, commit: str, body: dict):
    """Set one status on `commit`; GitHub's answer, or None (never raises)."""
    return outbound.call(config, "POST", f"/statuses/{commit}", json=body)
