"""Settings of the dispatch worker and the web view (environment prefix ``DISPATCH_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from estate.model import SAMPLE_ESTATE
from estate.settings import InfluxSettings, MqttSettings


class WebSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class DispatchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", env_nested_delimiter="__",
                                      extra="forbid")

    mode: Literal["local", "production"] = "local"
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    web: WebSettings = WebSettings()
    estate_file: Path = SAMPLE_ESTATE
    # A meter that has not reported for this long is stale: five demo intervals, and far
    # less than any real meter's 15-minute register period.
    stale_after_s: float = Field(60.0, gt=0)
    # How often the scheduler checks for stale meters.
    freshness_every_s: float = Field(30.0, gt=0)
