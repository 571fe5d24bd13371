"""The compose stack's secrets, written once by its one-shot ``setup`` service.

``estate stack-secrets --out DIR`` writes what docker-compose.yml hands to its services
as compose ``secrets`` (files under ``/run/secrets``, never environment variables):

=========================  =======================================================
``broker/passwd``, ``acl``  Mosquitto's accounts and ACL (``launcher.broker_security``)
``broker/credentials.json`` every account's plain password, for provisioning devices
``broker/ca.crt``, ``ca.key`` the stack's own certificate authority (move ``ca.key`` away)
``broker/server.crt``, ``.key`` the broker's TLS certificate, for the names clients dial
``mqtt/<service>``           each service's broker password
``postgres/password``        the registry database's password
``postgres/registry_url``    the registry URL with that password, for dispatch and web
``grafana/admin_password``   Grafana's admin password (profile ``monitoring``)
=========================  =======================================================

Run again, it keeps every file that exists and writes only what is missing (or the
broker's accounts, when the estate gained or lost devices): restarting the stack never
changes a password. Delete a file to have it made anew.

Run as root (as the setup container is), each file is given to the user that reads it in
its container, mode 0600 (0644 for the public certificate and the ACL).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from estate.model import EstateSpec
from launcher.broker_security import (
    DEFAULT_SERVICES,
    BrokerSecurity,
    ServiceAccount,
    ServiceRole,
    estate_accounts,
    load_broker_security,
    refresh_acl,
    service_username,
    write_broker_security,
)

log = logging.getLogger(__name__)

# The users that read the files inside their containers (uids of the pinned images):
# Mosquitto runs as "mosquitto" (1883) in eclipse-mosquitto, our image as "estate"
# (10001, Dockerfile), Grafana as "grafana" (472). PostgreSQL's entrypoint reads its
# password as root before it drops privileges, so root keeps that one.
MOSQUITTO_UID: Final = 1883
ESTATE_UID: Final = 10001
GRAFANA_UID: Final = 472
ROOT_UID: Final = 0

# The services of the stack that log in to the broker, each with its own account.
STACK_SERVICES: Final[tuple[ServiceAccount, ...]] = (
    *DEFAULT_SERVICES, ServiceAccount("gateway", ServiceRole.GATEWAY))

# 32 random bytes, as the broker's passwords (``broker_security.PASSWORD_BYTES``).
SECRET_BYTES: Final = 32
# The stack's CA outlives many server certificates; the server certificate is renewed by
# deleting it and running setup again, within the 825 days clients accept.
CA_DAYS: Final = "3650"
SERVER_DAYS: Final = "825"
# P-256: made in milliseconds, accepted by every TLS stack in use.
EC_KEY: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True, slots=True)
class StackSecrets:
    out: Path
    broker: BrokerSecurity
    written: tuple[Path, ...]

    def mqtt_password_file(self, service: str) -> Path:
        return self.out / "mqtt" / service

    @property
    def ca_cert(self) -> Path:
        return self.out / "broker" / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.out / "broker" / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.out / "broker" / "server.key"

    @property
    def postgres_password_file(self) -> Path:
        return self.out / "postgres" / "password"

    @property
    def registry_url_file(self) -> Path:
        return self.out / "postgres" / "registry_url"


def write_stack_secrets(spec: EstateSpec, out: Path, *,
                        broker_names: Sequence[str] = ("mosquitto", "localhost"),
                        postgres_host: str = "postgres", postgres_port: int = 5432,
                        postgres_user: str = "estate", postgres_db: str = "registry",
                        ) -> StackSecrets:
    """Write whatever of the stack's secrets is missing under ``out``; see the module."""
    written: list[Path] = []
    broker_dir = out / "broker"
    security = load_broker_security(broker_dir)
    wanted = {a.username for a in estate_accounts(spec, STACK_SERVICES)}
    if security is None or {a.username for a in security.accounts} != wanted:
        security = write_broker_security(spec, broker_dir, STACK_SERVICES)
        written += [security.password_file, security.acl_file, security.credentials_file]
        log.info("broker accounts written (%d accounts)", len(security.accounts))
        for service in STACK_SERVICES:  # new accounts: new passwords for every service
            (out / "mqtt" / service.name).unlink(missing_ok=True)
    elif refresh_acl(security, spec, STACK_SERVICES):
        written.append(security.acl_file)
        log.info("broker ACL brought up to date")
    written += _tls(broker_dir, broker_names)
    for service in STACK_SERVICES:
        path = out / "mqtt" / service.name
        if not path.exists():
            _write_secret(path, security.password(service_username(spec.id, service.name)))
            written.append(path)
    pg_password = out / "postgres" / "password"
    if not pg_password.exists():
        _write_secret(pg_password, secrets.token_urlsafe(SECRET_BYTES))
        written.append(pg_password)
        (out / "postgres" / "registry_url").unlink(missing_ok=True)
    url_file = out / "postgres" / "registry_url"
    if not url_file.exists():
        password = pg_password.read_text(encoding="utf-8").strip()
        # URL-safe base64 needs no escaping inside a URL.
        _write_secret(url_file, f"postgresql+psycopg://{postgres_user}:{password}@"
                                f"{postgres_host}:{postgres_port}/{postgres_db}")
        written.append(url_file)
    grafana = out / "grafana" / "admin_password"
    if not grafana.exists():
        _write_secret(grafana, secrets.token_urlsafe(SECRET_BYTES))
        written.append(grafana)
    result = StackSecrets(out, security, tuple(written))
    if os.geteuid() == 0:
        _give_away(result)
    return result


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _tls(broker_dir: Path, names: Sequence[str]) -> list[Path]:
    """A CA (if missing) and a broker certificate it signed (if missing) for ``names``."""
    ca_cert, ca_key = broker_dir / "ca.crt", broker_dir / "ca.key"
    cert, key = broker_dir / "server.crt", broker_dir / "server.key"
    written: list[Path] = []
    if not (ca_cert.exists() and ca_key.exists()):
        _openssl("req", "-x509", *EC_KEY, "-keyout", str(ca_key), "-out", str(ca_cert),
                 "-days", CA_DAYS, "-subj", "/CN=Estate Dispatch broker CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        cert.unlink(missing_ok=True)
        written += [ca_cert, ca_key]
    if not (cert.exists() and key.exists()):
        sans = ",".join([*(f"DNS:{n}" for n in names), "IP:127.0.0.1"])
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "server.csr", Path(tmp) / "server.ext"
            ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n",
                           encoding="utf-8")
            _openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr),
                     "-subj", f"/CN={names[0]}")
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey",
                     str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", SERVER_DAYS,
                     "-extfile", str(ext))
        written += [cert, key]
    for path in (ca_key, key):
        os.chmod(path, 0o600)
    for path in (ca_cert, cert):
        os.chmod(path, 0o644)
    (broker_dir / "ca.srl").unlink(missing_ok=True)
    return written


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise FileNotFoundError("the openssl command is needed to make the broker's "
                                "certificates")
    try:
        subprocess.run([binary, *args], check=True, capture_output=True, text=True,
                       timeout=60)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"openssl {args[0]} failed: {exc.stderr.strip()[:500]}") from exc


def _give_away(result: StackSecrets) -> None:
    """Each file to the user that reads it in its container."""
    out = result.out
    owners = {out / "broker" / name: MOSQUITTO_UID
              for name in ("passwd", "acl", "server.crt", "server.key", "ca.crt")}
    owners |= {result.mqtt_password_file(s.name): ESTATE_UID for s in STACK_SERVICES}
    owners[result.registry_url_file] = ESTATE_UID
    owners[out / "grafana" / "admin_password"] = GRAFANA_UID
    for path, uid in owners.items():
        os.chown(path, uid, uid)
    for path in (out / "broker" / "credentials.json", out / "broker" / "ca.key",
                 result.postgres_password_file):
        os.chown(path, ROOT_UID, ROOT_UID)
    # The CA certificate is read by every service and by Mosquitto: public, 0644.
