"""Alembic's environment for the registry.

``dispatch.registry.db.upgrade`` passes an open connection in ``config.attributes``; the
``alembic`` command line (``-c dispatch/registry/alembic.ini``) connects to
``sqlalchemy.url`` or, when set, ``DISPATCH_REGISTRY_URL``. Batch mode is on so that
migrations that alter tables also work on SQLite (which recreates the table).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from dispatch.registry.db import make_engine
from dispatch.registry.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext
                ) -> str | Literal[False]:
    """Write the registry's own column types as plain SQLAlchemy types in revisions.

    A revision must not import the models: it has to keep working after they change.
    """
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = os.environ.get("DISPATCH_REGISTRY_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no registry URL: set DISPATCH_REGISTRY_URL or sqlalchemy.url")
    return url


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
