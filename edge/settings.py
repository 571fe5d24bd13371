"""Settings of the simulator (prefix ``EDGE_``) and the Modbus gateway (prefix ``GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.faults import InjectedFault
from estate.model import SAMPLE_ESTATE
from estate.settings import InfluxSettings, MqttSettings
from estate.topics import IDENTIFIER_PATTERN


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
    # 0 simulates the estate file; a count simulates a synthetic estate of that many meters.
    meters: int = Field(0, ge=0, le=1_000_000)
    # Faults injected on top of the estate file's own, as JSON: EDGE_FAULTS='[{"facility":
    # "textile", "meter": "water", "kind": "leak", "start": "...Z", "magnitude": 3}]'.
    faults: list[InjectedFault] = []
    # Publish readings over MQTT; off when a Modbus gateway polls the simulated meters and
    # publishes them itself.
    publish: bool = True
    # Serve the electrical meters as Modbus TCP servers on ports from this one up; 0: none.
    modbus_port: int = Field(0, ge=0, le=65535)
    modbus_host: str = "127.0.0.1"
    modbus_units_per_server: int = Field(247, ge=1, le=247)
    # The simulated battery, genset and pumps answer commands (edge.sim_commands); this is
    # their command log, the edge's audit trail of what they were told.
    command_log_path: Path = Path("var/edge/simulator-commands.sqlite")
    # Prometheus /metrics and /health (edge/sim_health.py); 0 serves none.
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535)
    # Where `estate backfill` writes simulated history (EDGE_BACKFILL_INFLUX__URL...). Not
    # named `influx`: the running simulator never touches InfluxDB.
    backfill_influx: InfluxSettings = InfluxSettings()


_IDENTIFIER = f"^{IDENTIFIER_PATTERN}$"


class GatewaySettings(BaseSettings):
    """The Modbus gateway service (``estate edge``), environment prefix ``GATEWAY_``."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_nested_delimiter="__",
                                      extra="forbid")

    mode: Literal["local", "production"] = "local"
    mqtt: MqttSettings = MqttSettings()
    # Also the MQTT session's name: a restarted gateway resumes its broker session only
    # under the same client id.
    client_id: str = Field("estate-gateway", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # The gateway's own identity, under which it publishes its status and Last Will.
    estate: str = Field("demo", pattern=_IDENTIFIER)
    facility: str = Field("edge", pattern=_IDENTIFIER)
    device: str = Field("gateway", pattern=_IDENTIFIER)
    meters_file: Path = Path(__file__).with_name("samples") / "gateway.yaml"
    # Interval meters commonly integrate over 1-15 minutes; 5 s keeps the live view lively
    # without loading a Modbus segment shared by dozens of meters.
    interval_s: float = Field(5.0, gt=0)
    # A meter on the local network answers in milliseconds; 2 s means it is gone, and one
    # dead meter must not delay the rest of the pass by much.
    modbus_timeout_s: float = Field(2.0, gt=0)
    outbox_path: Path = Path("var/edge/outbox.sqlite3")
    # About five days of 10 meters every 5 s (600 bytes a pack) fit in 512 MiB; the age limit
    # stays well inside the contract's 30-day "too-old" refusal, leaving time to replay.
    outbox_max_rows: int = Field(1_000_000, ge=1)
    outbox_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    outbox_max_age_s: float = Field(7 * 86_400.0, gt=0, le=29 * 86_400.0)
    # How long the broker keeps the gateway's session after it vanished. The outbox, not
    # the broker, carries the readings over an outage; the session only spares a resend
    # of what was in flight.
    session_expiry_s: int = Field(86_400, ge=0)
    # The devices that take commands: each one's policy and the Modbus registers its actions
    # write (edge/samples/gateway_commands.yaml). None: the gateway takes no commands.
    commands_file: Path | None = None
    # Every command id answered and every answer given: the idempotency key across
    # restarts and the edge's own audit trail. Keep it on persistent storage.
    command_log_path: Path = Path("var/edge/edge_commands.sqlite")
    # Prometheus /metrics and /health (readiness, docs/edge-gateway.md); 0 serves neither.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
