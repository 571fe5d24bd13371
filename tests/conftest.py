"""Real servers for the tests: one Mosquitto and one InfluxDB 1.x per test session, that is
per worker when the suite runs on several (pytest-xdist; ``tests/scheduling.py``).

Each starts on free loopback ports with its data in a temporary directory and is stopped
at the end. Tests that use them are marked ``servers`` automatically. Each test gets its
own InfluxDB database, so tests never see each other's points.

Two tiers: ``pytest -m "not servers"`` is the fast tier, logic checked through in-memory
implementations of our own ports (``tests/doubles.py``); everything that starts or needs a
server (Mosquitto, InfluxDB, PostgreSQL, an HTTP or Modbus TCP server, a browser) is
marked ``servers``. The fast tier is held to that: a test not marked ``servers`` that
listens on a socket or starts a server program fails.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _pytest.mark.expression import Expression
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from hypothesis import HealthCheck, settings
from playwright.sync_api import Browser, expect, sync_playwright
from pydantic import SecretStr

from adapters.influxdb_v1 import InfluxV1Store
from dispatch.__main__ import WebParts, build_web
from dispatch.accounts import credentials
from dispatch.accounts.roles import Role
from dispatch.settings import DispatchSettings
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import InfluxSettings, MqttSettings
from ingest.__main__ import run as run_ingest
from ingest.settings import IngestSettings
from launcher.broker_security import BrokerSecurity, service_username
from launcher.demo import demo_broker_security
from launcher.servers import InfluxDB, Mosquitto, find_binary, free_port
from tests.scheduling import lost_groups, schedule
from tests.web_login import add_users, logged_in

# Fixtures that start a server (or need one): a test using any of them is marked
# ``servers``. ``influx2`` is the recording HTTP server of tests/adapters/test_influxdb_v2.py.
SERVER_FIXTURES = {"mosquitto", "influxdb", "mqtt_settings", "influx_settings", "store", "web",
                   "ingest_settings", "start_ingest", "influx2", "browser", "demo_broker",
                   "web_client"}
_databases = itertools.count(1)
# Hypothesis's deadline (200 ms an example) and its "too slow" check measure the machine,
# not the property: with the suite on several workers of a shared machine an example may wait
# for a core. What each property asserts is unchanged; the benches measure speed.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
SAMPLE_ESTATE_ID = load_estate(SAMPLE_ESTATE).id
# Passwords hashed in this process at argon2-cffi's CHEAPEST profile, which it provides for
# tests: at the production parameters (RFC 9106 low-memory: 64 MiB, 3 passes) each hash
# and each login costs about 0.1 s of CPU, and the suite makes thousands. The code that
# hashes, verifies and rehashes is the same; the services the tests start as processes
# keep the production parameters, and tests/dispatch/accounts/test_accounts.py checks them.
credentials._hasher = PasswordHasher.from_parameters(CHEAPEST)
credentials._DUMMY_HASH = credentials._hasher.hash("not a password of anyone")
# Debian's Chromium, driven by Playwright without a browser download (FACTS.md).
CHROMIUM = "/usr/bin/chromium"
# A page's assertions wait up to 20 s for the page to show what they expect (Playwright's
# default is 5 s): with the suite's workers, servers and browsers on 2 cores a page may
# take longer to draw; each wait ends as soon as the page shows it.
expect.set_options(timeout=20_000)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which real servers the ``servers`` tests run against."""
    lines = []
    for name, argv in (("mosquitto", ["-h"]), ("influxd", ["version"])):
        try:
            binary = find_binary(name)
            out = subprocess.run([binary, *argv], capture_output=True, text=True, timeout=10)
            first = (out.stdout or out.stderr).strip().splitlines()[0]
            lines.append(f"real {name}: {binary} ({first})")
        except (FileNotFoundError, IndexError, subprocess.SubprocessError) as exc:
            lines.append(f"real {name}: not available ({exc}); run `make deps`")
    return lines


# Modules whose tests are all ``servers`` tests and whose collection alone takes seconds
# (schemathesis prepares every operation's cases as the module is collected): left
# uncollected when the run's ``-m`` leaves those tests out anyway, as the fast tier does.
COSTLY_SERVER_MODULES = frozenset({"test_openapi_fuzz.py"})


def _runs_servers_tests(config: pytest.Config) -> bool:
    """Whether the run's ``-m`` keeps tests marked ``servers`` (only)."""
    markexpr = config.option.markexpr
    return not markexpr or Expression.compile(markexpr).evaluate(
        lambda name, **_: name == "servers")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in COSTLY_SERVER_MODULES and not _runs_servers_tests(config):
        return True
    return None


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto`` (pyproject's addopts): four on the two cores when the run
    has server tests, which mostly wait for simulated faults to unfold; two for the fast
    tier alone, which is all CPU (four made it slower: each worker collects the suite)."""
    return 4 if _runs_servers_tests(config) else 2


# First: xdist reads the groups in its own hook, after this one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
    schedule(items)


_LOST_GROUPS = pytest.StashKey[str | None]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_LOST_GROUPS] = lost_groups(session.config, session.items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every grouped test fails, saying why, when the groups were lost."""
    why = item.config.stash.get(_LOST_GROUPS, None)
    if why is not None and item.get_closest_marker("xdist_group") is not None:
        pytest.fail(why, pytrace=False)


# Programs that are servers (or drive one): the fast tier may start none of them.
SERVER_PROGRAMS = frozenset({"mosquitto", "influxd", "pg_ctl", "initdb", "postgres",
                             "chromium", "uvicorn", "estate"})
# Asking one for its version or its usage starts nothing.
ONLY_ASKING = frozenset({"version", "--version", "-h", "--help"})



@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (typer's CliRunner) sets the root logger's handler on its own
    output stream, closed once the command ends: each test gets the root logger back as it
    found it, so a later test's logging does not write to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

@pytest.fixture(autouse=True)
def _fast_tier_starts_no_server(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that is not marked ``servers`` but listens on a socket or starts a
    server program: the fast tier's promise is that it starts none."""
    if request.node.get_closest_marker("servers") is not None:
        return
    nodeid = request.node.nodeid

    def refuse_listen(sock: socket.socket, *args: Any) -> None:
        raise AssertionError(f"{nodeid} listens on a socket: mark it servers")

    popen_init = subprocess.Popen.__init__

    def checked_popen(process: subprocess.Popen[Any], args: Any, *rest: Any,
                      **kwargs: Any) -> None:
        argv = [args] if isinstance(args, str | bytes | Path) else list(args)
        # Every word, so that a server behind a wrapper (runuser, sh -c) is seen too.
        words = [w for a in argv for w in os.fsdecode(a).split()]
        names = [Path(w).name for w in words]
        server = next((n for n in names if n in SERVER_PROGRAMS), None)
        if server is not None and not (words and words[-1] in ONLY_ASKING):
            raise AssertionError(f"{nodeid} starts {server}: mark it servers")
        program = names[0] if names else ""
        if (program.startswith("python") and "-m" in names[1:2] and names[2:3]
                and names[2] in ("dispatch", "ingest", "edge", "launcher")):
            raise AssertionError(f"{nodeid} starts {program}: mark it servers")
        popen_init(process, args, *rest, **kwargs)

    monkeypatch.setattr(socket.socket, "listen", refuse_listen)
    monkeypatch.setattr(subprocess.Popen, "__init__", checked_popen)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    server = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class DemoBroker:
    """A Mosquitto with the demo's own accounts and ACL (``launcher.demo``): anonymous
    clients refused, each service confined to what it does."""

    broker: Mosquitto
    security: BrokerSecurity

    def settings(self, service: str) -> MqttSettings:
        """The broker login of one of the demo's services (web, dispatch, simulator, ...)."""
        username = service_username(SAMPLE_ESTATE_ID, service)
        return MqttSettings(host="127.0.0.1", port=self.broker.port, username=username,
                            password=SecretStr(self.security.password(username)))


@pytest.fixture(scope="session")
def demo_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoBroker]:
    var = tmp_path_factory.mktemp("demo-var")
    security = demo_broker_security(var)
    server = Mosquitto(var / "mosquitto", password_file=security.password_file,
                       acl_file=security.acl_file)
    server.start()
    yield DemoBroker(server, security)
    server.stop()


@pytest.fixture
def mqtt_settings(mosquitto: Mosquitto) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=mosquitto.port)


@pytest.fixture
def influx_settings(influxdb: InfluxDB) -> InfluxSettings:
    return InfluxSettings(url=influxdb.url, database=f"test_{next(_databases)}")


@pytest.fixture
def ingest_settings(mqtt_settings: MqttSettings, influx_settings: InfluxSettings,
                    tmp_path: Path) -> Callable[..., IngestSettings]:
    """Settings for an ingest worker of its own: client id, spool directory, no HTTP port.

    Workers made by one test share a group when the test asks for ``share_group``."""

    def make(**overrides: Any) -> IngestSettings:
        worker = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "mqtt": mqtt_settings, "influx": influx_settings,
            "client_id": f"ingest-{worker}",
            "spool_dir": tmp_path / f"spool-{worker}", "http_port": 0,
            "batch_size": 500, "flush_interval_s": 0.05}
        return IngestSettings(**(values | overrides))

    return make


@dataclass(frozen=True)
class RunningIngest:
    settings: IngestSettings
    thread: threading.Thread


@pytest.fixture
def start_ingest(ingest_settings: Callable[..., IngestSettings],
                 ) -> Iterator[Callable[..., RunningIngest]]:
    """Start ingest workers in threads (real code, real servers); all stop at the end.

    ``start_ingest()`` takes the ``ingest_settings`` defaults, ``start_ingest(settings)``
    given settings, ``start_ingest(batch_size=200)`` the defaults with overrides.
    """
    running: list[tuple[RunningIngest, threading.Event]] = []

    def start(settings: IngestSettings | None = None, **overrides: Any) -> RunningIngest:
        settings = settings or ingest_settings(**overrides)
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=run_ingest, args=(settings, stop, ready), daemon=True)
        thread.start()
        # Ready means subscribed: what is published from now on reaches it. A minute, for
        # a machine under load: the wait ends as soon as it is ready.
        assert ready.wait(60), "ingest did not become ready (connected and subscribed)"
        worker = RunningIngest(settings, thread)
        running.append((worker, stop))
        return worker

    yield start
    for _, stop in running:
        stop.set()
    for worker, _ in running:
        worker.thread.join(30)
        assert not worker.thread.is_alive(), "ingest did not stop within 30 s"


@pytest.fixture
def store(influx_settings: InfluxSettings) -> Iterator[InfluxV1Store]:
    s = InfluxV1Store(influx_settings)
    s.ensure_database()
    yield s
    s.query(f'DROP DATABASE "{influx_settings.database}"')
    s.close()


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def web(mqtt_settings: MqttSettings, influx_settings: InfluxSettings,
        tmp_path: Path) -> Iterator[str]:
    """The web view of the sample estate, served by uvicorn on a free port; yields its URL.
    Its registry is an SQLite file of the test's own."""
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    parts: WebParts = build_web(DispatchSettings(
        mqtt=mqtt_settings, influx=influx_settings, registry_url=registry_url))
    assert parts.registry is not None
    add_users(parts.registry, ana=Role.OPERATOR)
    with served(parts.app) as url:
        yield url
    parts.close()


@pytest.fixture
def web_client(web: str) -> Iterator[httpx.Client]:
    """The ``web`` fixture's view, logged in as the operator ``ana``."""
    with logged_in(web, "ana") as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the module's page tests."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make deps`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
