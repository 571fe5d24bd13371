"""The measurements the services share in the time-series store.

Services meet through the store as well as through MQTT, so the names they write and read
are part of the shared language. Tags and fields of each are listed in ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import Final

READINGS: Final = "reading"
"""Every raw reading: tags estate, facility, device, quantity, channel; field value."""

DEAD_LETTERS: Final = "dead_letter"
"""Refused messages and records, with the reason, the detail and a payload excerpt."""

ROLLUP_REQUESTS: Final = "rollup_request"
"""Time ranges whose rollups must be recomputed because late readings arrived in them:
ingest writes one after replaying its spool, and with any batch holding readings older
than its ``late_after_s``. Fields ``start_ms`` and ``end_ms``, both inclusive."""
