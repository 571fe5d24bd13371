"""Run a real Mosquitto and a real InfluxDB 1.x as child processes on loopback.

The demo stack and the test fixtures both use these runners: each server gets its own
configuration file, data directory and free loopback ports, so nothing touches a system
instance and several can run side by side.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_binary(name: str) -> str:
    """Find a server binary, also in the sbin directories a non-root PATH lacks."""
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin")
         if (p := Path(d) / name).exists()), None)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; `make deps` installs it")
    return found


class ManagedServer:
    """A server process we own: start, wait until it answers, stop or kill it."""

    name = "server"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 20.0) -> None:
        if self._log is not None:  # left open by a process that died: a restart
            self._log.close()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see "
                                   f"{self.log_path}:\n{self._tail()}")
            if self.ready():
                log.info("%s is up (pid %s)", self.name, self.process.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not answer within {timeout_s} s:\n{self._tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in ``timeout_s``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A second, TLS-only loopback listener; ``cafile`` is the CA that signed ``certfile``."""

    certfile: Path
    keyfile: Path
    cafile: Path
    port: int | None = None


class Mosquitto(ManagedServer):
    """Mosquitto configured for ingest: nothing dropped, sessions persisted.

    By default anyone may connect to its plain loopback listener. With ``password_file``
    only known accounts may (anonymous clients are refused), with ``acl_file`` each is
    confined to its topics, and ``tls`` adds a TLS listener on ``tls_port``.
    """

    name = "mosquitto"

    def __init__(self, data_dir: Path, port: int | None = None, extra: str = "", *,
                 password_file: Path | None = None, acl_file: Path | None = None,
                 tls: TlsListener | None = None) -> None:
        super().__init__(data_dir)
        self.port = port or free_port()
        self.extra = extra
        self.password_file = password_file
        self.acl_file = acl_file
        self.tls = tls
        self.tls_port = (tls.port or free_port()) if tls else None

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def argv(self) -> list[str]:
        self.config_path.write_text(mosquitto_config(
            self.data_dir, self.port, self.extra, password_file=self.password_file,
            acl_file=self.acl_file, tls=self.tls, tls_port=self.tls_port))
        return [find_binary("mosquitto"), "-c", str(self.config_path)]

    def ready(self) -> bool:
        return _port_open(self.port) and (self.tls_port is None or _port_open(self.tls_port))

    def save_sessions(self, timeout_s: float = 5.0) -> bool:
        """Have Mosquitto write its persistence file now (SIGUSR1) and wait until it did.

        Between autosaves a broker that is killed loses the sessions created since the last
        one: a subscriber's session is gone, and what publishers send before it subscribes
        again reaches nobody. Saving once the services have subscribed closes that window.
        """
        database = self.data_dir / "mosquitto.db"
        if self.process is None or self.process.poll() is not None:
            return False
        before = database.stat().st_mtime_ns if database.exists() else None
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if database.exists() and database.stat().st_mtime_ns != before:
                return True
            time.sleep(0.05)
        return False


def mosquitto_config(data_dir: Path, port: int, extra: str = "", *,
                     password_file: Path | None = None, acl_file: Path | None = None,
                     tls: TlsListener | None = None, tls_port: int | None = None) -> str:
    # Run as whoever we are: as root, Mosquitto would otherwise switch to user
    # "mosquitto", which cannot write our data directory.
    user = getpass.getuser()
    anonymous = "false" if password_file else "true"
    security = ""
    if password_file:
        security += f"password_file {password_file}\n"
    if acl_file:
        security += f"acl_file {acl_file}\n"
    listener = ""
    if tls:
        # Listener options follow their `listener` line, so this block comes last: `extra`
        # keeps applying to the plain listener as before.
        listener = (f"listener {tls_port or tls.port} 127.0.0.1\n"
                    f"certfile {tls.certfile}\nkeyfile {tls.keyfile}\ncafile {tls.cafile}\n")
    return f"""# Written by Estate Dispatch; see docs/operations.md.
user {user}
listener {port} 127.0.0.1
allow_anonymous {anonymous}
{security}persistence true
persistence_location {data_dir}/
# Save the session state every 10 s as well as on a clean shutdown.
autosave_interval 10
# The default of 1,000 queued messages per client silently drops QoS 1 messages when an
# ingest worker falls behind. Queue without a count limit, bounded by bytes instead.
max_queued_messages 0
max_queued_bytes 1073741824
# Let an MQTT 5 client's Receive Maximum set its in-flight window: an ingest worker holds
# a whole batch un-acknowledged until it is written.
max_inflight_messages 0
log_type error
log_type warning
log_type notice
log_timestamp_format %Y-%m-%dT%H:%M:%S
{extra}
{listener}"""


class InfluxDB(ManagedServer):
    """InfluxDB 1.x with its own directories, loopback ports and reporting off."""

    name = "influxd"

    def __init__(self, data_dir: Path, http_port: int | None = None,
                 rpc_port: int | None = None) -> None:
        super().__init__(data_dir)
        self.http_port = http_port or free_port()
        self.rpc_port = rpc_port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def argv(self) -> list[str]:
        config = self.data_dir / "influxdb.conf"
        config.write_text(influx_config(self.data_dir, self.http_port, self.rpc_port))
        return [find_binary("influxd"), "run", "-config", str(config)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False


def influx_config(data_dir: Path, http_port: int, rpc_port: int) -> str:
    return f"""# Written by Estate Dispatch; see docs/operations.md.
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data_dir}/meta"

[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false

[monitor]
  # No _internal database: it would double the write load of a small machine.
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false

[logging]
  level = "warn"

[continuous_queries]
  enabled = true
"""


def environment_with_path() -> dict[str, str]:
    """The environment for child services, with sbin on PATH for the server binaries."""
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    return env
