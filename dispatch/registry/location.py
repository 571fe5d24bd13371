"""Where a registry URL points, in plain words, for the tools that work on the database
beside SQLAlchemy (``estate backup`` runs ``pg_dump`` or SQLite's online backup): the URL
is read by SQLAlchemy's own parser here, so it means the same to them as to the services.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from estate.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RegistryLocation:
    backend: str  # "sqlite", "postgresql", ... (the dialect without its driver)
    host: str | None
    port: int | None
    username: str | None
    password: str | None = None
    database: str | None = None  # a SQLite file's path; PostgreSQL's database name

    def __repr__(self) -> str:  # never the password
        return (f"RegistryLocation({self.backend!r}, host={self.host!r}, port={self.port!r}, "
                f"username={self.username!r}, database={self.database!r})")


def registry_location(url: str) -> RegistryLocation:
    """The parts of a registry URL; ``ConfigError`` for one SQLAlchemy cannot read."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a registry URL: {exc}") from exc
    return RegistryLocation(parsed.get_backend_name(), parsed.host, parsed.port,
                            parsed.username,
                            None if parsed.password is None else str(parsed.password),
                            parsed.database)
