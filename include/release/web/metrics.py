"""`/release/metrics`: the release state in Prometheus' text format.

A fresh CollectorRegistry per scrape, filled from the read model cached for the GitOps tip
(and Airflow's records for approvals waiting): the figures are the registry's, the same in
every API server process, not counters kept by whichever process happened to serve a request.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from release import dora
from release.releases import model
from release.web.access import UserDep

router = APIRouter()

# Change lead time buckets: minutes to weeks.
LEAD_TIME_BUCKETS = (300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


def build_registry(view: model.ReleaseView, facts: model.AirflowFacts, backups: list[dict]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    deployments = Counter("release_deployments", "Deployments and rollbacks recorded in the registry, by outcome",
                          ["env", "service", "action", "outcome"], registry=reg)
    rollbacks = Counter("release_rollbacks", "Rollbacks recorded, by kind (automatic after a failed rollout or smoke "
                        "test, or manual)", ["env", "service", "kind"], registry=reg)
    lead = Histogram("release_change_lead_time_seconds", "Commit to running in the environment, per deployment with "
                     "a recorded commit time", ["env"], buckets=LEAD_TIME_BUCKETS, registry=reg)
    counts: dict[tuple, int] = {}
    rb: dict[tuple, int] = {}
    for e in view.state.entries:
        key = (e.env, e.service, e.action, e.outcome)
        counts[key] = counts.get(key, 0) + 1
        if e.action == "rollback":
            kind = "automatic" if e.reason.startswith("automatic rollback") else "manual"
            rb[(e.env, e.service, kind)] = rb.get((e.env, e.service, kind), 0) + 1
        elif e.action == "deploy":
            committed = dora.commit_time(e)
            if committed is not None:
                lead.labels(e.env).observe(max(0.0, (dora.parse_time(e.at) - committed).total_seconds()))
    for key, n in counts.items():
        deployments.labels(*key).inc(n)
    for key, n in rb.items():
        rollbacks.labels(*key).inc(n)

    backup_time = Gauge("release_last_successful_backup_timestamp_seconds",
                        "When the last Completed Velero backup of the environment completed", ["env"], registry=reg)
    last_ok: dict[str, float] = {}
    for b in backups:
        if b.get("phase") == "Completed" and (b.get("completed") or b.get("recorded_at")):
            try:
                last_ok[b["env"]] = dora.parse_time(b.get("completed") or b["recorded_at"]).timestamp()
            except (ValueError, KeyError):
                continue
    for env, ts in last_ok.items():
        backup_time.labels(env).set(ts)

    findings = Gauge("release_rescan_blocking_findings", "Blocking findings of the nightly re-scan of what runs",
                     ["env", "service"], registry=reg)
    for (env, service), n in model.blocking_findings(view).items():
        findings.labels(env, service).set(n)

    waiting = Gauge("release_approvals_waiting", "Approvals (Airflow HITL) waiting for an answer", ["dag_id"], registry=reg)
    waiting.labels("promote")  # present (0) even when none wait
    for a in facts.approvals:
        waiting.labels(a["dag_id"]).inc()
    Gauge("release_registry_info", "The GitOps commit the figures come from", ["commit"], registry=reg).labels(view.commit).set(1)
    return reg


@router.get("/metrics", response_class=Response)
def metrics(user: UserDep) -> Response:
    """Prometheus text format; needs a logged-in user (a bearer token from POST /auth/token)."""
    from release.backups import read_records
    from release.web.releases import airflow_facts, current_config, current_view

    config = current_config()
    try:
        backups = read_records(config, "backups")
    except (OSError, ValueError):
        backups = []
    reg = build_registry(current_view(), airflow_facts(config), backups)
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
