"""Monthly statements: every line from its figures, totals adding up to the estate's bill,
CSV and PDF."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from dispatch.dr.allocation import AllocationTerms
from dispatch.dr.statement_files import statement_csv, statement_pdf
from dispatch.dr.statements import BillingRules, MonthUsage, estate_bill, monthly_statements

STEPS = 96 * 30


def _usage(rng: np.random.Generator, tenants: int) -> MonthUsage:
    times = np.arange(STEPS, dtype=np.int64) * 900_000
    return MonthUsage("2026-11", times, 0.25,
                      {f"t{i}": rng.uniform(10, 500, STEPS) for i in range(tenants)},
                      {f"t{i}": rng.uniform(0, 1, STEPS) for i in range(tenants)},
                      {f"t{i}": rng.uniform(0, 2, STEPS) for i in range(tenants)},
                      rng.uniform(-300, 200, STEPS))


def _rules(tenants: int) -> BillingRules:
    names = ["low" if (k // 4) % 24 < 7 else "peak" if 17 <= (k // 4) % 24 < 21 else "medium"
             for k in range(STEPS)]
    price = np.array([{"low": 0.08, "medium": 0.12, "peak": 0.2}[n] for n in names])
    return BillingRules("EUR", "test", names, price, demand_charge_per_kw=10.0,
                        capacity_kw=200.0 * tenants, capacity_penalty_per_kw=12.0,
                        water_price_per_m3=1.5, gas_price_per_m3=0.6,
                        shared_running_cost=321.0,
                        allocation={"t1": AllocationTerms("energy"),
                                    "t2": AllocationTerms("fixed", 3.0)})


def test_statements_add_up_to_the_estates_bill() -> None:
    usage, rules = _usage(np.random.default_rng(7), 5), _rules(5)
    names = {f"t{i}": f"Tenant {i}" for i in range(5)}
    dr_net = {"t0": 40.0, "t3": -15.0}
    statements = monthly_statements(usage, rules, names, dr_net)
    bill = estate_bill(usage, rules, list(names), dr_net)
    assert sum(s.total for s in statements) == pytest.approx(bill.total, rel=1e-9)
    assert bill.capacity_penalty > 0  # the random month goes over its contract
    t0 = statements[0]
    energy = sum(line.amount for line in t0.lines if line.section == "electricity")
    assert energy == pytest.approx(float((usage.electricity_kw["t0"] * rules.energy_price)
                                         .sum() * 0.25))
    credit = next(line for line in t0.lines if line.section == "demand response")
    assert credit.amount == pytest.approx(-40.0)


def test_csv_has_every_line_and_a_total_and_pdf_is_a_pdf() -> None:
    usage, rules = _usage(np.random.default_rng(3), 2), _rules(2)
    statements = monthly_statements(usage, rules, {"t0": "Ωmega Ltd", "t1": "B"})
    rows = list(csv.DictReader(io.StringIO(statement_csv(statements))))
    assert len(rows) == sum(len(s.lines) + 1 for s in statements)
    totals = [r for r in rows if r["section"] == "total"]
    assert [float(r["amount"]) for r in totals] == pytest.approx(
        [round(s.total, 2) for s in statements], abs=0.006)
    pdf = statement_pdf(statements, "Riverside")
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) > 1000
