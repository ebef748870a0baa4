"""Shared helpers of the settlement tests: a stored program with homes, events and telemetry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count

from aggregator.records import AwardRecord, AwardStatus, EventRecord, EventStatus
from aggregator.settlement.calendar import ProgramCalendar
from aggregator.settlement.program import ProgramSettings
from aggregator.settlement.repository import SettlementRepository
from aggregator.settlement.settler import Settler
from aggregator.store import Store
from jeisson.common.protocol import EventKind, Load, LoadKind, Sample

INTERVAL = timedelta(minutes=15)
SAMPLE_OFFSET = timedelta(minutes=7)
BATCH = 500

type Profile = Callable[[datetime], float]


def water_heater(rated_kw: float = 3.0) -> list[Load]:
    """One water heater."""
    return [Load(load_id="wh", name="Water heater", kind=LoadKind.WATER_HEATER, rated_kw=rated_kw)]


@dataclass
class Clock:
    """A clock the test moves."""

    now: datetime

    def __call__(self) -> datetime:
        """Return the current test time."""
        return self.now


@dataclass
class SyntheticProgram:
    """Homes, events, awards and telemetry written to a real store, and a settler over it."""

    store: Store
    clock: Clock
    repository: SettlementRepository = field(init=False)
    settler: Settler = field(init=False)
    _ids: count[int] = field(default_factory=count)

    def __post_init__(self) -> None:
        """Build the repository and a settler on the test clock."""
        self.repository = SettlementRepository(self.store)
        self.settler = Settler(self.repository, clock=self.clock)

    async def use(
        self,
        timezone: str = "UTC",
        country: str | None = None,
        settle_after: timedelta = timedelta(hours=1),
        estimated_pay_ratio: float = 0.5,
    ) -> None:
        """Store the program settings."""
        await self.repository.save_program(
            ProgramSettings(
                calendar=ProgramCalendar(timezone=timezone, holiday_country=country),
                settle_after=settle_after,
                estimated_pay_ratio=estimated_pay_ratio,
            )
        )

    async def home(self, loads: list[Load] | None = None) -> str:
        """Add a home with an inventory."""
        record, _ = await self.store.add_home(f"home-{next(self._ids)}")
        await self.store.save_inventory(record.home_id, loads or water_heater(), participating=True)
        return record.home_id

    async def event(
        self,
        event_id: str,
        start: datetime,
        end: datetime,
        *,
        status: EventStatus = EventStatus.COMPLETED,
        currency: str = "EUR",
        method: str = "residential",
    ) -> None:
        """Store a finished event."""
        await self.store.insert_event(
            EventRecord(
                event_id=event_id,
                name=event_id,
                kind=EventKind.MARKET,
                status=status,
                target_kw=10.0,
                price_cap=1.0,
                start=start,
                end=end,
                bid_window_s=30,
                restore_stagger_s=0,
                currency=currency,
                created_at=start - timedelta(hours=6),
                baseline_method=method,
            )
        )

    async def award(
        self,
        event_id: str,
        home_id: str,
        kw: float,
        price: float,
        status: AwardStatus = AwardStatus.ACKED,
    ) -> None:
        """Store an acknowledged award of ``kw`` at ``price``."""
        event = await self.store.get_event(event_id)
        assert event is not None
        sent = event.start - timedelta(hours=1)
        await self.store.insert_awards(
            [
                AwardRecord(
                    award_id=f"awd-{next(self._ids)}",
                    event_id=event_id,
                    round=1,
                    home_id=home_id,
                    kw=kw,
                    price=price,
                    status=status,
                    sent_at=sent,
                    load_kw={"wh": kw},
                    acked_at=sent + timedelta(seconds=5),
                )
            ]
        )

    async def telemetry(
        self,
        home_id: str,
        start: datetime,
        end: datetime,
        kw_at: Profile,
        *,
        every: timedelta = INTERVAL,
        offset: timedelta = SAMPLE_OFFSET,
        measured: bool | None = None,
    ) -> int:
        """Store one sample per ``every`` from ``start + offset`` to ``end``; return the count."""
        samples = []
        ts = start + offset
        while ts < end:
            samples.append(Sample(ts=ts, power_kw=kw_at(ts), measured=measured))
            ts += every
        for first in range(0, len(samples), BATCH):
            await self.store.save_telemetry(
                home_id, f"b{next(self._ids)}", None, samples[first : first + BATCH]
            )
        return len(samples)


def during(window: tuple[datetime, datetime], inside: float, outside: float) -> Profile:
    """Return a profile drawing ``inside`` kW within ``window`` and ``outside`` kW otherwise."""
    start, end = window

    def kw_at(ts: datetime) -> float:
        return inside if start <= ts < end else outside

    return kw_at
