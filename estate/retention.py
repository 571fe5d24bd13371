"""Retention policies, the one InfluxQL administration statement the services share."""

from __future__ import annotations

import re

from estate.errors import StoreRejected
from estate.ports import TimeSeriesStore

_DURATION = re.compile(r"\d+[wdhm]|INF")


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ensure_retention_policy(store: TimeSeriesStore, database: str, name: str, duration: str,
                            *, default: bool = False) -> None:
    """Create the policy, or bring an existing one's duration in line with ``duration``."""
    if not _DURATION.fullmatch(duration):
        raise ValueError(f"not an InfluxQL retention duration: {duration!r}")
    policy = (f"RETENTION POLICY {quote_identifier(name)} ON {quote_identifier(database)} "
              f"DURATION {duration} REPLICATION 1{' DEFAULT' if default else ''}")
    try:
        store.query(f"CREATE {policy}")
    except StoreRejected as exc:
        if "already exists" not in str(exc) and "conflict" not in str(exc):
            raise
        # The setting changed since the policy was made: follow the setting.
        store.query(f"ALTER {policy}")
