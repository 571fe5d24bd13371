"""Shared pieces of the demand-response flow tests: an estate with history in the real
InfluxDB and its registry in the real PostgreSQL, and tenants that shed what they are told."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.dr.baselines import BaselineMethod
from dispatch.dr.events import DemandResponse
from dispatch.jobs.metered import RollupMeterData
from dispatch.registry import dr_book
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from edge.backfill import backfill
from edge.simulator import EstateSimulator
from estate.lineprotocol import line
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate
from estate.ports import TimeRange, TimeSeriesStore, Where
from estate.schema import READINGS
from estate.settings import InfluxSettings
from estate.stored import RAW_READINGS

QUARTER_MS = 900_000
DAY_MS = 86_400_000
HISTORY_DAYS = 17
METHOD = BaselineMethod(x=3, y=5)  # 5 like days: a lookback of 16 days
# The fast tier's "now": its simulated history ends here (``simulated_history``).
FAST_NOW = 1_783_000_000_000  # 2026-07-02, a Thursday


@dataclass
class Estate:
    spec: EstateSpec
    store: TimeSeriesStore
    registry: Registry
    dr: DemandResponse


def quarter(ms: int) -> int:
    return ms - ms % QUARTER_MS


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(ms_: int) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC)


def simulate_history(store: TimeSeriesStore, until_ms: int) -> None:
    """The sample estate's simulated history of ``HISTORY_DAYS`` up to ``until_ms``."""
    start = quarter(until_ms) - HISTORY_DAYS * DAY_MS
    backfill(EstateSimulator(load_estate(SAMPLE_ESTATE), 5), store, start, until_ms,
             QUARTER_MS)


def prepared(store: TimeSeriesStore, registry: Registry, until_ms: int, *,
             simulated: bool = False) -> Estate:
    """The sample estate: simulated history up to ``until_ms`` in ``store`` (unless
    ``simulated``: already there), its registry migrated and loaded, and the tenants'
    contract terms."""
    spec = load_estate(SAMPLE_ESTATE)
    if not simulated:
        simulate_history(store, until_ms)
    registry.migrate()
    load_estate_into(registry, spec)
    now = datetime.now(UTC)
    with registry.writing() as session:
        for facility, priority, flexible in (("textile", "flexible", 400.0),
                                             ("foods", "critical", None),
                                             ("metal", "standard", 250.0),
                                             ("units", "standard", 60.0),
                                             ("utilities", "standard", 20.0)):
            dr_book.set_contract(session, spec.id, dr_book.ContractRecord(
                facility, priority, flexible, "peak", 1.0), now)
    return Estate(spec, store, registry,
                  DemandResponse(registry, RollupMeterData(store), spec.id, METHOD))


@contextmanager
def estate(influx_url: str, database: str, pg_url: str, until_ms: int) -> Iterator[Estate]:
    """``prepared`` in a database of the real InfluxDB of its own (raw readings kept long
    enough) and the real PostgreSQL."""
    settings = InfluxSettings(url=influx_url, database=database, raw_retention="60d")
    store = InfluxV1Store(settings)
    store.ensure_database()
    registry = Registry(pg_url)
    try:
        yield prepared(store, registry, until_ms)
    finally:
        registry.close()
        store.query(f'DROP DATABASE "{database}"')
        store.close()


def shed(estate: Estate, facility: str, share_kw: list[float], start_ms: int,
         share_of_it: float) -> None:
    """The tenant sheds ``share_of_it`` of its share in each quarter-hour from
    ``start_ms``: its incomers' power there is written down in proportion (what its meters
    would read had it followed its notice)."""
    devices = [m.id for f in estate.spec.facilities if f.id == facility for m in f.meters
               if m.incomer and m.kind == "electricity"]
    end_ms = start_ms + len(share_kw) * QUARTER_MS
    points = estate.store.points(RAW_READINGS, TimeRange(start_ms, end_ms), fields=["power"],
                                 where=Where({"estate": estate.spec.id, "facility": facility}),
                                 group_by=("device",))
    read: dict[tuple[str, int], float] = {}
    for p in points:
        value = p.fields.get("power")
        if isinstance(value, float | int) and p.tags.get("device") in devices:
            read[(p.tags["device"], p.time_ms)] = float(value)
    lines = []
    for k, share in enumerate(share_kw):
        t = start_ms + k * QUARTER_MS
        total = sum(read.get((d, t), 0.0) for d in devices)
        for d in devices:
            if total > 0 and (d, t) in read:
                cut = share * share_of_it * read[(d, t)] / total
                lines.append(line(READINGS, {"estate": estate.spec.id, "facility": facility,
                                             "device": d},
                                  {"power": max(read[(d, t)] - cut, 0.0)}, t * 1_000_000))
    if lines:
        estate.store.write_lines(lines)


def window(now_ms: int, minutes_ahead: int, steps: int) -> tuple[int, int]:
    """A window of ``steps`` quarter-hours from the quarter-hour at least ``minutes_ahead``
    from ``now_ms``."""
    start = quarter(now_ms + minutes_ahead * 60_000) + QUARTER_MS
    return start, start + steps * QUARTER_MS


def kw_list(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]

