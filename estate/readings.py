"""Readings and rejections: what the codec produces and the services pass around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from estate.units import QUANTITIES


class Reading(NamedTuple):
    """One value of one quantity from one device at one instant, in the canonical unit.

    A NamedTuple rather than a frozen dataclass: just as immutable, and five times cheaper
    to build (0.3 against 1.5 microseconds here), which matters when ingest builds a few
    hundred thousand a second.

    The identifiers were validated when the topic was parsed, the quantity is one of
    ``estate.units.QUANTITIES`` and ``channel`` is an identifier or empty, so none of the
    strings needs escaping downstream.
    """

    estate: str
    facility: str
    device: str
    quantity: str
    channel: str
    value: float
    time_ms: int

    @property
    def unit(self) -> str:
        """The canonical unit of ``value``."""
        return QUANTITIES[self.quantity].unit

    @property
    def key(self) -> tuple[str, str, str, str, str, int]:
        """Point identity: a reading with the same key overwrites this one in storage."""
        return (self.estate, self.facility, self.device, self.quantity, self.channel,
                self.time_ms)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message or one of its records was refused.

    ``reason`` is a stable machine code (see docs/contract.md for the list); ``detail``
    says in words exactly what was wrong; ``record`` is the record's index in the SenML
    pack, or ``None`` when the whole message was refused.
    """

    reason: str
    detail: str
    record: int | None = None


@dataclass(frozen=True, slots=True)
class DecodedPack:
    """The good readings of a message and the rejections of its bad parts."""

    readings: list[Reading]
    rejections: list[Rejection]
