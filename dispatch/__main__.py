"""Composition root of dispatch: ``python -m dispatch worker|web|webhooks`` or
``estate dispatch|web``.

``worker`` runs the scheduler and its jobs, and the webhook deliverer; ``web`` serves the
operators' view; ``webhooks`` runs the webhook deliverer alone (it needs the registry
only), to add delivery capacity beside the workers. They are separate processes so the
web view can be replicated while one worker schedules. Here the adapters are made (store,
broker connections, registry) and handed to the rooms.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import uvicorn
from fastapi import FastAPI

from adapters.influx import make_store
from adapters.mqtt import MqttConnection
from adapters.ops_http import OpsServer
from dispatch.control.sender import CommandSender
from dispatch.dr.events import DemandResponse
from dispatch.dr.job import DemandResponseJob
from dispatch.dr.ven import Ven
from dispatch.jobs.freshness import check_freshness
from dispatch.jobs.metered import RollupMeterData
from dispatch.jobs.rollups import Rollups
from dispatch.planning.capacity_forecast import capacity_forecasts
from dispatch.planning.forecasts import ForecastJob, nominal_kw
from dispatch.planning.rolling import PlanJob
from dispatch.registry.command_store import CommandStore
from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from dispatch.registry.lock import LeaseKeeper, SchedulerLease
from dispatch.registry.models import SCHEDULER_JOBS_TABLE
from dispatch.registry.room_counts import RoomCounts, room_counts
from dispatch.registry.room_step import RoomContext
from dispatch.scheduler import JOBSTORE_ALIAS, Job, Scheduler, before_each_step, sql_jobstore
from dispatch.settings import DispatchSettings
from dispatch.watch.metrics import ROOM_COUNTS
from dispatch.watch.ops import counted
from dispatch.watch.stream_watch import StreamWatch, session_client_id
from dispatch.watch.window_job import WindowJob
from dispatch.web.app import create_app
from dispatch.web.deps import WebContext
from dispatch.web.live import LiveState
from dispatch.webhooks.deliverer import Deliverer
from dispatch.worker_health import worker_metrics, worker_readiness
from estate.errors import DemandResponseError
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging
from estate.model import EstateSpec, load_estate
from estate.ports import Messaging, TimeSeriesStore
from estate.ports import Session as BrokerSession
from estate.settings import refuse_default_secrets
from estate.topics import Channel, subscription

log = logging.getLogger(__name__)


def _check_secrets(settings: DispatchSettings) -> None:
    refuse_default_secrets(settings.mode, settings.mqtt.password, settings.influx.password,
                           settings.influx.token)


@dataclass
class CommandLink:
    """A command sender and the connection it sends on, which it does not own."""

    sender: CommandSender
    connection: MqttConnection

    def close(self) -> None:
        self.sender.close()
        self.connection.close()


def _command_link(settings: DispatchSettings, role: str, estate: str,
                  registry: Registry) -> CommandLink:
    """A command sender connecting in the background: a broker that is away at start-up
    delays commands (they time out meanwhile), it does not turn them off."""
    connection = MqttConnection(settings.mqtt,
                                f"estate-{role}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    sender = CommandSender(connection, CommandStore(registry), estates=[estate],
                           actor=f"dispatch:{role}", claim_s=settings.command_claim_s)
    sender.start()
    connection.connect_async()
    return CommandLink(sender, connection)


def _open_registry(settings: DispatchSettings) -> Registry:
    """The registry, migrated: whichever of web and worker starts first brings the schema
    up to date (migrations are idempotent and one process at a time)."""
    registry = Registry(settings.registry_url)
    registry.migrate()
    return registry


@dataclass
class ControlRoom:
    """The control room in the worker: the streaming rules' watch on the telemetry and
    the windowed rules' job, both under the scheduler's lease."""

    stream: StreamWatch
    windows: WindowJob

    def jobs(self, settings: DispatchSettings) -> list[Job]:
        return [Job("alarm-stream", self.stream.flush, settings.alarms.stream_flush_s,
                    misfire_grace_s=5),
                Job("alarm-windows", self.windows, settings.alarms.window_every_s)]

    def gain(self) -> None:
        self.windows.deactivate()  # restored from the registry at its next run
        self.stream.activate()

    def lose(self) -> None:
        self.stream.deactivate()
        self.windows.deactivate()


def _control_room(settings: DispatchSettings, spec: EstateSpec, store: TimeSeriesStore,
                  registry: Registry) -> ControlRoom:
    room = RoomContext.of(spec)

    def connect() -> Messaging:
        # One persistent session per estate, handed from worker to worker with the lease.
        return MqttConnection(settings.mqtt, session_client_id(spec.id), session=BrokerSession(
            clean_start=False, expiry_s=settings.alarms.session_expiry_s,
            receive_maximum=settings.alarms.receive_maximum, manual_ack=True))

    return ControlRoom(StreamWatch(spec, registry, room, connect),
                       WindowJob(spec, store, registry, room, settings.alarms,
                                 forecasts=partial(capacity_forecasts, store, spec)))


def _worker_name(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class WebhookParts:
    """The webhook deliverer and its /metrics server, if any."""

    deliverer: Deliverer
    ops: OpsServer | None

    def stop(self) -> None:
        self.deliverer.stop()
        if self.ops is not None:
            self.ops.stop()


def start_webhooks(settings: DispatchSettings, registry: Registry, role: str,
                   ) -> WebhookParts | None:
    """Start delivering webhooks from the registry's outbox (unless turned off)."""
    if not settings.webhooks.enabled:
        return None
    deliverer = Deliverer(registry, settings.webhooks, _worker_name(role))
    ops = None
    if settings.webhooks.metrics_port:
        ops = OpsServer(settings.web.host, settings.webhooks.metrics_port,
                        lambda: (True, {}), name="webhook-metrics")
        ops.start()
    deliverer.start()
    return WebhookParts(deliverer, ops)


def run_webhooks(settings: DispatchSettings, stop: threading.Event | None = None) -> None:
    """Deliver webhooks only, until ``stop`` is set (or SIGTERM/SIGINT)."""
    stop = stop or threading.Event()
    registry = _open_registry(settings)
    parts = start_webhooks(settings, registry, "webhooks")
    stop_on_signals(stop)
    stop.wait()
    if parts is not None:
        parts.stop()
    registry.close()


def _start_ven(settings: DispatchSettings, job: DemandResponseJob) -> Ven | None:
    """The OpenADR VEN when a VTN is configured; a VTN that does not register it is
    logged and the worker runs on (orders can still be entered by hand)."""
    if not settings.demand_response.vtn_url:
        return None
    ven = Ven(settings.demand_response, job.received, job.estate_import_kw, job.cancelled)
    try:
        ven.start()
    except DemandResponseError as exc:
        log.error("no OpenADR VEN: %s", exc)
        ven.stop()
        return None
    job.send_opt = ven.send_opt
    return ven


def run_worker(settings: DispatchSettings, stop: threading.Event | None = None) -> None:
    """Run the scheduler until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
    _check_secrets(settings)
    stop = stop or threading.Event()
    spec = load_estate(settings.estate_file)
    store = make_store(settings.influx)
    store.ensure_database()
    expected = [device for device, _, _ in spec.devices()]
    registry = _open_registry(settings)
    if settings.registry_load_estate:
        load_estate_into(registry, spec)  # it logs what it changed
    commands = _command_link(settings, "worker", spec.id, registry)
    manage_policies = settings.influx.api == "v1"
    # The lease's keeper is made first: the plan job works under its fence.
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = SchedulerLease(registry.engine, "dispatch-scheduler", holder,
                           settings.scheduler_lease_ttl_s)
    keeper = LeaseKeeper(lease, on_gain=lambda: _gained(room, scheduler),
                         on_loss=lambda: _lost(room, scheduler))
    planner = PlanJob(store, registry, spec.id, settings.planning, sender=commands.sender,
                      nominal_kw=nominal_kw(spec), rollups=settings.rollups,
                      manage_policies=manage_policies, lease=keeper)
    metered = RollupMeterData(store, settings.rollups, manage_policies=manage_policies)
    dr_job = DemandResponseJob(DemandResponse(registry, metered, spec.id),
                               on_split=planner.replan,
                               standing_opt=settings.demand_response.standing_opt)
    ven = _start_ven(settings, dr_job)
    room = _control_room(settings, spec, store, registry)
    scheduler = Scheduler([Job(j.id, counted(j.id, j.func), j.every_s, j.misfire_grace_s,
                               j.first_run_after_s, j.first_run_at) for j in [
        Job("meter-freshness",
            lambda: check_freshness(store, spec.id, expected, settings.stale_after_s),
            settings.freshness_every_s,
            # Right after start-up every meter looks stale: give them time to report.
            first_run_after_s=settings.stale_after_s),
        Job("rollups", Rollups(store, settings.rollups, manage_policies=manage_policies),
            settings.rollups.every_s),
        Job("forecasts", ForecastJob(store, spec, settings.forecast, rollups=settings.rollups,
                                     manage_policies=manage_policies),
            settings.forecast.every_s,
            # After the rollup job's first run, so the newest quarter-hours are rolled up.
            first_run_after_s=60),
        # Just before each quarter-hour, for the quarter-hour that follows: automatic
        # setpoints reach their devices as their step begins, not minutes ahead of it.
        # The stored forecasts outlive a restart: the first plan need not wait for new ones.
        Job("plan", planner, settings.planning.every_s,
            first_run_at=before_each_step(settings.planning.every_s,
                                          settings.planning.lead_s)),
        Job("demand-response", dr_job, settings.demand_response.every_s),
        *room.jobs(settings),
    ]], jobstores={JOBSTORE_ALIAS: sql_jobstore(registry.engine, SCHEDULER_JOBS_TABLE)})
    planner.request_soon = lambda: scheduler.run_soon("plan")
    room.stream.wake = lambda: scheduler.run_soon("alarm-stream")
    # Every worker stands by; only the lease holder runs jobs and holds the control
    # room's session.
    scheduler.start(paused=True)
    ops = _worker_ops(settings, spec, registry, scheduler, commands, keeper, room.stream)
    keeper.start()
    # Every worker delivers webhooks, not only the lease holder: claims keep them apart.
    webhooks = start_webhooks(settings, registry, "worker")
    stop_on_signals(stop)
    stop.wait()
    keeper.stop()  # pauses and releases, so a standby worker takes over at once
    scheduler.stop()
    if ops is not None:
        ops.stop()
    if ven is not None:
        ven.stop()
    if webhooks is not None:
        webhooks.stop()
    commands.close()
    registry.close()
    store.close()


def _worker_ops(settings: DispatchSettings, spec: EstateSpec, registry: Registry,
                scheduler: Scheduler, commands: CommandLink, keeper: LeaseKeeper,
                watch: StreamWatch) -> OpsServer | None:
    """The worker's /metrics and /health, unless its port is 0."""
    if not settings.http_port:
        return None

    def counts() -> RoomCounts:
        with registry.reading() as session:
            return room_counts(session, spec.id, datetime.now(UTC))

    ROOM_COUNTS.counts = counts
    ops = OpsServer(settings.http_host, settings.http_port,
                    worker_readiness(registry.answers, lambda: scheduler.started,
                                     lambda: commands.connection.subscribed, keeper,
                                     lambda: watch.subscribed,
                                     commands.sender.refusals.report),
                    registry=worker_metrics(keeper), name="dispatch-http")
    ops.start()
    return ops


def _gained(room: ControlRoom, scheduler: Scheduler) -> None:
    room.gain()
    scheduler.resume()


def _lost(room: ControlRoom, scheduler: Scheduler) -> None:
    scheduler.pause()
    room.lose()


@dataclass
class WebParts:
    """The web view's application and the connections it owns."""

    app: FastAPI
    mqtt: MqttConnection
    store: TimeSeriesStore
    live: LiveState
    registry: Registry | None = None
    commands: CommandLink | None = None

    def close(self) -> None:
        self.mqtt.close()
        self.store.close()
        if self.commands is not None:
            self.commands.close()
        if self.registry is not None:
            self.registry.close()


def _warn_about_web_settings(settings: DispatchSettings) -> None:
    """Say so when production runs with what suits the loopback demo only."""
    if settings.mode != "production":
        return
    if not settings.web.cookie_secure:
        log.warning("DISPATCH_WEB__COOKIE_SECURE is off in production: the session cookie "
                    "may travel over plain HTTP")
    if "*" in settings.web.allowed_hosts:
        log.warning("DISPATCH_WEB__ALLOWED_HOSTS allows every host name in production: "
                    "DNS rebinding can reach the view")


def build_web(settings: DispatchSettings) -> WebParts:
    """Wire the web view: the store, the live feed from MQTT, the registry, the command
    sender and the application."""
    _check_secrets(settings)
    _warn_about_web_settings(settings)
    spec = load_estate(settings.estate_file)
    store = make_store(settings.influx)
    live = LiveState(spec.id)
    # Every replica needs every message: a plain (not shared), non-persistent subscription.
    mqtt = MqttConnection(settings.mqtt, f"estate-web-{os.getpid()}-{id(live):x}")
    for channel in (Channel.TELEMETRY, Channel.STATUS):
        mqtt.subscribe(subscription(channel, estate=spec.id), live.handle, qos=0)
    mqtt.connect_async()
    registry = _open_registry(settings)
    commands = _command_link(settings, "web", spec.id, registry)
    app = create_app(WebContext(spec, store, live, lambda: mqtt.connected, settings.planning,
                                registry, commands.sender, settings.web,
                                settings.web.supervisor_status, settings.rollups,
                                webhooks=settings.webhooks,
                                stale_after_s=settings.stale_after_s))
    return WebParts(app, mqtt, store, live, registry, commands)


def run_web(settings: DispatchSettings) -> None:
    """Serve the web view until SIGTERM/SIGINT."""
    parts = build_web(settings)
    try:
        uvicorn.run(parts.app, host=settings.web.host, port=settings.web.port,
                    log_level="warning")
    finally:
        parts.close()


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    role = (argv if argv is not None else sys.argv[1:] or ["worker"])[0]
    if role == "worker":
        run_worker(DispatchSettings())
    elif role == "web":
        run_web(DispatchSettings())
    elif role == "webhooks":
        run_webhooks(DispatchSettings())
    else:
        raise SystemExit(f"usage: python -m dispatch worker|web|webhooks (got {role!r})")


if __name__ == "__main__":
    main()
