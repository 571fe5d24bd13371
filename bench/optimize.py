"""Optimiser benchmark: our build -> solve -> extract beside PuLP and cvxpy builds.

For 96 quarter-hour steps and 50, 200 and 1,000 assets (40% batteries, 40% deferrable
loads with binaries for minimum power, minimum run and single runs, 20% gensets with
binaries for minimum output, start costs and minimum up/down times; ten assets per tenant,
tenant limits on a third of the tenants, a demand charge and a demand-response window),
it measures in one run:

1. our build (problem -> model matrices, the baseline and the MIP hints: everything
   ``optimise`` counts as build), the median of ``--repeats`` runs;
2. one ``optimise`` at a 1% gap: build, solve and extract times, status, MIP gap;
3. the same model built with PuLP (construction of its objects; writing the solver file is
   not counted) and with cvxpy (expressions plus its compilation to HiGHS's matrices),
   medians of ``--repeats`` runs up to 200 assets, one run at 1,000;
4. the peers' solves where they finish in reasonable time: CBC through PuLP at 50 assets,
   HiGHS through cvxpy up to 200 (each at a 1% gap, ``--peer-limit`` seconds at most);
   at larger sizes they are skipped, and the output says so.

Then each target of the issue with PASS or FAIL. Usage:
    .venv/bin/python bench/optimize.py [--sizes 50 200 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pulp
from pulp.apis.coin_api import pulp_cbc_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatch.optimiser import Plan, SolveOptions, optimise  # noqa: E402
from dispatch.optimiser.baseline import baseline_schedule, mip_start  # noqa: E402
from dispatch.optimiser.optimise import build_model  # noqa: E402
from dispatch.optimiser.rounding import roundings  # noqa: E402
from tests.dispatch.optimiser import twin_cvxpy, twin_pulp  # noqa: E402
from tests.dispatch.optimiser.cases import mixed_estate  # noqa: E402

STEPS = 96
GAP = 0.01
TIME_LIMIT_S = 120.0  # above the 60 s target, so a miss shows how far off it is
PEER_SOLVE_UP_TO = {"pulp": 50, "cvxpy": 200}  # beyond these the peers take many minutes


@dataclass
class Row:
    assets: int
    ours_build: float
    plan: Plan
    pulp_build: float
    cvxpy_build: float
    pulp_solve: str
    cvxpy_solve: str


def median_time(action: Callable[[], float], repeats: int) -> float:
    return statistics.median(action() for _ in range(repeats))


def our_build(assets: int) -> float:
    problem = mixed_estate(assets, STEPS)
    began = time.perf_counter()
    b = build_model(problem)
    b.model.arrays()
    mip_start(b, baseline_schedule(problem))
    roundings(b)
    return time.perf_counter() - began


def pulp_build(assets: int) -> float:
    return twin_pulp.build(mixed_estate(assets, STEPS)).build_s


def cvxpy_build(assets: int) -> float:
    twin = twin_cvxpy.build(mixed_estate(assets, STEPS))
    return twin.construct_s + twin_cvxpy.compile_seconds(twin)


def pulp_solve(assets: int, limit: float) -> str:
    if assets > PEER_SOLVE_UP_TO["pulp"]:
        return "skipped (CBC needs many minutes at this size)"
    twin = twin_pulp.build(mixed_estate(assets, STEPS))
    began = time.perf_counter()
    twin.model.solve(pulp.COIN_CMD(path=pulp_cbc_path, msg=False, timeLimit=limit, gapRel=GAP))
    seconds = time.perf_counter() - began
    objective = pulp.value(twin.model.objective)
    return f"{pulp.LpStatus[twin.model.status]} {objective:,.2f} in {seconds:.1f} s"


def cvxpy_solve(assets: int, limit: float) -> str:
    if assets > PEER_SOLVE_UP_TO["cvxpy"]:
        return "skipped (HiGHS without our warm start needs many minutes at this size)"
    twin = twin_cvxpy.build(mixed_estate(assets, STEPS))
    began = time.perf_counter()
    status, value = twin_cvxpy.solve_built(twin, mip_rel_gap=GAP, time_limit=limit)
    seconds = time.perf_counter() - began
    shown = f"{value:,.2f}" if value is not None else "no value"
    return f"{status} {shown} in {seconds:.1f} s"


def measure(assets: int, repeats: int, peer_limit: float) -> Row:
    problem = mixed_estate(assets, STEPS)
    peer_repeats = repeats if assets <= 200 else 1
    ours = median_time(lambda: our_build(assets), repeats)
    plan = optimise(problem, SolveOptions(time_limit_s=TIME_LIMIT_S, mip_rel_gap=GAP))
    row = Row(assets, ours, plan, median_time(lambda: pulp_build(assets), peer_repeats),
              median_time(lambda: cvxpy_build(assets), peer_repeats),
              pulp_solve(assets, peer_limit), cvxpy_solve(assets, peer_limit))
    report(row, problem.steps)
    return row


def report(row: Row, steps: int) -> None:
    p, t, s = row.plan, row.plan.timings, row.plan.size
    gap = f"{p.mip_gap:.2%}" if p.mip_gap is not None else "n/a"
    print(f"\n{row.assets} assets x {steps} steps: {s.columns:,} columns ({s.integers:,} binary), "
          f"{s.rows:,} rows, {s.nonzeros:,} nonzeros")
    print(f"  ours   build {row.ours_build:.3f} s (median) | in optimise: build "
          f"{t.build_s:.3f} s, solve {t.solve_s:.2f} s, extract {t.extract_s:.3f} s, "
          f"total {t.total_s:.2f} s")
    print(f"         status {p.status}, MIP gap {gap}, objective {p.objective:,.2f}, "
          f"cost {p.cost:,.2f} (baseline {p.baseline.cost:,.2f}, saved {p.cost_saved:,.2f}), "
          f"peak {p.peak_kw:,.0f} kW (baseline {p.baseline.peak_kw:,.0f} kW)")
    print(f"         HiGHS runs: {', '.join(p.solver_stages)}")
    print(f"  PuLP   build {row.pulp_build:.3f} s; solve: {row.pulp_solve}")
    print(f"  cvxpy  build {row.cvxpy_build:.3f} s; solve: {row.cvxpy_solve}")
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def targets(rows: dict[int, Row]) -> None:
    print("\nTargets")

    def solved(n: int, limit: float) -> None:
        if n not in rows:
            print(f"  {n} assets to a 1% gap in <= {limit:.0f} s: not measured")
            return
        p = rows[n].plan
        ok = (p.status in ("optimal", "infeasible_with_slack") and p.mip_gap is not None
              and p.mip_gap <= GAP and p.timings.total_s <= limit)
        gap = f"{p.mip_gap:.2%}" if p.mip_gap is not None else "n/a"
        print(f"  {n} assets to a 1% gap in <= {limit:.0f} s: {p.timings.total_s:.2f} s, "
              f"gap {gap}, {p.status}: {verdict(ok)}")

    solved(200, 5.0)
    solved(1000, 60.0)
    for n, row in rows.items():
        t = row.plan.timings
        share = (t.build_s + t.extract_s) / t.total_s
        print(f"  {n} assets, build + extract <= 10% of total: {share:.2%}: "
              f"{verdict(share <= 0.10)}")
    for n, row in rows.items():
        ratio = min(row.pulp_build, row.cvxpy_build) / row.ours_build
        print(f"  {n} assets, our build >= 10x faster than PuLP's and cvxpy's: "
              f"{row.pulp_build / row.ours_build:,.0f}x and "
              f"{row.cvxpy_build / row.ours_build:,.0f}x: {verdict(ratio >= 10)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-limit", type=float, default=60.0,
                        help="time limit for the peers' solves (s)")
    args = parser.parse_args()
    print(f"HiGHS via highspy, our relax-round-fix then branch and bound; time limit "
          f"{TIME_LIMIT_S:.0f} s, gap {GAP:.0%}; PuLP {version('pulp')} (CBC), "
          f"cvxpy {version('cvxpy')} (HiGHS), highspy {version('highspy')}")
    rows = {n: measure(n, args.repeats, args.peer_limit) for n in args.sizes}
    targets(rows)


if __name__ == "__main__":
    main()
