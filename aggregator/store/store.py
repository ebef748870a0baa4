"""The aggregator's store: one object over homes, events and telemetry."""

from __future__ import annotations

from typing import Self

from sqlalchemy import select, text

from aggregator import migrations, tables
from aggregator.records import new_id
from aggregator.store.engine import PoolSettings, make_engine
from aggregator.store.events import EventStore
from aggregator.store.homes import HomeStore
from aggregator.store.telemetry import TelemetryStore


class Store(HomeStore, EventStore, TelemetryStore):
    """Async access to homes, events, rounds, bids, awards, opt-outs and telemetry."""

    @classmethod
    async def open(cls, url: str, pool: PoolSettings | None = None) -> Self:
        """Connect to ``url`` and migrate its schema to the newest revision.

        Safe when several processes start at once (see :mod:`aggregator.migrations`).
        """
        engine = make_engine(url, pool)
        try:
            await migrations.upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()

    async def ping(self) -> None:
        """Run a trivial query; raises when the database is unreachable."""
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def aggregator_id(self) -> str:
        """Return this aggregator's stable id, creating it on first use."""
        meta = tables.server_meta
        query = select(meta.c.value).where(meta.c.key == "aggregator_id")
        async with self._begin() as conn:
            # Of two processes starting at once, the first insert wins and both read it.
            await conn.execute(
                self._insert(meta)
                .values(key="aggregator_id", value=new_id("agg"))
                .on_conflict_do_nothing(index_elements=[meta.c.key])
            )
            return str((await conn.execute(query)).scalar_one())
