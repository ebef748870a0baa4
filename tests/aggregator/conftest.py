"""Fixtures: a real aggregator on 127.0.0.1 with a real SQLite store, and real home clients."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from aggregator.records import AwardRecord, AwardStatus, EventRecord, EventStatus
from aggregator.store import Store
from jeisson.client import HomeClient, enroll
from jeisson.common.protocol import BidStep, EventKind, Inventory, Load, Offer, Sample
from tests.helpers import wait_for

from .common import (
    EVENT_END,
    EVENT_START,
    HISTORY,
    INTERVAL,
    HomeFactory,
    RunningServer,
    ScriptedHome,
    water_heater_and_ev,
)
from .fixtures import http, server  # noqa: F401 - fixtures shared with tests/browser

PG_ADMIN_URL = os.environ.get(
    "JEISSON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL role allowed to create databases; CI starts the server (127.0.0.1:5432)."""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """Yield the URL of a fresh, empty PostgreSQL database, dropped afterwards.

    Fails (never skips) when PostgreSQL is unreachable: the PostgreSQL tests must run.
    """
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        pytest.fail(
            f"PostgreSQL is needed at {make_url(PG_ADMIN_URL)!r} and is unreachable: {err}. "
            "Start it (pg_ctlcluster --skip-systemctl-redirect <version> main start) "
            "or point JEISSON_TEST_PG_URL at a role that may create databases."
        )
    name = f"jeisson_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Yield the URL of a fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """Yield a store opened (and so migrated) on the fresh database."""
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


@pytest.fixture
async def make_home(
    server: RunningServer, http: aiohttp.ClientSession
) -> AsyncIterator[HomeFactory]:
    """Yield a factory of enrolled, connected, scripted homes (closed at teardown)."""
    homes: list[ScriptedHome] = []

    async def factory(
        steps: Callable[[Offer], Sequence[BidStep]] | None = None,
        loads: list[Load] | None = None,
        *,
        auto_ack: bool = True,
        participating: bool = True,
    ) -> ScriptedHome:
        home_id, code = await server.add_home(f"home-{len(homes)}")
        enrolled = await enroll(http, server.url, code)
        inventory = Inventory(loads=loads or water_heater_and_ev(), participating=participating)
        client = HomeClient(
            server.url,
            enrolled.token,
            session=http,
            software_version="test",
            inventory_provider=lambda: inventory,
            backoff_base=0.05,
            backoff_max=0.2,
        )
        home = ScriptedHome(
            home_id=home_id,
            client=client,
            steps=steps or (lambda _offer: []),
            auto_ack=auto_ack,
            token=enrolled.token,
        )
        client.subscribe(home.on_message)
        home.task = asyncio.create_task(client.run())
        homes.append(home)
        await wait_for(lambda: client.connected, what="home connected")
        return home

    yield factory
    for home in homes:
        await home.client.close()
        if home.task is not None:
            home.task.cancel()
            await asyncio.gather(home.task, return_exceptions=True)


# --- A settled event (settlement API and CLI) ------------------------------------------------


async def store_day_profile(
    store: Store, home_id: str, kw_at: object, start: datetime, end: datetime
) -> None:
    """Store one sample per 15-minute interval from ``start`` to ``end``."""
    samples = []
    ts = start
    while ts < end:
        samples.append(Sample(ts=ts + timedelta(minutes=7), power_kw=kw_at(ts)))  # type: ignore[operator]
        ts += INTERVAL
    for chunk in range(0, len(samples), 500):
        await store.save_telemetry(
            home_id, f"{home_id}-{chunk}", None, samples[chunk : chunk + 500]
        )


def settlement_award(
    home_id: str, status: AwardStatus, price: float, kw: float = 3.0
) -> AwardRecord:
    """Return an award of the settled event as the store holds it."""
    return AwardRecord(
        award_id=f"awd_{home_id}",
        event_id="evt_settle",
        round=1,
        home_id=home_id,
        kw=kw,
        price=price,
        status=status,
        sent_at=EVENT_START - timedelta(minutes=30),
        load_kw={"wh": kw},
        acked_at=EVENT_START - timedelta(minutes=29) if status is AwardStatus.ACKED else None,
    )


@pytest.fixture
async def settled_event(server: RunningServer) -> dict[str, str]:
    """A completed event: one home curtailed 2.5 kW for an hour, one curtailed nothing."""
    store = server.store
    curtailing, _ = await server.add_home("curtailing")
    steady, _ = await server.add_home("steady")
    never_acked, _ = await server.add_home("never-acked")
    await store.insert_event(
        EventRecord(
            event_id="evt_settle",
            name="settle me",
            kind=EventKind.MARKET,
            status=EventStatus.COMPLETED,
            target_kw=5.0,
            price_cap=0.4,
            start=EVENT_START,
            end=EVENT_END,
            bid_window_s=30,
            restore_stagger_s=60,
            currency="EUR",
            created_at=EVENT_START - timedelta(hours=1),
            clearing_price=0.2,
            current_round=1,
            baseline_method="residential",
        )
    )
    await store.insert_awards(
        [
            settlement_award(curtailing, AwardStatus.ACKED, 0.2),
            settlement_award(steady, AwardStatus.ACKED, 0.2, kw=2.0),
            settlement_award(never_acked, AwardStatus.EXPIRED, 0.2),
        ]
    )
    day_start = datetime(2026, 11, 18, tzinfo=UTC)
    in_event = lambda ts: EVENT_START <= ts < EVENT_END  # noqa: E731
    await store_day_profile(
        store,
        curtailing,
        lambda ts: 0.5 if in_event(ts) else 3.0,
        day_start - HISTORY,
        day_start + timedelta(days=1),
    )
    await store_day_profile(
        store, steady, lambda _ts: 2.0, day_start - HISTORY, day_start + timedelta(days=1)
    )
    return {"curtailing": curtailing, "steady": steady, "never_acked": never_acked}
