"""`/release/metrics`: the release state in Prometheus' text format.

A fresh CollectorRegistry per scrape, filled from the read model cached for the GitOps tip
(and Airflow's records for approvals waiting): the figures are the registry's, the same in
every API server process, not counters kept by whichever process happened to serve a request.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from release.releases.prometheus import build_registry
from release.web.access import UserDep

router = APIRouter()


@router.get("/metrics", response_class=Response)
def metrics(user: UserDep) -> Response:
    """Prometheus text format; needs a logged-in user (a bearer token from POST /auth/token)."""
    from release.domain.backups import read_records
    from release.web.releases import airflow_facts, current_config, current_view

    config = current_config()
    try:
        backups = read_records(config, "backups")
    except (OSError, ValueError):
        backups = []
    reg = build_registry(current_view(), airflow_facts(config), backups)
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
