"""The measurements the services share in the time-series store.

Services meet through the store as well as through MQTT, so the names they write and read
are part of the shared language. Tags and fields of each are listed in ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import Final

READINGS: Final = "reading"
"""Every raw reading: one point per meter and instant, tags estate, facility, device, and
one field per quantity, named as in SenML: ``quantity`` or ``quantity.channel``
(``power``, ``voltage.l1``), in the quantity's canonical unit.

One point per meter and instant rather than one per reading: InfluxDB's cost is mostly per
point, so a meter's ten quantities cost it a tenth as much (BENCHMARKS.md)."""

DEAD_LETTERS: Final = "dead_letter"
"""Refused messages and records, with the reason, the detail and a payload excerpt."""

FORECASTS: Final = "forecast"
"""Load forecasts, in retention policy ``rollup_long``: tags estate, facility (``_estate``
for the whole estate), quantity; fields value (kW), issued_ms (int), method (string). The
dispatch worker writes them; the optimiser and the web view read them."""

ROLLUP_REQUESTS: Final = "rollup_request"
"""Time ranges whose rollups must be recomputed because late readings arrived in them:
ingest writes one after replaying its spool, and with any batch holding readings older
than its ``late_after_s``. Fields ``start_ms`` and ``end_ms``, both inclusive."""


def field_key(quantity: str, channel: str) -> str:
    """The field of a reading in ``READINGS``: ``quantity`` or ``quantity.channel``."""
    return f"{quantity}.{channel}" if channel else quantity


def split_field_key(key: str) -> tuple[str, str]:
    """``(quantity, channel)`` of a field of ``READINGS``."""
    quantity, _, channel = key.partition(".")
    return quantity, channel


PLANS: Final = "plan"
"""The newest plan per step, in retention policy ``rollup_long``: tags estate, asset (``_estate``
for the estate's grid import), quantity (``setpoint``, ``soc_kwh``, ``import``, ...); fields
value (kW, kWh or m³) and plan_id (int, the registry's ``plans.id``). The dispatch worker
writes them; a newer plan overwrites the steps it covers (docs/planning.md)."""
