"""Composition root of the ingest service: ``python -m ingest`` or ``estate ingest``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson

from adapters.influx import make_store
from adapters.mqtt import MqttConnection, Session
from adapters.ops_http import OpsServer
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging
from estate.model import load_estate
from estate.ports import Handling
from estate.readiness import Readiness
from estate.settings import refuse_default_secrets
from estate.topics import Channel, shared, subscription
from ingest.pipeline import Rules
from ingest.service import Ingestor
from ingest.settings import IngestSettings
from ingest.spool import Spool

log = logging.getLogger(__name__)


def events_topic(client_id: str) -> str:
    """Where this worker publishes its operational events (outside the device scheme)."""
    return f"estate/system/ingest/{client_id}/events"


def rules(settings: IngestSettings) -> Rules:
    """What ingest accepts beyond the contract's limits: the estate file's channels, if it
    names one, and the per-device cap on fields."""
    extra = load_estate(settings.estate_file).extra_fields() if settings.estate_file else {}
    return Rules(extra_fields=extra, max_fields_per_device=settings.max_fields_per_device)


def run(settings: IngestSettings, stop: threading.Event | None = None,
        ready: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when run as the main thread); set
    ``ready`` once ready (connected, subscribed, decoding and writing)."""
    refuse_default_secrets(settings.mode, settings.mqtt.password, settings.influx.password,
                           settings.influx.token)
    accepted = rules(settings)
    stop = stop or threading.Event()
    stop_on_signals(stop)
    store = make_store(settings.influx)
    store.ensure_database()
    connection: MqttConnection | None = None

    def ack(mid: int, qos: int) -> None:
        assert connection is not None
        connection.ack(mid, qos)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if connection is not None:
            connection.publish(events_topic(settings.client_id),
                               orjson.dumps({"event": kind, "worker": settings.client_id,
                                             **data}), qos=1)

    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    ingestor = Ingestor(store, ack, batch_size=settings.batch_size,
                        flush_interval_s=settings.flush_interval_s, spool=spool,
                        on_event=on_event, source=settings.client_id,
                        late_after_s=settings.late_after_s,
                        decode_in_process=settings.decode_in_process,
                        max_queued_bytes=settings.max_queued_bytes, rules=accepted)
    connection = MqttConnection(
        settings.mqtt, settings.client_id,
        session=Session(clean_start=False, expiry_s=settings.session_expiry_s,
                        # Room for three batches of single-reading messages (one being
                        # written, one decoded and waiting, one filling), within MQTT's cap.
                        receive_maximum=min(65535, 3 * settings.batch_size), manual_ack=True))

    readiness = Readiness(
        {"mqtt_connected": lambda: connection.connected,
         "subscribed": lambda: connection.subscribed,
         "decoder_alive": lambda: ingestor.decoder_alive,
         "writer_alive": lambda: ingestor.writer_alive},
        lambda: {"worker": settings.client_id, **ingestor.status()})
    ops = (OpsServer(settings.http_host, settings.http_port, readiness, name="ingest-http")
           if settings.http_port else None)
    if ops:
        ops.start()
    ingestor.start()
    telemetry = subscription(Channel.TELEMETRY, estate=settings.estate)
    if settings.share_group:
        telemetry = shared(settings.share_group, telemetry)
    # On the network thread: submit only puts the message in ingest's own queue.
    connection.subscribe(telemetry, ingestor.submit, qos=1, handling=Handling.INLINE)
    connection.connect()
    log.info("ingest %s running: batches of %d, flush after %.2f s, spool %s", settings.client_id,
             settings.batch_size, settings.flush_interval_s, settings.spool_dir)
    _await_readiness(readiness, stop, ready)
    stop.wait()
    log.info("ingest stopping: storing %d queued messages", ingestor.pending)
    ingestor.stop()
    connection.close()
    if ops:
        ops.stop()
    store.close()


# How often readiness is checked at start, and how long before its absence is worth a
# warning: a subscription is acknowledged within milliseconds on a healthy broker.
_READY_POLL_S = 0.05
_READY_WARN_S = 30.0


def _await_readiness(readiness: Readiness, stop: threading.Event,
                     ready: threading.Event | None) -> None:
    """Wait until ``readiness`` holds (or ``stop``), say so, and set ``ready``."""
    started = time.monotonic()
    warned = False
    while not stop.is_set():
        verdict = readiness.verdict()
        if verdict.ready:
            log.info("ingest ready after %.2f s", time.monotonic() - started)
            if ready is not None:
                ready.set()
            return
        if not warned and time.monotonic() - started > _READY_WARN_S:
            warned = True
            log.warning("ingest not ready after %.0f s: %s", _READY_WARN_S,
                        ", ".join(name for name, ok in verdict.checks.items() if not ok))
        stop.wait(_READY_POLL_S)


def main() -> None:
    configure_logging()
    run(IngestSettings())


if __name__ == "__main__":
    main()
