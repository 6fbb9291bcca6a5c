"""DORA's four software-delivery metrics, computed from the registry's history. Pure: data in,
data out (no Airflow, git or HTTP), so every figure can be checked against a hand-built history.

Definitions as dora.dev gives them, applied to one environment (usually prod) and a window
[start, end) of time; an entry belongs to the window by its own time `at`:

- **deployment frequency**: how often a change is deployed. Counted: history entries with
  action `deploy` (a pipeline's deployment or a promotion). Rollbacks put back something that
  already ran; they are not changes and are counted on their own (`rollbacks`).
- **change lead time**: the time from a change's commit to it running here: `at` minus the
  commit time the pipeline recorded in the evidence (`commit_time`; deployments recorded before
  it was recorded have none and are left out, `lead_time_known` says how many counted). Median
  and 90th percentile.
- **change fail rate**: the share of those deployments that were later undone, by the automatic
  rollback of a failed rollout or smoke test (outcome `failed`) or by a person (`rolled_back`).
- **failed deployment recovery time**: for each failed deployment, from its `at` to the entry
  that replaced it on that service and environment (the rollback, or a fix deployed on top).
  Median. A rollback that is itself rolled back later is a restoration that was undone, not a
  failed change: it does not count as a failure and does not move the recovery of the failure
  it restored from.

A window with no deployments has frequency 0 and no lead time, fail rate or recovery time
(None, shown as "-"): nothing was deployed to measure.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Protocol, Sequence

FAILED_OUTCOMES = ("failed", "rolled_back")


class Entry(Protocol):
    """What a history entry must have (release.domain.registry.HistoryEntry has it)."""

    id: int
    env: str
    service: str
    version: str
    action: str
    outcome: str
    at: str
    evidence: dict[str, Any]


def parse_time(value: str | datetime) -> datetime:
    """ISO-8601 (a trailing Z too); UTC when it names no zone."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def commit_time(entry: Entry) -> datetime | None:
    """The commit time the pipeline recorded for this deployment, None if none (or unreadable)."""
    value = (entry.evidence or {}).get("commit_time") if isinstance(entry.evidence, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Dora:
    env: str
    service: str | None  # None: every service of the environment
    start: str
    end: str
    days: float
    deployments: int
    deployments_per_day: float
    rollbacks: int
    failed_deployments: int
    change_fail_rate: float | None  # 0..1
    lead_time_median_s: float | None
    lead_time_p90_s: float | None
    lead_time_known: int  # deployments with a recorded commit time
    recovery_median_s: float | None
    recoveries: int  # failed deployments that were recovered from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list: one of the values, as people
    computing it by hand would pick it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def _replacements(entries: Sequence[Entry]) -> dict[int, Entry]:
    """For each entry id, the next entry on the same environment and service (what replaced it)."""
    last: dict[tuple[str, str], Entry] = {}
    out: dict[int, Entry] = {}
    for e in entries:
        key = (e.env, e.service)
        if key in last:
            out[last[key].id] = e
        last[key] = e
    return out


def compute(entries: Iterable[Entry], env: str, start: datetime, end: datetime, *, service: str | None = None,
            replacements: dict[int, Entry] | None = None) -> Dora:
    """The four figures for `env` (one `service` or all) over [start, end). `entries` is the whole
    history, oldest first: what replaced a deployment may lie after the window."""
    entries = list(entries)
    if replacements is None:
        replacements = _replacements(entries)
    start, end = parse_time(start), parse_time(end)
    if end <= start:
        raise ValueError(f"end: {end.isoformat()} must be after start {start.isoformat()}")
    deployments, rollbacks = [], 0
    for e in entries:
        if e.env != env or (service is not None and e.service != service):
            continue
        if not start <= parse_time(e.at) < end:
            continue
        if e.action == "deploy":
            deployments.append(e)
        elif e.action == "rollback":
            rollbacks += 1
    failed = [e for e in deployments if e.outcome in FAILED_OUTCOMES]
    leads = []
    for e in deployments:
        committed = commit_time(e)
        if committed is not None:
            leads.append(max(0.0, (parse_time(e.at) - committed).total_seconds()))
    recoveries = []
    for e in failed:
        after = replacements.get(e.id)
        if after is not None:
            recoveries.append(max(0.0, (parse_time(after.at) - parse_time(e.at)).total_seconds()))
    days = (end - start).total_seconds() / 86400
    return Dora(
        env=env, service=service, start=_iso(start), end=_iso(end), days=days,
        deployments=len(deployments), deployments_per_day=len(deployments) / days if days else 0.0,
        rollbacks=rollbacks, failed_deployments=len(failed),
        change_fail_rate=len(failed) / len(deployments) if deployments else None,
        lead_time_median_s=statistics.median(leads) if leads else None,
        lead_time_p90_s=_percentile(leads, 90) if leads else None,
        lead_time_known=len(leads),
        recovery_median_s=statistics.median(recoveries) if recoveries else None,
        recoveries=len(recoveries),
    )


def window(days: int, now: datetime) -> tuple[datetime, datetime]:
    """The last `days` days up to `now`."""
    now = parse_time(now)
    return now - timedelta(days=days), now


def trend(entries: Sequence[Entry], env: str, days: int, now: datetime, *, service: str | None = None,
          buckets: int | None = None) -> list[Dora]:
    """The figures per period over the last `days` days, oldest first: weekly buckets for 30 and
    90 days, daily for 7 (or `buckets` equal periods)."""
    start, end = window(days, now)
    n = buckets or (days if days <= 7 else max(1, round(days / 7)))
    step = (end - start) / n
    replacements = _replacements(entries)
    return [compute(entries, env, start + step * i, start + step * (i + 1), service=service, replacements=replacements)
            for i in range(n)]


def lead_times(entries: Iterable[Entry], env: str, start: datetime, end: datetime) -> list[float]:
    """Seconds from commit to deployment of every deployment in the window with a commit time."""
    start, end = parse_time(start), parse_time(end)
    out = []
    for e in entries:
        if e.env == env and e.action == "deploy" and start <= parse_time(e.at) < end:
            committed = commit_time(e)
            if committed is not None:
                out.append(max(0.0, (parse_time(e.at) - committed).total_seconds()))
    return out


def human_duration(seconds: float | None) -> str:
    """3 d 4 h, 2 h 5 min, 7 min, 40 s; '-' for None."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    if m:
        return f"{m} min"
    return f"{s} s"


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
