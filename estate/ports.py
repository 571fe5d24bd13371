"""Ports: what the services need from the outside world, as protocols.

Each port has one adapter per backend in the ``adapters`` package; the services are handed
an adapter by their composition root and never import a backend library themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL answer: its name, its GROUP BY tags, columns and rows."""

    name: str
    columns: tuple[str, ...]
    values: list[list[Any]]
    tags: Mapping[str, str] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dictionaries, the series' tags merged into each."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))} for row in self.values]


class TimeSeriesStore(Protocol):
    """Line protocol in, InfluxQL out: served by InfluxDB 1.x, 2.x (v1 API) and 3.x."""

    def ensure_database(self) -> None:
        """Create the database and its retention policies if they do not exist."""

    def write_lines(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        """Write lines of line protocol with nanosecond timestamps, all or nothing.

        ``retention_policy`` names where they go when it is not the database's default.

        Raises ``StoreUnavailable`` when a retry may succeed and ``StoreRejected`` when
        the lines themselves are refused.
        """

    def query(self, influxql: str, params: Mapping[str, str | float | int] | None = None,
              ) -> list[Series]:
        """Run one InfluxQL statement with bound parameters; times come back in epoch ms."""

    def ping(self) -> str:
        """Return the server's version; raise ``StoreUnavailable`` if it does not answer."""

    def close(self) -> None:
        """Release connections."""
