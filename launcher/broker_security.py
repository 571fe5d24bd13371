"""Broker accounts for an estate: a Mosquitto password file, an ACL file, the credentials.

Every account gets a random password and a short list of topics it may use; anything not
listed is refused, and anonymous clients are refused altogether (``allow_anonymous false``).

Usernames name the account's kind and its place in the topic tree, ``/``-separated::

    device/{estate}/{facility}/{device}   one meter
    gateway/{estate}/{facility}           every meter of one facility
    service/{estate}/{name}               ingest, web, dispatch or the simulator

``/`` cannot occur in an identifier (see ``estate.topics``), so a username maps back to
exactly one account. ``:`` would read better but Mosquitto's password file is
``username:hash`` and ``mosquitto_passwd`` refuses usernames containing it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from estate.model import EstateSpec
from estate.topics import Channel, DeviceId, subscription, validate_identifier
from launcher.servers import find_binary

Access = Literal["read", "write", "readwrite"]
Kind = Literal["device", "gateway", "service"]

# 32 bytes of randomness: far beyond guessing, and still short enough to paste.
PASSWORD_BYTES = 32

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
CREDENTIALS_FILE = "credentials.json"
SERVICES_ENV_FILE = "services.env"


class ServiceRole(StrEnum):
    """What a service account may do."""

    INGEST = "ingest"
    WEB = "web"
    DISPATCH = "dispatch"
    # Stands in for every device of the estate (the demo and the compose stack run it).
    SIMULATOR = "simulator"
    # The compose stack's Modbus gateway (profile ``modbus``): it polls meters of several
    # facilities and reports its own status, so it needs a gateway's rights estate-wide.
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A service's account: its name (the last part of the username) and its role."""

    name: str
    role: ServiceRole

    def __post_init__(self) -> None:
        validate_identifier(self.name, "service account")


DEFAULT_SERVICES: tuple[ServiceAccount, ...] = tuple(
    ServiceAccount(role.value, role) for role in (ServiceRole.INGEST, ServiceRole.WEB,
                                                  ServiceRole.DISPATCH, ServiceRole.SIMULATOR))


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``topic`` line of an ACL block."""

    access: Access
    topic: str


@dataclass(frozen=True, slots=True)
class Account:
    """A broker login and what it may publish (write) and subscribe to (read)."""

    username: str
    kind: Kind
    rules: tuple[Rule, ...]
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """The files written for Mosquitto and every account's password."""

    password_file: Path
    acl_file: Path
    credentials_file: Path
    accounts: tuple[Account, ...]
    services_env_file: Path | None = None

    def password(self, username: str) -> str:
        return next(a.password for a in self.accounts if a.username == username)


def device_username(device: DeviceId) -> str:
    return f"device/{device.estate}/{device.facility}/{device.device}"


def gateway_username(estate: str, facility: str) -> str:
    return f"gateway/{estate}/{facility}"


def service_username(estate: str, name: str) -> str:
    return f"service/{estate}/{name}"


def events_topic_filter() -> str:
    """Where ingest workers report their own events, one topic per worker."""
    return "estate/system/ingest/+/events"


def _new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def device_rules(device: DeviceId) -> tuple[Rule, ...]:
    """A device speaks for itself only: its telemetry, status and answers; its commands."""
    return (Rule("write", device.topic(Channel.TELEMETRY)),
            Rule("write", device.topic(Channel.STATUS)),
            Rule("write", device.topic(Channel.COMMAND_RESPONSE)),
            Rule("read", device.topic(Channel.COMMAND_REQUEST)))


def gateway_rules(estate: str, facility: str) -> tuple[Rule, ...]:
    """A gateway speaks for every device of its facility, present and future."""
    def topic(channel: Channel) -> str:
        return subscription(channel, estate=estate, facility=facility)

    return (Rule("write", topic(Channel.TELEMETRY)),
            Rule("write", topic(Channel.STATUS)),
            Rule("write", topic(Channel.COMMAND_RESPONSE)),
            Rule("read", topic(Channel.COMMAND_REQUEST)))


def service_rules(estate: str, role: ServiceRole) -> tuple[Rule, ...]:
    def every(channel: Channel) -> str:
        return subscription(channel, estate=estate)

    match role:
        case ServiceRole.INGEST:
            return (Rule("read", every(Channel.TELEMETRY)),
                    Rule("write", events_topic_filter()))
        case ServiceRole.WEB:
            # The live view reads telemetry and status; an operator's approval sends the
            # plan's commands from the web process and follows their answers.
            return (Rule("read", every(Channel.TELEMETRY)),
                    Rule("read", every(Channel.STATUS)),
                    Rule("write", every(Channel.COMMAND_REQUEST)),
                    Rule("read", every(Channel.COMMAND_RESPONSE)))
        case ServiceRole.DISPATCH:
            # Telemetry: the control room's streaming alarm rules (docs/alarms.md).
            return (Rule("read", every(Channel.TELEMETRY)),
                    Rule("write", every(Channel.COMMAND_REQUEST)),
                    Rule("read", every(Channel.COMMAND_RESPONSE)),
                    Rule("read", every(Channel.STATUS)))
        case ServiceRole.SIMULATOR | ServiceRole.GATEWAY:
            # A gateway's rights over the whole estate: it publishes for every meter and
            # its own status (a device of the "edge" facility), and may answer commands.
            return (Rule("write", every(Channel.TELEMETRY)),
                    Rule("write", every(Channel.STATUS)),
                    Rule("write", every(Channel.COMMAND_RESPONSE)),
                    Rule("read", every(Channel.COMMAND_REQUEST)))


def estate_accounts(spec: EstateSpec,
                    services: Iterable[ServiceAccount] = DEFAULT_SERVICES) -> tuple[Account, ...]:
    """Every account of the estate with a fresh random password."""
    accounts = [Account(device_username(device), "device", device_rules(device),
                        _new_password())
                for device, _meter, _facility in spec.devices()]
    accounts += [Account(gateway_username(spec.id, f.id), "gateway",
                         gateway_rules(spec.id, f.id), _new_password())
                 for f in spec.facilities]
    accounts += [Account(service_username(spec.id, s.name), "service",
                         service_rules(spec.id, s.role), _new_password())
                 for s in services]
    names = [a.username for a in accounts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate broker accounts: {', '.join(duplicates)}")
    return tuple(accounts)


def acl_text(accounts: Sequence[Account]) -> str:
    """A Mosquitto ``acl_file``: one explicit ``user`` block per account.

    Explicit blocks rather than ``pattern`` lines with ``%u``: the file then reads as the
    full list of who may do what, a device missing from the estate file has no rules at
    all, and gateway and service rights (wildcards over many devices) could not be
    written as patterns anyway. Lines before the first ``user`` line would apply to every
    client, so there are none.
    """
    lines = ["# Mosquitto ACL written by `estate broker-credentials`; regenerate, do not edit.",
             "# read = subscribe and receive, write = publish. Anything unlisted is denied."]
    for account in accounts:
        lines += ["", f"user {account.username}"]
        lines += [f"topic {rule.access} {rule.topic}" for rule in account.rules]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, also when it already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def write_password_file(path: Path, accounts: Sequence[Account]) -> None:
    """Hash the passwords with the real ``mosquitto_passwd`` (PBKDF2-SHA512)."""
    # -U hashes a plain "username:password" file in place: one process for all accounts,
    # and no password on any command line.
    _write_private(path, "".join(f"{a.username}:{a.password}\n" for a in accounts))
    try:
        subprocess.run([find_binary("mosquitto_passwd"), "-U", str(path)], check=True,
                       capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"mosquitto_passwd failed: {exc.stderr.strip()}") from exc
    os.chmod(path, 0o600)


def credentials_json(spec: EstateSpec, accounts: Sequence[Account]) -> str:
    return json.dumps({"estate": spec.id, "accounts": [
        {"username": a.username, "password": a.password, "kind": a.kind} for a in accounts]},
        indent=2) + "\n"


def password_variable(service: str) -> str:
    """The variable that carries a service account's password into docker compose."""
    return "MQTT_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", service).upper()


def services_env(accounts: Sequence[Account]) -> str:
    """The service accounts' passwords as ``NAME=value`` lines: ``docker compose --env-file``.

    Passwords are URL-safe base64, so no value needs quoting.
    """
    lines = ["# Broker passwords of the services, written by `estate broker-credentials`.",
             "# docker compose --env-file THIS_FILE up -d   (docs/security.md)"]
    lines += [f"{password_variable(a.username.rsplit('/', 1)[1])}={a.password}"
              for a in accounts if a.kind == "service"]
    return "\n".join(lines) + "\n"


def write_broker_security(spec: EstateSpec, out_dir: Path,
                          services: Iterable[ServiceAccount] = DEFAULT_SERVICES,
                          ) -> BrokerSecurity:
    """Write ``passwd``, ``acl``, ``credentials.json`` and ``services.env`` into ``out_dir``.

    ``credentials.json`` and ``services.env`` hold plain passwords (mode 0600). Every call
    makes new passwords for every account.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    accounts = estate_accounts(spec, services)
    security = BrokerSecurity(out_dir / PASSWORD_FILE, out_dir / ACL_FILE,
                              out_dir / CREDENTIALS_FILE, accounts,
                              out_dir / SERVICES_ENV_FILE)
    write_password_file(security.password_file, accounts)
    security.acl_file.write_text(acl_text(accounts), encoding="utf-8")
    _write_private(security.credentials_file, credentials_json(spec, accounts))
    _write_private(out_dir / SERVICES_ENV_FILE, services_env(accounts))
    return security


def refresh_acl(security: BrokerSecurity, spec: EstateSpec,
                services: Iterable[ServiceAccount] = DEFAULT_SERVICES) -> bool:
    """Rewrite the ACL of accounts written before if today's rules differ (a service was
    given a right it needs): the passwords stay. True if the file changed; Mosquitto reads
    it at start and on SIGHUP."""
    wanted = acl_text(estate_accounts(spec, services))
    if security.acl_file.read_text(encoding="utf-8") == wanted:
        return False
    security.acl_file.write_text(wanted, encoding="utf-8")
    return True


def load_broker_security(out_dir: Path) -> BrokerSecurity | None:
    """The files a previous ``write_broker_security`` left in ``out_dir``, or None.

    None when any of them is missing: the caller then writes a fresh set, since a password
    file without its plain passwords (or the reverse) is of no use.
    """
    paths = [out_dir / name for name in (PASSWORD_FILE, ACL_FILE, CREDENTIALS_FILE)]
    if not all(p.is_file() for p in paths):
        return None
    try:
        raw = json.loads(paths[2].read_text(encoding="utf-8"))
        accounts = tuple(Account(a["username"], a["kind"], (), a["password"])
                         for a in raw["accounts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    env_file = out_dir / SERVICES_ENV_FILE
    return BrokerSecurity(paths[0], paths[1], paths[2], accounts,
                          env_file if env_file.is_file() else None)
