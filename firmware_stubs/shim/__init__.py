"""MicroPython modules on CPython, so that the firmware in ``../device`` runs against a broker.

This directory goes on ``sys.path`` (not this package): ``umqtt.simple`` (over paho-mqtt),
``machine`` (a ``Pin`` whose interrupts are fired by hand) and ``utime`` (MicroPython's
clock functions). Test support only; see ``../README.md``.
"""

from pathlib import Path

PATH = Path(__file__).resolve().parent
"""What to put on ``sys.path``."""

MODULES = ("umqtt", "umqtt.simple", "machine", "utime")
"""The top-level module names the shim provides."""
