"""The storage suite: every Store behaviour and the migrations, on SQLite and on PostgreSQL.

Each test runs twice through the ``db_url`` fixture: a fresh SQLite file and a fresh PostgreSQL
database (``pg_url``: created and dropped per test; a PostgreSQL outage fails these tests, it
never skips them). The last test runs the real server on PostgreSQL and restarts it mid-event.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from aggregator import migrations, tables
from aggregator.auth import hash_secret
from aggregator.records import (
    AwardRecord,
    AwardStatus,
    BidRecord,
    EventRecord,
    EventStatus,
    RoundRecord,
    RoundStatus,
)
from aggregator.store import (
    APPLICATION_NAME,
    EnrolmentRejected,
    Insert,
    OfferRecord,
    PoolSettings,
    Store,
    Update,
    make_engine,
)
from jeisson.common.protocol import BidStep, EventEnd, EventKind, Load, LoadKind, Sample, utc_now
from tests.helpers import free_port, wait_for

from .common import FAST, HomeFactory, RunningServer, bids, event_status

CEST = timezone(timedelta(hours=2))
JEISSON_AGGREGATOR = Path(sys.executable).parent / "jeisson-aggregator"
HEAD = migrations.head_revision()
LOCK_WAIT_S = 0.5


def event_record(**overrides: object) -> EventRecord:
    """Return an event with zoned (non-UTC) times, to check they come back as aware UTC."""
    start = datetime(2026, 7, 1, 18, 0, tzinfo=CEST)
    values: dict[str, object] = {
        "event_id": "evt_1",
        "name": "Evening peak",
        "kind": EventKind.MARKET,
        "status": EventStatus.NEGOTIATING,
        "target_kw": 50.0,
        "price_cap": 0.4,
        "start": start,
        "end": start + timedelta(hours=2),
        "bid_window_s": 30.0,
        "restore_stagger_s": 300.0,
        "currency": "EUR",
        "created_at": datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC),
    }
    values.update(overrides)
    return EventRecord(**values)  # type: ignore[arg-type]


def assert_utc(value: datetime | None, expected: datetime) -> None:
    """Check a stored time: the same instant, aware, and in UTC."""
    assert value is not None
    assert value == expected
    assert value.utcoffset() == timedelta(0)


def loads() -> list[Load]:
    """Return a two-load inventory."""
    return [
        Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=3.0),
        Load(
            load_id="ev",
            name="EV",
            kind=LoadKind.EV_CHARGER,
            rated_kw=7.4,
            curtailable=False,
        ),
    ]


async def new_home(store: Store, name: str = "home") -> str:
    """Add a home and return its id."""
    home, _code = await store.add_home(name)
    return home.home_id


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``jeisson-aggregator`` in a real process (off the event loop)."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(JEISSON_AGGREGATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- operators ----------------------------------------------------------------------------------


async def test_operator_tokens_are_checked_and_stored_hashed(store: Store) -> None:
    token = await store.create_operator_token("ops")
    assert await store.operator_token_is_valid(token)
    assert not await store.operator_token_is_valid(token + "x")
    assert not await store.operator_token_is_valid("")
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(tables.operator_tokens))).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hash_secret(token)
    assert token not in {str(value) for value in rows[0]}


async def test_revoked_operator_token_is_refused(store: Store) -> None:
    token = await store.create_operator_token("ops")
    async with store.engine.begin() as conn:
        await conn.execute(update(tables.operator_tokens).values(revoked_at=utc_now()))
    assert not await store.operator_token_is_valid(token)


# --- homes and enrolment ------------------------------------------------------------------------


async def test_enrolment_code_works_once(store: Store) -> None:
    home, code = await store.add_home("Maple St 4")
    enrolled = await store.enroll(code.lower().replace("-", " "))  # as a person might type it
    assert enrolled.home_id == home.home_id
    found = await store.home_for_token(enrolled.token)
    assert found is not None
    assert found.home_id == home.home_id
    assert found.enrolled_at is not None
    assert found.enrolled_at.utcoffset() == timedelta(0)
    with pytest.raises(EnrolmentRejected) as used:
        await store.enroll(code)
    assert used.value.reason is EnrolmentRejected.Reason.USED
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(tables.enrolment_codes))).one()
        home_row = (await conn.execute(select(tables.homes))).one()
    assert stored.code_hash == hash_secret(code)
    assert home_row.token_hash == hash_secret(enrolled.token)


async def test_unknown_and_expired_codes_are_refused(store: Store) -> None:
    with pytest.raises(EnrolmentRejected) as unknown:
        await store.enroll("AAAA-BBBB-CCCC")
    assert unknown.value.reason is EnrolmentRejected.Reason.UNKNOWN
    _home, code = await store.add_home("late")
    async with store.engine.begin() as conn:
        await conn.execute(
            update(tables.enrolment_codes).values(expires_at=utc_now() - timedelta(seconds=1))
        )
    with pytest.raises(EnrolmentRejected) as expired:
        await store.enroll(code)
    assert expired.value.reason is EnrolmentRejected.Reason.EXPIRED


async def test_re_enrolment_replaces_the_token(store: Store) -> None:
    home, code = await store.add_home("moved router")
    first = await store.enroll(code)
    second = await store.enroll(await store.new_enrolment_code(home.home_id) or "")
    assert second.home_id == home.home_id
    assert second.token != first.token
    assert await store.home_for_token(first.token) is None
    assert await store.home_for_token(second.token) is not None
    assert await store.new_enrolment_code("home_unknown") is None


async def test_concurrent_enrolments_with_one_code_only_one_wins(store: Store) -> None:
    home, code = await store.add_home("contested")
    outcomes = await asyncio.gather(*(store.enroll(code) for _ in range(6)), return_exceptions=True)
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, EnrolmentRejected)]
    assert len(winners) == 1
    assert len(losers) == 5
    assert {loser.reason for loser in losers} == {EnrolmentRejected.Reason.USED}
    found = await store.home_for_token(winners[0].token)
    assert found is not None
    assert found.home_id == home.home_id


async def test_inventory_and_home_state_round_trip(store: Store) -> None:
    first = await new_home(store, "first")
    second = await new_home(store, "second")
    await store.save_inventory(first, loads(), participating=False)
    await store.mark_seen(first, "1.2.3")
    curtailed = datetime(2026, 7, 1, 20, 0, tzinfo=CEST)
    await store.set_last_curtailed(first, curtailed)
    home = await store.get_home(first)
    assert home is not None
    assert list(home.loads) == loads()
    assert not home.loads[1].curtailable
    assert home.participating is False
    assert home.flexible_kw == pytest.approx(3.0)
    assert home.software_version == "1.2.3"
    assert home.last_seen_at is not None
    assert abs(home.last_seen_at - utc_now()) < timedelta(minutes=1)
    assert_utc(home.last_curtailed_at, curtailed)
    assert [h.home_id for h in await store.list_homes()] == [first, second]
    assert await store.get_home("home_unknown") is None


async def test_aggregator_id_is_stable_across_restarts(db_url: str) -> None:
    first = await Store.open(db_url)
    try:
        made = await first.aggregator_id()
        assert made.startswith("agg_")
        assert await first.aggregator_id() == made
    finally:
        await first.close()
    second = await Store.open(db_url)
    try:
        assert await second.aggregator_id() == made
    finally:
        await second.close()


# --- events, rounds, bids, awards ---------------------------------------------------------------


async def test_event_round_trip_in_aware_utc(store: Store) -> None:
    event = event_record()
    await store.insert_event(event)
    stored = await store.get_event(event.event_id)
    assert stored == event
    assert stored is not None
    for stored_time, given in ((stored.start, event.start), (stored.end, event.end)):
        assert_utc(stored_time, given)
    assert stored.created_at.microsecond == 123456

    assert stored.baseline_method is None
    cancelled = event_record(
        status=EventStatus.CANCELLED,
        clearing_price=0.21,
        current_round=2,
        cancel_reason="grid restored",
        baseline_method="caiso_10_of_10",
    )
    await store.update_event(cancelled)
    assert await store.get_event(event.event_id) == cancelled
    assert await store.get_event("evt_unknown") is None


async def test_event_lists(store: Store) -> None:
    base = datetime(2026, 7, 1, tzinfo=UTC)
    for number, status in enumerate(
        [EventStatus.COMPLETED, EventStatus.ACTIVE, EventStatus.CANCELLED, EventStatus.DRAFT]
    ):
        await store.insert_event(
            event_record(
                event_id=f"evt_{number}",
                status=status,
                created_at=base + timedelta(minutes=number),
            )
        )
    assert [e.event_id for e in await store.list_events()] == [
        "evt_3",
        "evt_2",
        "evt_1",
        "evt_0",
    ]
    assert [e.event_id for e in await store.list_events(limit=2)] == ["evt_3", "evt_2"]
    assert {e.event_id for e in await store.unfinished_events()} == {"evt_1", "evt_3"}


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await store.insert_event(event_record(start=datetime(2026, 7, 1, 18, 0)))
    assert await store.list_events() == []


async def test_rounds_and_their_offers_round_trip(store: Store) -> None:
    await store.insert_event(event_record())
    home_a = await new_home(store, "a")
    home_b = await new_home(store, "b")
    opened = datetime(2026, 7, 1, 15, 0, tzinfo=CEST)
    first = RoundRecord(
        event_id="evt_1",
        round=1,
        status=RoundStatus.OPEN,
        target_kw=50.0,
        opened_at=opened,
        deadline=opened + timedelta(seconds=30),
    )
    await store.write(
        [Insert(first), *(Insert(OfferRecord("evt_1", 1, home)) for home in (home_a, home_b))]
    )
    second = RoundRecord(
        event_id="evt_1",
        round=2,
        status=RoundStatus.OPEN,
        target_kw=8.0,
        opened_at=opened + timedelta(minutes=5),
        deadline=opened + timedelta(minutes=6),
    )
    await store.insert_round(second)
    cleared = RoundRecord(
        event_id="evt_1",
        round=1,
        status=RoundStatus.CLEARED,
        target_kw=50.0,
        opened_at=opened,
        deadline=opened + timedelta(seconds=30),
        cleared_at=opened + timedelta(seconds=31),
        clearing_price=0.18,
        offered_kw=60.5,
        accepted_kw=42.0,
        shortfall_kw=8.0,
        bids=2,
        steps=5,
    )
    # A home joining the open round late, and a repeated offer, add one row each at most.
    await store.write(
        [
            Update(cleared),
            Insert(OfferRecord("evt_1", 2, home_b), if_absent=True),
            Insert(OfferRecord("evt_1", 1, home_a), if_absent=True),
        ]
    )
    stored = await store.rounds_for("evt_1")
    assert stored == [cleared, second]
    assert await store.offered_homes("evt_1") == {1: {home_a, home_b}, 2: {home_b}}
    assert await store.offered_counts("evt_1") == {1: 2, 2: 1}
    assert_utc(stored[0].cleared_at, opened + timedelta(seconds=31))


async def test_bid_of_a_home_in_a_round_is_replaced(store: Store) -> None:
    home = await new_home(store)
    other = await new_home(store, "other")
    received = datetime(2026, 7, 1, 15, 0, tzinfo=CEST)
    first = BidRecord(
        event_id="evt_1",
        round=1,
        home_id=home,
        message_id="m1",
        steps=(BidStep(kw=3.0, price=0.1, loads=["wh"]),),
        received_at=received,
    )
    await store.save_bid(first)
    replacement = BidRecord(
        event_id="evt_1",
        round=1,
        home_id=home,
        message_id="m2",
        steps=(
            BidStep(kw=2.0, price=0.12, loads=["wh"]),
            BidStep(kw=7.0, price=0.3, loads=["ev"]),
        ),
        received_at=received + timedelta(seconds=5),
    )
    await store.save_bid(replacement)
    next_round = BidRecord(
        event_id="evt_1",
        round=2,
        home_id=home,
        message_id="m3",
        steps=(BidStep(kw=1.0, price=0.2, loads=["wh"]),),
        received_at=received + timedelta(minutes=5),
    )
    await store.save_bid(next_round)
    others = BidRecord(
        event_id="evt_1",
        round=1,
        home_id=other,
        message_id="m4",
        steps=(BidStep(kw=4.0, price=0.05, loads=["wh"]),),
        received_at=received,
    )
    await store.save_bid(others)
    round_one = sorted(await store.bids_for("evt_1", 1), key=lambda bid: bid.message_id)
    assert round_one == [replacement, others]
    assert await store.bids_for("evt_1", 2) == [next_round]
    assert await store.bid_message_id("evt_1", 1, home) == "m2"
    assert await store.bid_message_id("evt_1", 3, home) is None


async def test_awards_round_trip(store: Store) -> None:
    await store.insert_event(event_record())
    home = await new_home(store)
    other = await new_home(store, "other")
    sent = datetime(2026, 7, 1, 15, 1, tzinfo=CEST)
    awards = [
        AwardRecord(
            award_id=f"awd_{number}",
            event_id="evt_1",
            round=round_number,
            home_id=owner,
            kw=kw,
            price=0.18,
            status=AwardStatus.SENT,
            sent_at=sent + timedelta(seconds=number),
            load_kw={"wh": kw},
        )
        for number, (owner, round_number, kw) in enumerate(
            [(other, 2, 1.0), (home, 1, 3.0), (other, 1, 4.0)]
        )
    ]
    await store.insert_awards(awards)
    await store.insert_awards([])
    acked = AwardRecord(
        award_id="awd_1",
        event_id="evt_1",
        round=1,
        home_id=home,
        kw=10.0,
        price=0.18,
        status=AwardStatus.ACKED,
        sent_at=sent + timedelta(seconds=1),
        load_kw={"wh": 3.0, "ev": 7.0},
        opted_out_loads=("ev",),
        acked_at=sent + timedelta(seconds=3),
    )
    await store.update_award(acked)
    stored = await store.awards_for("evt_1")
    assert [award.award_id for award in stored] == ["awd_1", "awd_2", "awd_0"]
    assert stored[0] == acked
    assert stored[0].committed_kw == pytest.approx(3.0)
    assert_utc(stored[0].acked_at, sent + timedelta(seconds=3))
    assert await store.awards_for("evt_other") == []
    # Whose telemetry counts for the event: homes that acknowledged an award in it.
    assert await store.home_acked_in("evt_1", home)
    assert not await store.home_acked_in("evt_1", other)
    assert await store.home_acked_in("evt_1", other, acked=False)
    assert not await store.home_acked_in("evt_other", home, acked=False)


async def test_opt_outs_are_recorded_once(store: Store) -> None:
    home = await new_home(store)
    assert await store.record_opt_out("evt_1", home, "wh", "override", "m1")
    assert not await store.record_opt_out("evt_1", home, "wh", "override", "m1-resent")
    assert await store.record_opt_out("evt_1", home, "ev", "override", "m2")
    assert await store.record_opt_out("evt_1", home, None, "opt_out", "m3")
    assert not await store.record_opt_out("evt_1", home, None, "opt_out", "m4")
    assert await store.record_opt_out("evt_2", home, "wh", "override", "m5")
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(tables.opt_outs.c.message_id))).scalars().all()
    assert sorted(rows) == ["m1", "m2", "m3", "m5"]


# --- telemetry ----------------------------------------------------------------------------------


def samples(start: datetime, count: int, step: timedelta, power: float = 1.0) -> list[Sample]:
    """Return ``count`` samples from ``start``; power rises by 0.5 kW a sample."""
    return [
        Sample(ts=start + step * n, power_kw=power + n * 0.5, shed_kw=0.1, loads={"wh": 0.5})
        for n in range(count)
    ]


async def test_a_resent_telemetry_batch_is_stored_once(store: Store) -> None:
    home = await new_home(store)
    batch = samples(utc_now(), 10, timedelta(seconds=1))
    assert await store.save_telemetry(home, "t1", None, batch)
    assert await store.telemetry_count(home) == 10
    assert not await store.save_telemetry(home, "t1", None, batch)
    assert await store.telemetry_count(home) == 10
    assert await store.save_telemetry(home, "t2", "evt_1", batch[:3])
    assert await store.telemetry_count(home) == 13
    other = await new_home(store, "other")
    assert await store.save_telemetry(other, "t1", None, batch[:1])  # ids are per home
    assert await store.telemetry_count(other) == 1


async def test_concurrent_telemetry_of_many_homes_is_all_stored(store: Store) -> None:
    homes = [await new_home(store, f"h{n}") for n in range(20)]
    start = utc_now()
    results = await asyncio.gather(
        *(
            store.save_telemetry(home, f"t{batch}", None, samples(start, 10, timedelta(seconds=1)))
            for home in homes
            for batch in range(5)
        )
    )
    assert all(results)
    assert [await store.telemetry_count(home) for home in homes] == [50] * 20


async def test_telemetry_between_returns_the_window_by_home_then_time(store: Store) -> None:
    early = await new_home(store, "a")
    late = await new_home(store, "b")
    start = datetime(2026, 7, 1, 16, 0, tzinfo=CEST)  # 14:00 UTC
    step = timedelta(minutes=15)
    # Stored out of time order, in two batches per home.
    for home in (late, early):
        batch = samples(start, 8, step, power=2.0 if home == late else 1.0)
        await store.save_telemetry(home, "second", None, batch[4:])
        await store.save_telemetry(home, "first", None, batch[:4])
    window_start = start + step  # inclusive
    window_end = start + 5 * step  # exclusive
    found = await store.telemetry_between([late, early, "home_unknown"], window_start, window_end)
    ordered = sorted([early, late])
    expected = [
        (home, start + step * n, (2.0 if home == late else 1.0) + n * 0.5)
        for home in ordered
        for n in range(1, 5)
    ]
    assert found == expected
    for _home, ts, _power in found:
        assert ts.utcoffset() == timedelta(0)
    assert await store.telemetry_between([early], window_start, window_start) == []
    assert await store.telemetry_between([], window_start, window_end) == []


async def test_telemetry_between_takes_thousands_of_homes(store: Store) -> None:
    home = await new_home(store)
    start = datetime(2026, 7, 1, tzinfo=UTC)
    await store.save_telemetry(home, "t", None, samples(start, 3, timedelta(minutes=1)))
    many = [f"home_missing_{n:05d}" for n in range(40_000)] + [home]  # over both param limits
    found = await store.telemetry_between(many, start, start + timedelta(hours=1))
    assert [ts for _home, ts, _power in found] == [start + timedelta(minutes=n) for n in range(3)]


async def test_event_windows_leave_out_cancelled_and_past_events(store: Store) -> None:
    since = datetime(2026, 7, 1, tzinfo=UTC)
    day = timedelta(days=1)
    hour = timedelta(hours=1)
    cases = [
        ("evt_old", EventStatus.COMPLETED, since - day, since - day + hour),
        ("evt_ends_at_since", EventStatus.COMPLETED, since - hour, since),
        ("evt_spans_since", EventStatus.COMPLETED, since - hour, since + hour),
        ("evt_cancelled", EventStatus.CANCELLED, since + day, since + day + hour),
        ("evt_next", EventStatus.COMMITTED, since + 2 * day, since + 2 * day + 2 * hour),
        ("evt_done", EventStatus.COMPLETED, since + day, since + day + 3 * hour),
    ]
    for event_id, status, start, end in cases:
        await store.insert_event(
            event_record(event_id=event_id, status=status, start=start, end=end)
        )
    windows = await store.event_windows(since)
    assert windows == [
        (since - hour, since + hour),
        (since + day, since + day + 3 * hour),
        (since + 2 * day, since + 2 * day + 2 * hour),
    ]
    for start, end in windows:
        assert start.utcoffset() == end.utcoffset() == timedelta(0)


async def test_telemetry_window_reads_come_from_the_covering_index(store: Store) -> None:
    async with store.engine.connect() as conn:
        indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("telemetry"))
        by_name = {index["name"]: index["column_names"] for index in indexes}
        assert by_name["ix_telemetry_home_ts_power"] == ["home_id", "ts", "power_kw", "measured"]
        query = (
            "SELECT home_id, ts, power_kw FROM telemetry WHERE home_id IN ('a', 'b') "
            "AND ts >= '2026-07-01' AND ts < '2026-07-02' ORDER BY home_id, ts"
        )
        if store.dialect == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
            )
            assert "USING COVERING INDEX ix_telemetry_home_ts_power" in plan
            assert "TEMP B-TREE" not in plan  # no sort step either
        else:
            await conn.exec_driver_sql("SET enable_seqscan = off")
            await conn.exec_driver_sql("SET enable_bitmapscan = off")
            plan = " ".join(str(row[0]) for row in await conn.exec_driver_sql(f"EXPLAIN {query}"))
            assert "Index Only Scan using ix_telemetry_home_ts_power" in plan


# --- PostgreSQL specifics: column types, pool ---------------------------------------------------


async def test_postgresql_stores_timestamps_with_time_zone(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        async with store.engine.connect() as conn:
            kinds = (
                await conn.execute(
                    text(
                        "SELECT DISTINCT data_type FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND column_name IN "
                        "('start', 'end', 'created_at', 'ts', 'sent_at', 'expires_at')"
                    )
                )
            ).scalars()
            assert set(kinds) == {"timestamp with time zone"}
            # Any session time zone: values still come back as the same UTC instant.
            await conn.exec_driver_sql("SET TIME ZONE 'America/Los_Angeles'")
            await store.insert_event(event_record())
            row = (await conn.execute(select(tables.events.c.start))).one()
        assert_utc(row.start, event_record().start)
    finally:
        await store.close()


async def test_postgresql_url_forms_reach_the_same_database(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        await store.add_home("seen by every form")
    finally:
        await store.close()
    url = make_url(pg_url)
    for drivername in ("postgresql+asyncpg", "postgres"):
        same = await Store.open(url.set(drivername=drivername).render_as_string(False))
        try:
            assert [home.name for home in await same.list_homes()] == ["seen by every form"]
        finally:
            await same.close()


async def test_postgresql_pool_settings_come_from_the_url(pg_url: str) -> None:
    defaults = make_engine(pg_url)
    assert defaults.pool.size() == PoolSettings().pool_size
    await defaults.dispose()
    engine = make_engine(
        f"{pg_url}?pool_size=1&max_overflow=0&pool_timeout=0.3&ssl=disable&command_timeout=5"
    )
    try:
        async with engine.connect() as held:
            name = (await held.execute(text("SELECT current_setting('application_name')"))).one()
            assert name[0] == APPLICATION_NAME
            with pytest.raises(PoolTimeout):
                async with engine.connect() as second:
                    await second.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pool_size=0", "pool_size must be at least 1"),
        ("pool_size=ten", "not a number"),
        ("max_overflow=-1", "max_overflow must be 0 or more"),
        ("pool_pre_ping=maybe", "use true or false"),
        ("pool_size=2&pool_size=3", "more than once"),
        ("sslx=require", r"unknown PostgreSQL URL parameters \['sslx'\]"),
        ("command_timeout=soon", "command_timeout='soon' is not a number"),
    ],
)
def test_bad_pool_settings_are_refused(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_engine(f"postgresql://jeisson@127.0.0.1/jeisson?{query}")


def test_bad_database_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        make_engine("mysql://jeisson@127.0.0.1/jeisson")
    with pytest.raises(ValueError, match="unsupported database driver 'postgresql\\+psycopg2'"):
        make_engine("postgresql+psycopg2://jeisson@127.0.0.1/jeisson")
    with pytest.raises(ValueError, match="not a database URL"):
        make_engine("not a url")
    with pytest.raises(ValueError, match="PostgreSQL only"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}?pool_size=3")


async def test_postgresql_store_survives_dropped_connections(pg_url: str) -> None:
    store = await Store.open(pg_url)
    try:
        await store.add_home("before")
        admin = await asyncpg.connect(
            make_url(pg_url).set(database="postgres").render_as_string(hide_password=False)
        )
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2",
                make_url(pg_url).database,
                APPLICATION_NAME,
            )
        finally:
            await admin.close()
        assert killed >= 1
        await store.add_home("after")  # pre-ping replaces the dead connection: no error
        assert [home.name for home in await store.list_homes()] == ["before", "after"]
    finally:
        await store.close()


# --- migrations ---------------------------------------------------------------------------------


def schema_differences(conn: Connection) -> list[object]:
    """Return how the database differs from ``aggregator.tables`` (empty when in step)."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, tables.metadata))


async def test_a_fresh_database_is_migrated_to_head_matching_the_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert await migrations.current_revision(engine) is None
        store = await Store.open(db_url)
        await store.close()
        assert await migrations.current_revision(engine) == HEAD
        async with engine.connect() as conn:
            assert await conn.run_sync(schema_differences) == []
            columns = await conn.run_sync(lambda sync: inspect(sync).get_columns("events"))
        baseline = next(column for column in columns if column["name"] == "baseline_method")
        assert baseline["nullable"]
        assert baseline["default"] is None
    finally:
        await engine.dispose()


async def test_migrating_again_changes_nothing(store: Store) -> None:
    home = await new_home(store)
    await store.insert_event(event_record())
    async with store.engine.connect() as conn:
        before = await conn.run_sync(lambda sync: sorted(inspect(sync).get_table_names()))
    assert await migrations.upgrade(store.engine) == HEAD
    reopened = await Store.open(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        assert await reopened.get_home(home) is not None
        assert await reopened.get_event("evt_1") == event_record()
        async with reopened.engine.connect() as conn:
            after = await conn.run_sync(lambda sync: sorted(inspect(sync).get_table_names()))
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await reopened.close()
    assert after == before
    assert [row[0] for row in versions] == [HEAD]


async def test_downgrade_and_upgrade_again(store: Store) -> None:
    await store.insert_event(event_record())

    async def event_columns() -> set[str]:
        async with store.engine.connect() as conn:
            found = await conn.run_sync(lambda sync: inspect(sync).get_columns("events"))
        return {column["name"] for column in found}

    assert await migrations.downgrade(store.engine, migrations.FIRST_REVISION) == "0001"
    assert "baseline_method" not in await event_columns()
    assert await migrations.upgrade(store.engine) == HEAD
    assert "baseline_method" in await event_columns()
    assert await store.get_event("evt_1") == event_record()
    assert await migrations.downgrade(store.engine, "base") is None
    async with store.engine.connect() as conn:
        left = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(left) <= {"alembic_version"}


async def test_a_database_made_before_migrations_is_adopted(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        # What create_all left behind: the first schema, some data, no version table.
        await migrations.upgrade(engine, migrations.FIRST_REVISION)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
            await conn.execute(
                tables.server_meta.insert().values(key="aggregator_id", value="agg_legacy")
            )
    finally:
        await engine.dispose()
    store = await Store.open(db_url)
    try:
        assert await store.aggregator_id() == "agg_legacy"
        assert await migrations.current_revision(store.engine) == HEAD
    finally:
        await store.close()


async def test_concurrent_starts_migrate_once(db_url: str) -> None:
    stores = await asyncio.wait_for(
        asyncio.gather(*(Store.open(db_url) for _ in range(4))), timeout=30
    )
    try:
        ids = {await store.aggregator_id() for store in stores}
        assert len(ids) == 1
        assert await migrations.current_revision(stores[0].engine) == HEAD
    finally:
        for store in stores:
            await store.close()


async def test_two_databases_migrate_at_once_in_one_process(db_url: str, tmp_path: Path) -> None:
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    stores = await asyncio.wait_for(
        asyncio.gather(Store.open(db_url), Store.open(other_url)), timeout=30
    )
    try:
        for store in stores:
            assert await migrations.current_revision(store.engine) == HEAD
    finally:
        for store in stores:
            await store.close()


async def test_a_start_waits_for_a_migration_in_progress(db_url: str, tmp_path: Path) -> None:
    """Another process holding the migration lock makes a starting store wait, then proceed."""
    url = make_url(db_url)
    release: asyncio.Event = asyncio.Event()
    if url.get_backend_name() == "postgresql":
        holder = await asyncpg.connect(url.render_as_string(hide_password=False))
        await holder.execute("SELECT pg_advisory_lock($1)", migrations.MIGRATION_LOCK_KEY)

        async def unlock() -> None:
            await release.wait()
            await holder.execute("SELECT pg_advisory_unlock($1)", migrations.MIGRATION_LOCK_KEY)
            await holder.close()

    else:
        # Another aggregator process: WAL like the store's connections, mid-migration.
        holder_sqlite = sqlite3.connect(str(url.database), isolation_level=None)
        holder_sqlite.execute("PRAGMA journal_mode=WAL")
        holder_sqlite.execute("BEGIN IMMEDIATE")

        async def unlock() -> None:
            await release.wait()
            holder_sqlite.execute("COMMIT")
            holder_sqlite.close()

    unlocking = asyncio.create_task(unlock())
    opening = asyncio.create_task(Store.open(db_url))
    await asyncio.sleep(LOCK_WAIT_S)
    assert not opening.done()
    release.set()
    store = await asyncio.wait_for(opening, timeout=20)
    await unlocking
    try:
        assert await migrations.current_revision(store.engine) == HEAD
    finally:
        await store.close()


async def test_db_commands_upgrade_and_report_the_revision(db_url: str) -> None:
    before = await run_cli("db", "current", "--db", db_url)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("none ")
    upgraded = await run_cli("db", "upgrade", "--db", db_url, "-v")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"database at revision {HEAD} (head)"
    assert "Database schema migrated from empty to" in upgraded.stderr  # -v: INFO logs
    current = await run_cli("db", "current", "--db", db_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{HEAD} (head)"
    again = await run_cli("db", "upgrade", "--db", db_url, "-v")
    assert again.returncode == 0, again.stderr
    assert "migrated" not in again.stderr


async def test_processes_starting_at_once_migrate_once(db_url: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            str(JEISSON_AGGREGATOR),
            "-v",  # INFO logs: who migrated
            "db",
            "upgrade",
            "--db",
            db_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    migrated = [err for _out, err in outputs if b"Database schema migrated" in err]
    assert len(migrated) == 1
    engine = make_engine(db_url)
    try:
        assert await migrations.current_revision(engine) == HEAD
    finally:
        await engine.dispose()


async def test_db_command_errors_are_clear() -> None:
    refused = await run_cli("db", "current", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: database:")
    assert "Traceback" not in refused.stderr
    wrong = await run_cli("db", "upgrade", "--db", "oracle://x@y/z")
    assert wrong.returncode == 1
    assert "unsupported database 'oracle'" in wrong.stderr


# --- the real server on PostgreSQL --------------------------------------------------------------


@pytest.fixture
async def server(
    pg_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[RunningServer]:
    """Yield a started aggregator on a fresh PostgreSQL database (replaces the SQLite one)."""
    running = RunningServer(
        db_path=tmp_path / "unused.db",
        port=free_port(),
        settings=FAST,
        db_url=pg_url,
    )
    running.session = http
    await running.start()
    yield running
    await running.stop()


async def test_postgresql_server_restarted_mid_event_resumes_and_completes(
    server: RunningServer, make_home: HomeFactory
) -> None:
    assert server.store.dialect == "postgresql"
    assert not server.db_path.exists()
    home = await make_home(bids((3.0, 0.10, ["wh"])))
    event = await server.create_event(target_kw=3.0, end=utc_now() + timedelta(seconds=7))
    await event_status(server, event["id"], "active")

    await server.stop()
    await wait_for(lambda: not home.client.connected, what="home sees the server go")
    await server.start()
    await wait_for(lambda: home.client.connected, what="home reconnects")

    detail = await server.event(event["id"])
    assert detail["status"] == "active"
    assert detail["committed_kw"] == pytest.approx(3.0)
    await event_status(server, event["id"], "completed")
    await wait_for(lambda: bool(home.of_type(EventEnd)), what="event_end after restart")
    detail = await server.event(event["id"])
    assert detail["awards"][0]["status"] == "acked"
    assert await server.store.awards_for(event["id"]) != []
    windows = await server.store.event_windows(utc_now() - timedelta(hours=1))
    assert len(windows) == 1
