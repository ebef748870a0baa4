"""Storage of settlement: program settings, statements, receipts, reliability, and its reads.

Works on the store's engine (:attr:`aggregator.store.Store.engine`) and the tables of
:mod:`aggregator.settlement.tables` (``settlement_program``, ``statements``,
``statement_lines``, ``statement_receipts``, ``home_reliability``); it reads events, awards,
homes and telemetry through the store or directly. Statements are only inserted, never
updated: a new version of an event's statement and every home's new reliability score are
written in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import batched
from typing import Any, Final

from sqlalchemy import String, and_, any_, bindparam, delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator import tables
from aggregator.records import EventRecord, EventStatus
from aggregator.settlement import tables as settlement_tables
from aggregator.settlement.calendar import ProgramCalendar
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.reliability import Reliability, reliability_of
from aggregator.settlement.statements import Ledger, LedgerEntry, Statement, StatementLine
from aggregator.store import Store
from jeisson.common.protocol import utc_now

PROGRAM_ID: Final = "default"
"""One aggregator runs one program (its row in ``settlement_program``)."""
SQLITE_IN_CHUNK: Final = 500
"""Home ids per query on SQLite, under its limit of bound parameters."""
INSERT_CHUNK: Final = 5_000
"""Statement lines per INSERT round trip."""

type TelemetryRow = tuple[str, datetime, float, bool]
"""``(home_id, ts, power_kw, estimated)`` of one stored sample."""
type FreshResult = tuple[str, str, datetime, float, float]
"""``(home_id, event_id, settled_at, delivered kWh, committed kWh)`` not stored yet."""


class SettlementRepository:
    """Reads and writes everything settlement stores."""

    def __init__(self, store: Store) -> None:
        """Use ``store``'s engine (and its record reads: events, awards, homes)."""
        self.store = store
        self._engine: AsyncEngine = store.engine

    @property
    def dialect(self) -> str:
        """Return the database backend name."""
        return str(self._engine.dialect.name)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection in one of the store's write transactions (SQLite's lock kept)."""
        async with self.store.transaction() as unit:
            yield unit.connection

    def _insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # --- program ---------------------------------------------------------------------------------

    async def program(self) -> ProgramSettings:
        """Return the stored program settings (the defaults until some are saved)."""
        table = settlement_tables.settlement_program
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(table).where(table.c.program_id == PROGRAM_ID))
            ).first()
        if row is None:
            return ProgramSettings()
        return ProgramSettings(
            calendar=ProgramCalendar(
                timezone=row.timezone,
                holiday_country=row.holiday_country,
                holiday_subdivision=row.holiday_subdivision,
            ),
            settle_after=timedelta(seconds=row.settle_after_s),
            estimated_pay_ratio=row.estimated_pay_ratio,
        )

    async def save_program(self, settings: ProgramSettings) -> None:
        """Store the program settings (used by settlements from now on)."""
        table = settlement_tables.settlement_program
        values = {
            "timezone": settings.calendar.timezone,
            "holiday_country": settings.calendar.holiday_country,
            "holiday_subdivision": settings.calendar.holiday_subdivision,
            "settle_after_s": settings.settle_after.total_seconds(),
            "estimated_pay_ratio": settings.estimated_pay_ratio,
            "updated_at": utc_now(),
        }
        statement = (
            self._insert(table)
            .values(program_id=PROGRAM_ID, **values)
            .on_conflict_do_update(index_elements=[table.c.program_id], set_=values)
        )
        async with self._begin() as conn:
            await conn.execute(statement)

    # --- events ----------------------------------------------------------------------------------

    async def events_touching(self, start: datetime, end: datetime) -> list[EventRecord]:
        """Return every event whose window intersects ``[start, end)``, by start."""
        events = tables.events
        query = (
            select(events.c.event_id)
            .where(events.c.start < end, events.c.end > start)
            .order_by(events.c.start, events.c.event_id)
        )
        async with self._engine.connect() as conn:
            ids = [row.event_id for row in await conn.execute(query)]
        found = [await self.store.get_event(event_id) for event_id in ids]
        return [event for event in found if event is not None]

    async def events_to_settle(self, ended_before: datetime, limit: int = 100) -> list[str]:
        """Return ids of finished events that ended before ``ended_before`` without statement."""
        events, statements = tables.events, settlement_tables.statements
        query = (
            select(events.c.event_id)
            .where(
                events.c.end <= ended_before,
                events.c.status.in_([EventStatus.COMPLETED.value, EventStatus.CANCELLED.value]),
                ~exists().where(statements.c.event_id == events.c.event_id),
            )
            .order_by(events.c.end, events.c.event_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [row.event_id for row in await conn.execute(query)]

    # --- telemetry -------------------------------------------------------------------------------

    async def telemetry(
        self, home_ids: Sequence[str], ranges: Sequence[tuple[datetime, datetime]]
    ) -> list[TelemetryRow]:
        """Return the homes' samples inside ``ranges`` as ``(home, ts, kW, estimated)``.

        Read from the covering index ``ix_telemetry_home_ts_power``. ``estimated`` is True only
        where the home said the sample was not metered (``measured`` False).
        """
        telemetry = tables.telemetry
        wanted = sorted(set(home_ids))
        if not wanted or not ranges:
            return []
        found: list[TelemetryRow] = []
        async with self._engine.connect() as conn:
            for start, end in ranges:
                base = select(
                    telemetry.c.home_id, telemetry.c.ts, telemetry.c.power_kw, telemetry.c.measured
                ).where(telemetry.c.ts >= start, telemetry.c.ts < end)
                if self.dialect == "postgresql":
                    ids = bindparam("home_ids", wanted, type_=postgresql.ARRAY(String))
                    queries = [base.where(telemetry.c.home_id == any_(ids))]
                else:
                    queries = [
                        base.where(telemetry.c.home_id.in_(chunk))
                        for chunk in batched(wanted, SQLITE_IN_CHUNK)
                    ]
                for query in queries:
                    found.extend(
                        (row.home_id, row.ts, row.power_kw, row.measured is False)
                        for row in await conn.execute(query)
                    )
        return found

    # --- statements ------------------------------------------------------------------------------

    async def save_statements(
        self, statements: Sequence[Statement], reliability: Sequence[Reliability]
    ) -> None:
        """Insert new statement versions and replace the homes' reliability, atomically."""
        header, lines, scores = (
            settlement_tables.statements,
            settlement_tables.statement_lines,
            settlement_tables.home_reliability,
        )
        now = utc_now()
        async with self._begin() as conn:
            for statement in statements:
                await conn.execute(insert(header).values(_statement_values(statement)))
                for part in batched(statement.lines, INSERT_CHUNK):
                    await conn.execute(insert(lines), [_line_values(line) for line in part])
            for chunk in batched(reliability, INSERT_CHUNK):
                ids = [item.home_id for item in chunk]
                await conn.execute(delete(scores).where(scores.c.home_id.in_(ids)))
                await conn.execute(
                    insert(scores),
                    [
                        {
                            "home_id": item.home_id,
                            "score": item.score,
                            "events": item.events,
                            "delivered_kwh": item.delivered_kwh,
                            "committed_kwh": item.committed_kwh,
                            "updated_at": now,
                        }
                        for item in chunk
                    ],
                )

    async def statement(
        self, event_id: str, version: int | None = None, *, with_lines: bool = True
    ) -> Statement | None:
        """Return an event's statement (the latest version unless ``version``), or None."""
        header = settlement_tables.statements
        query = select(header).where(header.c.event_id == event_id)
        if version is None:
            query = query.order_by(header.c.version.desc()).limit(1)
        else:
            query = query.where(header.c.version == version)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            found = _statement(row)
            if not with_lines:
                return found
            lines = settlement_tables.statement_lines
            rows = await conn.execute(
                select(lines)
                .where(lines.c.event_id == event_id, lines.c.version == found.version)
                .order_by(lines.c.home_id)
            )
            return _with_lines(found, tuple(_line(line) for line in rows))

    async def statement_versions(self, event_id: str) -> list[Statement]:
        """Return the headers of every version of an event's statement, oldest first."""
        header = settlement_tables.statements
        query = select(header).where(header.c.event_id == event_id).order_by(header.c.version)
        async with self._engine.connect() as conn:
            return [_statement(row) for row in await conn.execute(query)]

    async def latest_lines(
        self, home_ids: Sequence[str], limit: int
    ) -> dict[str, list[StatementLine]]:
        """Return each home's latest-version lines of its most recent events, newest first."""
        lines = settlement_tables.statement_lines
        newest = (
            select(lines.c.event_id, lines.c.home_id, func.max(lines.c.version).label("version"))
            .group_by(lines.c.event_id, lines.c.home_id)
            .subquery()
        )
        found: dict[str, list[StatementLine]] = {home_id: [] for home_id in home_ids}
        async with self._engine.connect() as conn:
            for chunk in batched(sorted(set(home_ids)), SQLITE_IN_CHUNK):
                query = (
                    select(lines)
                    .join(
                        newest,
                        and_(
                            lines.c.event_id == newest.c.event_id,
                            lines.c.home_id == newest.c.home_id,
                            lines.c.version == newest.c.version,
                        ),
                    )
                    .where(lines.c.home_id.in_(chunk))
                    .order_by(lines.c.home_id, lines.c.settled_at.desc(), lines.c.event_id)
                )
                for row in await conn.execute(query):
                    kept = found[row.home_id]
                    if len(kept) < limit:
                        kept.append(_line(row))
        return found

    async def ledger(
        self,
        home_id: str,
        calendar: ProgramCalendar,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Ledger:
        """Return a home's bookings (first statements and corrections) between two times."""
        lines, header, events = (
            settlement_tables.statement_lines,
            settlement_tables.statements,
            tables.events,
        )
        query = (
            select(lines, header.c.currency, events.c.start.label("event_start"))
            .join(
                header,
                and_(header.c.event_id == lines.c.event_id, header.c.version == lines.c.version),
            )
            .join(events, events.c.event_id == lines.c.event_id)
            .where(lines.c.home_id == home_id)
            .order_by(lines.c.settled_at, lines.c.event_id, lines.c.version)
        )
        if since is not None:
            query = query.where(lines.c.settled_at >= since)
        if until is not None:
            query = query.where(lines.c.settled_at < until)
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        entries = tuple(
            LedgerEntry(line=_line(row), currency=row.currency, event_start=row.event_start)
            for row in rows
        )
        return Ledger(home_id=home_id, entries=entries, zone=calendar.zone)

    # --- reliability -----------------------------------------------------------------------------

    async def reliability(self, home_ids: Sequence[str] | None = None) -> dict[str, Reliability]:
        """Return the stored reliability of ``home_ids`` (every scored home when None)."""
        table = settlement_tables.home_reliability
        query = select(table)
        if home_ids is not None:
            if not home_ids:
                return {}
            query = query.where(table.c.home_id.in_(sorted(set(home_ids))))
        async with self._engine.connect() as conn:
            return {
                row.home_id: Reliability(
                    home_id=row.home_id,
                    score=row.score,
                    events=row.events,
                    delivered_kwh=row.delivered_kwh,
                    committed_kwh=row.committed_kwh,
                )
                for row in await conn.execute(query)
            }

    async def recompute_reliability(
        self, home_ids: Sequence[str], fresh: Sequence[FreshResult], recent: int
    ) -> list[Reliability]:
        """Return the homes' scores from their stored lines plus ``fresh`` results (unstored).

        A fresh result replaces the stored line of the same event.
        """
        stored = await self.latest_lines(home_ids, limit=recent + len(fresh))
        by_home: dict[str, list[tuple[datetime, str, float, float]]] = {}
        for home_id, event_id, settled_at, delivered, committed in fresh:
            by_home.setdefault(home_id, []).append((settled_at, event_id, delivered, committed))
        scores = []
        for home_id in home_ids:
            results = by_home.get(home_id, [])
            replaced = {event_id for _, event_id, _, _ in results}
            results += [
                (line.settled_at, line.event_id, line.delivered_kwh, line.committed_kwh)
                for line in stored.get(home_id, [])
                if line.event_id not in replaced
            ]
            results.sort(key=lambda result: result[0], reverse=True)
            scores.append(reliability_of(home_id, ((result[2], result[3]) for result in results)))
        return scores

    # --- receipts --------------------------------------------------------------------------------

    async def record_receipt(self, home_id: str, event_id: str, version: int) -> None:
        """Remember that a home acknowledged (stored) a statement version."""
        table = settlement_tables.statement_receipts
        statement = (
            self._insert(table)
            .values(home_id=home_id, event_id=event_id, version=version, acked_at=utc_now())
            .on_conflict_do_nothing(
                index_elements=[table.c.home_id, table.c.event_id, table.c.version]
            )
        )
        async with self._begin() as conn:
            await conn.execute(statement)

    async def has_line(self, home_id: str, event_id: str, version: int) -> bool:
        """Return True when the home has a line in that version of the event's statement."""
        lines = settlement_tables.statement_lines
        query = select(lines.c.home_id).where(
            lines.c.home_id == home_id, lines.c.event_id == event_id, lines.c.version == version
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def unacknowledged(self, home_id: str, limit: int) -> list[Delivery]:
        """Return the home's newest statement lines it has not acknowledged, oldest first."""
        lines, receipts, header = (
            settlement_tables.statement_lines,
            settlement_tables.statement_receipts,
            settlement_tables.statements,
        )
        newest = (
            select(lines.c.event_id, func.max(lines.c.version).label("version"))
            .where(lines.c.home_id == home_id)
            .group_by(lines.c.event_id)
            .subquery()
        )
        query = (
            select(lines, header.c.currency, header.c.window_start, header.c.window_end)
            .join(
                newest,
                and_(lines.c.event_id == newest.c.event_id, lines.c.version == newest.c.version),
            )
            .join(
                header,
                and_(header.c.event_id == lines.c.event_id, header.c.version == lines.c.version),
            )
            .where(
                lines.c.home_id == home_id,
                ~exists().where(
                    receipts.c.home_id == home_id,
                    receipts.c.event_id == lines.c.event_id,
                    receipts.c.version == lines.c.version,
                ),
            )
            .order_by(lines.c.settled_at, lines.c.event_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                Delivery(_line(row), row.currency, row.window_start, row.window_end)
                for row in await conn.execute(query)
            ]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A statement line to send to its home, with what its message needs from the header."""

    line: StatementLine
    currency: str
    window_start: datetime
    window_end: datetime


# --- row <-> record mapping ----------------------------------------------------------------------


def _statement_values(statement: Statement) -> dict[str, Any]:
    return {
        "event_id": statement.event_id,
        "version": statement.version,
        "settled_at": statement.settled_at,
        "reason": statement.reason,
        "group_events": list(statement.group_events),
        "baseline_method": statement.baseline_method,
        "timezone": statement.timezone,
        "currency": statement.currency,
        "interval_minutes": statement.interval_minutes,
        "window_start": statement.window_start,
        "window_end": statement.window_end,
        "estimated_pay_ratio": statement.estimated_pay_ratio,
        "homes": statement.homes,
        "payment": statement.payment,
        "correction": statement.correction,
        "totals": statement.totals,
        "detail": statement.detail,
    }


def _statement(row: Any) -> Statement:
    return Statement(
        event_id=row.event_id,
        version=row.version,
        settled_at=row.settled_at,
        reason=row.reason,
        group_events=tuple(row.group_events),
        baseline_method=row.baseline_method,
        timezone=row.timezone,
        currency=row.currency,
        interval_minutes=row.interval_minutes,
        window_start=row.window_start,
        window_end=row.window_end,
        estimated_pay_ratio=row.estimated_pay_ratio,
        homes=row.homes,
        payment=row.payment,
        correction=row.correction,
        totals=dict(row.totals),
        detail=dict(row.detail),
    )


def _with_lines(statement: Statement, lines: tuple[StatementLine, ...]) -> Statement:
    return replace(statement, lines=lines)


def _line_values(line: StatementLine) -> dict[str, Any]:
    return {
        "event_id": line.event_id,
        "version": line.version,
        "home_id": line.home_id,
        "settled_at": line.settled_at,
        "status": line.status,
        "baseline_outcome": line.baseline_outcome,
        "baseline_reason": line.baseline_reason,
        "price": line.price,
        "committed_kw": line.committed_kw,
        "committed_kwh": line.committed_kwh,
        "delivered_kwh": line.delivered_kwh,
        "paid_kwh": line.paid_kwh,
        "payment": line.payment,
        "previous_payment": line.previous_payment,
        "data_quality": line.data_quality,
        "detail": line.detail,
    }


def _line(row: Any) -> StatementLine:
    return StatementLine(
        event_id=row.event_id,
        version=row.version,
        home_id=row.home_id,
        settled_at=row.settled_at,
        status=row.status,
        baseline_outcome=row.baseline_outcome,
        baseline_reason=row.baseline_reason,
        price=row.price,
        committed_kw=row.committed_kw,
        committed_kwh=row.committed_kwh,
        delivered_kwh=row.delivered_kwh,
        paid_kwh=row.paid_kwh,
        payment=row.payment,
        previous_payment=row.previous_payment,
        data_quality=row.data_quality,
        detail=dict(row.detail),
    )
