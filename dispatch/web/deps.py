"""What the web view's routes are given: ``Annotated`` dependencies on the context the
composition root (``dispatch.__main__.build_web``) hands ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request

from dispatch.control.sender import CommandSender
from dispatch.dr.baselines import BaselineMethod
from dispatch.dr.events import DemandResponse
from dispatch.jobs.metered import RollupMeterData
from dispatch.registry.db import Registry
from dispatch.registry.plan_store import PlanStore
from dispatch.settings import PlanningSettings, RollupSettings, WebhookSettings, WebSettings
from dispatch.web.live import LiveState
from dispatch.web.service_status import HealthProbe
from estate.errors import BrokerError, RegistryError
from estate.model import EstateSpec
from estate.ports import TimeSeriesStore


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class WebContext:
    """The estate, the connections and the settings of one web view. Without a registry
    nobody can log in, so every route but the public ones answers 503; without a command
    sender, approval does. With the supervisor's status (a file or an ``http(s)://`` URL),
    the health reports the supervised services too. Demand response reads the metered
    data with ``rollups`` and makes baselines by ``baseline``, as the worker does; the
    overview calls a meter stale after ``stale_after_s``, as the freshness job does."""

    spec: EstateSpec
    store: TimeSeriesStore
    live: LiveState
    mqtt_connected: Callable[[], bool] = _never
    planning: PlanningSettings = field(default_factory=PlanningSettings)
    registry: Registry | None = None
    sender: CommandSender | None = None
    web: WebSettings = field(default_factory=WebSettings)
    supervisor_status: str | None = None
    rollups: RollupSettings = field(default_factory=RollupSettings)
    baseline: BaselineMethod = field(default_factory=BaselineMethod)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # A meter (and the live feed) silent this long is stale (``DISPATCH_STALE_AFTER_S``).
    stale_after_s: float = 60.0


def _context(request: Request) -> WebContext:
    return cast(WebContext, request.app.state.context)


Context = Annotated[WebContext, Depends(_context)]


def _health(request: Request) -> HealthProbe:
    return cast(HealthProbe, request.app.state.health)


def _spec(context: Context) -> EstateSpec:
    return context.spec


def _store(context: Context) -> TimeSeriesStore:
    return context.store


def _live(context: Context) -> LiveState:
    return context.live


def _planning(context: Context) -> PlanningSettings:
    return context.planning


def _registry(context: Context) -> Registry:
    if context.registry is None:
        raise RegistryError("the registry is unavailable: none is configured")
    return context.registry


def _plans(registry: Annotated[Registry, Depends(_registry)]) -> PlanStore:
    return PlanStore(registry)


def _demand_response(request: Request, context: Context,
                     registry: Annotated[Registry, Depends(_registry)]) -> DemandResponse:
    """Demand response over the view's registry and store, with the worker's rules, for
    the same functions ``estate dr`` and ``estate statements`` call. The metered data is
    the app's one (it makes the rollups' retention policies before its first read)."""
    metered = cast(RollupMeterData, request.app.state.metered)
    return DemandResponse(registry, metered, context.spec.id, context.baseline)


def _sender(context: Context) -> CommandSender:
    if context.sender is None:
        raise BrokerError("commands are unavailable: no connection to the broker")
    return context.sender


Health = Annotated[HealthProbe, Depends(_health)]
Spec = Annotated[EstateSpec, Depends(_spec)]
Store = Annotated[TimeSeriesStore, Depends(_store)]
Live = Annotated[LiveState, Depends(_live)]
Planning = Annotated[PlanningSettings, Depends(_planning)]
RegistryDep = Annotated[Registry, Depends(_registry)]
Plans = Annotated[PlanStore, Depends(_plans)]
Sender = Annotated[CommandSender, Depends(_sender)]
DemandResponseDep = Annotated[DemandResponse, Depends(_demand_response)]
