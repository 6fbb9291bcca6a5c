"""The Releases view's read model: what runs where, built once per GitOps commit.

Pure: it takes the config, the registry state (versions and history) and what Airflow knows
(approvals waiting, queued runs, the last re-scan run) and returns plain data; the web layer
renders it and the cache (release.releases.source) keeps one per commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from release.domain import dora
from release.domain.config import PlatformConfig
from release.domain.registry import HistoryEntry, RegistryState

PAGE_SIZE = 50


@dataclass(frozen=True)
class Cell:
    version: str
    digest: str  # short: the first 12 hex digits
    image: str
    deployed_at: str
    deployed_by: str
    approved_by: str | None
    run_id: str
    scan: str  # passed | blocked | none
    rescan: str  # passed | blocking | none (no nightly re-scan recorded yet)
    rescan_blocking: tuple[str, ...]
    rescan_at: str | None
    signed: bool
    smoke: str  # passed | pending | none
    behind: int | None  # versions behind the environment before it (0: same version)
    differs: bool  # runs something other than the environment before it


@dataclass(frozen=True)
class Row:
    service: str
    owners: tuple[str, ...]
    cells: dict[str, Cell | None]
    blocking: bool  # a blocking nightly re-scan finding in some environment


@dataclass
class AirflowFacts:
    """What Airflow's own records say (filled by the web layer from Airflow's database)."""

    approvals: list[dict] = field(default_factory=list)  # waiting HITL approvals
    queued: list[dict] = field(default_factory=list)  # runs of promote / deploy-<env> / rollback not finished
    last_rescan: dict | None = None  # the last image-rescan run: run_id, state, end_date
    error: str | None = None  # Airflow's records could not be read


def short_digest(image: str) -> str:
    return image.rsplit("@", 1)[-1].removeprefix("sha256:")[:12]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _scan(evidence: dict) -> str:
    scan = _mapping(evidence.get("scan"))
    if not scan:
        return "none"
    return "passed" if scan.get("passed") is True else "blocked"


def _rescan(evidence: dict) -> tuple[str, tuple[str, ...], str | None]:
    rescan = _mapping(evidence.get("rescan"))
    if not rescan:
        return "none", (), None
    blocking = tuple(str(b) for b in rescan.get("blocking") or [])
    passed = rescan.get("passed") is True and not blocking
    return ("passed" if passed else "blocking"), blocking, rescan.get("scanned_at")


def _smoke(evidence: dict) -> str:
    if "smoke" not in evidence:
        return "none"
    return "passed" if _mapping(evidence.get("smoke")).get("passed") is True else "pending"


class ReleaseView:
    """Everything the Releases pages show for one GitOps commit, indexed for fast page views."""

    def __init__(self, config: PlatformConfig, state: RegistryState, commit: str, *,
                 previous: ReleaseView | None = None, kept: int = 0):
        """`previous`, the view of an earlier commit whose first `kept` history entries are the
        first of `state` (the same objects: the rest was appended), is built on instead of
        indexing 100,000 entries again; its rows are reused for every service whose deployments
        (the same objects) and history did not change."""
        self.config = config
        self.state = state
        self.commit = commit
        self.envs = list(config.env_order)
        extra = sorted({e for e in state.environments} - set(self.envs))
        self.envs += extra
        if not (previous is not None and previous.config is config and previous.envs == self.envs and 0 < kept
                and len(previous.state.entries) == kept and previous.state.entries[-1] is state.entries[kept - 1]):
            previous, kept = None, 0
        new = state.entries[kept:]
        touched = {e.service for e in new}
        by_service: dict[str, list[HistoryEntry]] = {}
        order: dict[tuple[str, str], dict[str, int]] = {}
        if previous is not None:  # copy what the new entries change; share the rest
            by_service = {**previous.by_service, **{s: list(previous.by_service.get(s, ())) for s in touched}}
            order = {k: dict(v) if k[1] in touched else v for k, v in previous._order.items()}
        for e in new:  # 100,000 entries on a first load: kept to plain dict operations
            service = e.service
            entries = by_service.get(service)
            if entries is None:
                entries = by_service[service] = []
            entries.append(e)
            if e.action == "deploy":
                key = (e.env, service)
                seen = order.get(key)
                if seen is None:
                    seen = order[key] = {}
                if e.version not in seen:
                    seen[e.version] = len(seen)
        self.by_service = by_service
        self._order = order
        names = list(config.services)
        names += sorted({s for env in state.environments.values() for s in env} - set(config.services))
        self.rows = [self._row(name) if previous is None or name in touched or self._moved(previous, name)
                     else previous.row_index.get(name) or self._row(name) for name in names]
        self.row_index = {r.service: r for r in self.rows}

    def _moved(self, previous: ReleaseView, service: str) -> bool:
        """Whether `service` runs anything other than (another object than) it did in `previous`."""
        now, then = self.state.environments, previous.state.environments
        return any(now.get(env, {}).get(service) is not then.get(env, {}).get(service) for env in self.envs)

    def _behind(self, prev_env: str, service: str, version: str, prev_version: str) -> int | None:
        """How many versions `version` is behind `prev_version`: in the order prev_env got them, or,
        where prev_env never ran `version`, in the order the first environment got them."""
        for env in (prev_env, self.envs[0]):
            seen = self._order.get((env, service), {})
            if version in seen and prev_version in seen:
                return max(0, seen[prev_version] - seen[version])
        return None

    def _row(self, service: str) -> Row:
        svc = self.config.services.get(service)
        cells: dict[str, Cell | None] = {}
        blocking = False
        prev: tuple[str, Any] | None = None
        for env in self.envs:
            d = self.state.environments.get(env, {}).get(service)
            if d is None:
                cells[env] = None
                continue
            ev = _mapping(d.evidence)
            rescan, rescan_blocking, rescan_at = _rescan(ev)
            blocking |= rescan == "blocking"
            behind, differs = None, False
            if prev is not None:
                prev_env, prev_d = prev
                differs = prev_d.version != d.version
                behind = 0 if not differs else self._behind(prev_env, service, d.version, prev_d.version)
            cells[env] = Cell(
                version=d.version, digest=short_digest(d.image), image=d.image, deployed_at=d.deployed_at,
                deployed_by=d.deployed_by, approved_by=d.approved_by, run_id=d.run_id, scan=_scan(ev), rescan=rescan,
                rescan_blocking=rescan_blocking, rescan_at=rescan_at,
                signed=_mapping(ev.get("signature")).get("signed") is True, smoke=_smoke(ev), behind=behind,
                differs=differs)
            prev = (env, d)
        return Row(service, tuple(svc.owners) if svc else (), cells, blocking)

    # -- the matrix ---------------------------------------------------------------------------

    def matrix(self, *, name: str = "", owner: str = "", page: int = 1, page_size: int = PAGE_SIZE,
               blocking_only: bool = False) -> dict:
        """One page of rows, filtered by a part of the service name and of an owner."""
        name, owner = name.strip().lower(), owner.strip().lower()
        rows = self.rows
        if name:
            rows = [r for r in rows if name in r.service.lower()]
        if owner:
            rows = [r for r in rows if any(owner in o.lower() for o in r.owners)]
        if blocking_only:
            rows = [r for r in rows if r.blocking]
        # A service with a blocking re-scan finding stands out: first, and marked.
        rows = sorted(rows, key=lambda r: not r.blocking)
        pages = max(1, -(-len(rows) // page_size))
        page = min(max(1, page), pages)
        return {"envs": self.envs, "total": len(rows), "page": page, "pages": pages, "page_size": page_size,
                "rows": rows[(page - 1) * page_size: page * page_size], "commit": self.commit,
                "blocking": sum(1 for r in self.rows if r.blocking)}

    # -- one service ------------------------------------------------------------------------

    def service(self, service: str) -> dict | None:
        row = self.row_index.get(service)
        if row is None:
            return None
        entries = self.by_service.get(service, [])
        versions: dict[str, dict] = {}
        for e in entries:  # newest evidence per version wins
            ev = _mapping(e.evidence)
            scan = _mapping(ev.get("scan"))
            rescan = _mapping(ev.get("rescan"))
            info = versions.setdefault(e.version, {"version": e.version, "image": e.image, "envs": []})
            if scan:
                info["scan"] = scan
            if rescan:
                info["rescan"] = rescan
            if ev.get("commit"):
                info["commit"] = ev.get("commit")
            if ev.get("commit_time"):
                info["commit_time"] = ev.get("commit_time")
            if e.env not in info["envs"]:
                info["envs"].append(e.env)
        return {"row": row, "envs": self.envs, "entries": list(reversed(entries)), "versions": list(reversed(versions.values())),
                "commit": self.commit}

    # -- DORA -------------------------------------------------------------------------------

    def dora(self, env: str, days: int, now: datetime, service: str | None = None) -> dict:
        start, end = dora.window(days, now)
        entries = self.by_service.get(service, []) if service else self.state.entries
        figures = dora.compute(entries, env, start, end, service=service)
        return {"figures": figures, "trend": dora.trend(entries, env, days, now, service=service)}


def blocking_findings(view: ReleaseView) -> dict[tuple[str, str], int]:
    """(env, service) -> number of blocking findings of the nightly re-scan."""
    out = {}
    for row in view.rows:
        for env, cell in row.cells.items():
            if cell is not None and cell.rescan == "blocking":
                out[(env, row.service)] = max(1, len(cell.rescan_blocking))
    return out


def age(at: str, now: datetime) -> str:
    """How long ago: '3 d 4 h', '12 min'."""
    try:
        then = dora.parse_time(at)
    except ValueError:
        return "?"
    return dora.human_duration(max(0.0, (now - then).total_seconds()))


def freezes(config: PlatformConfig, now: datetime) -> list[dict]:
    """Deploy freezes active now or still to come, per environment."""
    out = []
    for env, e in config.environments.items():
        for w in e.freeze:
            if w.end > now:
                out.append({"env": env, "start": w.start.isoformat(), "end": w.end.isoformat(),
                            "reason": getattr(w, "reason", ""), "active": w.start <= now < w.end})
    return out


def operations(config: PlatformConfig, backups: list[dict], drills: list[dict], view: ReleaseView,
               last_rescan: dict | None, now: datetime) -> dict:
    """The last backup per environment, the last restore drill, last night's re-scan."""
    last_backup, last_ok = {}, {}
    for b in backups:  # oldest first
        last_backup[b["env"]] = b
        if b.get("phase") == "Completed":
            last_ok[b["env"]] = b
    rows = []
    for env in config.env_order:
        b = last_backup.get(env)
        when = (b.get("completed") or b.get("started") or b.get("recorded_at")) if b else None
        rows.append({"env": env, "backup": b, "age": age(when, now) if when else "-",
                     "last_completed": (last_ok.get(env) or {}).get("completed")})
    blocking = blocking_findings(view)
    scanned = [c.rescan_at for r in view.rows for c in r.cells.values() if c is not None and c.rescan_at]
    return {"backups": rows, "drill": drills[-1] if drills else None,
            "rescan": {"run": last_rescan, "blocking": sorted(f"{s} in {e}" for e, s in blocking),
                       "last_recorded": max(scanned) if scanned else None}}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
