"""Composition root of the ingest service: ``python -m ingest`` or ``estate ingest``."""

from __future__ import annotations

import logging
import threading

from adapters.influxdb_v1 import InfluxV1Store
from adapters.mqtt import MqttConnection, Session
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging
from estate.settings import refuse_default_secrets
from estate.topics import Channel, shared, subscription
from ingest.service import Ingestor
from ingest.settings import IngestSettings

log = logging.getLogger(__name__)


def run(settings: IngestSettings, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when run as the main thread)."""
    refuse_default_secrets(settings.mode, settings.mqtt.password, settings.influx.password,
                           settings.influx.token)
    stop = stop or threading.Event()
    store = InfluxV1Store(settings.influx)
    store.ensure_database()
    connection: MqttConnection | None = None

    def ack(mid: int, qos: int) -> None:
        assert connection is not None
        connection.ack(mid, qos)

    ingestor = Ingestor(store, ack, batch_size=settings.batch_size,
                        flush_interval_s=settings.flush_interval_s)
    connection = MqttConnection(
        settings.mqtt, settings.client_id,
        session=Session(clean_start=False, expiry_s=settings.session_expiry_s,
                        # Room for two batches of single-reading messages, within MQTT's cap.
                        receive_maximum=min(65535, 2 * settings.batch_size), manual_ack=True),
        on_message=ingestor.submit)
    ingestor.start()
    connection.subscribe(shared(settings.share_group,
                                subscription(Channel.TELEMETRY, estate=settings.estate)), qos=1)
    connection.connect()
    log.info("ingest %s running: batches of %d, flush after %.2f s", settings.client_id,
             settings.batch_size, settings.flush_interval_s)
    stop_on_signals(stop)
    stop.wait()
    log.info("ingest stopping: flushing %d queued messages", ingestor.pending)
    ingestor.stop()
    connection.close()
    store.close()


def main() -> None:
    configure_logging()
    run(IngestSettings())


if __name__ == "__main__":
    main()
