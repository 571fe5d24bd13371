"""Settings types shared by the services.

Each service's composition root builds its own ``BaseSettings`` subclass (env prefix per
service: ``INGEST_``, ``EDGE_``, ``DISPATCH_``, ``WEB_``) from these parts and passes the
parts down. Nested parts are set with a double underscore: ``INGEST_MQTT__HOST``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from estate.errors import ConfigError

# The password the local demo stack uses; refused anywhere but local mode.
LOCAL_DEFAULT_SECRET = "estate-local"


class MqttSettings(BaseModel):
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: str | None = None
    # A dead connection is noticed within 1.5 keepalives; 30 s keeps PINGs rare.
    keepalive: int = Field(30, ge=5, le=3600)


class InfluxSettings(BaseModel):
    """The time-series store.

    ``api = "v1"`` speaks ``/write`` + ``/query`` (InfluxDB 1.x natively, 2.x through its v1
    compatibility API with a token and a DBRP mapping, 3.x natively). ``api = "v2"`` writes
    through influxdb-client to ``/api/v2/write`` with ``org``, ``bucket`` and ``token``.
    """

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "estate"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    # InfluxDB 1.x: create the database and its retention policies at start. On 2.x/3.x an
    # administrator makes buckets and DBRP mappings instead: set this to false there.
    create_database: bool = True
    # Raw readings are kept this long; rollups live longer (see docs/rollups.md).
    raw_retention: str = Field("30d", pattern=r"^(\d+[wdhm]|INF)$")
    # A 5,000-line batch writes in about 10 ms here; 10 s means the server is in trouble.
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _v2_needs_org_bucket_token(self) -> InfluxSettings:
        if self.api == "v2" and not (self.org and self.bucket and self.token):
            raise ValueError("api v2 needs org, bucket and token")
        return self


def refuse_default_secrets(mode: str, *secrets: SecretStr | None) -> None:
    """Outside local mode, refuse to run with the demo password."""
    if mode == "local":
        return
    for secret in secrets:
        if secret is not None and secret.get_secret_value() == LOCAL_DEFAULT_SECRET:
            raise ConfigError(
                f"the local demo password is configured while mode is {mode!r}; set a real one"
            )
