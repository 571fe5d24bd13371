"""The scheduler's clock alignment (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from dispatch.scheduler import before_each_step


def test_a_quarter_hourly_job_runs_its_lead_before_each_quarter_hour() -> None:
    at = datetime(2026, 11, 26, 14, 7, 12, tzinfo=UTC)
    assert before_each_step(900, 90, at) == datetime(2026, 11, 26, 14, 13, 30, tzinfo=UTC)
    # Inside the lead already: the next quarter-hour's run.
    late = datetime(2026, 11, 26, 14, 14, 0, tzinfo=UTC)
    assert before_each_step(900, 90, late) == datetime(2026, 11, 26, 14, 28, 30, tzinfo=UTC)
    hourly = before_each_step(3600, 0, at)
    assert hourly == datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def test_a_period_off_the_minute_does_not_keep_step_with_the_clock() -> None:
    assert before_each_step(2, 1) is None
    assert before_each_step(90, 10) is None
