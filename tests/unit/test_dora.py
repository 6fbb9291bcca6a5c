"""Every DORA figure on hand-built histories whose answers were worked out by hand.

The window is [2026-11-01, 2026-11-08) (7 days) unless a test says otherwise; times are UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from release.domain import dora
from release.domain.registry import HistoryEntry

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = datetime(2026, 11, 8, tzinfo=timezone.utc)
IMAGE = "registry.local:5000/release/service-a@sha256:" + "a" * 64


class History:
    """Builds entries oldest first, ids in order, as the registry writes them."""

    def __init__(self):
        self.entries: list[HistoryEntry] = []

    def add(self, at: str, version: str, *, env: str = "prod", service: str = "service-a", action: str = "deploy",
            outcome: str = "deployed", committed: str | None = None, reason: str = "") -> HistoryEntry:
        evidence = {"commit_time": committed} if committed else {}
        e = HistoryEntry(id=len(self.entries) + 1, env=env, service=service, version=version, image=IMAGE,
                         previous_version=None, action=action, outcome=outcome, at=at, by="alice", run_id="r",
                         reason=reason, evidence=evidence)
        self.entries.append(e)
        return e

    def figures(self, env: str = "prod", service: str | None = None, start=START, end=END) -> dora.Dora:
        return dora.compute(self.entries, env, start, end, service=service)


def test_no_deployments_gives_zero_frequency_and_no_other_figure():
    f = History().figures()
    assert (f.deployments, f.deployments_per_day, f.rollbacks) == (0, 0.0, 0)
    assert f.change_fail_rate is None and f.lead_time_median_s is None and f.recovery_median_s is None
    assert f.days == 7


def test_frequency_lead_time_fail_rate_and_recovery_on_a_known_week():
    h = History()
    # 1.0: committed 2 h before, stuck.  1.1: committed 1 h before, failed its smoke test and was
    # rolled back automatically 30 min later.  1.2: committed 4 h before, stuck.  Another service
    # and another environment must not count.
    h.add("2026-11-02T10:00:00Z", "1.0", committed="2026-11-02T08:00:00Z")
    h.add("2026-11-03T10:00:00Z", "1.1", committed="2026-11-03T09:00:00Z", outcome="failed")
    h.add("2026-11-03T10:30:00Z", "1.0", action="rollback", reason="automatic rollback: smoke failed")
    h.add("2026-11-05T12:00:00Z", "1.2", committed="2026-11-05T08:00:00Z")
    h.add("2026-11-05T12:00:00Z", "9.9", service="service-b", committed="2026-11-01T00:00:00Z")
    h.add("2026-11-04T00:00:00Z", "1.5", env="staging", committed="2026-11-03T00:00:00Z")
    f = h.figures(service="service-a")
    assert f.deployments == 3 and f.rollbacks == 1
    assert f.deployments_per_day == pytest.approx(3 / 7)
    assert f.failed_deployments == 1 and f.change_fail_rate == pytest.approx(1 / 3)
    assert f.lead_time_median_s == 2 * 3600  # 1 h, 2 h, 4 h
    assert f.lead_time_p90_s == 4 * 3600  # nearest rank: ceil(0.9 * 3) = 3rd of 3
    assert f.lead_time_known == 3
    assert f.recovery_median_s == 30 * 60 and f.recoveries == 1
    # All services of prod: service-b's deployment counts too (lead time 4 d 12 h).
    every = h.figures()
    assert every.deployments == 4 and every.change_fail_rate == pytest.approx(1 / 4)
    assert every.lead_time_median_s == pytest.approx((2 * 3600 + 4 * 3600) / 2)  # 1 h, 2 h, 4 h, 108 h


def test_a_manual_rollback_counts_as_a_failed_change_too():
    h = History()
    h.add("2026-11-02T00:00:00Z", "1.0")
    h.add("2026-11-02T06:00:00Z", "1.1", outcome="rolled_back")
    h.add("2026-11-02T08:00:00Z", "1.0", action="rollback", reason="customers report errors")
    f = h.figures()
    assert (f.deployments, f.failed_deployments, f.rollbacks) == (2, 1, 1)
    assert f.change_fail_rate == 0.5
    assert f.recovery_median_s == 2 * 3600


def test_only_rollbacks_in_the_window_are_not_deployments():
    h = History()
    h.add("2026-10-30T00:00:00Z", "1.1", outcome="failed")  # before the window
    h.add("2026-11-01T01:00:00Z", "1.0", action="rollback", reason="automatic rollback: rollout failed")
    f = h.figures()
    assert (f.deployments, f.rollbacks, f.failed_deployments) == (0, 1, 0)
    assert f.change_fail_rate is None and f.recovery_median_s is None  # the failure belongs to its own window


def test_a_rollback_of_a_rollback_is_not_a_failed_change_and_does_not_move_the_recovery():
    h = History()
    h.add("2026-11-02T00:00:00Z", "1.0")
    h.add("2026-11-02T01:00:00Z", "1.1")
    h.add("2026-11-03T00:00:00Z", "1.2", outcome="failed")
    # The automatic rollback to 1.1 (20 min later) was itself rolled back by a person to 1.0.
    h.add("2026-11-03T00:20:00Z", "1.1", action="rollback", outcome="rolled_back", reason="automatic rollback: smoke")
    h.add("2026-11-03T05:00:00Z", "1.0", action="rollback", reason="1.1 leaks memory")
    f = h.figures()
    assert (f.deployments, f.rollbacks) == (3, 2)
    assert f.failed_deployments == 1 and f.change_fail_rate == pytest.approx(1 / 3)
    assert f.recovery_median_s == 20 * 60


def test_deployments_across_the_window_edges():
    h = History()
    h.add("2026-10-31T23:59:59Z", "0.9", committed="2026-10-31T23:00:00Z")  # just before: out
    h.add("2026-11-01T00:00:00Z", "1.0", committed="2026-10-31T23:00:00Z")  # at the start: in, lead 1 h
    h.add("2026-11-07T23:59:59Z", "1.1", outcome="failed", committed="2026-11-07T23:00:00Z")  # last second: in
    h.add("2026-11-08T00:30:00Z", "1.0", action="rollback", reason="automatic rollback: smoke")  # after the end
    h.add("2026-11-08T00:00:00Z", "1.2")  # at the end: out
    f = h.figures()
    assert f.deployments == 2 and f.rollbacks == 0
    assert f.lead_time_median_s == pytest.approx((3600 + 3599) / 2)
    # The failure inside the window counts although its rollback came after the window's end.
    assert f.failed_deployments == 1 and f.recovery_median_s == 30 * 60 + 1


def test_a_deployment_without_a_recorded_commit_time_is_left_out_of_the_lead_time_only():
    h = History()
    h.add("2026-11-02T00:00:00Z", "1.0")
    h.add("2026-11-03T00:00:00Z", "1.1", committed="2026-11-02T18:00:00Z")
    f = h.figures()
    assert f.deployments == 2 and f.lead_time_known == 1 and f.lead_time_median_s == 6 * 3600


def test_a_failure_never_recovered_from_has_no_recovery_time():
    h = History()
    h.add("2026-11-02T00:00:00Z", "1.1", outcome="failed")
    f = h.figures()
    assert f.change_fail_rate == 1.0 and f.recoveries == 0 and f.recovery_median_s is None


def test_trend_splits_the_window_into_periods_that_add_up():
    h = History()
    for day in range(1, 8):
        h.add(f"2026-11-0{day}T12:00:00Z", f"1.{day}")
    periods = dora.trend(h.entries, "prod", 7, END)
    assert len(periods) == 7 and [p.deployments for p in periods] == [1] * 7
    assert sum(p.deployments for p in dora.trend(h.entries, "prod", 30, END)) == 7
    assert len(dora.trend(h.entries, "prod", 90, END)) == 13  # weekly


def test_an_empty_or_reversed_window_is_refused():
    with pytest.raises(ValueError, match="end"):
        dora.compute([], "prod", END, START)


@pytest.mark.parametrize("seconds,text", [(None, "-"), (40, "40 s"), (7 * 60, "7 min"), (2 * 3600 + 300, "2 h 5 min"),
                                          (3 * 86400 + 4 * 3600, "3 d 4 h")])
def test_durations_read_as_people_write_them(seconds, text):
    assert dora.human_duration(seconds) == text
