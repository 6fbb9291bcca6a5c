"""The Releases view: pages (server-rendered, shown in Airflow's UI by the plugin's external
view) and the same data as JSON, under /release/ui/... and /release/api/....

Every page view reads the read model cached for the GitOps branch's tip commit
(release.releases.source); nothing here clones or parses the repository per request.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from release.domain import dora
from release.releases import model
from release.web import templates
from release.web.access import BearerDep, UserDep, page_user

router = APIRouter()

DAYS = (7, 30, 90)
_config_lock = threading.Lock()
_config: tuple[Any, Any] | None = None


def current_config():
    """The platform config, read again only when its file changes."""
    global _config
    from release.domain.config import config_path, load_config

    path = config_path()
    stamp = (str(path), os.stat(path).st_mtime_ns)
    with _config_lock:
        if _config is None or _config[0] != stamp:
            _config = (stamp, load_config())
        return _config[1]


def current_view() -> model.ReleaseView:
    """The read model at the GitOps tip; 503 naming the problem when the registry cannot be read
    (the remote unreachable, a file broken by a hand edit)."""
    from release.gitops.store import GitOpsError
    from release.domain.registry_file import RegistryFileError
    from release.releases.source import cache_for

    try:
        return cache_for(current_config()).load().view
    except (GitOpsError, RegistryFileError) as exc:
        raise HTTPException(503, f"cannot read the registry: {exc}") from None


def airflow_facts(config) -> model.AirflowFacts:
    """Approvals waiting, runs queued behind them, the last nightly re-scan: Airflow's own records."""
    try:
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        dag_ids = ["promote", "rollback", *[f"deploy-{e}" for e in config.env_order]]
        facts = model.AirflowFacts()
        with create_session() as session:
            waiting = session.execute(
                select(HITLDetail, TaskInstance).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
                .where(HITLDetail.responded_at.is_(None), TaskInstance.state.in_(["awaiting_input", "deferred"]))
                .order_by(HITLDetail.created_at)).all()
            for detail, ti in waiting:
                facts.approvals.append({
                    "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "subject": detail.subject,
                    "created_at": detail.created_at.isoformat() if detail.created_at else None,
                    "assigned_users": [u.get("name") or u.get("id") for u in detail.assignees or []]})
            runs = session.scalars(
                select(DagRun).where(DagRun.dag_id.in_(dag_ids), DagRun.state.in_(["queued", "running"]))
                .order_by(DagRun.queued_at)).all()
            for run in runs:
                facts.queued.append({
                    "dag_id": run.dag_id, "run_id": run.run_id, "state": str(getattr(run.state, "value", run.state)),
                    "queued_at": run.queued_at.isoformat() if run.queued_at else None,
                    "triggered_by": getattr(run, "triggering_user_name", None)})
            last = session.scalars(select(DagRun).where(DagRun.dag_id == "image-rescan")
                                   .order_by(DagRun.run_after.desc()).limit(1)).first()
            if last is not None:
                facts.last_rescan = {"run_id": last.run_id, "state": str(getattr(last.state, "value", last.state)),
                                     "end_date": last.end_date.isoformat() if last.end_date else None}
        return facts
    except Exception as exc:  # noqa: BLE001 - the page still shows the registry's part
        return model.AirflowFacts(error=f"Airflow's records could not be read: {type(exc).__name__}: {exc}")


def _ui_base(request: Request) -> str:
    """Where Airflow's own UI lives: this app is mounted at <base>/release."""
    return request.scope.get("root_path", "").removesuffix("/release")


def _render(template: str, request: Request, **context) -> HTMLResponse:
    return HTMLResponse(templates.render(template, ui=_ui_base(request), now=model.now_utc(), **context))


def _pending(config, facts: model.AirflowFacts) -> dict:
    return {"approvals": facts.approvals, "queued": facts.queued, "freezes": model.freezes(config, model.now_utc()),
            "error": facts.error}


def _operations(config, view, facts: model.AirflowFacts) -> dict:
    from release.domain.backups import read_records

    try:
        backups, drills = read_records(config, "backups"), read_records(config, "drills")
    except (OSError, ValueError):
        backups, drills = [], []
    return model.operations(config, backups, drills, view, facts.last_rescan, model.now_utc())


def _days(days: int) -> int:
    if days not in DAYS:
        raise HTTPException(422, f"days: {days} is not allowed; allowed: {', '.join(map(str, DAYS))}")
    return days


def _env(view: model.ReleaseView, env: str | None) -> str:
    env = env or (view.envs[-1] if view.envs else "")
    if env not in view.envs:
        raise HTTPException(422, f"env: unknown environment {str(env)[:80]!r}; allowed: {', '.join(view.envs)}")
    return env


# -- pages ------------------------------------------------------------------------------------


@router.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
async def matrix_page(request: Request, bearer: BearerDep, name: str = "", owner: str = "", page: int = 1,
                      blocking: bool = False):
    user = await page_user(request, bearer)
    view = await run_in_threadpool(current_view)
    data = view.matrix(name=name, owner=owner, page=page, blocking_only=blocking)
    return _render("matrix.html", request, view=view, m=data, name=name, owner=owner, blocking=blocking,
                   user=user.get_name(), age=model.age)


@router.get("/ui/services/{service}", response_class=HTMLResponse, include_in_schema=False)
async def service_page(request: Request, service: str, bearer: BearerDep):
    user = await page_user(request, bearer)
    view = await run_in_threadpool(current_view)
    data = view.service(service)
    if data is None:
        raise HTTPException(404, f"service: {service[:80]!r} is not in the config or the registry")
    return _render("service.html", request, view=view, s=data, user=user.get_name(), age=model.age,
                   timeline=templates.timeline_svg(data["entries"], view.envs))


@router.get("/ui/pending", response_class=HTMLResponse, include_in_schema=False)
async def pending_page(request: Request, bearer: BearerDep):
    user = await page_user(request, bearer)
    config = current_config()
    facts = await run_in_threadpool(airflow_facts, config)
    return _render("pending.html", request, p=_pending(config, facts), user=user.get_name())


@router.get("/ui/operations", response_class=HTMLResponse, include_in_schema=False)
async def operations_page(request: Request, bearer: BearerDep):
    user = await page_user(request, bearer)
    config = current_config()
    view = await run_in_threadpool(current_view)
    facts = await run_in_threadpool(airflow_facts, config)
    return _render("operations.html", request, o=_operations(config, view, facts), user=user.get_name())


@router.get("/ui/dora", response_class=HTMLResponse, include_in_schema=False)
async def dora_page(request: Request, bearer: BearerDep, env: str | None = None, days: int = 30,
                    service: str | None = None):
    user = await page_user(request, bearer)
    view = await run_in_threadpool(current_view)
    env, days = _env(view, env), _days(days)
    data = view.dora(env, days, model.now_utc(), service or None)
    per_env = {e: view.dora(e, days, model.now_utc(), service or None)["figures"] for e in view.envs}
    return _render("dora.html", request, view=view, env=env, days=days, service=service or "", d=data, per_env=per_env,
                   user=user.get_name(), human=dora.human_duration, days_options=DAYS,
                   trend=templates.trend_svg(data["trend"]))


# -- JSON -------------------------------------------------------------------------------------


def _cell(cell: model.Cell | None) -> dict | None:
    if cell is None:
        return None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cell.__dict__.items()}


def _row(row: model.Row) -> dict:
    return {"service": row.service, "owners": list(row.owners), "blocking": row.blocking,
            "envs": {env: _cell(c) for env, c in row.cells.items()}}


@router.get("/api/matrix")
def matrix_json(user: UserDep, name: str = "", owner: str = "", page: int = Query(1, ge=1),
                page_size: int = Query(model.PAGE_SIZE, ge=1, le=1000), blocking: bool = False) -> dict:
    """Services x environments, one page: per cell version, digest, deployed_at/by, approved_by,
    scan/re-scan/signature/smoke evidence and how many versions it is behind the previous environment."""
    data = current_view().matrix(name=name, owner=owner, page=page, page_size=page_size, blocking_only=blocking)
    return {**data, "rows": [_row(r) for r in data["rows"]]}


@router.get("/api/services/{service}")
def service_json(service: str, user: UserDep) -> dict:
    """A service's deployments, promotions and rollbacks, newest first, and each version's scan evidence."""
    data = current_view().service(service)
    if data is None:
        raise HTTPException(404, f"service: {service[:80]!r} is not in the config or the registry")
    entries = [{**e.summary(), "evidence": e.evidence} for e in data["entries"]]
    return {"service": service, "row": _row(data["row"]), "history": entries, "versions": data["versions"],
            "commit": data["commit"]}


@router.get("/api/pending")
def pending_json(user: UserDep) -> dict:
    config = current_config()
    return _pending(config, airflow_facts(config))


@router.get("/api/operations")
def operations_json(user: UserDep) -> dict:
    config = current_config()
    return _operations(config, current_view(), airflow_facts(config))


@router.get("/api/dora")
def dora_json(user: UserDep, env: str | None = None, days: int = 30, service: str | None = None) -> dict:
    view = current_view()
    env, days = _env(view, env), _days(days)
    data = view.dora(env, days, model.now_utc(), service or None)
    return {"figures": data["figures"].to_dict(), "trend": [t.to_dict() for t in data["trend"]], "commit": view.commit}
