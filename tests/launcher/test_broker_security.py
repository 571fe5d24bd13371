"""Broker security against a real Mosquitto: accounts, per-device ACLs and TLS.

One broker for the module, started with the password and ACL files that
``launcher.broker_security`` writes for the sample estate, and with a TLS listener whose
certificate a throwaway CA signed.

Mosquitto drops an unauthorised publication silently (for MQTT 5 QoS 1 the PUBACK carries
reason 0x87, which a publisher's delivery handle does not surface), so these tests
assert on delivery. "Not delivered" is proved without sleeping: after the forbidden
publication has been acknowledged, an allowed one follows to the same subscriber; once
that arrives, the broker has long routed the first one.
"""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from adapters.mqtt import InboundMessage, MqttConnection
from estate.errors import BrokerError
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from estate.topics import Channel, DeviceId, shared, subscription
from launcher import cli
from launcher.broker_security import (
    DEFAULT_SERVICES,
    BrokerSecurity,
    acl_text,
    device_username,
    estate_accounts,
    gateway_username,
    load_broker_security,
    password_variable,
    service_username,
    write_broker_security,
)
from launcher.servers import Mosquitto, TlsListener
from tests.launcher.pki import Pki, make_ca, make_pki

pytestmark = pytest.mark.servers

# Loopback delivery takes milliseconds: 5 s means it is not coming.
WAIT_S = 5.0
# A refused CONNECT is answered at once, but MqttConnection.connect waits out its timeout.
REFUSED_WAIT_S = 2.0

ESTATE = "demo"
DEVICE_A = DeviceId(ESTATE, "textile", "main")
DEVICE_B = DeviceId(ESTATE, "textile", "looms")
FOREIGN = DeviceId(ESTATE, "foods", "main")
INGEST = service_username(ESTATE, "ingest")
WEB = service_username(ESTATE, "web")
DISPATCH = service_username(ESTATE, "dispatch")
SIMULATOR = service_username(ESTATE, "simulator")


@dataclass(frozen=True, slots=True)
class SecuredBroker:
    broker: Mosquitto
    security: BrokerSecurity
    pki: Pki

    def settings(self, username: str | None, password: str | None = None, *,
                 tls: bool = False, ca_file: Path | None = None,
                 port: int | None = None) -> MqttSettings:
        if username is not None and password is None:
            password = self.security.password(username)
        if port is None:
            port = self.broker.tls_port if tls else self.broker.port
        assert port is not None
        return MqttSettings(host="127.0.0.1", port=port, username=username,
                            password=SecretStr(password) if password is not None else None,
                            tls=tls, ca_file=str(ca_file) if ca_file else None)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    root = tmp_path_factory.mktemp("secured-broker")
    security = write_broker_security(load_estate(SAMPLE_ESTATE), root / "security")
    pki = make_pki(root / "pki")
    broker = Mosquitto(root / "broker", password_file=security.password_file,
                       acl_file=security.acl_file,
                       tls=TlsListener(pki.server_cert, pki.server_key, pki.ca_cert))
    broker.start()
    yield SecuredBroker(broker, security, pki)
    broker.stop()


class Inbox:
    """Messages one client received, for the test thread to wait on."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self._changed = threading.Condition()

    def __call__(self, message: InboundMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def topics(self) -> set[str]:
        with self._changed:
            return {m.topic for m in self.messages}

    def wait_for(self, topic: str, payload: bytes | None = None,
                 timeout_s: float = WAIT_S) -> bool:
        def arrived() -> bool:
            return any(m.topic == topic and payload in (None, m.payload)
                       for m in self.messages)

        with self._changed:
            return self._changed.wait_for(arrived, timeout_s)


@contextmanager
def client(settings: MqttSettings, *subscriptions: str,
           ) -> Iterator[tuple[MqttConnection, Inbox]]:
    inbox = Inbox()
    connection = MqttConnection(settings, f"test-{uuid.uuid4().hex[:8]}")
    for topic_filter in subscriptions:
        connection.subscribe(topic_filter, inbox, qos=1)
    connection.connect(timeout_s=WAIT_S)
    try:
        yield connection, inbox
    finally:
        connection.close()


def deliver(connection: MqttConnection, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the broker's acknowledgement."""
    assert connection.publish(topic, payload, qos=1).wait(WAIT_S), f"no PUBACK for {topic}"


def refuse(connection: MqttConnection, topic: str, payload: bytes) -> None:
    """Publish at QoS 1: the broker must refuse it (a PUBACK with a failure reason code,
    or a disconnection naming one while it is in flight), never take it."""
    delivery = connection.publish(topic, payload, qos=1)
    assert not delivery.wait(WAIT_S), f"the broker took {topic}"
    assert delivery.refused is not None, f"no answer from the broker for {topic}"


def until_received(publish: Callable[[bytes], None], inbox: Inbox, topic: str) -> None:
    """Publish probes until the subscriber gets one: its subscription is then in place."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        probe = f"probe-{uuid.uuid4().hex}".encode()
        publish(probe)
        if inbox.wait_for(topic, probe, timeout_s=0.2):
            return
    pytest.fail(f"nothing arrived on {topic} within {WAIT_S} s")


# --- the files ------------------------------------------------------------------------------

def test_written_files_hash_passwords_and_keep_secrets_private(tmp_path: Path) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    security = write_broker_security(spec, tmp_path)

    passwd = security.password_file.read_text()
    expected = len(spec.devices()) + len(spec.facilities) + len(DEFAULT_SERVICES)
    assert len(security.accounts) == len(passwd.splitlines()) == expected
    for account in security.accounts:
        assert account.password not in passwd
        assert f"{account.username}:$7$" in passwd  # PBKDF2-SHA512, mosquitto_passwd -U
    assert security.services_env_file is not None
    for path in (security.password_file, security.credentials_file,
                 security.services_env_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # The services' passwords for docker compose, one variable each, and only those.
    env = dict(line.split("=", 1) for line in security.services_env_file.read_text()
               .splitlines() if not line.startswith("#"))
    assert env == {password_variable(s.name): security.password(
        service_username(ESTATE, s.name)) for s in DEFAULT_SERVICES}
    assert {s.name for s in DEFAULT_SERVICES} == {"ingest", "web", "dispatch", "simulator"}
    # Read back as written, for the demo's later runs.
    loaded = load_broker_security(tmp_path)
    assert loaded is not None
    assert {a.username: a.password for a in loaded.accounts} == {
        a.username: a.password for a in security.accounts}
    assert load_broker_security(tmp_path / "nothing-here") is None
    credentials = json.loads(security.credentials_file.read_text())
    assert {a["username"]: a["password"] for a in credentials["accounts"]} == {
        a.username: a.password for a in security.accounts}
    # New passwords on every run.
    assert write_broker_security(spec, tmp_path / "again").password(INGEST) != \
        security.password(INGEST)


def test_acl_gives_a_device_exactly_its_own_four_topics() -> None:
    accounts = estate_accounts(load_estate(SAMPLE_ESTATE))
    blocks = acl_text(accounts).split("\n\n")
    block = next(b for b in blocks if b.startswith(f"user {device_username(DEVICE_A)}\n"))
    assert block.strip().splitlines()[1:] == [
        f"topic write {DEVICE_A.topic(Channel.TELEMETRY)}",
        f"topic write {DEVICE_A.topic(Channel.STATUS)}",
        f"topic write {DEVICE_A.topic(Channel.COMMAND_RESPONSE)}",
        f"topic read {DEVICE_A.topic(Channel.COMMAND_REQUEST)}",
    ]
    # Nothing before the first user block, where it would apply to every client.
    assert all(line.startswith("#") for line in blocks[0].splitlines())


def test_cli_writes_the_three_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["broker-credentials", "--estate-file",
                                          str(SAMPLE_ESTATE), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {"passwd", "acl", "credentials.json",
                                                    "services.env"}
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600


# --- logging in -----------------------------------------------------------------------------

def test_an_account_with_its_password_connects(secured: SecuredBroker) -> None:
    with client(secured.settings(device_username(DEVICE_A))) as (connection, _):
        assert connection.connected


@pytest.mark.parametrize(("username", "password"), [
    pytest.param(None, None, id="anonymous"),
    pytest.param(device_username(DEVICE_A), "wrong", id="wrong-password"),
    pytest.param(device_username(DEVICE_A), "B", id="another-accounts-password"),
    pytest.param("device/demo/textile/unknown", "x", id="unknown-user"),
])
def test_broker_refuses(secured: SecuredBroker, username: str | None,
                        password: str | None) -> None:
    if password == "B":
        password = secured.security.password(device_username(DEVICE_B))
    connection = MqttConnection(secured.settings(username, password), "test-refused")
    with pytest.raises(BrokerError, match="refused"):
        connection.connect(timeout_s=REFUSED_WAIT_S)


# --- what a device may do -------------------------------------------------------------------

@pytest.mark.parametrize(("channel", "reader"), [
    (Channel.TELEMETRY, INGEST), (Channel.STATUS, WEB), (Channel.COMMAND_RESPONSE, DISPATCH)])
def test_device_publishes_for_itself_only(secured: SecuredBroker, channel: Channel,
                                          reader: str) -> None:
    own, other = DEVICE_A.topic(channel), DEVICE_B.topic(channel)
    with ExitStack() as stack:
        _, inbox = stack.enter_context(
            client(secured.settings(reader), subscription(channel, estate=ESTATE)))
        device, _ = stack.enter_context(client(secured.settings(device_username(DEVICE_A))))

        until_received(lambda p: deliver(device, own, p), inbox, own)
        refuse(device, other, b"forged")
        deliver(device, own, b"after")

        assert inbox.wait_for(own, b"after")
        assert other not in inbox.topics()


def test_device_cannot_receive_another_devices_commands(secured: SecuredBroker) -> None:
    a_req, b_req = DEVICE_A.topic(Channel.COMMAND_REQUEST), DEVICE_B.topic(Channel.COMMAND_REQUEST)
    with ExitStack() as stack:
        # A asks for B's commands, and for everything, besides its own.
        _, a_inbox = stack.enter_context(client(
            secured.settings(device_username(DEVICE_A)), b_req, "estate/#", a_req))
        _, b_inbox = stack.enter_context(client(
            secured.settings(device_username(DEVICE_B)), b_req))
        dispatch, _ = stack.enter_context(client(secured.settings(DISPATCH)))
        until_received(lambda p: deliver(dispatch, a_req, p), a_inbox, a_req)
        until_received(lambda p: deliver(dispatch, b_req, p), b_inbox, b_req)

        deliver(dispatch, b_req, b"for B")
        deliver(dispatch, a_req, b"for A")

        assert b_inbox.wait_for(b_req, b"for B")
        assert a_inbox.wait_for(a_req, b"for A")
        assert a_inbox.topics() == {a_req}


def test_device_cannot_command_another_device_and_web_and_dispatch_can(
        secured: SecuredBroker) -> None:
    b_req = DEVICE_B.topic(Channel.COMMAND_REQUEST)
    with ExitStack() as stack:
        _, b_inbox = stack.enter_context(client(
            secured.settings(device_username(DEVICE_B)), b_req))
        dispatch, _ = stack.enter_context(client(secured.settings(DISPATCH)))
        device_a, _ = stack.enter_context(client(secured.settings(device_username(DEVICE_A))))
        web, _ = stack.enter_context(client(secured.settings(WEB)))
        until_received(lambda p: deliver(dispatch, b_req, p), b_inbox, b_req)

        refuse(device_a, b_req, b"forged by A")
        # The web view sends an operator's approved commands: its account may.
        deliver(web, b_req, b"approved in the web view")
        deliver(dispatch, b_req, b"real")

        assert b_inbox.wait_for(b_req, b"real")
        assert b_inbox.wait_for(b_req, b"approved in the web view")
        payloads = {m.payload for m in b_inbox.messages}
        assert b"forged by A" not in payloads


# --- gateways and services ------------------------------------------------------------------

def test_gateway_publishes_for_its_facility_only(secured: SecuredBroker) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    textile = [d for d, _, facility in spec.devices() if facility.id == DEVICE_A.facility]
    assert len(textile) > 1
    first = textile[0].topic(Channel.TELEMETRY)
    with ExitStack() as stack:
        _, inbox = stack.enter_context(client(
            secured.settings(INGEST), subscription(Channel.TELEMETRY, estate=ESTATE)))
        gateway, _ = stack.enter_context(client(
            secured.settings(gateway_username(ESTATE, DEVICE_A.facility))))
        until_received(lambda p: deliver(gateway, first, p), inbox, first)

        for device in textile:
            deliver(gateway, device.topic(Channel.TELEMETRY), b"reading")
        refuse(gateway, FOREIGN.topic(Channel.TELEMETRY), b"forged")
        deliver(gateway, first, b"after")

        assert inbox.wait_for(first, b"after")
        for device in textile:
            assert inbox.wait_for(device.topic(Channel.TELEMETRY), b"reading")
        assert FOREIGN.topic(Channel.TELEMETRY) not in inbox.topics()


def test_gateway_receives_its_facilitys_commands_only(secured: SecuredBroker) -> None:
    with ExitStack() as stack:
        _, inbox = stack.enter_context(client(
            secured.settings(gateway_username(ESTATE, DEVICE_A.facility)),
            subscription(Channel.COMMAND_REQUEST, estate=ESTATE, facility=DEVICE_A.facility),
            subscription(Channel.COMMAND_REQUEST, estate=ESTATE)))
        dispatch, _ = stack.enter_context(client(secured.settings(DISPATCH)))
        a_req = DEVICE_A.topic(Channel.COMMAND_REQUEST)
        until_received(lambda p: deliver(dispatch, a_req, p), inbox, a_req)

        deliver(dispatch, FOREIGN.topic(Channel.COMMAND_REQUEST), b"not yours")
        deliver(dispatch, DEVICE_B.topic(Channel.COMMAND_REQUEST), b"yours")

        assert inbox.wait_for(DEVICE_B.topic(Channel.COMMAND_REQUEST), b"yours")
        assert FOREIGN.topic(Channel.COMMAND_REQUEST) not in inbox.topics()


def test_ingest_reads_telemetry_through_a_shared_subscription(secured: SecuredBroker) -> None:
    own = DEVICE_A.topic(Channel.TELEMETRY)
    group = shared("ingest", subscription(Channel.TELEMETRY, estate=ESTATE))
    with ExitStack() as stack:
        ingest, inbox = stack.enter_context(client(secured.settings(INGEST), group))
        device, _ = stack.enter_context(client(secured.settings(device_username(DEVICE_A))))
        until_received(lambda p: deliver(device, own, p), inbox, own)
        # Ingest reports on its events topic, and nowhere else.
        deliver(ingest, "estate/system/ingest/worker-1/events", b"{}")
        assert ingest.connected


def test_services_cannot_forge_readings(secured: SecuredBroker) -> None:
    own = DEVICE_A.topic(Channel.TELEMETRY)
    with ExitStack() as stack:
        _, inbox = stack.enter_context(client(
            secured.settings(WEB), subscription(Channel.TELEMETRY, estate=ESTATE)))
        device, _ = stack.enter_context(client(secured.settings(device_username(DEVICE_A))))
        forgers = [stack.enter_context(client(secured.settings(name)))[0]
                   for name in (INGEST, DISPATCH, WEB)]
        until_received(lambda p: deliver(device, own, p), inbox, own)

        for forger in forgers:
            refuse(forger, DEVICE_B.topic(Channel.TELEMETRY), b"forged")
        deliver(device, own, b"after")

        assert inbox.wait_for(own, b"after")
        assert DEVICE_B.topic(Channel.TELEMETRY) not in inbox.topics()


# --- TLS ------------------------------------------------------------------------------------

def test_tls_client_with_the_ca_exchanges_messages(secured: SecuredBroker) -> None:
    own = DEVICE_A.topic(Channel.TELEMETRY)
    ca = secured.pki.ca_cert
    with ExitStack() as stack:
        _, inbox = stack.enter_context(client(
            secured.settings(INGEST, tls=True, ca_file=ca),
            subscription(Channel.TELEMETRY, estate=ESTATE)))
        device, _ = stack.enter_context(client(
            secured.settings(device_username(DEVICE_A), tls=True, ca_file=ca)))
        until_received(lambda p: deliver(device, own, p), inbox, own)


# paho 2.2 leaves the socket of a failed TLS handshake for the garbage collector
# (Client._ssl_wrap_socket does not close it), which Python reports as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("ca", ["none", "another-ca"])
def test_tls_client_without_our_ca_is_refused(secured: SecuredBroker, tmp_path: Path,
                                              ca: str) -> None:
    ca_file = make_ca(tmp_path, "Some other CA")[0] if ca == "another-ca" else None
    settings = secured.settings(device_username(DEVICE_A), tls=True, ca_file=ca_file)
    connection = MqttConnection(settings, "test-untrusted")
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
        connection.connect(timeout_s=REFUSED_WAIT_S)


def test_plain_client_on_the_tls_port_gets_nowhere(secured: SecuredBroker) -> None:
    settings = secured.settings(device_username(DEVICE_A), port=secured.broker.tls_port)
    connection = MqttConnection(settings, "test-plain-on-tls")
    with pytest.raises(BrokerError, match="no CONNACK"):
        connection.connect(timeout_s=REFUSED_WAIT_S)


def test_simulator_speaks_for_every_device_but_cannot_command(secured: SecuredBroker) -> None:
    spec = load_estate(SAMPLE_ESTATE)
    devices = [d for d, _, _ in spec.devices()]
    assert len({d.facility for d in devices}) > 1
    first = devices[0].topic(Channel.TELEMETRY)
    a_req = DEVICE_A.topic(Channel.COMMAND_REQUEST)
    with ExitStack() as stack:
        _, readings = stack.enter_context(client(
            secured.settings(INGEST), subscription(Channel.TELEMETRY, estate=ESTATE)))
        _, commands = stack.enter_context(client(
            secured.settings(device_username(DEVICE_A)), a_req))
        simulator, _ = stack.enter_context(client(secured.settings(SIMULATOR)))
        # A second connection of the account receives: Mosquitto 2.0.11 closes the
        # connection of an account that publishes on a topic it may read but not write
        # (seen here for cmd/req), and a message routed meanwhile would miss it.
        _, own_commands = stack.enter_context(client(
            secured.settings(SIMULATOR), subscription(Channel.COMMAND_REQUEST, estate=ESTATE)))
        dispatch, _ = stack.enter_context(client(secured.settings(DISPATCH)))
        until_received(lambda p: deliver(simulator, first, p), readings, first)
        until_received(lambda p: deliver(dispatch, a_req, p), commands, a_req)

        for device in devices:
            deliver(simulator, device.topic(Channel.TELEMETRY), b"reading")
        refuse(simulator, a_req, b"forged by the simulator")
        deliver(dispatch, a_req, b"real")

        for device in devices:
            assert readings.wait_for(device.topic(Channel.TELEMETRY), b"reading")
        assert commands.wait_for(a_req, b"real")
        assert own_commands.wait_for(a_req, b"real"), "it receives commands to answer them"
        assert b"forged by the simulator" not in {m.payload for m in commands.messages}
