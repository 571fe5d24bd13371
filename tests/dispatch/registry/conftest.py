"""Real registry databases: an SQLite file per test, and a throwaway PostgreSQL 15 cluster
per session (a fresh database per test).

PostgreSQL refuses to run as root, so when the tests run as root the cluster's directory is
given to the ``postgres`` user and its programs run through ``runuser``. The directory is
made directly under the system temp dir: pytest's own temp dirs are private to root.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from dispatch.registry.db import make_engine
from launcher.servers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_FIXTURES = {"postgres", "pg_url", "db_url", "engine"}
_databases = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "registry" in item.nodeid and PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@dataclass(frozen=True)
class Postgres:
    port: int
    socket_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"registry_{next(_databases)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed: run scripts/install-system-deps.sh")
    root = Path(tempfile.mkdtemp(prefix="registry-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(_as_postgres([
        ctl, "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"]),
        check=True, capture_output=True)
    try:
        yield Postgres(port, root)
    finally:
        subprocess.run(_as_postgres([ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A new, empty PostgreSQL database."""
    return postgres.url(postgres.create_database())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty registry database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.url(pg.create_database())


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database of each kind (not migrated)."""
    e = make_engine(db_url)
    yield e
    e.dispose()
