"""InfluxDB 2.x / Cloud writes through influxdb-client; InfluxQL through the v1 API.

Writes go to ``/api/v2/write`` with ``org``, ``bucket`` and an API token, one synchronous
request per call: the ingest service owns batching and retrying, so the client's background
batching (which retries for minutes and reports failures to a callback) is not used.

Reads stay InfluxQL (``adapters.influxql``): 2.x serves it on its v1-compatible ``/query``
endpoint with the same token, reading the bucket that a DBRP mapping names for
``settings.database``. So ``query`` is delegated to ``InfluxV1Store`` rather than rewritten
in Flux.

Proven only against a local HTTP server that records the requests and answers the way 2.x
does (``tests/adapters/test_influxdb_v2.py``), not against a real 2.x, 3.x or Cloud server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from adapters.influxdb_v1 import InfluxV1Store
from adapters.influxql import InfluxQLStore, Series
from estate.errors import ConfigError, StoreMisconfigured, StoreRejected, StoreUnavailable
from estate.settings import InfluxSettings

log = logging.getLogger(__name__)

# The retention policy ``InfluxV1Store.ensure_database`` makes the default; in 2.x its
# place is taken by the configured bucket itself, whose retention the administrator sets.
DEFAULT_RETENTION_POLICY = "raw"

# Line protocol shrinks about 12x; the client compresses at gzip level 9, about 20 ms of
# CPU for a 5,000-line batch (630 kB). 2.x and Cloud are often across a WAN, where sending
# 630 kB instead of 50 kB takes far longer than that.
ENABLE_GZIP = True


def bucket_for(settings: InfluxSettings, retention_policy: str | None) -> str:
    """The bucket that stands for ``retention_policy`` of ``settings.database``.

    In 2.x retention belongs to a bucket, so each retention policy is a bucket of its own.
    ``None`` or ``"raw"`` (the default policy) is ``settings.bucket``; any other policy
    ``rp`` is the bucket ``f"{settings.database}/{rp}"`` (``estate/rollup_1m``). That is
    the name ``influxd upgrade`` gives the bucket of a 1.x database's policy, and the name
    2.7's automatic ("virtual") DBRP mapping reads back as database ``estate``, policy
    ``rollup_1m``, so InfluxQL finds the same points. The administrator creates these
    buckets (docs/influxdb.md).
    """
    if settings.bucket is None:
        raise ConfigError("InfluxDB api v2 needs a bucket")
    if retention_policy is None or retention_policy == DEFAULT_RETENTION_POLICY:
        return settings.bucket
    return f"{settings.database}/{retention_policy}"


@contextmanager
def _translated(action: str, *, refusal_is_unavailable: bool = False) -> Iterator[None]:
    """The one place where influxdb-client's and urllib3's errors become store errors.

    ``refusal_is_unavailable`` is for ``ping``: any answer but success means the store
    cannot be used, as the port promises.
    """
    try:
        yield
    except ApiException as exc:
        # Status 0 is how the client reports a TLS failure, before any answer; otherwise
        # ``message`` is InfluxDB's own (the "message" of its JSON error body).
        status = exc.status or 0
        reason = str(exc.message if status else exc.reason)[:500]
        if status == 0 or status >= 500 or status == 429 or refusal_is_unavailable:
            raise StoreUnavailable(f"InfluxDB {action} answered {status}: {reason}") from exc
        if status in (401, 403, 404):
            raise StoreMisconfigured(
                f"InfluxDB refused the {action} with {status} ({reason}): check the token, "
                "org and bucket") from exc
        raise StoreRejected(f"InfluxDB refused the {action}: {reason}", status) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StoreUnavailable(f"InfluxDB {action} failed: {exc!r}") from exc


class InfluxV2Store(InfluxQLStore):
    """``estate.ports.TimeSeriesStore`` for InfluxDB 2.x / Cloud: v2 writes, v1 InfluxQL."""

    def __init__(self, settings: InfluxSettings) -> None:
        if not (settings.org and settings.bucket and settings.token is not None):
            raise ConfigError("InfluxDB api v2 needs org, bucket and token")
        self._settings = settings
        self._database = settings.database
        self._org = settings.org
        self._bucket = settings.bucket
        self._client = InfluxDBClient(
            url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
            # influxdb-client takes milliseconds, as one total per request.
            timeout=round(settings.timeout_s * 1000),
            enable_gzip=ENABLE_GZIP,
            # No retries inside the client: a failure must reach the caller at once.
            retries=False,
        )
        self._writer = self._client.write_api(write_options=SYNCHRONOUS)
        self._influxql = InfluxV1Store(settings)

    def ping(self) -> str:
        with _translated("ping", refusal_is_unavailable=True):
            return str(self._client.version())

    def ensure_database(self) -> None:
        """Check that the bucket exists in the org; 2.x buckets are made by the administrator.

        The rollup buckets (see ``bucket_for``) are not checked here: a write to a missing
        one is refused with 404.
        """
        where = f"bucket {self._bucket!r} in org {self._org!r} at {self._settings.url}"
        try:
            with _translated("bucket lookup"):
                found = self._client.buckets_api().find_buckets(  # type: ignore[no-untyped-call]
                    name=self._bucket, org=self._org)
        except StoreMisconfigured as exc:
            # 2.x answers 404 for an unknown org, and a server without the buckets API
            # (InfluxDB 3 Core, for one) for the path itself; 401/403 for a bad token.
            raise ConfigError(f"cannot look up {where}: {exc}") from exc
        if not any(b.name == self._bucket for b in (found.buckets or [])):
            raise ConfigError(
                f"{where} does not exist (or the token cannot read it); create it with "
                f"`influx bucket create --name {self._bucket} --org {self._org}` or correct "
                f"the bucket and org settings")
        log.info("InfluxDB %s exists", where)

    def write_lines(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        """Write to ``bucket_for(settings, retention_policy)`` in one request."""
        if not lines:
            return
        bucket = bucket_for(self._settings, retention_policy)
        with _translated("write"):
            self._writer.write(bucket=bucket, org=self._org, record="\n".join(lines),
                               # The client annotates the class but its members are str.
                               write_precision=WritePrecision.NS,  # type: ignore[arg-type]
                               )

    def query(self, influxql: str, params: Mapping[str, str | float | int] | None = None,
              ) -> list[Series]:
        """InfluxQL through the v1-compatible API (not part of the port)."""
        return self._influxql.query(influxql, params)

    def close(self) -> None:
        self._writer.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        self._influxql.close()
