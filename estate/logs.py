"""Logging set-up shared by every service's composition root."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    """One line per event with time, level and logger; level from ``ESTATE_LOG_LEVEL``."""
    logging.basicConfig(level=os.environ.get("ESTATE_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # A line per HTTP request to InfluxDB, or per scheduler run, would drown the rest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
