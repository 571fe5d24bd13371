"""Choose the time-series store adapter from the settings."""

from __future__ import annotations

from adapters.influxdb_v1 import InfluxV1Store
from adapters.influxdb_v2 import InfluxV2Store
from estate.ports import TimeSeriesStore
from estate.settings import InfluxSettings


def make_store(settings: InfluxSettings) -> TimeSeriesStore:
    """``api = "v1"``: InfluxDB 1.x, or 2.x/3.x through their v1 API; ``"v2"``: 2.x / Cloud."""
    if settings.api == "v2":
        return InfluxV2Store(settings)
    return InfluxV1Store(settings)
