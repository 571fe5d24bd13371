"""``estate demo``: the whole product on the sample estate, on this machine.

Starts a real Mosquitto and a real InfluxDB as child processes with their data under
``var/``, then the services as separate processes (exactly as they run in production),
streams their logs with a prefix, and on Ctrl-C stops them in reverse order so ingest
flushes before the servers go. A second run reuses ``var/``.

Every child is supervised (``launcher.supervisor``): one that dies, the servers included,
is logged at once and started again with backoff, and the supervisor's view of them is in
``var/supervisor.json`` and on ``http://127.0.0.1:9110/status``.

The web view has no default account: the first run makes an admin and an operator with
random passwords and writes them to ``var/web-users.json`` (0600).

The broker is secured as in production: the first run writes a password file, an ACL and
every account's password under ``var/broker/`` (``launcher.broker_security``), Mosquitto
refuses anonymous clients, and each service logs in with its own account.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from adapters.ops_http import OpsServer
from estate.lifecycle import stop_on_signals
from estate.model import SAMPLE_ESTATE, load_estate
from launcher.broker_security import (
    BrokerSecurity,
    estate_accounts,
    load_broker_security,
    refresh_acl,
    service_username,
    write_broker_security,
)
from launcher.demo_users import demo_web_users
from launcher.servers import InfluxDB, Mosquitto, environment_with_path
from launcher.supervisor import Child, ServerChild, ServiceChild, Supervisor, supervisor_registry

log = logging.getLogger(__name__)

# The supervisor's view of the children, rewritten on every change (launcher.supervisor).
STATUS_FILE: Final = "supervisor.json"


@dataclass(frozen=True, slots=True)
class DemoPorts:
    # Not the standard 1883/8086: a system Mosquitto or InfluxDB may already hold those.
    mqtt: int = 18830
    influx_http: int = 18086
    influx_rpc: int = 18088
    web: int = 8000
    ingest_http: int = 9101
    dispatch_http: int = 9102
    simulator_http: int = 9103
    # The supervisor's /status, /health and /metrics; 0 serves none.
    supervisor: int = 9110


def service_environment(ports: DemoPorts, var: Path) -> dict[str, str]:
    env = environment_with_path()
    influx = f"http://127.0.0.1:{ports.influx_http}"
    for prefix in ("INGEST", "EDGE", "DISPATCH"):
        env[f"{prefix}_MQTT__HOST"] = "127.0.0.1"
        env[f"{prefix}_MQTT__PORT"] = str(ports.mqtt)
    for prefix in ("INGEST", "DISPATCH"):
        env[f"{prefix}_INFLUX__URL"] = influx
    env["DISPATCH_WEB__PORT"] = str(ports.web)
    # The page shows the supervised services from the status file the supervisor rewrites.
    env["DISPATCH_WEB__SUPERVISOR_STATUS"] = str(var / STATUS_FILE)
    env["INGEST_SPOOL_DIR"] = str(var / "ingest-spool")
    env["DISPATCH_REGISTRY_URL"] = f"sqlite:///{var / 'registry.sqlite'}"
    env["EDGE_COMMAND_LOG_PATH"] = str(var / "edge" / "simulator-commands.sqlite")
    env["INGEST_HTTP_PORT"] = str(ports.ingest_http)
    env["DISPATCH_HTTP_PORT"] = str(ports.dispatch_http)
    env["EDGE_HTTP_PORT"] = str(ports.simulator_http)
    # The demo's meters report every 2 s so the page moves while someone watches it.
    env["EDGE_INTERVAL_S"] = "2"
    env["DISPATCH_STALE_AFTER_S"] = "30"
    env["DISPATCH_FRESHNESS_EVERY_S"] = "15"
    return env


@dataclass(frozen=True, slots=True)
class DemoService:
    """A service of the demo: its process, and the settings prefix and broker account
    it logs in with."""

    name: str
    args: tuple[str, ...]
    prefix: str
    account: str


SERVICES: tuple[DemoService, ...] = (
    DemoService("ingest", ("-m", "ingest"), "INGEST", "ingest"),
    DemoService("dispatch", ("-m", "dispatch", "worker"), "DISPATCH", "dispatch"),
    # Web and dispatch share the DISPATCH_ settings but not an account: each process gets
    # its own environment, so neither holds the other's broker rights.
    DemoService("web", ("-m", "dispatch", "web"), "DISPATCH", "web"),
    DemoService("simulator", ("-m", "edge"), "EDGE", "simulator"),
)


def demo_broker_security(var: Path) -> BrokerSecurity:
    """The demo broker's accounts: written under ``var/broker`` on the first run, reused
    on later ones, and written afresh if the sample estate gained or lost devices."""
    spec = load_estate(SAMPLE_ESTATE)
    out = var / "broker"
    wanted = {a.username for a in estate_accounts(spec)}
    existing = load_broker_security(out)
    if existing is not None and {a.username for a in existing.accounts} == wanted:
        if refresh_acl(existing, spec):
            log.info("broker ACL brought up to date in %s", existing.acl_file)
        return existing
    security = write_broker_security(spec, out)
    log.info("broker accounts written to %s (%d accounts; passwords in %s)", out,
             len(security.accounts), security.credentials_file)
    return security


def account_environment(service: DemoService, security: BrokerSecurity,
                        estate: str) -> dict[str, str]:
    """The broker login of one service, as its settings read it."""
    username = service_username(estate, service.account)
    return {f"{service.prefix}_MQTT__USERNAME": username,
            f"{service.prefix}_MQTT__PASSWORD": security.password(username)}


def run_demo(var: Path, ports: DemoPorts) -> int:
    """Run until Ctrl-C or SIGTERM, restarting any child that dies; return the exit code."""
    var.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    stop_on_signals(stop)
    security = demo_broker_security(var)
    users = demo_web_users(var, f"sqlite:///{var / 'registry.sqlite'}")
    estate = load_estate(SAMPLE_ESTATE).id
    mosquitto = Mosquitto(var / "mosquitto", port=ports.mqtt,
                          password_file=security.password_file, acl_file=security.acl_file)
    influx = InfluxDB(var / "influxdb", http_port=ports.influx_http, rpc_port=ports.influx_rpc)
    env = service_environment(ports, var)
    children: list[Child] = [ServerChild(mosquitto), ServerChild(influx, "influxdb")]
    # The other services start once ingest is ready (subscribed), so the simulator's first
    # readings are stored.
    children += [ServiceChild(service.name, [sys.executable, *service.args],
                              env | account_environment(service, security, estate),
                              ready_url=(f"http://127.0.0.1:{ports.ingest_http}/health"
                                         if service.name == "ingest" else None))
                 for service in SERVICES]
    supervisor = Supervisor(children, status_file=var / STATUS_FILE)
    ops: OpsServer | None = None
    if ports.supervisor:
        ops = OpsServer("127.0.0.1", ports.supervisor, supervisor.health,
                        registry=supervisor_registry(supervisor), name="supervisor-http",
                        extra={"/status": supervisor.status})
        ops.start()
    try:
        supervisor.start()
        # The services' sessions (ingest's subscription above all) survive a broker crash
        # from now on, not only from its next autosave.
        if not mosquitto.save_sessions():
            log.warning("Mosquitto did not save its sessions; they are saved within 10 s")
        log.info("Mosquitto on 127.0.0.1:%d (accounts and ACL in %s), InfluxDB on %s "
                 "(data in %s)", ports.mqtt, security.password_file.parent, influx.url, var)
        log.info("web view: http://127.0.0.1:%d, log in as admin or operator with the "
                 "passwords in %s (Ctrl-C stops everything)", ports.web, users)
        if ops is not None:
            log.info("supervisor status: http://127.0.0.1:%d/status and %s", ports.supervisor,
                     var / STATUS_FILE)
        stop.wait()
    finally:
        supervisor.stop()
        if ops is not None:
            ops.stop()
        log.info("demo stopped; data kept in %s", var)
    return 0
