"""Stored telemetry: what homes measured, kept once per batch, read back for settlement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import batched
from operator import itemgetter
from typing import Final

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql

from aggregator import tables
from aggregator.store.base import StoreBase
from aggregator.store.changes import TelemetryBatch
from jeisson.common.protocol import Sample, utc_now

_SQLITE_IN_CHUNK: Final = 500
"""Home ids per query on SQLite, well under its limit of bound parameters per statement."""


class TelemetryStore(StoreBase):
    """Telemetry samples and the batches they came in."""

    async def save_telemetry(
        self, home_id: str, message_id: str, event_id: str | None, samples: Sequence[Sample]
    ) -> bool:
        """Persist a telemetry batch; return False (storing nothing) for a re-sent batch."""
        batch = TelemetryBatch(home_id, message_id, event_id, tuple(samples), utc_now())
        async with self.transaction() as unit:
            receipt = await unit.apply([batch])
        return batch.key in receipt.stored_telemetry

    async def telemetry_count(self, home_id: str) -> int:
        """Return how many samples are stored for a home."""
        query = select(func.count()).where(tables.telemetry.c.home_id == home_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def event_shed(
        self, event_id: str, start: datetime, end: datetime
    ) -> list[tuple[str, datetime, float]]:
        """Return ``(home_id, ts, shed_kw)`` of an event's samples with ``start <= ts < end``.

        Ordered by home, then time (the ``ix_telemetry_event`` index finds them).
        """
        telemetry = tables.telemetry
        query = (
            select(telemetry.c.home_id, telemetry.c.ts, telemetry.c.shed_kw)
            .where(telemetry.c.event_id == event_id, telemetry.c.ts >= start, telemetry.c.ts < end)
            .order_by(telemetry.c.home_id, telemetry.c.ts)
        )
        async with self._engine.connect() as conn:
            return [(row.home_id, row.ts, row.shed_kw) for row in await conn.execute(query)]

    async def telemetry_between(
        self, home_ids: Sequence[str], start: datetime, end: datetime
    ) -> list[tuple[str, datetime, float]]:
        """Return ``(home_id, ts, power_kw)`` of the homes' samples with ``start <= ts < end``.

        Ordered by home id (Python string order), then time. Answered from the
        ``ix_telemetry_home_ts_power`` index; any number of homes (one array parameter on
        PostgreSQL, chunks of ids on SQLite).
        """
        telemetry = tables.telemetry
        wanted = sorted(set(home_ids))
        if not wanted:
            return []
        base = (
            select(telemetry.c.home_id, telemetry.c.ts, telemetry.c.power_kw)
            .where(telemetry.c.ts >= start, telemetry.c.ts < end)
            .order_by(telemetry.c.home_id, telemetry.c.ts)
        )
        if self.dialect == "postgresql":
            ids = bindparam("home_ids", wanted, type_=postgresql.ARRAY(String))
            queries = [base.where(telemetry.c.home_id == any_(ids))]
        else:
            queries = [
                base.where(telemetry.c.home_id.in_(chunk))
                for chunk in batched(wanted, _SQLITE_IN_CHUNK)
            ]
        found: list[tuple[str, datetime, float]] = []
        async with self._engine.connect() as conn:
            for query in queries:
                found.extend(
                    (row.home_id, row.ts, row.power_kw) for row in await conn.execute(query)
                )
        # The database's collation may order ids differently; a stable sort keeps time order.
        found.sort(key=itemgetter(0))
        return found
