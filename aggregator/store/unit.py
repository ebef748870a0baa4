"""A unit of work: the writes of one step (or of many homes' messages) in one transaction.

:meth:`aggregator.store.Store.transaction` opens a :class:`Unit`; :meth:`Unit.apply` writes a
sequence of :mod:`changes <aggregator.store.changes>` with one ``executemany`` per table and kind
(SQLAlchemy's batched paths: insertmanyvalues, asyncpg's ``executemany``), tables in foreign-key
order. Either every change of the unit is stored, or (the transaction rolled back) none is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from aggregator import tables
from aggregator.store.changes import (
    WRITE_ORDER,
    Change,
    ClaimLease,
    Fence,
    Insert,
    Receipt,
    Row,
    TelemetryBatch,
    Update,
    Upsert,
)
from aggregator.store.errors import FencedError
from aggregator.store.mapping import RowMap

KEYS_PER_QUERY: Final = 400
"""Keys per ``IN`` query, well under SQLite's limit of bound parameters per statement."""
_KEY_PREFIX: Final = "key_"
"""Bind-parameter prefix of key columns in batched UPDATEs (the SET clause uses the names)."""


def backend_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """Return an INSERT with this backend's ON CONFLICT clauses available."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class Unit:
    """An open transaction; every write method runs inside it."""

    def __init__(self, connection: AsyncConnection) -> None:
        """Wrap a connection that is inside a transaction."""
        self.connection = connection
        self.dialect = str(connection.dialect.name)

    async def apply(self, changes: Iterable[Change]) -> Receipt:
        """Write every change; return what the caller needs to know (stored telemetry)."""
        inserts: dict[tuple[type[Row], bool], list[Row]] = {}
        upserts: dict[type[Row], dict[tuple[Any, ...], Row]] = {}
        updates: dict[type[Row], dict[tuple[Any, ...], Row]] = {}
        telemetry: dict[tuple[str, str], TelemetryBatch] = {}
        changes = list(changes)
        for fence in {c.event_id: c for c in changes if isinstance(c, Fence)}.values():
            await self.check_fence(fence)
        for change in changes:
            match change:
                case Insert(row=row, if_absent=if_absent):
                    inserts.setdefault((type(row), if_absent), []).append(row)
                case Upsert(row=row):
                    mapping = RowMap.of(type(row))
                    upserts.setdefault(type(row), {})[mapping.key_of(row)] = row
                case Update(row=row):
                    mapping = RowMap.of(type(row))
                    updates.setdefault(type(row), {})[mapping.key_of(row)] = row
                case TelemetryBatch():
                    telemetry.setdefault(change.key, change)
        for kind in WRITE_ORDER:
            for if_absent in (False, True):
                rows = inserts.get((kind, if_absent))
                if rows:
                    await self.insert(rows, if_absent=if_absent)
            if kind in upserts:
                await self.upsert(list(upserts[kind].values()))
            if kind in updates:
                await self.update(list(updates[kind].values()))
        await self.claim_leases(change for change in changes if isinstance(change, ClaimLease))
        receipt = Receipt()
        if telemetry:
            receipt.stored_telemetry = await self.save_telemetry(list(telemetry.values()))
        return receipt

    async def check_fence(self, fence: Fence) -> None:
        """Raise FencedError unless the event's lease still carries the fence's token.

        ``FOR SHARE`` (PostgreSQL) holds the lease row until this transaction ends: a takeover
        (an UPDATE of the row) waits for it, and so sees, and is seen after, every write here.
        """
        leases = tables.event_leases
        query = select(leases.c.token).where(leases.c.event_id == fence.event_id)
        if self.dialect == "postgresql":
            query = query.with_for_update(read=True)
        token = (await self.connection.execute(query)).scalar_one_or_none()
        if token != fence.token:
            raise FencedError(fence.event_id, fence.token)

    async def claim_leases(self, claims: Iterable[ClaimLease]) -> None:
        """Insert new events' leases, token 1, running out ``ttl_s`` after the database's now."""
        for claim in claims:
            ttl = timedelta(seconds=claim.ttl_s)
            expires = func.now() + ttl if self.dialect == "postgresql" else datetime.now(UTC) + ttl
            await self.connection.execute(
                insert(tables.event_leases).values(
                    event_id=claim.event_id, holder=claim.holder, token=1, expires_at=expires
                )
            )

    async def insert(self, rows: Sequence[Row], *, if_absent: bool = False) -> None:
        """Insert rows of one type (``if_absent``: keep rows that already exist)."""
        mapping = RowMap.of(type(rows[0]))
        statement = backend_insert(self.dialect, mapping.table)
        if if_absent:
            statement = statement.on_conflict_do_nothing(
                index_elements=[mapping.table.c[name] for name in mapping.key]
            )
        await self.connection.execute(statement, [mapping.to_row(row) for row in rows])

    async def upsert(self, rows: Sequence[Row]) -> None:
        """Insert rows of one type, replacing the non-key columns of existing ones."""
        mapping = RowMap.of(type(rows[0]))
        statement = backend_insert(self.dialect, mapping.table)
        statement = statement.on_conflict_do_update(
            index_elements=[mapping.table.c[name] for name in mapping.key],
            set_={name: statement.excluded[name] for name in mapping.values_columns},
        )
        await self.connection.execute(statement, [mapping.to_row(row) for row in rows])

    async def update(self, rows: Sequence[Row]) -> None:
        """Update rows of one type by key (one statement, executed for every row)."""
        mapping = RowMap.of(type(rows[0]))
        table = mapping.table
        statement = (
            update(table)
            .where(and_(*(table.c[name] == bindparam(_KEY_PREFIX + name) for name in mapping.key)))
            .values({name: bindparam(name) for name in mapping.values_columns})
        )
        params = []
        for row in rows:
            values = mapping.to_row(row)
            for name in mapping.key:
                values[_KEY_PREFIX + name] = values.pop(name)
            params.append(values)
        await self.connection.execute(statement, params)

    async def save_telemetry(self, batches: Sequence[TelemetryBatch]) -> set[tuple[str, str]]:
        """Store telemetry batches not stored before; return the keys of those stored now.

        Two statements whatever the number of batches: claim every batch id, getting back the
        ids claimed now (``INSERT ... ON CONFLICT DO NOTHING RETURNING``; a re-sent batch is
        claimed already, and so is one another aggregator process claimed at the same moment),
        then insert the samples of the batches claimed now.
        """
        claims = tables.telemetry_batches
        claim = (
            backend_insert(self.dialect, claims)
            .on_conflict_do_nothing(index_elements=[claims.c.home_id, claims.c.message_id])
            .returning(claims.c.home_id, claims.c.message_id)
        )
        claimed = await self.connection.execute(
            claim,
            [
                {"home_id": b.home_id, "message_id": b.message_id, "received_at": b.received_at}
                for b in batches
            ],
        )
        stored = {(row.home_id, row.message_id) for row in claimed}
        new = [batch for batch in batches if batch.key in stored]
        if not new:
            return set()
        samples = [
            {
                "home_id": batch.home_id,
                "event_id": batch.event_id,
                "ts": sample.ts,
                "power_kw": sample.power_kw,
                "shed_kw": sample.shed_kw,
                "loads": dict(sample.loads),
                "measured": sample.measured,
            }
            for batch in new
            for sample in batch.samples
        ]
        if samples:
            await self.connection.execute(insert(tables.telemetry), samples)
        return stored
