"""Supervision of the demo's child processes: a child that dies is restarted, with backoff.

One thread per child waits on its process, so a death (an exit, a crash, a SIGKILL) is
noticed and logged the moment it happens, not at the next poll. The child is then
started again after a delay that doubles with each death in a row (``Backoff``), and a
child that stayed up long enough starts the count afresh. Stopping goes in the reverse
order of starting, and no restart begins once stopping has.

The supervisor's view of its children (state, pid, restarts, the last exit) is written to
a JSON file on every change and served over HTTP (``/status``, ``/health``,
``/metrics``), for the operators' page and for monitoring (docs/operations.md).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.ops_http import wait_healthy
from launcher.servers import ManagedServer

log = logging.getLogger(__name__)

# How long a service gets to stop on SIGTERM before it is killed: ingest may spend up to
# 30 s writing or spooling what it holds (docs/operations.md).
SERVICE_STOP_TIMEOUT_S: Final = 30.0
# How long a service with a readiness URL may take to become ready: seconds on a quiet
# machine, many times that on a loaded one.
SERVICE_READY_TIMEOUT_S: Final = 120.0
# Once a service has exited, the rest of its output is in the pipe already: reading it
# takes milliseconds, and a grandchild holding the pipe open must not hold up the stop.
PUMP_DRAIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restarting a child that died ``deaths`` times in a row."""

    # Half a second: a server killed by accident is back within a second, and a child that
    # dies at once on start cannot spin the machine.
    initial_s: float = 0.5
    # At most half a minute between attempts: a child that cannot start (a port taken, a
    # broken config) is retried often enough to recover soon after the cause is fixed.
    max_s: float = 30.0
    # A child up this long is taken to have recovered: its next death waits initial_s again.
    reset_after_s: float = 60.0

    def delay(self, deaths: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, deaths - 1)))


class Child(Protocol):
    """Something the supervisor runs: started (and ready) by ``launch``, ended by ``end``."""

    name: str

    def launch(self) -> subprocess.Popen[bytes]: ...

    def end(self) -> None: ...


class ServerChild:
    """A server runner (Mosquitto, InfluxDB): launched once it answers on its port."""

    def __init__(self, server: ManagedServer, name: str | None = None) -> None:
        self.server = server
        self.name = name or server.name

    def launch(self) -> subprocess.Popen[bytes]:
        self.server.start()
        assert self.server.process is not None
        return self.server.process

    def end(self) -> None:
        self.server.stop()


class ServiceChild:
    """A service process whose output is copied to ours, each line prefixed with its name;
    with ``ready_url`` (its ``/health``), launched once that answers ready."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], *,
                 ready_url: str | None = None,
                 ready_timeout_s: float = SERVICE_READY_TIMEOUT_S) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.ready_url = ready_url
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        assert process.stdout is not None
        self._pump = threading.Thread(target=_pump, args=(self.name, process.stdout),
                                      name=f"log-{self.name}", daemon=True)
        self._pump.start()
        self.process = process
        if self.ready_url is not None:
            self._wait_ready(process, self.ready_url)
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], url: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while process.poll() is None and time.monotonic() < deadline:
            if wait_healthy(url, 1.0) is not None:
                log.info("%s ready", self.name)
                return
        code = process.poll()
        self.end()
        raise RuntimeError(f"{self.name} not ready within {self.ready_timeout_s:.0f} s "
                           f"(exit code {code})")

    def end(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SERVICE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name,
                        SERVICE_STOP_TIMEOUT_S)
            process.kill()
            process.wait()
        if self._pump is not None:
            # Its last lines (how it stopped) still belong in our log.
            self._pump.join(PUMP_DRAIN_S)


def _pump(name: str, stream: IO[bytes]) -> None:
    # The pipe is closed at its end: a child that died is not stopped through end(), so
    # nothing else would close it.
    with stream:
        for raw in iter(stream.readline, b""):
            sys.stdout.write(f"{name:>9} | {raw.decode(errors='replace')}")
            sys.stdout.flush()


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(slots=True)
class ChildStatus:
    """What the supervisor knows of one child; ``state`` is starting, running, down
    (dead, waiting for its restart) or stopped."""

    name: str
    state: str = "starting"
    pid: int | None = None
    restarts: int = 0
    since: float = field(default_factory=time.time)
    last_exit: str | None = None
    last_exit_at: float | None = None
    restart_at: float | None = None
    last_error: str | None = None


class Supervisor:
    """Starts children in order, restarts those that die, stops them in reverse order."""

    def __init__(self, children: Sequence[Child], status_file: Path | None = None,
                 backoff: Backoff = Backoff(),
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._children = list(children)
        self._status_file = status_file
        self._backoff = backoff
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._status = {c.name: ChildStatus(c.name) for c in self._children}
        self._deaths = dict.fromkeys(self._status, 0)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    # --- starting and stopping ----------------------------------------------------------

    def start(self) -> None:
        """Start every child in order, each once the one before is up; raise if one fails
        (the ones started are stopped again)."""
        try:
            for child in self._children:
                self._launch(child)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop restarting, then end the children in reverse order."""
        self._stopping.set()
        for child in reversed(self._children):
            try:
                child.end()
            except Exception:
                log.exception("stopping %s failed", child.name)
            self._update(child.name, state="stopped", pid=None, restart_at=None,
                         since=time.time())
        for thread in self._threads:
            thread.join(5)

    def _launch(self, child: Child) -> None:
        self._update(child.name, state="starting", pid=None)
        process = child.launch()
        with self._lock:
            self._processes[child.name] = process
        self._update(child.name, state="running", pid=process.pid, since=time.time(),
                     restart_at=None, last_error=None)
        watcher = threading.Thread(target=self._watch, args=(child, process),
                                   name=f"watch-{child.name}", daemon=True)
        self._threads.append(watcher)
        watcher.start()

    # --- watching and restarting ------------------------------------------------------------

    def _watch(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        started = time.monotonic()
        code = process.wait()
        if self._stopping.is_set():
            return
        how = describe_exit(code)
        with self._lock:
            if time.monotonic() - started >= self._backoff.reset_after_s:
                self._deaths[child.name] = 0
            self._deaths[child.name] += 1
            delay = self._backoff.delay(self._deaths[child.name])
        log.error("%s (pid %d) died: %s; restarting it in %.1f s", child.name, process.pid,
                  how, delay)
        now = time.time()
        self._update(child.name, state="down", pid=None, since=now, last_exit=how,
                     last_exit_at=now, restart_at=now + delay)
        self._restart(child, delay)

    def _restart(self, child: Child, delay: float) -> None:
        while not self._stopping.wait(delay):
            try:
                self._launch(child)
            except Exception as exc:
                with self._lock:
                    self._deaths[child.name] += 1
                    delay = self._backoff.delay(self._deaths[child.name])
                log.error("restarting %s failed: %s; trying again in %.1f s", child.name,
                          exc, delay)
                self._update(child.name, state="down", last_error=str(exc)[:500],
                             restart_at=time.time() + delay)
                continue
            with self._lock:
                restarts = self._status[child.name].restarts + 1
            self._update(child.name, restarts=restarts)
            log.warning("%s restarted (pid %s, restart %d)", child.name,
                        self._status[child.name].pid, restarts)
            return

    # --- status -------------------------------------------------------------------------------

    def _update(self, name: str, **changes: Any) -> None:
        with self._lock:
            status = self._status[name]
            for key, value in changes.items():
                setattr(status, key, value)
            document = self._document()
        if self._status_file is not None:
            write_atomically(self._status_file, orjson.dumps(document, option=orjson.OPT_INDENT_2))
        if self._on_change is not None:
            self._on_change(document)

    def _document(self) -> dict[str, Any]:
        children = [asdict(self._status[c.name]) for c in self._children]
        healthy = all(c["state"] == "running" for c in children)
        return {"status": "ok" if healthy else "degraded", "pid": os.getpid(),
                "updated_at": time.time(), "children": children}

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._document()

    def health(self) -> tuple[bool, dict[str, Any]]:
        document = self.status()
        return document["status"] == "ok", document

    def collector(self) -> Collector:
        return _SupervisorCollector(self)


class _SupervisorCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        children = self._supervisor.status()["children"]
        up = GaugeMetricFamily("supervisor_child_up", "1 while the child runs", labels=["child"])
        restarts = CounterMetricFamily("supervisor_child_restarts",
                                       "Times the child was restarted after dying",
                                       labels=["child"])
        for child in children:
            up.add_metric([child["name"]], 1.0 if child["state"] == "running" else 0.0)
            restarts.add_metric([child["name"]], child["restarts"])
        yield up
        yield restarts


def supervisor_registry(supervisor: Supervisor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(supervisor.collector())
    return registry


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
