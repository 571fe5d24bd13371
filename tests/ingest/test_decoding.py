"""Decoding in a process of its own: the same results as in a thread, the register history
kept between calls, a new process when one dies and none left behind; and the bound on
what waits to be decoded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import orjson
import pytest

from adapters.mqtt import InboundMessage
from ingest.decoding import ProcessDecoder, ThreadDecoder, _serve
from ingest.pipeline import Rules
from ingest.service import Ingestor

TOPIC = "estate/v1/demo/metal/main/telemetry"
NOW_MS = time.time_ns() // 1_000_000


def _pack(*records: dict[str, object]) -> bytes:
    return orjson.dumps(list(records))


MESSAGES = [
    (TOPIC, _pack({"bt": NOW_MS / 1000 - 60, "n": "energy_import", "u": "kWh", "v": 5000.0},
                  {"n": "power", "u": "kW", "v": 12.5})),
    (TOPIC, b"{not json"),
    ("estate/v1/demo/metal/other/telemetry",
     _pack({"bn": "demo:metal:main:", "bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 1.0})),
    (TOPIC, _pack({"bt": NOW_MS / 1000 - 30, "n": "energy_import", "u": "kWh", "v": 4900.0},
                  {"n": "voltage.l1", "u": "V", "v": 231.0})),
    ("not/a/topic", b"[]"),
]


@pytest.fixture(scope="module")
def in_process() -> Iterator[ProcessDecoder]:
    decoder = ProcessDecoder()
    yield decoder
    decoder.close()


def test_a_process_decodes_as_a_thread_does(in_process: ProcessDecoder) -> None:
    assert in_process.pid not in (0, os.getpid())
    # One call, and the same messages split over two calls: the register history (5,000
    # then 4,900 kWh is a register going backwards) lives on in the process between calls.
    expected = ThreadDecoder()(MESSAGES, NOW_MS, 7)
    reasons = [[r.reason for r in d.dead_letters] for d in expected]
    assert reasons == [[], ["malformed-json"], ["identity-mismatch"], ["counter-backwards"],
                       ["bad-topic"]]
    assert in_process(MESSAGES[:2], NOW_MS, 7) + in_process(MESSAGES[2:], NOW_MS, 8) == expected


def test_a_dead_decoding_process_is_replaced(in_process: ProcessDecoder) -> None:
    first = in_process.pid
    os.kill(first, signal.SIGKILL)
    decoded = in_process(MESSAGES[:1], NOW_MS, 0)
    assert decoded[0].readings == 2
    assert in_process.pid not in (0, first)



class _DieOnBoom:
    """The decoding process's end of the pipe, ending the process on a payload b"boom"
    (a stand-in for an input that would crash it: none is known)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def recv(self) -> Any:
        request = self.connection.recv()
        if request is not None and any(payload == b"boom" for _, payload in request[0]):
            os._exit(3)
        return request

    def send(self, answer: Any) -> None:
        self.connection.send(answer)


def _serve_dying_on_boom(connection: Connection, rules: Rules) -> None:
    _serve(_DieOnBoom(connection), rules)  # type: ignore[arg-type]


def test_a_message_that_ends_the_decoder_every_time_is_dead_lettered() -> None:
    decoder = ProcessDecoder(serve=_serve_dying_on_boom)
    try:
        first = decoder.pid
        plain = (TOPIC, _pack({"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 3.0}))
        decoded = decoder([MESSAGES[0], (TOPIC, b"boom"), plain], NOW_MS, 40)
        # The others are kept; the one that ends the process each time is a dead letter.
        assert [d.readings for d in decoded] == [2, 0, 1]
        assert [r.reason for r in decoded[1].dead_letters] == ["decoder-crashed"]
        assert "exit code 3" in decoded[1].dead_letters[0].detail
        assert decoded[1].lines[0].startswith(
            "dead_letter,device=main,estate=demo,facility=metal,reason=decoder-crashed ")
        assert decoder.pid not in (0, first)
        assert decoder(MESSAGES[:1], NOW_MS, 0)[0].readings == 2  # and it goes on
    finally:
        decoder.close()

def test_the_decoding_process_ends_when_the_service_is_killed() -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", "from ingest.decoding import ProcessDecoder\n"
         "import time\nd = ProcessDecoder()\nprint(d.pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    with service:
        assert service.stdout is not None
        child = int(service.stdout.readline())
        assert _alive(child)
        service.kill()
        service.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the decoding process outlived the service"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class _Store:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_lines(self, lines: list[str], retention_policy: str | None = None) -> None:
        self.lines += lines


def test_the_network_thread_waits_while_undecoded_payloads_hold_the_bound() -> None:
    acked: list[int] = []
    payload = _pack({"bt": NOW_MS / 1000, "n": "power", "u": "kW", "v": 1.0})
    ingestor = Ingestor(_Store(), lambda mid, qos: acked.append(mid),  # type: ignore[arg-type]
                        batch_size=10, flush_interval_s=0.05,
                        max_queued_bytes=2 * len(payload))
    messages = [InboundMessage(TOPIC, payload, 1, False, mid) for mid in range(1, 4)]
    network = threading.Thread(target=lambda: [ingestor.submit(m) for m in messages])
    network.start()
    time.sleep(0.5)
    # Two payloads fit; the third waits, as nothing is decoded yet.
    assert network.is_alive()
    assert ingestor.pending == 2
    ingestor.start()
    network.join(10)
    assert not network.is_alive()
    deadline = time.monotonic() + 10
    while len(acked) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    ingestor.stop()
    assert acked == [1, 2, 3]
