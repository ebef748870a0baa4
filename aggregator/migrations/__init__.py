"""Versioned schema migrations of the aggregator's database (alembic), run from Python.

The store applies them when it opens (:func:`upgrade`); ``jeisson-aggregator db upgrade`` does
the same from the command line. Only one process migrates at a time: on PostgreSQL an advisory
lock held for the migration transaction serialises concurrent starts, on SQLite a ``BEGIN
IMMEDIATE`` transaction does. Each run is one transaction, so a failed migration leaves the
database as it was. A database created before migrations existed (tables, no version table) is
stamped with the first revision before upgrading, so nothing is recreated or lost.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Final

# alembic logs every plugin it sets up, at INFO, while it is imported: keep that chatter out of
# the aggregator's INFO logs unless someone configured alembic's logger on purpose.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as MigrationError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "FIRST_REVISION",
    "HEAD",
    "MIGRATION_LOCK_KEY",
    "MigrationError",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

HEAD: Final = "head"
FIRST_REVISION: Final = "0001"
"""The revision that created the schema ``metadata.create_all`` used to create."""

MIGRATION_LOCK_KEY: Final = 0x4A45495353  # "JEISS": the PostgreSQL advisory lock of migrations
_LOGGER = logging.getLogger(__name__)
_HERE: Final = Path(__file__).resolve().parent
_VERSION_TABLE: Final = "alembic_version"
_LEGACY_MARKER_TABLE: Final = "events"
_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config() -> Config:
    """Return the alembic configuration of the packaged migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """Return the newest revision of the packaged migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no migrations are packaged")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at, or None for a database never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = HEAD) -> str | None:
    """Migrate the database up to ``revision`` (default: the newest); return where it ends."""
    return await _locked(engine, lambda conn: _upgrade(conn, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> str | None:
    """Migrate the database down to ``revision`` (``base`` empties it); return where it ends."""
    return await _locked(engine, lambda conn: _command(conn, command.downgrade, revision))


def _in_process_lock() -> asyncio.Lock:
    """Return this event loop's migration lock.

    alembic keeps the running migration in a process-wide global, so two migrations on one
    loop must not interleave, even on different databases.
    """
    loop = asyncio.get_running_loop()
    lock = _IN_PROCESS.get(loop)
    if lock is None:
        lock = _IN_PROCESS[loop] = asyncio.Lock()
    return lock


async def _locked(engine: AsyncEngine, migrate: Callable[[Connection], None]) -> str | None:
    """Run ``migrate`` in one transaction that no other migrating process can enter."""
    async with _in_process_lock(), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Held until the transaction ends: a second process waits here, then finds the
            # database already at head and does nothing.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        elif conn.dialect.name == "sqlite":
            # pysqlite runs DDL outside transactions unless one is begun explicitly; IMMEDIATE
            # takes the write lock now, so a second process waits (busy timeout) instead.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            before = await conn.run_sync(_current)
            await conn.run_sync(migrate)
            reached = await conn.run_sync(_current)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
    if reached != before:
        _LOGGER.info("Database schema migrated from %s to %s", before or "empty", reached)
    return reached


def _upgrade(conn: Connection, revision: str) -> None:
    tables = inspect(conn)
    if tables.has_table(_LEGACY_MARKER_TABLE) and not tables.has_table(_VERSION_TABLE):
        _command(conn, command.stamp, FIRST_REVISION)
    _command(conn, command.upgrade, revision)


def _command(conn: Connection, run: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    run(config, revision)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()
