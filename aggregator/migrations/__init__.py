"""Versioned schema migrations of the aggregator's database (alembic), run from Python.

The store applies them when it opens (:func:`upgrade`); ``jeisson-aggregator db upgrade`` does
the same from the command line. Only one process migrates at a time: on PostgreSQL an advisory
lock held for the migration transaction serialises concurrent starts, on SQLite a ``BEGIN
IMMEDIATE`` transaction does. Each run is one transaction, so a failed migration leaves the
database as it was. A database created before migrations existed (tables, no version table) is
stamped with the first revision before upgrading, so nothing is recreated or lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

HEAD: Final = "head"
FIRST_REVISION: Final = "0001"
"""The revision that created the schema ``metadata.create_all`` used to create."""

MIGRATION_LOCK_KEY: Final = 0x4A45495353  # "JEISS": the PostgreSQL advisory lock of migrations
_HERE: Final = Path(__file__).resolve().parent
_VERSION_TABLE: Final = "alembic_version"
_LEGACY_MARKER_TABLE: Final = "events"


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


async def _locked(engine: AsyncEngine, migrate: Callable[[Connection], None]) -> str | None:
    """Run ``migrate`` in one transaction that no other migrating process can enter."""
    async with engine.connect() as conn:
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
            await conn.run_sync(migrate)
            reached = await conn.run_sync(_current)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
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
