"""Demand response in the dispatch worker: a scheduled job that moves orders along, and the
link between the VEN and the registry.

Each run: orders opted into and not yet split are split (baselines, shares, notices) and
the plan is asked for at once (``on_split``); split orders whose window ended
``settle_after_s`` ago are settled; and an OpenADR order whose operator decision differs
from what the VTN was told gets a new opt sent (``send_opt``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from dispatch.dr.events import DemandResponse, receive, split
from dispatch.dr.metered import QUARTER_MS
from dispatch.dr.orders import OrderDraft
from dispatch.dr.records import order_of, order_payload
from dispatch.dr.settle import settle
from dispatch.registry import dr_book
from dispatch.registry.estate_store import planning_inputs
from dispatch.registry.outbox import add_event
from estate.errors import DemandResponseError, RegistryError, StoreError

log = logging.getLogger(__name__)

SETTLE_AFTER_S: Final = 1800.0
"""Half an hour after a window ends: the last quarter-hour is metered and rolled up (the
rollup job runs every minute, with its grace), so the settlement reads the final figures."""


class DemandResponseJob:
    """Call it (the scheduler does) or ``run(now)`` it."""

    def __init__(self, dr: DemandResponse, *, on_split: Callable[[str], None] | None = None,
                 send_opt: Callable[[str, str], None] | None = None,
                 standing_opt: str = "in", settle_after_s: float = SETTLE_AFTER_S) -> None:
        self._dr = dr
        self.on_split = on_split
        self.send_opt = send_opt
        self._standing = standing_opt
        self._settle_after = timedelta(seconds=settle_after_s)

    def __call__(self) -> None:
        self.run()

    def received(self, draft: OrderDraft) -> str:
        """The VEN's handler: store the order, answer the standing decision."""
        now = datetime.now(UTC)
        order, new = receive(self._dr, draft, "openadr", now, opt=self._standing)
        if new and order.opt == "in":
            self._split(order.id, now)
        return order.opt if order.opt != "pending" else self._standing

    def cancelled(self, event_id: str) -> None:
        """The VEN's handler for an event the VTN cancelled: its order is cancelled (not
        one already settled) and the plan is asked for again without it."""
        with self._dr.registry.writing() as session:
            order = dr_book.order_by_external_id(session, self._dr.estate_id, "openadr",
                                                 event_id)
            if order is None or order.status in ("settled", "cancelled"):
                return
            dr_book.set_status(session, self._dr.estate_id, order.id, "cancelled",
                               {"cancelled_by": "vtn"})
            now = datetime.now(UTC)
            add_event(session, self._dr.estate_id, "dr.order.cancelled", "dr_order",
                      str(order.id), order_payload(order_of(order)), now,
                      f"dr:{order.id}:cancelled")
        log.info("demand response: order %d cancelled by the VTN", order.id)
        if self.on_split is not None:
            self.on_split(f"dr-order-{order.id}-cancelled")

    def _split(self, order_id: int, now: datetime) -> None:
        try:
            split(self._dr, order_id, now)
        except (DemandResponseError, StoreError, RegistryError) as exc:
            log.error("demand-response order %d not split: %s", order_id, exc)
            return
        if self.on_split is not None:
            self.on_split(f"dr-order-{order_id}")

    def run(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self._dr.registry.reading() as session:
            orders = dr_book.orders(session, self._dr.estate_id,
                                    overlapping=(now - timedelta(days=7), now + timedelta(days=7)),
                                    statuses=("received", "split"))
        for order in orders:
            if order.status == "received" and order.opt == "in":
                self._split(order.id, now)
            elif order.status == "split" and now >= order.end_at + self._settle_after:
                try:
                    settle(self._dr, order.id, now)
                except (DemandResponseError, StoreError, RegistryError) as exc:
                    log.error("demand-response order %d not settled: %s", order.id, exc)
            if (order.source == "openadr" and order.external_id and self.send_opt is not None
                    and order.opt in ("in", "out") and order.detail.get("vtn_opt") != order.opt
                    and order.decided_at is not None):
                self._tell_vtn(order.id, order.external_id, order.opt)

    def _tell_vtn(self, order_id: int, event_id: str, opt: str) -> None:
        assert self.send_opt is not None
        try:
            self.send_opt(event_id, opt)
        except Exception:  # the VTN away: told again at the next run
            log.exception("opt %s of order %d not sent to the VTN", opt, order_id)
            return
        with self._dr.registry.writing() as session:
            record = dr_book.order(session, self._dr.estate_id, order_id)
            dr_book.set_status(session, self._dr.estate_id, order_id, record.status,
                               {"vtn_opt": opt})

    def estate_import_kw(self) -> float | None:
        """The estate's import in the latest metered quarter-hour: its incomers' mean power
        (what the VEN reports to the VTN)."""
        try:
            inputs = planning_inputs(self._dr.registry, self._dr.estate_id)
            keys = [(m.facility_id, m.id) for m in inputs.incomers]
            keys += [(str(a.device_facility_id), str(a.device_id)) for a in inputs.assets
                     if a.facility_id is None and a.device_id is not None]
            now_ms = time.time_ns() // 1_000_000
            read = self._dr.metered.power_kw(self._dr.estate_id, keys,
                                             now_ms - now_ms % QUARTER_MS - QUARTER_MS,
                                             now_ms)
        except (StoreError, RegistryError) as exc:
            log.warning("estate import unknown for the VTN's report: %s", exc)
            return None
        latest = [known[max(known)] for known in read.values() if known]
        return float(sum(latest)) if latest else None
