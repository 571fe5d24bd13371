"""The order flow's logic in the fast tier: the in-memory store (``tests.doubles``) and an
SQLite registry; the same flow runs against the real servers in ``test_order_by_hand``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dispatch.dr.events import receive, split
from dispatch.dr.job import DemandResponseJob
from dispatch.dr.orders import OrderDraft, Programme
from dispatch.dr.settle import settle
from dispatch.planning.forecasts import nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.settings import PlanningSettings
from estate.errors import DemandResponseError
from tests.dispatch.dr.flow import FAST_NOW, at, kw_list, prepared, quarter, shed
from tests.doubles import InMemoryTimeSeriesStore

NOW = FAST_NOW


def test_split_plan_settle_and_the_job_on_the_in_memory_store(
        tmp_path: Path, simulated_history: InMemoryTimeSeriesStore) -> None:
    sample = prepared(simulated_history.copy(),
                      Registry(f"sqlite:///{tmp_path / 'r.db'}"), NOW, simulated=True)
    end = quarter(NOW) - 3_600_000
    start = end - 4 * 900_000
    order, _ = receive(sample.dr, OrderDraft("cut", 500.0, at(start), at(end),
                                             Programme("summer", 0.4, 0.6)),
                       "operator:ana", at(start - 7_200_000), opt="in")
    split(sample.dr, order.id, at(start - 7_200_000))
    with pytest.raises(DemandResponseError, match="settle it after"):
        settle(sample.dr, order.id, at(start))
    job = PlanJob(sample.store, sample.registry, sample.spec.id,
                  PlanningSettings(horizon_steps=8, time_limit_s=20),
                  nominal_kw=nominal_kw(sample.spec))
    outcome = job.run(now_ms=start - 60_000)
    assert outcome is not None
    assert len(outcome.assembly.problem.dr_windows) == 4
    with sample.registry.reading() as session:
        parts = {p.facility_id: p for p in dr_book.participations(session, order.id)}
    assert sum(p.requested_kwh for p in parts.values()) <= 500.0 + 1e-6
    assert parts["foods"].requested_kwh == 0
    shed(sample, "textile", kw_list(np.asarray(parts["textile"].requested_kw)),
         start, 1.5)
    DemandResponseJob(sample.dr, settle_after_s=0).run(at(end))
    with sample.registry.reading() as session:
        settled = {p.facility_id: p for p in dr_book.participations(session, order.id)}
        assert dr_book.order(session, sample.spec.id, order.id).status == "settled"
    assert settled["textile"].fell_short is False
    assert settled["textile"].payment == pytest.approx(0.4 * settled["textile"].requested_kwh,
                                                       rel=1e-4)
