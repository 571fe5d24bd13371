"""Engines, sessions and migrations of the registry database, and ``Registry``, what the
rest of dispatch holds of it.

An SQLite file is the default (``sqlite:///var/registry.sqlite``); PostgreSQL by URL
(``postgresql+psycopg://user:password@host/db``). The schema belongs to Alembic:
``upgrade(url)`` brings a database to the newest revision, and nothing else creates
tables (no ``metadata.create_all`` outside tests).

SQLAlchemy is imported in ``dispatch.registry`` only; its errors become
``estate.errors.RegistryError`` here, in ``translated``, and nowhere else.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from estate.errors import RegistryError
from estate.fault_points import hold_while_stopped

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).with_name("migrations")
DEFAULT_URL: Final = "sqlite:///var/registry.sqlite"

# How long an SQLite connection waits for another writer before "database is locked":
# writers (the lease renewal, the job store, the loader) hold the file for milliseconds,
# so 30 s is only reached when something is stuck.
SQLITE_BUSY_TIMEOUT_S: Final = 30.0


# A process's registry writes go one at a time. SQLite takes one writer at a time anyway
# (the others wait in its busy handler, which sleeps in steps); here they wait in turn
# instead, and a process paused on purpose (``estate.fault_points``) is paused between
# writes, never inside one. Writes are a few milliseconds each: no throughput is lost.
_WRITES = threading.RLock()


@contextmanager
def one_writer() -> Iterator[None]:
    """Hold this process's registry write turn (``Registry.writing`` and the scheduler
    lease's statements take it)."""
    with _WRITES:
        yield


hold_while_stopped(one_writer)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite leaves foreign keys off unless each connection asks.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the web view read while the worker writes.
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``; for an SQLite file, its directory is made if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = options.pop("connect_args", {})
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        # The scheduler's threads share the pool; SQLite itself serialises writers.
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **options)
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    options.setdefault("pool_pre_ping", True)
    return create_engine(url, **options)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (no reload per access)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code so no ini file has to be found at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # ConfigParser treats "%" as interpolation: a password may contain one.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Any fixed number: the PostgreSQL advisory lock every process takes to migrate.
_MIGRATION_LOCK_KEY: Final = 0x65737461  # "esta"


@contextmanager
def _one_migration_at_a_time(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes (the web view and the worker both migrate at
    start): the second waits, then finds the schema at head and does nothing. SQLite has
    no lock for this that spans the DDL of a whole migration, so a lock file beside the
    database file does it (stdlib ``fcntl``: one call, no library needed); PostgreSQL
    takes a transaction-scoped advisory lock in ``upgrade`` itself."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database at ``target`` (a URL or an engine) to ``revision``; safe to call
    from several processes at once."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with _one_migration_at_a_time(engine), engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()
    log.info("registry at %s migrated to %s", engine.url.render_as_string(hide_password=True),
             revision)


def downgrade(target: str | Engine, revision: str) -> None:
    """Migrate the database at ``target`` back to ``revision`` (``base``: empty)."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


# What a registry error says of its cause, at most: a driver's message can hold a statement.
_CAUSE_IN_TEXT: Final = 200


@contextmanager
def translated() -> Iterator[None]:
    """The one place where SQLAlchemy's errors become ``RegistryError``."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0][:_CAUSE_IN_TEXT]
        raise RegistryError(f"the registry is unavailable: {type(exc).__name__}: "
                            f"{cause}") from exc


class Registry:
    """The registry database as the rest of dispatch holds it: an engine, its sessions,
    migrations. Its repositories (``CommandStore``, ``PlanStore``, ...) take one."""

    def __init__(self, target: str | Engine) -> None:
        self._owned = isinstance(target, str)
        self.engine = make_engine(target) if isinstance(target, str) else target
        self._sessions = session_factory(self.engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (safe from several processes)."""
        with translated():
            upgrade(self.engine)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; errors translated."""
        with translated(), self._sessions() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in one transaction, committed at the end, rolled back on an error."""
        with one_writer(), translated(), self._sessions.begin() as session:
            yield session

    def answers(self) -> bool:
        """True if the database answers a trivial query now (readiness)."""
        try:
            with self.reading() as session:
                session.execute(text("SELECT 1"))
        except RegistryError:
            return False
        return True

    def close(self) -> None:
        """Release the connections (of an engine the registry made)."""
        if self._owned:
            self.engine.dispose()
