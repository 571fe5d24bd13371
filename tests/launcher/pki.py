"""A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost.

Made with the ``openssl`` command line tool (the venv has no ``cryptography`` package), the
same commands docs/security.md gives for a real deployment.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Short-lived: these certificates exist for one test run.
DAYS = "2"
# P-256 keys: generated in milliseconds, accepted by every TLS stack.
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    found = shutil.which("openssl")
    if found is None:
        pytest.fail("the openssl command is needed to make test certificates")
    subprocess.run([found, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "Estate test CA") -> tuple[Path, Path]:
    """A self-signed CA; returns (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
             "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / "ca.crt", directory / "ca.key"


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""
    ca_cert, ca_key = make_ca(directory)
    _openssl("req", "-new", *EC_KEY, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", "server.crt", "-days", DAYS,
             "-extfile", "server.ext", cwd=directory)
    return Pki(ca_cert, directory / "server.crt", directory / "server.key")
