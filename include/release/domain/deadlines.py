"""Deadlines that outlive a process: wall-clock time, UTC.

A deferred wait runs in the triggerer, which may restart; it then re-creates each trigger
from its serialized kwargs. A deadline taken from a monotonic clock (whose zero is the
process's) would start over; one in epoch seconds, fixed when the wait starts and carried
in the kwargs, keeps its moment.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def wall_clock() -> float:
    """Now, in seconds since the epoch (UTC)."""
    return time.time()


def after(seconds: float) -> float:
    """The deadline `seconds` from now."""
    return wall_clock() + float(seconds)


def utc_text(epoch_seconds: float) -> str:
    """A deadline for people: 2026-12-02T06:15:00Z."""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
