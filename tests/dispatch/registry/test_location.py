"""A registry URL read for the tools beside SQLAlchemy (backup and restore)."""

from __future__ import annotations

import pytest

from dispatch.registry.location import registry_location
from estate.errors import ConfigError


def test_a_postgres_url_in_its_parts_and_its_password_never_shown() -> None:
    where = registry_location("postgresql+psycopg://ana:s3cret@db.local:5433/registry")
    assert (where.backend, where.host, where.port, where.username, where.password,
            where.database) == ("postgresql", "db.local", 5433, "ana", "s3cret", "registry")
    assert "s3cret" not in repr(where)


def test_a_sqlite_url_names_its_file() -> None:
    where = registry_location("sqlite:////var/lib/estate/registry.sqlite")
    assert (where.backend, where.database) == ("sqlite", "/var/lib/estate/registry.sqlite")
    assert where.host is None


def test_a_url_sqlalchemy_cannot_read_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a registry URL"):
        registry_location("no url at all")
