"""Settings of the simulator and gateway (environment prefix ``EDGE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from estate.model import SAMPLE_ESTATE
from estate.settings import MqttSettings


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", env_nested_delimiter="__",
                                      extra="forbid")

    mode: Literal["local", "production"] = "local"
    mqtt: MqttSettings = MqttSettings()
    estate_file: Path = SAMPLE_ESTATE
    # Meters report every few seconds in the demo; real interval meters report every
    # 1-15 minutes.
    interval_s: float = Field(5.0, gt=0)
    seed: int = 1
    client_id: str = Field("estate-simulator", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
