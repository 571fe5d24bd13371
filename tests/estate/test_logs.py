"""Log formats."""

from __future__ import annotations

import logging

import orjson
import pytest

from estate.logs import JsonFormatter, configure_logging


def test_json_lines_carry_level_logger_message_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("ingest.service", logging.ERROR, __file__, 1,
                                   "store refused %d lines", (5,), sys.exc_info())
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "ingest.service"
    assert entry["message"] == "store refused 5 lines"
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_configure_logging_picks_the_format_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("ESTATE_LOG_FORMAT", "json")
        monkeypatch.setenv("ESTATE_LOG_LEVEL", "warning")
        configure_logging()
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        monkeypatch.setenv("ESTATE_LOG_FORMAT", "text")
        configure_logging()
        assert not isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
