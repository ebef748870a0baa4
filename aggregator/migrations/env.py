"""Alembic's entry point: runs the migrations on the connection the store hands over.

Called by :mod:`aggregator.migrations` with ``config.attributes["connection"]`` set (inside the
locked transaction). Run by the ``alembic`` command itself (``alembic -c
aggregator/migrations/alembic.ini ...``, for writing new revisions), it connects to the URL given
with ``-x db=URL`` or ``JEISSON_DB`` (default ``sqlite:///jeisson.db``); ``--sql`` prints the SQL
instead of running it.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from aggregator import tables

_DEFAULT_URL = "sqlite:///jeisson.db"


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    return str(
        context.get_x_argument(as_dictionary=True).get("db")
        or os.environ.get("JEISSON_DB")
        or _DEFAULT_URL
    )


async def _run_standalone() -> None:
    from aggregator.store import make_engine  # noqa: PLC0415 - avoid an import cycle

    engine = make_engine(_database_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def _run() -> None:
    if context.is_offline_mode():
        context.configure(url=_database_url(), target_metadata=tables.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_standalone())
    else:
        _configure_and_run(connection)


_run()
