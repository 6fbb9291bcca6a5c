"""The release state as Prometheus metric families, computed from one read model.

A collector, not counters kept in a process: each scrape builds a fresh CollectorRegistry from
the read model cached for the GitOps tip (release.web.metrics), so every API server process
reports the same figures, the registry's.
"""

from __future__ import annotations

import bisect

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from release.domain import dora
from release.releases import model

# Change lead time buckets: minutes to a month.
LEAD_TIME_BUCKETS = (300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


class ReleaseCollector:
    def __init__(self, view: model.ReleaseView, facts: model.AirflowFacts, backups: list[dict]):
        self.view, self.facts, self.backups = view, facts, backups

    def collect(self):
        deployments = CounterMetricFamily("release_deployments", "Deployments and rollbacks recorded in the registry, "
                                          "by outcome", labels=["env", "service", "action", "outcome"])
        rollbacks = CounterMetricFamily("release_rollbacks", "Rollbacks recorded, by kind (automatic after a failed "
                                        "rollout or smoke test, or manual)", labels=["env", "service", "kind"])
        counts: dict[tuple, int] = {}
        kinds: dict[tuple, int] = {}
        leads: dict[str, list[float]] = {}
        for e in self.view.state.entries:
            key = (e.env, e.service, e.action, e.outcome)
            counts[key] = counts.get(key, 0) + 1
            if e.action == "rollback":
                kind = (e.env, e.service, "automatic" if e.reason.startswith("automatic rollback") else "manual")
                kinds[kind] = kinds.get(kind, 0) + 1
            elif e.action == "deploy" and (committed := dora.commit_time(e)) is not None:
                leads.setdefault(e.env, []).append(max(0.0, (dora.parse_time(e.at) - committed).total_seconds()))
        for key, n in sorted(counts.items()):
            deployments.add_metric(list(key), n)
        for key, n in sorted(kinds.items()):
            rollbacks.add_metric(list(key), n)
        yield deployments
        yield rollbacks

        lead = HistogramMetricFamily("release_change_lead_time_seconds", "Commit to running in the environment, per "
                                     "deployment with a recorded commit time", labels=["env"])
        for env, values in sorted(leads.items()):
            values.sort()
            buckets = [(str(float(b)), bisect.bisect_right(values, b)) for b in LEAD_TIME_BUCKETS]
            lead.add_metric([env], buckets + [("+Inf", len(values))], sum(values))
        yield lead

        backup = GaugeMetricFamily("release_last_successful_backup_timestamp_seconds",
                                   "When the last Completed Velero backup of the environment completed", labels=["env"])
        last_ok: dict[str, float] = {}
        for b in self.backups:
            when = b.get("completed") or b.get("recorded_at")
            if b.get("phase") == "Completed" and when:
                try:
                    last_ok[b["env"]] = max(last_ok.get(b["env"], 0.0), dora.parse_time(when).timestamp())
                except (ValueError, KeyError, TypeError):
                    continue
        for env, ts in sorted(last_ok.items()):
            backup.add_metric([env], ts)
        yield backup

        findings = GaugeMetricFamily("release_rescan_blocking_findings", "Blocking findings of the nightly re-scan of "
                                     "what runs", labels=["env", "service"])
        for (env, service), n in sorted(model.blocking_findings(self.view).items()):
            findings.add_metric([env, service], n)
        yield findings

        waiting = GaugeMetricFamily("release_approvals_waiting", "Approvals (Airflow HITL) waiting for an answer",
                                    labels=["dag_id"])
        per_dag = {"promote": 0}  # present, as 0, when none wait
        for a in self.facts.approvals:
            per_dag[a["dag_id"]] = per_dag.get(a["dag_id"], 0) + 1
        for dag_id, n in sorted(per_dag.items()):
            waiting.add_metric([dag_id], n)
        yield waiting

        info = GaugeMetricFamily("release_registry_commit_info", "The GitOps commit these figures come from",
                                 labels=["commit"])
        info.add_metric([self.view.commit], 1)
        yield info


def build_registry(view: model.ReleaseView, facts: model.AirflowFacts, backups: list[dict]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReleaseCollector(view, facts, backups))
    return registry
