"""MicroPython's ``time`` module on CPython: the tick functions and ``sleep_ms``.

``time()`` is CPython's, a float, as on MicroPython's unix port (ESP32 ports return whole
seconds). Ticks wrap at 2**30 ms, as on MicroPython.
"""

import time as _time
from time import gmtime, localtime, time

__all__ = ["gmtime", "localtime", "sleep", "sleep_ms", "sleep_us", "ticks_add", "ticks_diff",
           "ticks_ms", "ticks_us", "time"]

_PERIOD = 1 << 30
_HALF = _PERIOD >> 1
sleep = _time.sleep


def ticks_ms() -> int:
    return int(_time.monotonic() * 1000) % _PERIOD


def ticks_us() -> int:
    return int(_time.monotonic() * 1_000_000) % _PERIOD


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) % _PERIOD


def ticks_diff(end: int, start: int) -> int:
    return ((end - start + _HALF) % _PERIOD) - _HALF


def sleep_ms(ms: int) -> None:
    _time.sleep(ms / 1000)


def sleep_us(us: int) -> None:
    _time.sleep(us / 1_000_000)
