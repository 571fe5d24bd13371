"""Logging set-up shared by every service's composition root.

``ESTATE_LOG_FORMAT=json`` writes one JSON object per line (time, level, logger, message,
and the exception if any) for log shippers; the default is one readable line per event.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per record: what log collectors (Loki, Elasticsearch) ingest as is."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging() -> None:
    """Level from ``ESTATE_LOG_LEVEL`` (INFO), format from ``ESTATE_LOG_FORMAT`` (text)."""
    handler = logging.StreamHandler()
    if os.environ.get("ESTATE_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("ESTATE_LOG_LEVEL", "INFO").upper())
    # A line per HTTP request to InfluxDB, or per scheduler run, would drown the rest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
