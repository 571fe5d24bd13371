"""The rolling re-plan, the scheduler's job: assemble the estate's problem, optimise it,
store the plan, send the setpoints of assets in auto control mode.

    registry (estate, facilities, assets, tariffs, limits) ─┐
    forecast (rollup_long, per facility) ───────────────────┼─► EstateProblem ─► optimise
    reading_15m (this month's peak), reading (latest SoC) ──┤        │
    demand-response orders opted into (caps, tenants' shares)┘        │
                                           plans row + plan series ◄─┘ ─► auto commands

Assembly is ``dispatch.planning.assembly``; what a run stores, ``plan_series``; approval and
commands, ``dispatch.control.approval``. docs/planning.md tells the whole story.

A run works under the scheduler's lease (``lease``, the worker's ``LeaseKeeper``): it takes
the lease's fence as it starts, and saves its plan and its automatic commands in one
transaction that checks the fence is still current, so a worker deposed while it solved
(paused past its lease, and another took over) saves nothing and sends nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from dispatch.control.approval import decide_step
from dispatch.control.sender import CommandSender
from dispatch.dr.planned import active_orders
from dispatch.jobs.rollups import try_rollup_policies
from dispatch.optimiser import Plan as OptimisedPlan
from dispatch.optimiser import ProblemError, SolveOptions, TariffError, optimise
from dispatch.planning.assembly import Assembly, assemble
from dispatch.planning.dr_plan import (
    apply_orders,
    explain_orders,
    record_shortfall,
    tenant_setpoints,
)
from dispatch.planning.plan_series import PLAN_POLICY, plan_draft, plan_lines
from dispatch.registry.db import Registry
from dispatch.registry.estate_store import planning_inputs
from dispatch.registry.lock import Fence, FenceSource
from dispatch.registry.plan_store import PlanStore
from dispatch.registry.records import SavedPlan
from dispatch.settings import PlanningSettings, RollupSettings
from estate.errors import Deposed, PlanningError, RegistryError
from estate.fault_points import fault_point
from estate.ports import TimeSeriesStore

log = logging.getLogger(__name__)

_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True, eq=False)
class PlanOutcome:
    """What one run made: the stored row, the problem and the optimiser's plan."""

    saved: SavedPlan
    assembly: Assembly
    result: OptimisedPlan
    commands: tuple[str, ...]  # ids of the commands sent to auto assets


class PlanJob:
    """The rolling re-plan: call it (the scheduler does), ``run(now_ms)`` it, or ask for a
    plan out of turn with ``replan(reason)``.

    ``request_soon`` is how ``replan`` reaches the scheduler (``Scheduler.run_soon``);
    without it a re-plan runs at once in the caller's thread. With a ``lease`` a run
    plans only while it is held here, and saves only if it still is (a tool or a test
    without one saves unfenced).
    """

    def __init__(self, store: TimeSeriesStore, registry: Registry,
                 estate_id: str, settings: PlanningSettings, *,
                 sender: CommandSender | None = None,
                 nominal_kw: Mapping[str, float] | None = None,
                 rollups: RollupSettings | None = None, manage_policies: bool = True,
                 lease: FenceSource | None = None) -> None:
        self._store = store
        self._lease = lease
        self._registry = registry
        self._plans = PlanStore(registry)
        self._estate = estate_id
        self._settings = settings
        self._sender = sender
        self._nominal = dict(nominal_kw or {})
        self._rollups = rollups or RollupSettings()
        self._policies_ready = not manage_policies
        self._events: list[str] = []
        self._events_lock = threading.Lock()
        self._lock = threading.Lock()
        self.request_soon: Callable[[], None] | None = None

    def __call__(self) -> PlanOutcome | None:
        return self.run()

    def replan(self, reason: str) -> None:
        """Plan again soon because of an event (a demand-response order, an asset
        offline); the plan's trigger says ``event:<reason>``."""
        with self._events_lock:  # not the run's lock: an event must not wait for a solve
            self._events.append(reason)
        if self.request_soon is not None:
            self.request_soon()
        else:
            self.run()

    def run(self, now_ms: int | None = None) -> PlanOutcome | None:
        """Plan the horizon from the next step boundary; None when no plan can be made
        (the registry lacks the estate or its tariff), which is logged, or when the lease
        is not held here or was lost before the plan was saved."""
        now_ms = time.time_ns() // _NS_PER_MS if now_ms is None else now_ms
        # The periodic run and an event's run are separate scheduler jobs: one at a time.
        with self._lock:
            fence = self._lease.fence() if self._lease is not None else None
            if self._lease is not None and fence is None:
                log.info("plan for %s skipped: this worker does not hold the lease",
                         self._estate)
                return None
            with self._events_lock:
                events, self._events = self._events, []
            trigger = "event:" + ",".join(dict.fromkeys(events)) if events else "schedule"
            self._ensure_policies()
            try:
                inputs = planning_inputs(self._registry, self._estate)
                original = assemble(inputs, self._store, self._settings, now_ms, self._nominal)
                orders = active_orders(self._registry, self._estate, original.problem.start,
                                       original.problem.time_of(original.problem.steps))
                assembly = apply_orders(original, orders)
                result = optimise(assembly.problem, SolveOptions(
                    time_limit_s=self._settings.time_limit_s,
                    mip_rel_gap=self._settings.mip_rel_gap))
                assembly, shortfalls = explain_orders(original, assembly, result, orders)
            except (PlanningError, TariffError, ProblemError) as exc:
                # The registry describes no plan: nothing the next run would do better
                # until someone corrects the estate file, so say it loudly and wait.
                log.error("no plan for %s: %s", self._estate, exc)
                self._record_failure(trigger, str(exc), now_ms)
                return None
            fault_point("plan-solved")
            saved = self._save_and_deliver(assembly, result, trigger, now_ms, fence)
            if saved is None:
                return None
            if shortfalls:
                record_shortfall(self._registry, self._estate, saved.id, shortfalls,
                                 tenant_setpoints(assembly, result, orders))
            if saved.written:
                self._store.write_lines(plan_lines(assembly, result, saved.id),
                                        retention_policy=PLAN_POLICY)
            log.info("plan %s (%s, %s) for %s from %s: cost %.2f against %.2f, peak %.0f "
                     "against %.0f kW, solved in %.2f s; %d auto commands",
                     saved.id, saved.status, result.status.value, self._estate,
                     assembly.problem.start.isoformat(), result.cost, result.baseline.cost,
                     result.peak_kw, result.baseline.peak_kw, result.timings.total_s,
                     len(saved.commands))
            return PlanOutcome(saved, assembly, result, saved.commands)

    def _save_and_deliver(self, assembly: Assembly, result: OptimisedPlan, trigger: str,
                          now_ms: int, fence: Fence | None) -> SavedPlan | None:
        """The plan and its automatic commands, in one transaction under ``fence``, then
        the commands delivered; None when the lease was lost meanwhile (reported to the
        lease, nothing written)."""
        at = datetime.fromtimestamp(now_ms / 1000, UTC)
        sender = self._sender
        try:
            if sender is None:
                return self._plans.save(plan_draft(assembly, result, at), trigger, at,
                                        fence=fence)
            with sender.delivering():
                saved = self._plans.save(
                    plan_draft(assembly, result, at), trigger, at, fence=fence,
                    commands=decide_step(now_ms=now_ms,
                                         deadline_s=self._settings.command_deadline_s,
                                         only_auto=True),
                    claim=sender.claim())
                if saved.commands:
                    sender.deliver()
                return saved
        except Deposed as exc:
            log.warning("plan for %s from %s not saved: %s", self._estate,
                        assembly.problem.start.isoformat(), exc)
            if self._lease is not None:
                self._lease.note_deposed("plan")
            return None

    def _record_failure(self, trigger: str, reason: str, now_ms: int) -> None:
        """The registry being down is logged, not raised: the run has failed already."""
        try:
            self._plans.record_failure(self._estate, trigger, reason,
                                       datetime.fromtimestamp(now_ms / 1000, UTC))
        except RegistryError as exc:
            log.error("plan failure of %s not recorded: %s", self._estate, exc)

    def _ensure_policies(self) -> None:
        if self._policies_ready:
            return
        try_rollup_policies(self._store, self._rollups)
        self._policies_ready = True
