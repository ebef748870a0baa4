"""The store's engine, its transactions, and the one lock SQLite writes queue on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator.store.unit import Unit, backend_insert


class StoreBase:
    """An engine with write transactions (:meth:`transaction`) and read connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine; use :meth:`aggregator.store.Store.open` to create one from a URL."""
        self._engine = engine
        # SQLite has one writer at a time: queue this process's writes here, in order, rather
        # than have pooled connections race for the file lock and time out under load.
        # Reads stay concurrent (WAL). PostgreSQL needs no such thing.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._operator_tokens: dict[str, float] = {}

    @property
    def engine(self) -> AsyncEngine:
        """Return the engine (for tools such as migrations; callers use the methods)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """Return ``"sqlite"`` or ``"postgresql"``."""
        return str(self._engine.dialect.name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Unit]:
        """Yield a unit of work: committed when the block ends, rolled back if it raises."""
        async with self._begin() as connection:
            yield Unit(connection)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection in a write transaction, committed on exit."""
        if self._write_lock is None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """Return an INSERT with this backend's ON CONFLICT clauses available."""
        return backend_insert(self.dialect, table)
