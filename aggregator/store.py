"""Persistent storage of the aggregator: one async API over SQLAlchemy Core.

The embedded default is SQLite (``sqlite:///path``); production runs on PostgreSQL
(``postgresql://user@host/db``, asyncpg, pooled). :meth:`Store.open` migrates the schema to the
newest revision first (:mod:`aggregator.migrations`). Callers persist every state change through
this module *before* acting on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import batched
from operator import itemgetter
from typing import Any, Final, Self

from sqlalchemy import String, any_, bindparam, func, insert, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from aggregator import migrations, tables
from aggregator.auth import (
    hash_secret,
    new_enrolment_code,
    new_token,
    normalise_enrolment_code,
)
from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    HomeRecord,
    RoundRecord,
    RoundStatus,
)
from jeisson.common.protocol import BidStep, EventKind, Load, Sample, utc_now

ENROLMENT_CODE_LIFETIME: Final = timedelta(days=7)
APPLICATION_NAME: Final = "jeisson-aggregator"
"""How the aggregator's connections appear in PostgreSQL's ``pg_stat_activity``."""
_ASYNC_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
SQLITE_BUSY_TIMEOUT_S: Final = 15.0
"""How long a SQLite write waits for another process's write (e.g. a CLI command) to finish."""
_SQLITE_IN_CHUNK: Final = 500
"""Home ids per query on SQLite, well under its limit of bound parameters per statement."""
PG_DRIVER_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "ssl": str,
    "target_session_attrs": str,
    "timeout": float,
    "command_timeout": float,
    "statement_cache_size": int,
    "prepared_statement_cache_size": int,
}
"""PostgreSQL URL query parameters passed to asyncpg (besides the pool settings)."""
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class EnrolmentRejected(Exception):
    """An enrolment code was refused; ``reason`` says why."""

    class Reason(StrEnum):
        """Why the code was refused."""

        UNKNOWN = "invalid_code"
        USED = "code_used"
        EXPIRED = "code_expired"

    def __init__(self, reason: Reason) -> None:
        """Store the reason."""
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A completed enrolment: the plain token is returned exactly once."""

    home_id: str
    token: str


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The PostgreSQL connection pool; each field can be set by a URL query parameter.

    ``postgresql://jeisson@db/jeisson?pool_size=20&max_overflow=5`` overrides two of them.
    SQLite ignores pooling (one embedded file); a pool parameter in a SQLite URL is an error.
    """

    pool_size: int = 10
    """Connections kept open."""
    max_overflow: int = 10
    """Extra connections opened under load (closed when returned)."""
    pool_timeout: float = 30.0
    """Seconds to wait for a free connection before failing."""
    pool_recycle: int = 1800
    """Seconds after which a connection is replaced (outlives idle-killing proxies)."""
    pool_pre_ping: bool = True
    """Check a connection before use, so a restarted database costs no failed request."""

    def validate(self) -> None:
        """Raise ValueError for settings the pool cannot work with."""
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.max_overflow < 0:
            raise ValueError("max_overflow must be 0 or more")
        if self.pool_timeout <= 0:
            raise ValueError("pool_timeout must be more than 0 seconds")
        if self.pool_recycle < -1:
            raise ValueError("pool_recycle must be -1 (never) or a number of seconds")

    def engine_arguments(self) -> dict[str, Any]:
        """Return the settings as ``create_async_engine`` keyword arguments."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def new_id(prefix: str) -> str:
    """Return a fresh identifier such as ``evt_3f9a0c1d2b4e5f60``."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as err:
        raise ValueError(f"not a database URL: {err}") from None


def async_database_url(url: str) -> str:
    """Map a plain database URL (``sqlite:///x.db``) to its async driver URL.

    ``postgres://`` (as some hosting services spell it) means ``postgresql://``. A URL naming
    its driver must name the one the store uses (``sqlite+aiosqlite``, ``postgresql+asyncpg``).
    """
    parsed = _parse_url(url)
    if "+" in parsed.drivername:
        if parsed.drivername not in _ASYNC_DRIVERS.values():
            raise ValueError(
                f"unsupported database driver {parsed.drivername!r}; use "
                + " or ".join(sorted(set(_ASYNC_DRIVERS.values())))
            )
        return url
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database {parsed.drivername!r}; use sqlite or postgresql")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _pool_value(name: str, raw: str, kind: Callable[[str], Any]) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"database URL parameter {name}={raw!r}: use true or false")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"database URL parameter {name}={raw!r} is not a number") from None


def split_pool_settings(url: URL, defaults: PoolSettings) -> tuple[URL, PoolSettings]:
    """Take the pool parameters out of ``url``'s query; return the rest and the settings."""
    kinds: dict[str, Callable[[str], Any]] = {
        "pool_size": int,
        "max_overflow": int,
        "pool_timeout": float,
        "pool_recycle": int,
        "pool_pre_ping": bool,
    }
    overrides: dict[str, Any] = {}
    for name, kind in kinds.items():
        given = url.normalized_query.get(name, ())
        if len(given) > 1:
            raise ValueError(f"database URL parameter {name} is given more than once")
        if given:
            overrides[name] = _pool_value(name, given[0], kind)
    settings = replace(defaults, **overrides)
    settings.validate()
    return url.difference_update_query(kinds), settings


def _split_driver_options(url: URL) -> tuple[URL, dict[str, Any]]:
    """Take the asyncpg options out of ``url``'s query, typed; refuse anything else."""
    unknown = sorted(set(url.query) - set(PG_DRIVER_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown PostgreSQL URL parameters {unknown}; known: "
            + ", ".join([*(item.name for item in fields(PoolSettings)), *PG_DRIVER_OPTIONS])
        )
    options: dict[str, Any] = {}
    for name, kind in PG_DRIVER_OPTIONS.items():
        given = url.normalized_query.get(name, ())
        if len(given) > 1:
            raise ValueError(f"database URL parameter {name} is given more than once")
        if given:
            options[name] = _pool_value(name, given[0], kind)
    return url.difference_update_query(PG_DRIVER_OPTIONS), options


def make_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    """Create the async engine for ``url`` (no schema work; see :meth:`Store.open`).

    PostgreSQL gets a pooled asyncpg engine (``pool`` as defaults, overridden by the URL's
    query parameters); SQLite gets aiosqlite with WAL, ``synchronous=NORMAL`` and foreign keys.
    Raises ValueError for an unsupported or malformed URL.
    """
    parsed = _parse_url(async_database_url(url))
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed, settings = split_pool_settings(parsed, pool or PoolSettings())
        parsed, options = _split_driver_options(parsed)
        return create_async_engine(
            parsed,
            connect_args={"server_settings": {"application_name": APPLICATION_NAME}, **options},
            **settings.engine_arguments(),
        )
    if backend == "sqlite":
        stray = sorted(set(parsed.query) & {item.name for item in fields(PoolSettings)})
        if stray:
            raise ValueError(f"pool settings apply to PostgreSQL only, not SQLite: {stray}")
        engine = create_async_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        sa_event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        return engine
    raise ValueError(f"unsupported database {backend!r}; use sqlite or postgresql")


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """Async access to homes, events, rounds, bids, awards, opt-outs and telemetry."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine; use :meth:`open` to create one from a URL."""
        self._engine = engine
        # SQLite has one writer at a time: queue this process's writes here, in order, rather
        # than have pooled connections race for the file lock and time out under load.
        # Reads stay concurrent (WAL). PostgreSQL needs no such thing.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

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

    @property
    def engine(self) -> AsyncEngine:
        """Return the engine (for tools such as migrations; callers use the methods)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """Return ``"sqlite"`` or ``"postgresql"``."""
        return str(self._engine.dialect.name)

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

    # --- operators ------------------------------------------------------------------------

    async def create_operator_token(self, name: str) -> str:
        """Create an operator token and return it (only its hash is stored)."""
        token = new_token()
        async with self._begin() as conn:
            await conn.execute(
                insert(tables.operator_tokens).values(
                    token_id=new_id("op"),
                    name=name,
                    token_hash=hash_secret(token),
                    created_at=utc_now(),
                )
            )
        return token

    async def operator_token_is_valid(self, token: str) -> bool:
        """Return True when ``token`` is a live operator token."""
        query = select(tables.operator_tokens.c.token_id).where(
            tables.operator_tokens.c.token_hash == hash_secret(token),
            tables.operator_tokens.c.revoked_at.is_(None),
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    # --- homes and enrolment --------------------------------------------------------------

    async def add_home(self, name: str) -> tuple[HomeRecord, str]:
        """Add a home and return it with its one-time enrolment code."""
        home = HomeRecord(home_id=new_id("home"), name=name, created_at=utc_now())
        async with self._begin() as conn:
            await conn.execute(
                insert(tables.homes).values(
                    home_id=home.home_id,
                    name=home.name,
                    created_at=home.created_at,
                    loads=[],
                    participating=True,
                )
            )
            code = await self._insert_enrolment_code(conn, home.home_id)
        return home, code

    async def new_enrolment_code(self, home_id: str) -> str | None:
        """Issue a fresh one-time code for an existing home (re-enrolment); None if unknown."""
        async with self._begin() as conn:
            exists = await conn.execute(
                select(tables.homes.c.home_id).where(tables.homes.c.home_id == home_id)
            )
            if exists.first() is None:
                return None
            return await self._insert_enrolment_code(conn, home_id)

    async def _insert_enrolment_code(self, conn: AsyncConnection, home_id: str) -> str:
        code = new_enrolment_code()
        now = utc_now()
        await conn.execute(
            insert(tables.enrolment_codes).values(
                code_hash=hash_secret(code),
                home_id=home_id,
                created_at=now,
                expires_at=now + ENROLMENT_CODE_LIFETIME,
            )
        )
        return code

    async def enroll(self, code: str) -> Enrolled:
        """Consume an enrolment code and give the home a new token (revoking any older one)."""
        code_hash = hash_secret(normalise_enrolment_code(code))
        codes = tables.enrolment_codes
        now = utc_now()
        async with self._begin() as conn:
            row = (await conn.execute(select(codes).where(codes.c.code_hash == code_hash))).first()
            if row is None:
                raise EnrolmentRejected(EnrolmentRejected.Reason.UNKNOWN)
            if row.used_at is not None:
                raise EnrolmentRejected(EnrolmentRejected.Reason.USED)
            if row.expires_at <= now:
                raise EnrolmentRejected(EnrolmentRejected.Reason.EXPIRED)
            # Conditional update: of two concurrent enrolments with one code, only one wins.
            consumed = await conn.execute(
                update(codes)
                .where(codes.c.code_hash == code_hash, codes.c.used_at.is_(None))
                .values(used_at=now)
            )
            if consumed.rowcount != 1:
                raise EnrolmentRejected(EnrolmentRejected.Reason.USED)
            token = new_token()
            await conn.execute(
                update(tables.homes)
                .where(tables.homes.c.home_id == row.home_id)
                .values(token_hash=hash_secret(token), enrolled_at=now)
            )
        return Enrolled(home_id=row.home_id, token=token)

    async def home_for_token(self, token: str) -> HomeRecord | None:
        """Return the home a token belongs to, or None."""
        query = select(tables.homes).where(tables.homes.c.token_hash == hash_secret(token))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _home(row)

    async def get_home(self, home_id: str) -> HomeRecord | None:
        """Return one home, or None."""
        query = select(tables.homes).where(tables.homes.c.home_id == home_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _home(row)

    async def list_homes(self) -> list[HomeRecord]:
        """Return every home, oldest first."""
        query = select(tables.homes).order_by(tables.homes.c.created_at)
        async with self._engine.connect() as conn:
            return [_home(row) for row in await conn.execute(query)]

    async def save_inventory(
        self, home_id: str, loads: Sequence[Load], *, participating: bool
    ) -> None:
        """Replace a home's declared loads and participation flag."""
        await self._update(
            tables.homes,
            tables.homes.c.home_id == home_id,
            loads=[load.model_dump(mode="json") for load in loads],
            participating=participating,
        )

    async def mark_seen(self, home_id: str, software_version: str) -> None:
        """Record that a home said hello now, with its software version."""
        await self._update(
            tables.homes,
            tables.homes.c.home_id == home_id,
            last_seen_at=utc_now(),
            software_version=software_version,
        )

    async def set_last_curtailed(self, home_id: str, at: datetime) -> None:
        """Record when a home last committed to curtail (rotates the burden on ties)."""
        await self._update(tables.homes, tables.homes.c.home_id == home_id, last_curtailed_at=at)

    # --- events and rounds ----------------------------------------------------------------

    async def insert_event(self, event: EventRecord) -> None:
        """Persist a new event."""
        async with self._begin() as conn:
            await conn.execute(insert(tables.events).values(**_event_values(event)))

    async def update_event(self, event: EventRecord) -> None:
        """Persist every field of an event that changed."""
        values = _event_values(event)
        values.pop("event_id")
        await self._update(tables.events, tables.events.c.event_id == event.event_id, **values)

    async def get_event(self, event_id: str) -> EventRecord | None:
        """Return one event, or None."""
        query = select(tables.events).where(tables.events.c.event_id == event_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _event(row)

    async def list_events(self, limit: int = 100) -> list[EventRecord]:
        """Return the most recent events, newest first."""
        query = select(tables.events).order_by(tables.events.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_event(row) for row in await conn.execute(query)]

    async def unfinished_events(self) -> list[EventRecord]:
        """Return events that are neither completed nor cancelled (resumed after a restart)."""
        finished = [EventStatus.COMPLETED.value, EventStatus.CANCELLED.value]
        query = select(tables.events).where(tables.events.c.status.not_in(finished))
        async with self._engine.connect() as conn:
            return [_event(row) for row in await conn.execute(query)]

    async def insert_round(self, record: RoundRecord) -> None:
        """Persist a newly opened round."""
        async with self._begin() as conn:
            await conn.execute(insert(tables.rounds).values(**_round_values(record)))

    async def update_round(self, record: RoundRecord) -> None:
        """Persist a round's progress."""
        values = _round_values(record)
        condition = (tables.rounds.c.event_id == record.event_id) & (
            tables.rounds.c.round == record.round
        )
        await self._update(tables.rounds, condition, **values)

    async def rounds_for(self, event_id: str) -> list[RoundRecord]:
        """Return an event's rounds in order."""
        query = (
            select(tables.rounds)
            .where(tables.rounds.c.event_id == event_id)
            .order_by(tables.rounds.c.round)
        )
        async with self._engine.connect() as conn:
            return [_round(row) for row in await conn.execute(query)]

    # --- bids, awards, opt-outs -----------------------------------------------------------

    async def save_bid(self, bid: BidRecord) -> None:
        """Persist a bid, replacing an earlier bid of the same home in the same round."""
        bids = tables.bids
        values = {
            "message_id": bid.message_id,
            "steps": [step.model_dump(mode="json") for step in bid.steps],
            "received_at": bid.received_at,
        }
        statement = (
            self._insert(bids)
            .values(event_id=bid.event_id, round=bid.round, home_id=bid.home_id, **values)
            .on_conflict_do_update(
                index_elements=[bids.c.event_id, bids.c.round, bids.c.home_id], set_=values
            )
        )
        async with self._begin() as conn:
            await conn.execute(statement)

    async def bids_for(self, event_id: str, round_number: int) -> list[BidRecord]:
        """Return the bids of one round."""
        query = select(tables.bids).where(
            tables.bids.c.event_id == event_id, tables.bids.c.round == round_number
        )
        async with self._engine.connect() as conn:
            return [_bid(row) for row in await conn.execute(query)]

    async def bid_message_id(self, event_id: str, round_number: int, home_id: str) -> str | None:
        """Return the message id of a home's stored bid in a round, or None."""
        query = select(tables.bids.c.message_id).where(
            tables.bids.c.event_id == event_id,
            tables.bids.c.round == round_number,
            tables.bids.c.home_id == home_id,
        )
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else str(value)

    async def insert_awards(self, records: Iterable[AwardRecord]) -> None:
        """Persist new awards in one transaction."""
        rows = [_award_values(record) for record in records]
        if not rows:
            return
        async with self._begin() as conn:
            await conn.execute(insert(tables.awards), rows)

    async def update_award(self, record: AwardRecord) -> None:
        """Persist an award's new status, loads or opt-outs."""
        values = _award_values(record)
        values.pop("award_id")
        await self._update(tables.awards, tables.awards.c.award_id == record.award_id, **values)

    async def awards_for(self, event_id: str) -> list[AwardRecord]:
        """Return an event's awards, in the order they were made."""
        query = (
            select(tables.awards)
            .where(tables.awards.c.event_id == event_id)
            .order_by(tables.awards.c.round, tables.awards.c.sent_at, tables.awards.c.award_id)
        )
        async with self._engine.connect() as conn:
            return [_award(row) for row in await conn.execute(query)]

    async def homes_opted_out(self, event_id: str) -> set[str]:
        """Return the homes that opted out of a whole event."""
        opt_outs = tables.opt_outs
        query = select(opt_outs.c.home_id).where(
            opt_outs.c.event_id == event_id, opt_outs.c.load_id == ""
        )
        async with self._engine.connect() as conn:
            return {str(row.home_id) for row in await conn.execute(query)}

    async def record_opt_out(
        self, event_id: str, home_id: str, load_id: str | None, reason: str, message_id: str
    ) -> bool:
        """Persist an opt-out; return False when the same opt-out was already recorded."""
        opt_outs = tables.opt_outs
        statement = (
            self._insert(opt_outs)
            .values(
                event_id=event_id,
                home_id=home_id,
                load_id=load_id or "",
                reason=reason,
                message_id=message_id,
                at=utc_now(),
            )
            .on_conflict_do_nothing(
                index_elements=[opt_outs.c.event_id, opt_outs.c.home_id, opt_outs.c.load_id]
            )
        )
        async with self._begin() as conn:
            inserted = await conn.execute(statement)
        return inserted.rowcount == 1

    # --- telemetry ------------------------------------------------------------------------

    async def save_telemetry(
        self, home_id: str, message_id: str, event_id: str | None, samples: Sequence[Sample]
    ) -> bool:
        """Persist a telemetry batch; return False (storing nothing) for a re-sent batch.

        The hot path: two statements in one transaction whatever the batch size (claim the
        batch id, then every sample in one executemany).
        """
        batches = tables.telemetry_batches
        claim = (
            self._insert(batches)
            .values(home_id=home_id, message_id=message_id, received_at=utc_now())
            .on_conflict_do_nothing(index_elements=[batches.c.home_id, batches.c.message_id])
        )
        rows = [
            {
                "home_id": home_id,
                "event_id": event_id,
                "ts": sample.ts,
                "power_kw": sample.power_kw,
                "shed_kw": sample.shed_kw,
                "loads": dict(sample.loads),
            }
            for sample in samples
        ]
        async with self._begin() as conn:
            if (await conn.execute(claim)).rowcount != 1:
                return False
            if rows:
                # executemany: one cached statement, one round trip (asyncpg pipelines it).
                await conn.execute(insert(tables.telemetry), rows)
        return True

    async def telemetry_count(self, home_id: str) -> int:
        """Return how many samples are stored for a home."""
        query = select(func.count()).where(tables.telemetry.c.home_id == home_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

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

    async def event_windows(self, since: datetime) -> list[tuple[datetime, datetime]]:
        """Return ``(start, end)`` of every event not cancelled that ends after ``since``.

        Oldest first; settlement leaves these periods out of baselines.
        """
        events = tables.events
        query = (
            select(events.c.start, events.c.end)
            .where(events.c.status != EventStatus.CANCELLED.value, events.c.end > since)
            .order_by(events.c.start, events.c.end)
        )
        async with self._engine.connect() as conn:
            return [(row.start, row.end) for row in await conn.execute(query)]

    # --- helpers --------------------------------------------------------------------------

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection in a write transaction, committed on exit."""
        if self._write_lock is None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._engine.begin() as conn:
            yield conn

    def _insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """Return an INSERT with this backend's ON CONFLICT clauses available."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def _update(self, table: Any, condition: Any, **values: Any) -> None:
        async with self._begin() as conn:
            await conn.execute(update(table).where(condition).values(**values))


# --- row <-> record mapping -------------------------------------------------------------------


def _home(row: Any) -> HomeRecord:
    return HomeRecord(
        home_id=row.home_id,
        name=row.name,
        created_at=row.created_at,
        enrolled_at=row.enrolled_at,
        loads=tuple(Load.model_validate(load) for load in row.loads or ()),
        participating=bool(row.participating),
        last_curtailed_at=row.last_curtailed_at,
        last_seen_at=row.last_seen_at,
        software_version=row.software_version,
    )


def _event_values(event: EventRecord) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "name": event.name,
        "kind": event.kind.value,
        "status": event.status.value,
        "target_kw": event.target_kw,
        "price_cap": event.price_cap,
        "start": event.start,
        "end": event.end,
        "bid_window_s": event.bid_window_s,
        "restore_stagger_s": event.restore_stagger_s,
        "currency": event.currency,
        "created_at": event.created_at,
        "clearing_price": event.clearing_price,
        "current_round": event.current_round,
        "cancel_reason": event.cancel_reason,
        "baseline_method": event.baseline_method,
    }


def _event(row: Any) -> EventRecord:
    return EventRecord(
        event_id=row.event_id,
        name=row.name,
        kind=EventKind(row.kind),
        status=EventStatus(row.status),
        target_kw=row.target_kw,
        price_cap=row.price_cap,
        start=row.start,
        end=row.end,
        bid_window_s=row.bid_window_s,
        restore_stagger_s=row.restore_stagger_s,
        currency=row.currency,
        created_at=row.created_at,
        clearing_price=row.clearing_price,
        current_round=row.current_round,
        cancel_reason=row.cancel_reason,
        baseline_method=row.baseline_method,
    )


def _round_values(record: RoundRecord) -> dict[str, Any]:
    return {
        "event_id": record.event_id,
        "round": record.round,
        "status": record.status.value,
        "target_kw": record.target_kw,
        "opened_at": record.opened_at,
        "deadline": record.deadline,
        "offered_homes": list(record.offered_homes),
        "cleared_at": record.cleared_at,
        "clearing_price": record.clearing_price,
        "offered_kw": record.offered_kw,
        "accepted_kw": record.accepted_kw,
        "shortfall_kw": record.shortfall_kw,
        "bids": record.bids,
        "steps": record.steps,
    }


def _round(row: Any) -> RoundRecord:
    return RoundRecord(
        event_id=row.event_id,
        round=row.round,
        status=RoundStatus(row.status),
        target_kw=row.target_kw,
        opened_at=row.opened_at,
        deadline=row.deadline,
        offered_homes=tuple(row.offered_homes or ()),
        cleared_at=row.cleared_at,
        clearing_price=row.clearing_price,
        offered_kw=row.offered_kw,
        accepted_kw=row.accepted_kw,
        shortfall_kw=row.shortfall_kw,
        bids=row.bids,
        steps=row.steps,
    )


def _bid(row: Any) -> BidRecord:
    return BidRecord(
        event_id=row.event_id,
        round=row.round,
        home_id=row.home_id,
        message_id=row.message_id,
        steps=tuple(BidStep.model_validate(step) for step in row.steps),
        received_at=row.received_at,
    )


def _award_values(record: AwardRecord) -> dict[str, Any]:
    return {
        "award_id": record.award_id,
        "event_id": record.event_id,
        "round": record.round,
        "home_id": record.home_id,
        "kw": record.kw,
        "price": record.price,
        "status": record.status.value,
        "sent_at": record.sent_at,
        "load_kw": dict(record.load_kw),
        "opted_out_loads": list(record.opted_out_loads),
        "acked_at": record.acked_at,
    }


def _award(row: Any) -> AwardRecord:
    return AwardRecord(
        award_id=row.award_id,
        event_id=row.event_id,
        round=row.round,
        home_id=row.home_id,
        kw=row.kw,
        price=row.price,
        status=AwardStatus(row.status),
        sent_at=row.sent_at,
        load_kw=dict(row.load_kw or {}),
        opted_out_loads=tuple(row.opted_out_loads or ()),
        acked_at=row.acked_at,
    )
