"""The InfluxDB 2.x adapter against a real local HTTP server that records every request.

No 2.x/3.x server can run here, so the server below imitates InfluxDB 2.7's answers
(204 on a write, JSON errors ``{"code": ..., "message": ...}``, the buckets list, the v1
``/query`` answer) and the tests check what influxdb-client really sent over the socket.
This proves the requests, not a real 2.x server's handling of them.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from adapters.influx import make_store
from adapters.influxdb_v1 import InfluxV1Store
from adapters.influxdb_v2 import InfluxV2Store
from adapters.influxql import Series
from estate.errors import ConfigError, StoreMisconfigured, StoreRejected, StoreUnavailable
from estate.lineprotocol import line
from estate.settings import InfluxSettings
from launcher.servers import free_port

ORG = "estate-org"
BUCKET = "estate"
TOKEN = "s3cret-token"
VERSION = "v2.7.10"  # 2.x puts the "v" in its version header


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as it arrived: headers with lower-case names, body decompressed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=True)


class RecordingInflux2(ThreadingHTTPServer):
    """A real HTTP server on loopback that answers as InfluxDB 2.x does and records every
    request: no 2.x server can run on the CI machine, so the requests are checked here."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Recorded] = []
        self.orgs = {ORG}
        self.buckets = {BUCKET}
        self.token = TOKEN
        self.query_answer: dict[str, Any] = {"results": [{"statement_id": 0}]}
        self._failures: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail_next_writes(self, status: int, code: str, message: str, times: int = 1) -> None:
        self._failures.extend([(status, {"code": code, "message": message})] * times)

    def next_failure(self) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def only(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the real server does: the client reuses its pooled connection.
    protocol_version = "HTTP/1.1"
    server: RecordingInflux2

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        query = parse_qs(url.query, keep_blank_values=True)
        self.server.record(Recorded(self.command, url.path, query,
                                    {k.lower(): v for k, v in self.headers.items()}, body))
        if url.path == "/ping":
            self._answer(204, None)
        elif self.headers.get("Authorization") != f"Token {self.server.token}":
            self._answer(401, {"code": "unauthorized", "message": "unauthorized access"})
        elif url.path == "/api/v2/write" and self.command == "POST":
            self._write(query)
        elif url.path == "/api/v2/buckets" and self.command == "GET":
            self._buckets(query)
        elif url.path == "/query" and self.command == "POST":
            self._answer(200, self.server.query_answer)
        else:
            self._answer(404, {"code": "not found", "message": "path not found"})

    def _write(self, query: dict[str, list[str]]) -> None:
        failure = self.server.next_failure()
        if failure is not None:
            self._answer(*failure)
        elif query.get("org") != [ORG]:
            self._answer(404, {"code": "not found",
                               "message": f'organization name "{query.get("org")}" not found'})
        elif query["bucket"][0] not in self.server.buckets:
            self._answer(404, {"code": "not found",
                               "message": f'bucket "{query["bucket"][0]}" not found'})
        else:
            self._answer(204, None)

    def _buckets(self, query: dict[str, list[str]]) -> None:
        org = query.get("org", [ORG])[0]
        if org not in self.server.orgs:
            self._answer(404, {"code": "not found",
                               "message": f'organization name "{org}" not found'})
            return
        names = sorted(self.server.buckets)
        if "name" in query:
            names = [n for n in names if n == query["name"][0]]
        self._answer(200, {
            "links": {"self": f"/api/v2/buckets?{urlsplit(self.path).query}"},
            "buckets": [{
                "id": f"{i:016x}", "orgID": "0123456789abcdef", "type": "user", "name": name,
                "retentionRules": [{"type": "expire", "everySeconds": 2592000,
                                    "shardGroupDurationSeconds": 86400}],
                "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z",
                "labels": [],
            } for i, name in enumerate(names, 1)],
        })

    def _answer(self, status: int, payload: dict[str, Any] | None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("X-Influxdb-Build", "OSS")
        self.send_header("X-Influxdb-Version", VERSION)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def influx2() -> Iterator[RecordingInflux2]:
    server = RecordingInflux2()
    # A short poll interval makes shutdown quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def v2_settings(url: str, **changes: Any) -> InfluxSettings:
    values: dict[str, Any] = {"url": url, "api": "v2", "org": ORG, "bucket": BUCKET,
                              "token": SecretStr(TOKEN), "database": "estate_db",
                              "timeout_s": 2.0}
    return InfluxSettings(**(values | changes))


@pytest.fixture
def v2(influx2: RecordingInflux2) -> Iterator[InfluxV2Store]:
    store = InfluxV2Store(v2_settings(influx2.url))
    yield store
    store.close()


# --- writes -------------------------------------------------------------------------------


def test_lines_arrive_byte_exact_at_the_v2_write_endpoint(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    lines = ["reading,device=d1,estate=north quantity=1.5 1700000000000000000",
             "reading,device=d2,estate=north quantity=-2.0 1700000000000000001"]
    v2.write_lines(lines)
    [request] = influx2.requests
    assert (request.method, request.path) == ("POST", "/api/v2/write")
    assert request.query == {"org": [ORG], "bucket": [BUCKET], "precision": ["ns"]}
    assert request.headers["authorization"] == f"Token {TOKEN}"
    assert request.headers["content-type"].split(";")[0] == "text/plain"
    # Gzip is on (adapters.influxdb_v2.ENABLE_GZIP); the fixture decompressed the body.
    assert request.headers["content-encoding"] == "gzip"
    assert request.body == "\n".join(lines).encode()


def test_an_empty_batch_sends_nothing(v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    v2.write_lines([])
    assert influx2.requests == []


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.text(min_size=1, max_size=30), text=st.text(max_size=60))
def test_escaped_lines_arrive_unchanged_and_never_split(
        v2: InfluxV2Store, influx2: RecordingInflux2, tag: str, text: str) -> None:
    lines = [line("probe", {"who": tag}, {"text": text, "n": 1.0}, 1),
             line("probe", {"who": "next"}, {"n": 2}, 2)]
    before = len(influx2.requests)
    v2.write_lines(lines)
    body = influx2.requests[before].body
    assert body == "\n".join(lines).encode("utf-8")
    assert body.split(b"\n") == [x.encode("utf-8") for x in lines]


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_trouble_is_unavailable_and_not_retried_by_the_client(
        v2: InfluxV2Store, influx2: RecordingInflux2, status: int) -> None:
    influx2.fail_next_writes(status, "unavailable", "try later")
    with pytest.raises(StoreUnavailable, match=str(status)):
        v2.write_lines(["m v=1.0 1"])
    assert len(influx2.only("/api/v2/write")) == 1
    v2.write_lines(["m v=1.0 1"])  # the next attempt goes through
    assert len(influx2.only("/api/v2/write")) == 2


def test_a_bad_batch_is_rejected_with_influxdbs_message(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    message = "partial write: field type conflict: input field \"v\" on measurement \"m\""
    influx2.fail_next_writes(400, "invalid", message)
    with pytest.raises(StoreRejected) as raised:
        v2.write_lines(["m v=\"text\" 1"])
    assert raised.value.status == 400
    assert message in str(raised.value)


def test_a_wrong_token_is_a_misconfiguration_not_bad_data(influx2: RecordingInflux2) -> None:
    store = InfluxV2Store(v2_settings(influx2.url, token=SecretStr("wrong")))
    with pytest.raises(StoreMisconfigured) as raised:
        store.write_lines(["m v=1.0 1"])
    store.close()
    assert "401" in str(raised.value)
    assert "unauthorized access" in str(raised.value)
    assert influx2.requests[0].headers["authorization"] == "Token wrong"


def test_a_closed_port_is_unavailable_at_once() -> None:
    store = InfluxV2Store(v2_settings(f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.write_lines(["m v=1.0 1"])
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.close()
    assert time.monotonic() - started < 1.0


@pytest.mark.servers
def test_a_server_that_never_answers_times_out_after_timeout_s() -> None:
    # A listening socket nobody accepts on: the kernel completes the TCP handshake and
    # then nothing ever answers the request.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = InfluxV2Store(v2_settings(url, timeout_s=0.5))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="write"):
            store.write_lines(["m v=1.0 1"])
        elapsed = time.monotonic() - started
        store.close()
    assert 0.4 < elapsed < 2.0


# --- ping ---------------------------------------------------------------------------------


def test_ping_answers_the_version_header(v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    assert v2.ping() == VERSION
    assert [(r.method, r.path) for r in influx2.requests] == [("GET", "/ping")]


# --- queries ------------------------------------------------------------------------------


def test_query_goes_to_the_v1_endpoint_with_the_token_and_parses_series(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    influx2.query_answer = {"results": [{"statement_id": 0, "series": [{
        "name": "reading", "tags": {"device": "d1"}, "columns": ["time", "value"],
        "values": [[1700000000000, 1.5], [1700000060000, 2.5]]}]}]}
    statement = 'SELECT "value" FROM "reading" WHERE "device" = $d GROUP BY "device"'
    series = v2.query(statement, {"d": "d1"})
    assert series == [Series("reading", ("time", "value"),
                             [[1700000000000, 1.5], [1700000060000, 2.5]], {"device": "d1"})]
    [request] = influx2.requests
    assert (request.method, request.path) == ("POST", "/query")
    assert request.headers["authorization"] == f"Token {TOKEN}"
    assert request.form() == {"db": ["estate_db"], "q": [statement], "epoch": ["ms"],
                              "params": ['{"d":"d1"}']}


def test_a_query_with_a_wrong_token_is_a_misconfiguration(influx2: RecordingInflux2) -> None:
    store = InfluxV2Store(v2_settings(influx2.url, token=SecretStr("wrong")))
    with pytest.raises(StoreMisconfigured, match="401"):
        store.query("SHOW MEASUREMENTS")
    store.close()


# --- buckets and retention ----------------------------------------------------------------


def test_ensure_database_passes_when_the_bucket_exists(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    v2.ensure_database()
    [request] = influx2.requests
    assert (request.method, request.path) == ("GET", "/api/v2/buckets")
    assert request.query["name"] == [BUCKET]
    assert request.query["org"] == [ORG]


def test_ensure_database_names_a_missing_bucket(influx2: RecordingInflux2) -> None:
    influx2.buckets = {"other"}
    store = InfluxV2Store(v2_settings(influx2.url))
    with pytest.raises(ConfigError, match=rf"bucket '{BUCKET}' in org '{ORG}'.*does not exist"):
        store.ensure_database()
    store.close()


def test_ensure_database_names_a_missing_org(influx2: RecordingInflux2) -> None:
    store = InfluxV2Store(v2_settings(influx2.url, org="nobody"))
    with pytest.raises(ConfigError, match=r"org 'nobody'.*organization name"):
        store.ensure_database()
    store.close()


def test_a_retention_policy_writes_to_its_own_bucket(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    influx2.buckets = {BUCKET, "estate_db/rollup_1m"}
    v2.write_lines(["m v=1.0 1"], retention_policy="rollup_1m")
    v2.write_lines(["m v=1.0 2"], retention_policy="raw")
    v2.write_lines(["m v=1.0 3"])
    assert [r.query["bucket"] for r in influx2.requests] == [
        ["estate_db/rollup_1m"], [BUCKET], [BUCKET]]


def test_a_retention_policy_without_its_bucket_is_a_misconfiguration(
        v2: InfluxV2Store, influx2: RecordingInflux2) -> None:
    with pytest.raises(StoreMisconfigured, match='bucket "estate_db/rollup_1h" not found'):
        v2.write_lines(["m v=1.0 1"], retention_policy="rollup_1h")


# --- choosing the adapter -----------------------------------------------------------------


def test_make_store_follows_the_api_setting(influx2: RecordingInflux2) -> None:
    v1 = make_store(InfluxSettings(url=influx2.url))
    v2 = make_store(v2_settings(influx2.url))
    assert type(v1) is InfluxV1Store
    assert type(v2) is InfluxV2Store
    v1.close()
    v2.close()
