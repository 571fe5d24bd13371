"""The names of SenML records: which quantity and channel a record's name stands for, and
whether it may speak for the topic's identity at all.

A record's resolved name is ``bn + n``; its last ``:``-separated part is the local name
``quantity`` or ``quantity.channel`` (``voltage.l1``), and whatever precedes it must be
the topic's identity (``estate:facility:device:``). Local names repeat in every pack, so
each is resolved once and cached (bounded in count and bytes); a name longer than any
valid one is refused from its first characters, neither cached nor copied.
"""

from __future__ import annotations

from typing import Any, Final

from estate.bounded import brief, cut, cut_joined
from estate.readings import Rejection
from estate.units import CHANNELS, QUANTITIES, Quantity

# The longest quantity name, and the longest local name that can be valid (a quantity, a
# dot and a 64-character channel): a longer one is refused without being cached or copied.
_QUANTITY_CHARS: Final = max(len(name) for name in QUANTITIES)
LONGEST_LOCAL_NAME: Final = _QUANTITY_CHARS + 1 + 64


def record_quantity(name: Any, index: int, base_name: str, base_mismatch: str | None,
                    base_tail: str, own_prefix: str, extra_fields: frozenset[str],
                    ) -> tuple[str, Quantity, str] | Rejection:
    """(local name, quantity, channel) of a record named ``name`` under the base name
    ``base_name`` (``base_mismatch`` and ``base_tail``: what ``_base_parts`` of
    ``estate.senml`` made of it), or why it is refused. ``extra_fields``: the
    ``quantity.channel`` names this device may send beyond the contract's channels."""
    if type(name) is not str:
        return Rejection("bad-field-type", f"n must be a string, got {brief(name)}", index)
    colon = name.rfind(":")
    if colon >= 0:
        # The name carries the identity, or its end: bn + the name up to its last colon
        # must be the topic's, compared without joining them (bn may be long).
        if (len(base_name) + colon + 1 != len(own_prefix)
                or not own_prefix.startswith(base_name)
                or not own_prefix.endswith(name[: colon + 1])):
            return Rejection("identity-mismatch",
                             f"record names {cut_joined(base_name, name[: colon + 1])!r} but "
                             f"the topic is {own_prefix!r}", index)
        start, rest = "", name[colon + 1:]
    elif base_mismatch is not None:
        return Rejection("identity-mismatch", base_mismatch, index)
    else:
        start, rest = base_tail, name
    if len(start) + len(rest) > LONGEST_LOCAL_NAME:
        reason, detail = _long_local(start, rest)
        return Rejection(reason, detail, index)
    local = start + rest if start else rest
    resolved = _LOCAL_NAMES.get(local)
    if resolved is None:
        resolved = resolve_local(local)
        if len(_LOCAL_NAMES) >= _LOCAL_NAMES_MAX:
            _LOCAL_NAMES.clear()
        _LOCAL_NAMES[local] = resolved
    quantity, channel = resolved
    if type(quantity) is str:
        if quantity != "unknown-channel" or local not in extra_fields:
            return Rejection(quantity, channel, index)
        quantity_name, _, channel = local.partition(".")
        quantity = QUANTITIES[quantity_name]
    assert isinstance(quantity, Quantity)
    return local, quantity, channel


def resolve_local(local: str) -> tuple[Quantity, str] | tuple[str, str]:
    """``quantity`` or ``quantity.channel`` -> (Quantity, channel), or (reason, detail)."""
    quantity_name, dot, channel = local.partition(".")
    quantity = QUANTITIES.get(quantity_name)
    if quantity is None:
        return "unknown-quantity", f"{cut(local)!r} is not a known quantity"
    if dot and not _valid_channel(channel):
        return "bad-name", f"channel {cut(channel)!r} is not 1-64 of [A-Za-z0-9_-]"
    if dot and channel not in CHANNELS[quantity_name]:
        return "unknown-channel", (f"{quantity_name} has no channel {channel!r} in the "
                                   "contract, nor in the estate file for this device")
    return quantity, channel


def _long_local(start: str, rest: str) -> tuple[str, str]:
    """(reason, detail) for the local name ``start + rest``, longer than any valid one,
    decided from its first characters: no quantity name is longer than those."""
    head = (start[: _QUANTITY_CHARS + 1] + rest[: _QUANTITY_CHARS + 1])[: _QUANTITY_CHARS + 1]
    quantity_name, dot, _ = head.partition(".")
    shown = cut_joined(start, rest)
    if dot and quantity_name in QUANTITIES:
        return "bad-name", f"the channel of {shown!r} is not 1-64 of [A-Za-z0-9_-]"
    return "unknown-quantity", f"{shown!r} is not a known quantity"


# Local names repeat in every pack ("power", "voltage.l1"...): resolve each once. Bounded
# in count, since a hostile device could send endless distinct names, and in bytes: only
# names that can be valid (at most LONGEST_LOCAL_NAME characters) are kept, with details
# that are cut, so the cache holds at most about 10,000 x 0.5 KB = 5 MB.
_LOCAL_NAMES: dict[str, tuple[Quantity, str] | tuple[str, str]] = {}
_LOCAL_NAMES_MAX = 10_000


def _plain_names() -> dict[tuple[Any, Any], tuple[str, str, float, float]]:
    """(local name, canonical unit) -> (quantity, channel, minimum, maximum) for every name
    the contract allows: each quantity alone and with each of its ``CHANNELS``."""
    names: dict[tuple[Any, Any], tuple[str, str, float, float]] = {}
    for quantity in QUANTITIES.values():
        for channel in ("", *sorted(CHANNELS[quantity.name])):
            local = f"{quantity.name}.{channel}" if channel else quantity.name
            names[(local, quantity.unit)] = (quantity.name, channel, quantity.minimum,
                                             quantity.maximum)
    return names


PLAIN_NAMES: Final = _plain_names()


def _valid_channel(channel: str) -> bool:
    return 0 < len(channel) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-")
                                          for c in channel)
