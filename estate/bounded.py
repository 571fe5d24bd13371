"""Device text, cut to a bound before it is logged, cached, stored or repeated.

A device controls its topic (up to 64 KiB in MQTT), every string of its payload and the
shape of its JSON. Whatever of it a service repeats (in a refusal's detail, a log line, a
cache key, a dead letter) is cut here first, so that the memory and the time one message
can cost do not grow with what the device chose to send.
"""

from __future__ import annotations

import reprlib
from typing import Final

TEXT_CHARS: Final = 120
"""Device text repeated in a detail or a log line, at most (plus a note of its length).
A valid topic is at most 220 characters and a valid SenML name at most 276 (three
identifiers and a local name): 120 shows what was meant without carrying what was sent."""

TOPIC_CHARS: Final = 256
"""A topic in a dead letter or a log line, at most: room for every valid topic."""


def cut(text: str, limit: int = TEXT_CHARS) -> str:
    """``text`` itself if it has at most ``limit`` characters, else its start and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text)} chars)"


def cut_joined(first: str, second: str, limit: int = TEXT_CHARS) -> str:
    """``cut(first + second)`` without building the whole joined string."""
    total = len(first) + len(second)
    if total <= limit:
        return first + second
    head = first[:limit]
    if len(head) < limit:
        head += second[: limit - len(head)]
    return f"{head}…({total} chars)"


_REPR = reprlib.Repr()
# A value's repr in a detail: enough to recognise it, bounded whatever its size or depth
# (reprlib slices strings before it quotes them, so a 200 KB string costs no more than a
# short one).
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlong = 40
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxdict = 4


def brief(value: object) -> str:
    """A repr of a device-sent value, at most about ``TEXT_CHARS`` characters."""
    return cut(_REPR.repr(value))
