"""Composition root of the simulator: ``python -m edge`` or ``estate simulate``."""

from __future__ import annotations

import logging
import threading

from edge.publisher import Publisher, run_realtime
from edge.settings import EdgeSettings
from edge.simulator import EstateSimulator
from estate.lifecycle import stop_on_signals
from estate.logs import configure_logging
from estate.model import load_estate
from estate.settings import refuse_default_secrets
from estate.topics import DeviceId

log = logging.getLogger(__name__)


def run(settings: EdgeSettings, stop: threading.Event | None = None) -> None:
    refuse_default_secrets(settings.mode, settings.mqtt.password)
    stop = stop or threading.Event()
    spec = load_estate(settings.estate_file)
    simulator = EstateSimulator(spec, settings.seed)
    # The gateway reports its own status as a device of the estate's "edge" facility.
    publisher = Publisher(settings.mqtt, settings.client_id,
                          DeviceId(spec.id, "edge", settings.client_id))
    publisher.start(simulator.devices)
    log.info("simulating %d meters of %s every %.1f s", len(simulator.devices), spec.name,
             settings.interval_s)
    stop_on_signals(stop)
    try:
        run_realtime(simulator, publisher, settings.interval_s, stop)
    finally:
        publisher.stop(simulator.devices)


def main() -> None:
    configure_logging()
    run(EdgeSettings())


if __name__ == "__main__":
    main()
