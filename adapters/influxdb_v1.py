"""InfluxDB over the v1 HTTP API: ``/write`` (line protocol) and ``/query`` (InfluxQL).

InfluxDB 1.x serves this natively, 2.x through its v1 compatibility API (token auth and a
DBRP mapping from database to bucket), 3.x natively. So this one adapter covers all three;
CI proves it against a real InfluxDB 1.6.7. The port's reads are ``adapters.influxql``'s;
this module is the transport and its errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from adapters.influxql import InfluxQLStore, Series, quote_identifier
from estate.errors import StoreMisconfigured, StoreRejected, StoreUnavailable
from estate.settings import InfluxSettings

log = logging.getLogger(__name__)

# Answers to a write that say the configuration is wrong, not the data: no credentials,
# wrong ones, or no such database.
MISCONFIGURED = frozenset({401, 403, 404})


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """The one place where httpx's errors become the store errors of ``estate.errors``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise StoreUnavailable(f"InfluxDB {action} timed out: {exc}") from exc
    except httpx.TransportError as exc:
        raise StoreUnavailable(f"InfluxDB {action} failed: {exc!r}") from exc


class InfluxV1Store(InfluxQLStore):
    """``estate.ports.TimeSeriesStore`` over InfluxDB's v1 HTTP API."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        headers = {}
        auth: tuple[str, str] | None = None
        if settings.token is not None:
            # InfluxDB 2.x/3.x v1-compatibility endpoints accept the API token this way.
            headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        elif settings.username and settings.password is not None:
            auth = (settings.username, settings.password.get_secret_value())
        self._database = settings.database
        self._client = httpx.Client(
            base_url=settings.url.rstrip("/"), headers=headers, auth=auth,
            timeout=settings.timeout_s,
            # Keep-alive matters: a new TCP connection per batch halves the write rate.
            limits=httpx.Limits(max_keepalive_connections=4),
        )

    def ping(self) -> str:
        with _translated("ping"):
            response = self._client.get("/ping")
        if response.status_code >= 400:
            raise StoreUnavailable(f"InfluxDB ping answered {response.status_code}")
        return str(response.headers.get("X-Influxdb-Version", "unknown"))

    def ensure_database(self) -> None:
        if not self._settings.create_database:
            self.ping()
            return
        # CREATE DATABASE is idempotent in InfluxQL. The raw retention policy is made the
        # default so raw readings expire; rollups live in longer policies.
        self.query(f"CREATE DATABASE {quote_identifier(self._database)}")
        self.ensure_retention("raw", self._settings.raw_retention, default=True)

    def write_lines(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        if not lines:
            return
        body = "\n".join(lines).encode("utf-8")
        params = {"db": self._database, "precision": "ns"}
        if retention_policy is not None:
            params["rp"] = retention_policy
        with _translated("write"):
            response = self._client.post(
                "/write", params=params, content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        if response.status_code == 204:
            return
        message = _error_text(response)
        if response.status_code >= 500:
            raise StoreUnavailable(f"InfluxDB write answered {response.status_code}: {message}")
        if response.status_code in MISCONFIGURED:
            raise StoreMisconfigured(
                f"InfluxDB refused the write with {response.status_code} ({message}): check "
                f"the credentials and that database {self._database!r} exists")
        raise StoreRejected(f"InfluxDB refused the write: {message}", response.status_code)

    def query(self, influxql: str, params: Mapping[str, str | float | int] | None = None,
              ) -> list[Series]:
        """Run one InfluxQL statement with bound parameters; times come back in epoch ms.
        Not part of the port: the adapters' own reads and the tests use it."""
        form: dict[str, str] = {"db": self._database, "q": influxql, "epoch": "ms"}
        if params:
            form["params"] = orjson.dumps(dict(params)).decode()
        with _translated("query"):
            response = self._client.post("/query", data=form)
        if response.status_code >= 500:
            raise StoreUnavailable(f"InfluxDB query answered {response.status_code}: "
                                   f"{_error_text(response)}")
        if response.status_code in (401, 403):
            raise StoreMisconfigured(f"InfluxDB refused the query with {response.status_code}: "
                                     f"{_error_text(response)}")
        if response.status_code >= 400:
            raise StoreRejected(f"InfluxDB refused the query: {_error_text(response)}",
                                response.status_code)
        return _series(orjson.loads(response.content))

    def close(self) -> None:
        self._client.close()


def _series(answer: dict[str, Any]) -> list[Series]:
    out: list[Series] = []
    for result in answer.get("results", []):
        if "error" in result:
            raise StoreRejected(f"InfluxQL error: {result['error']}", 400)
        for s in result.get("series", []):
            out.append(Series(s.get("name", ""), tuple(s["columns"]), s.get("values", []),
                              s.get("tags", {})))
    return out


def _error_text(response: httpx.Response) -> str:
    try:
        return str(orjson.loads(response.content).get("error", response.text))
    except (orjson.JSONDecodeError, AttributeError):
        return response.text[:500]
