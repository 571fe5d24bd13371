"""Settings of the ingest service (environment prefix ``INGEST_``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from estate.settings import InfluxSettings, MqttSettings


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", env_nested_delimiter="__",
                                      extra="forbid")

    mode: Literal["local", "production"] = "local"
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    # The broker keeps each worker's session under its client id, so every worker needs its
    # own, stable across restarts: the host name is both in a container or on a machine.
    client_id: str = Field(default_factory=lambda: f"estate-ingest-{socket.gethostname()}"[:64],
                           pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Several workers with the same group split the telemetry (MQTT 5 shared subscription).
    # Empty means one worker with a plain subscription: Mosquitto 2.0 does not restore
    # shared subscriptions from its persistence file, so after a broker restart messages
    # published before the workers re-subscribe would be lost; a plain persistent
    # subscription survives the restart. Scale out with a group on a broker that keeps
    # shared subscriptions across restarts (EMQX, HiveMQ). See docs/operations.md.
    share_group: str = Field("", pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    # Which estate to ingest; "+" takes every estate on the broker.
    estate: str = "+"
    # 5,000 lines per write is where InfluxDB 1.x reaches its full write rate here
    # (see FACTS/BENCHMARKS); more only adds latency.
    batch_size: int = Field(5000, ge=1, le=65535)
    # A batch is written when full or when its oldest message is this old: bounds latency
    # at low rates.
    flush_interval_s: float = Field(0.2, gt=0, le=60)
    # How long the broker keeps our session (subscriptions and un-acked messages) while
    # we are away. An hour covers a restart or an upgrade.
    session_expiry_s: int = Field(3600, ge=0)
    # Where batches wait on disk while InfluxDB is unavailable, and how much may wait: at
    # 150 bytes a reading, 1 GiB holds about seven million readings (hours of a large estate).
    spool_dir: Path = Path("ingest-spool")
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20)
    # /metrics (Prometheus) and /health; port 0 turns the endpoint off.
    http_host: str = "127.0.0.1"
    http_port: int = Field(9101, ge=0, le=65535)
    # Readings older than this when they arrive (a broker backlog, a gateway's store and
    # forward) fall outside the rollup job's trailing window: ingest asks for their range to
    # be rolled up again. Matches the 1-minute rollups' trailing window (docs/rollups.md).
    late_after_s: float = Field(600.0, gt=0)
    # Decode in a process of its own, beside the network thread, rather than in a thread
    # that competes with it for Python's GIL: about 1.4 times the throughput of one worker
    # on two cores (BENCHMARKS.md). False suits a one-core machine or a small estate.
    decode_in_process: bool = True
    # Payload bytes received and not yet decoded, at most: bounds memory when the broker
    # has a backlog to send (BENCHMARKS.md: ingest's peak RSS).
    max_queued_bytes: int = Field(16 << 20, ge=1 << 16)
    # The estate description whose meters' own channels ingest accepts (docs/contract.md
    # section 3.1); none: the contract's channels only.
    estate_file: Path | None = None
    # Distinct fields (quantity.channel) one device may write; a full power-quality meter
    # reports about 55. Readings beyond it are refused (too-many-fields).
    max_fields_per_device: int = Field(64, ge=1, le=1000)
