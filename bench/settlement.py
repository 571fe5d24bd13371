"""Settlement benchmark: the monthly statements of 200 tenants at quarter-hour resolution
(a month of 2,976 steps each: electricity by tariff period, water, gas, the demand charge
and capacity penalty by coincident peak, the shared assets by each contract's rule, the
demand-response credits), written as CSV and PDF; and one event's fair split and
settlement for the same 200 tenants.

The metered data is synthetic (numpy) and the tariff is the sample estate's: the figure is
the computation and the files, not the reading of InfluxDB (a month of 200 incomers'
quarter-hours is 600,000 rollup rows; see docs/rollups.md, *Cost*, for reading them).
Target: statements, CSV and PDF together in at most 10 s. The load average is printed at
the start and the end: a figure from a busy machine says so. Usage:
    .venv/bin/python bench/settlement.py [--tenants 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatch.dr.allocation import ALLOCATION_RULES, AllocationTerms  # noqa: E402
from dispatch.dr.billing import STEP_HOURS, tariff_versions  # noqa: E402
from dispatch.dr.orders import Programme  # noqa: E402
from dispatch.dr.settlement import settle  # noqa: E402
from dispatch.dr.split import Participant, split_order  # noqa: E402
from dispatch.dr.statement_files import statement_csv, statement_pdf  # noqa: E402
from dispatch.dr.statements import (  # noqa: E402
    BillingRules,
    MonthUsage,
    estate_bill,
    monthly_statements,
)
from dispatch.optimiser import period_names, step_prices  # noqa: E402
from dispatch.registry.records import TariffPeriodRecord, TariffRecord  # noqa: E402
from estate.model import SAMPLE_ESTATE, load_estate  # noqa: E402

LIMIT_S = 10.0
EVENT_STEPS = 12  # a three-hour event


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def _inputs(tenants: int, rng: np.random.Generator) -> tuple[MonthUsage, BillingRules,
                                                              dict[str, str]]:
    spec = load_estate(SAMPLE_ESTATE)
    tz = ZoneInfo(spec.timezone)
    start, end = datetime(2026, 7, 1, tzinfo=tz), datetime(2026, 8, 1, tzinfo=tz)
    steps = int((end - start).total_seconds() // 900)
    records = [TariffRecord(t.valid_from, t.valid_to, t.currency, t.demand_charge_per_kw,
                            t.export_price, t.export_limit_kw,
                            tuple(TariffPeriodRecord(p.name, p.price, p.start_minute,
                                                     p.end_minute,
                                                     sum(1 << i for i, d in enumerate(
                                                         ("mon", "tue", "wed", "thu", "fri",
                                                          "sat", "sun")) if d in p.days))
                                  for p in t.periods)) for t in spec.tariffs]
    versions = tariff_versions(records)
    names = {f"t{i:03d}": f"Tenant {i}" for i in range(tenants)}
    size = rng.uniform(20, 600, tenants)
    profile = 0.6 + 0.4 * np.sin(np.arange(steps) * 2 * np.pi / 96) ** 2
    power = {f: size[i] * profile * rng.uniform(0.9, 1.1, steps)
             for i, f in enumerate(names)}
    usage = MonthUsage(
        "2026-07", int(start.timestamp() * 1000) + np.arange(steps, dtype=np.int64) * 900_000,
        STEP_HOURS, power, {f: rng.uniform(0, 0.5, steps) for f in names},
        {f: rng.uniform(0, 0.8, steps) for f in names}, rng.uniform(-400, 300, steps),
        {f: f"reading_15m power of {f}/main" for f in names})
    rules = BillingRules(
        "EUR", "industrial-mv", period_names(versions, start, steps, STEP_HOURS),
        step_prices(versions, start, steps, STEP_HOURS), 11.0, float(size.sum() * 0.9), 12.0,
        1.8, 0.65, 2500.0,
        {f: AllocationTerms(ALLOCATION_RULES[i % len(ALLOCATION_RULES)], 1.0 + i % 3)
         for i, f in enumerate(names)})
    return usage, rules, names


def _statements(usage: MonthUsage, rules: BillingRules, names: dict[str, str],
                credits: dict[str, float]) -> dict[str, float]:
    t0 = time.perf_counter()
    statements = monthly_statements(usage, rules, names, credits)
    bill = estate_bill(usage, rules, list(names), credits)
    t1 = time.perf_counter()
    text = statement_csv(statements)
    t2 = time.perf_counter()
    pdf = statement_pdf(statements, "Benchmark estate")
    t3 = time.perf_counter()
    gap = abs(sum(s.total for s in statements) - bill.total)
    assert gap < 1e-6 * bill.total, f"statements and the bill differ by {gap}"
    assert text.count("\n") > len(names)
    assert pdf.startswith(b"%PDF")
    return {"compute": t1 - t0, "csv": t2 - t1, "pdf": t3 - t2, "total": t3 - t0,
            "pdf_bytes": float(len(pdf))}


def _event(tenants: int, rng: np.random.Generator) -> float:
    participants = [Participant(f"t{i:03d}", rng.uniform(20, 600, EVENT_STEPS),
                                ("critical", "standard", "flexible")[i % 3],
                                float(rng.uniform(10, 200)), float(rng.uniform(0, 500)))
                    for i in range(tenants)]
    t0 = time.perf_counter()
    split = split_order(np.full(EVENT_STEPS, 8000.0), participants)
    shares = {s.facility: s.kw for s in split.shares}
    baselines = {p.facility: p.baseline_kw for p in participants}
    metered = {f: baselines[f] - shares[f] * rng.uniform(0.5, 1.2) for f in shares}
    settle(Programme("bench", 0.3, 0.5), STEP_HOURS, shares, baselines, metered)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print(f"start: {_load()}")
    usage, rules, names = _inputs(args.tenants, rng)
    credits = {f: float(rng.uniform(-20, 60)) for f in list(names)[::4]}
    runs = [_statements(usage, rules, names, credits) for _ in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"statements of {args.tenants} tenants over {usage.times_ms.size} quarter-hours "
          f"(median of {args.repeats}): compute {median['compute']:.3f} s, CSV "
          f"{median['csv']:.3f} s, PDF {median['pdf']:.3f} s "
          f"({median['pdf_bytes'] / 1e6:.1f} MB)")
    verdict = "PASS" if median["total"] <= LIMIT_S else "FAIL"
    print(f"statements, CSV and PDF: {median['total']:.2f} s (limit {LIMIT_S:.0f} s) {verdict}")
    event = statistics.median(_event(args.tenants, rng) for _ in range(args.repeats))
    print(f"one event's fair split and settlement for {args.tenants} tenants: {event:.3f} s")
    print(f"end: {_load()}")


if __name__ == "__main__":
    main()
