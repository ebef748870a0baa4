"""Carry out awards on the home's own clock: switch off at the start, hold, restore with stagger.

The :class:`EventRunner` is autonomous once an award is taken: its timers (start, end, each
staggered restore) run in Home Assistant whether or not the aggregator is reachable, and every
decision is saved to the :class:`~.schedule.Schedule` store *before* it is carried out, so a
restart resumes it. It restores only the loads it switched off itself, and treats a homeowner
switching a held load back on as an opt-out for that load — reported, never fought.

A load whose actuator cannot be reached is reported as an ``unavailable`` opt-out (at the start,
or the first time it drops off mid-event), so the aggregator re-negotiates what is missing; one
Jeisson switched off is still restored at the end if it is found off. Every restore is recorded
as owed (``Schedule.to_restore``, saved) before it is tried; one that fails is retried when the
actuator is reachable again and every :data:`RETRY_INTERVAL`, for :data:`RETRY_FOR`, until the
load is on — and dropped as soon as the load is seen on, so a homeowner switching it off again
afterwards is never fought. Its
:class:`~.telemetry.TelemetryReporter` reports the home's power all the time (slowly outside
events, for baselines; fast with the event's id while one is active).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from homeassistant.const import STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    CALLBACK_TYPE,
    CoreState,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.event import (
    async_track_point_in_utc_time,
    async_track_state_change_event,
    async_track_time_interval,
)
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from jeisson.common.protocol import (
    Award,
    EventKind,
    HeldAward,
    HomeEventStatus,
    OptOutReason,
    Sample,
)
from jeisson.policy.awards import decide
from jeisson.policy.bidding import expected_kw
from jeisson.policy.recent import RecentPower

from .actuators import Actuator, load_power_kw, load_reading
from .const import (
    EVENT_CANCELLED,
    EVENT_ENDED,
    EVENT_OPTED_OUT,
    EVENT_STARTED,
    LOGGER,
    RAMP_STEPS,
)
from .executors import SettingActuator, async_apply, async_restore, can_act, holds
from .models import SETTING_DOMAINS, LoadConfig
from .schedule import HeldEvent, Outcome, PendingRestore, Schedule
from .telemetry import TelemetryReporter

type Loads = Mapping[str, LoadConfig]

RETRY_INTERVAL = timedelta(minutes=1)
"""How often a failed restore is retried (and held loads' reachability checked)."""
RETRY_FOR = timedelta(hours=24)
"""How long after it fell due a restore that keeps failing is retried before giving up."""
STARTUP_GRACE = timedelta(minutes=5)
"""After a (re)start, how long an actuator not back yet may stay away before a restore it
fails is warned about: WiFi actuators and other integrations' devices reconnect meanwhile, and a
WiFi actuator may well have restored the load itself."""
_UNREACHABLE_STATES = (STATE_UNAVAILABLE, STATE_UNKNOWN)


@dataclass(frozen=True, kw_only=True, slots=True)
class AwardDecision:
    """What the home answers to an award."""

    accepted: bool
    loads: list[str]
    kw: float
    new: bool = True
    """False when the award was taken before (a re-sent award, or one seen before a restart)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerHooks:
    """How the runner reaches the rest of the integration."""

    loads: Callable[[], Loads]
    actuator: Callable[[LoadConfig], Actuator]
    fire: Callable[[str, dict[str, Any]], None]
    """Fire a bus event (the type, and its payload without the device id)."""
    changed: Callable[[], None]
    """The schedule changed: entities should refresh."""
    send_opt_out: Callable[[str, str | None, OptOutReason], None]
    send_telemetry: Callable[[Sequence[Sample], str | None], None]


class EventRunner:
    """Executes the awards of one home."""

    def __init__(
        self,
        hass: HomeAssistant,
        store: Store[dict[str, Any]],
        hooks: RunnerHooks,
        *,
        create_task: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
        rng: random.Random | None = None,
    ) -> None:
        """Prepare a runner; call :meth:`async_load` then :meth:`async_resume`."""
        self._hass = hass
        self._store = store
        self._hooks = hooks
        self._create_task = create_task
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self.schedule = Schedule()
        self._timers: dict[tuple[str, str], CALLBACK_TYPE] = {}
        self._unsub_state: CALLBACK_TYPE | None = None
        self._unsub_retry: CALLBACK_TYPE | None = None
        self.telemetry = TelemetryReporter(hass, sample=self.sample, send=hooks.send_telemetry)
        self.recent_power = RecentPower()
        """Each load's recent measured power: what its bid steps expect it to move."""
        self._closed = False
        self._resumed_at = dt_util.utcnow()
        self._not_back_yet: set[str] = set()
        """Loads whose actuator was unreachable at resume and has not been seen since."""

    # --- lifecycle --------------------------------------------------------------------------

    async def async_load(self) -> None:
        """Read the saved schedule."""
        self.schedule = Schedule.from_dict(await self._store.async_load())

    async def async_resume(self) -> None:
        """Pick up every open award and every owed restore where it was (restart or reload)."""
        async with self._lock:
            self._resumed_at = dt_util.utcnow()
            self._not_back_yet = {
                load_id
                for load_id, load in self._hooks.loads().items()
                if not self._hooks.actuator(load).available
            }
            for event in self.schedule.open_events():
                await self._resume_event(event)
            await self._save()
            # Loads whose actuator is not back yet (its integration may still be loading) are
            # retried when it comes back, or by the periodic retry.
            loads = self._hooks.loads()
            now = dt_util.utcnow()
            for load_id in list(self.schedule.to_restore):
                if load_id not in loads or self._hooks.actuator(loads[load_id]).available:
                    await self._try_restore(load_id, now)
            await self._save()
        self._after_change()

    @callback
    def async_shutdown(self) -> None:
        """Cancel every timer and listener; queue the buffered telemetry (the schedule stays)."""
        self._closed = True
        self.telemetry.async_stop()
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
        if self._unsub_state:
            self._unsub_state()
            self._unsub_state = None
        if self._unsub_retry:
            self._unsub_retry()
            self._unsub_retry = None

    def held_awards(self) -> list[HeldAward]:
        """Return the awards still being executed (reported in the home's hello)."""
        return [event.to_held_award() for event in self.schedule.open_events()]

    def committed_loads(self, start: datetime, end: datetime, event_id: str) -> set[str]:
        """Return the loads that must not bid for ``event_id`` in ``[start, end)``.

        Loads committed to an open award of another event overlapping the window, and every
        load named in any award of ``event_id`` itself — held, given back (opted out,
        overridden) or declined: the aggregator refuses a whole bid naming one of them.
        """
        return {
            load_id
            for event in self.schedule.open_events()
            if event.window_start < end and start < event.window_end
            for load_id in event.loads
        } | self.schedule.loads_named_in(event_id)

    # --- awards -----------------------------------------------------------------------------

    async def async_take_award(
        self,
        award: Award,
        *,
        is_available: Callable[[LoadConfig], bool],
        bid_kw: Mapping[str, float] | None = None,
    ) -> AwardDecision:
        """Record ``award`` (before acknowledging it) and schedule its start and end.

        ``bid_kw`` is the kW each load bid for the event: what the aggregator counts it at.
        """
        loads = self._hooks.loads()
        tz = dt_util.get_default_time_zone()
        async with self._lock:
            if (known := self.schedule.events.get(award.award_id)) is not None:
                return AwardDecision(
                    accepted=known.outcome is not Outcome.REJECTED,
                    loads=list(known.loads),
                    kw=known.committed_kw,
                    new=False,
                )
            decision = decide(
                award,
                {load_id: load.flex_load() for load_id, load in loads.items()},
                tz=tz,
                # A market award names loads the home bid: only the direct call asks for them now.
                is_available=lambda flex: (
                    award.kind is not EventKind.DIRECT or is_available(loads[flex.load_id])
                ),
                recent_kw=self.recent_power.mean_kw,
            )
            chosen, accepted, kw = decision.load_ids, decision.accepted, decision.kw
            load_kw = {
                load_id: (bid_kw or {}).get(load_id)
                or expected_kw(loads[load_id].flex_load(), self.recent_power.mean_kw(load_id))
                for load_id in chosen
            }
            event = HeldEvent(
                event_id=award.event_id,
                award_id=award.award_id,
                kind=award.kind,
                price=award.price,
                currency=award.currency,
                window_start=award.window_start,
                window_end=award.window_end,
                restore_stagger_s=award.restore_stagger_s,
                loads=chosen if accepted else [],
                committed_kw=kw if accepted else 0.0,
                load_kw=load_kw if accepted else {},
                levels={
                    load.load_id: load.level_kw
                    for load in decision.loads
                    if accepted and load.level_kw is not None
                },
                declined=[] if accepted else list(award.loads),
            )
            if not accepted:
                event.status = HomeEventStatus.DONE
                event.outcome = Outcome.REJECTED
            self.schedule.events[award.award_id] = event
            self.schedule.currency = award.currency
            await self._save()
            if accepted:
                await self._resume_event(event)
        self._after_change()
        return AwardDecision(accepted=accepted, loads=event.loads, kw=event.committed_kw)

    async def async_finish_event(self, event_id: str, outcome: Outcome, reason: str = "") -> None:
        """End every open award of ``event_id`` (window over, or cancelled) and restore."""
        async with self._lock:
            for event in self.schedule.for_event(event_id):
                await self._finish(event, outcome, reason)
            await self._save()
        self._after_change()

    async def async_opt_out(self, event_id: str | None, reason: OptOutReason) -> list[str]:
        """Opt out of one event (or every open one): restore its loads now. Return event ids."""
        opted: list[str] = []
        async with self._lock:
            events = (
                self.schedule.for_event(event_id)
                if event_id is not None
                else self.schedule.open_events()
            )
            to_restore: list[str] = []
            now = dt_util.utcnow()
            for event in events:
                given_back = [
                    *event.held_loads(),
                    *event.restore_at,
                    *event.unreachable,
                    *event.preconditioned_only(),
                ]
                event.unreachable.clear()
                for load_id in given_back:
                    self._release(event, load_id, now)
                    self._owe_restore(event, load_id, now)
                to_restore.extend(given_back)
                self._cancel_timers(event.award_id)
                event.status = HomeEventStatus.DONE
                event.outcome = Outcome.OPTED_OUT
                if event.event_id not in opted:
                    opted.append(event.event_id)
            await self._save()
            for load_id in to_restore:
                await self._try_restore(load_id, now)
            await self._save()
        for opted_event in opted:
            self._hooks.send_opt_out(opted_event, None, reason)
            self._hooks.fire(
                EVENT_OPTED_OUT,
                {"event_id": opted_event, "load_id": None, "reason": reason.value},
            )
        self._after_change()
        return opted

    @callback
    def async_loads_changed(self) -> None:
        """Watch the actuators and power sensors of the loads as they are now."""
        self._after_change()

    # --- internals --------------------------------------------------------------------------

    async def _save(self) -> None:
        self.schedule.prune()
        await self._store.async_save(self.schedule.as_dict())

    def _after_change(self) -> None:
        if self._closed:
            return
        self._refresh_state_listener()
        self._refresh_retry_timer()
        self._refresh_telemetry()
        self._hooks.changed()

    async def _resume_event(self, event: HeldEvent) -> None:
        """Bring one open award up to date with the clock and the switches (lock held)."""
        now = dt_util.utcnow()
        if event.status is HomeEventStatus.AWARDED:
            if now >= event.window_end:
                event.status = HomeEventStatus.DONE
                event.outcome = Outcome.COMPLETED
            elif now >= event.window_start:
                await self._start(event)
            else:
                self._at(event, "start", event.window_start, self._on_start_time)
                self._at(event, "end", event.window_end, self._on_end_time)
                self._arm_preconditioning(event, now)
            return
        if event.status is HomeEventStatus.ACTIVE:
            await self._reconcile_active(event, now)
            if now >= event.window_end:
                await self._finish(event, Outcome.COMPLETED)
            else:
                self._at(event, "end", event.window_end, self._on_end_time)
            return
        for load_id, when in event.restore_at.items():
            self._at(event, f"restore:{load_id}", when, self._on_restore_time, load_id)

    async def _reconcile_active(self, event: HeldEvent, now: datetime) -> None:
        """After a restart mid-event: finish interrupted switch-offs, detect overrides."""
        loads = self._hooks.loads()
        for load_id in list(event.switched_off):
            if load_id in event.released or load_id not in loads:
                continue
            actuator = self._hooks.actuator(loads[load_id])
            if load_id not in event.confirmed_off:
                await self._switch_off(event, load_id, actuator, now)
            elif holds(actuator, event.targets.get(load_id, {})) is False:
                self._stop_holding(event, load_id, now, OptOutReason.OVERRIDE)
        for load_id in list(event.unreachable):
            if load_id not in loads or (
                holds(self._hooks.actuator(loads[load_id]), event.targets.get(load_id, {})) is False
            ):
                event.unreachable.remove(load_id)  # on again: nothing left to restore

    async def _start(self, event: HeldEvent) -> None:
        """Switch off the awarded loads that are on now; give back unreachable ones (lock held).

        A load an earlier award left off (still held, waiting for its staggered restore, or
        owed a restore) is taken over by this one: it stays off and this award restores it.
        """
        now = dt_util.utcnow()
        loads = self._hooks.loads()
        unreachable: list[str] = []
        for load_id in event.loads:
            if load_id not in loads or load_id in event.opted_out:
                continue
            actuator = self._hooks.actuator(loads[load_id])
            if not can_act(actuator):  # unreachable, or a battery at its minimum charge
                self._release(event, load_id, now)
                event.opted_out.append(load_id)
                unreachable.append(load_id)
            elif isinstance(actuator, SettingActuator):
                self._prepare_setting(event, loads[load_id], actuator, now)
            elif actuator.is_on is False and self._take_over(event, load_id, now):
                event.switched_off[load_id] = loads[load_id].rated_kw
            elif actuator.is_on:
                self.schedule.to_restore.pop(load_id, None)  # on: nothing owed any more
                event.switched_off[load_id] = load_power_kw(loads[load_id], actuator)
        event.status = HomeEventStatus.ACTIVE
        await self._save()
        for load_id in list(event.switched_off):
            await self._switch_off(event, load_id, self._hooks.actuator(loads[load_id]), now)
        await self._save()
        self._at(event, "end", event.window_end, self._on_end_time)
        self._hooks.fire(
            EVENT_STARTED,
            {
                "event_id": event.event_id,
                "award_id": event.award_id,
                "loads": event.held_loads(),
                "shed_kw": round(event.shed_kw(), 3),
                "window_end": event.window_end.isoformat(),
            },
        )
        for load_id in unreachable:
            LOGGER.warning(
                "Load %s is unreachable at the start of event %s; reported as unavailable",
                load_id,
                event.event_id,
            )
            self._report_opt_out(event, load_id, OptOutReason.UNAVAILABLE)

    def _prepare_setting(
        self, event: HeldEvent, load: LoadConfig, actuator: SettingActuator, now: datetime
    ) -> None:
        """Record a setting load's saved setting, target and moved kW (before acting).

        One an earlier award still holds (or owes a restore) is taken over with the setting
        saved then, so the restore puts back the owner's setting, not the earlier award's.
        """
        load_id = load.load_id
        inherited = self._saved_setting(event, load_id)
        if load_id in event.preconditioned:
            if holds(actuator, event.targets.get(load_id, {})) is False:
                self._stop_holding(event, load_id, now, OptOutReason.OVERRIDE)
                return  # the owner changed it while it was pre-conditioned: theirs now
            inherited = event.settings[load_id]
        if not self._take_over(event, load_id, now) and not actuator.is_on:
            return  # nothing to move (a charger at its floor, a thermostat off, eco already)
        saved = inherited if inherited is not None else actuator.snapshot()
        before = load_power_kw(load, actuator)
        level = event.levels.get(load_id)
        event.settings[load_id] = saved
        event.targets[load_id] = actuator.target(level, before, saved)
        event.switched_off[load_id] = round(actuator.moved_kw(level, before), 3)

    def _saved_setting(self, event: HeldEvent, load_id: str) -> dict[str, Any] | None:
        """Return the owner's setting an earlier award saved for ``load_id``, if one holds it."""
        if (pending := self.schedule.to_restore.get(load_id)) is not None and pending.saved:
            return pending.saved
        for other in self.schedule.open_events():
            if (
                other is not event
                and load_id in other.settings
                and (load_id in other.held_loads() or load_id in other.restore_at)
            ):
                return other.settings[load_id]
        return None

    def _take_over(self, event: HeldEvent, load_id: str, now: datetime) -> bool:
        """Take ``load_id`` (off) over from the awards that would restore it; True if any."""
        earlier = [
            other
            for other in self.schedule.open_events()
            if other is not event and (load_id in other.held_loads() or load_id in other.restore_at)
        ]
        owed = self.schedule.to_restore.pop(load_id, None) is not None
        for other in earlier:
            self._release(other, load_id, now)
            self._cancel_timer(other.award_id, f"restore:{load_id}")
            if other.status is HomeEventStatus.RESTORING and not other.restore_at:
                other.status = HomeEventStatus.DONE
        return owed or bool(earlier)

    async def _switch_off(
        self, event: HeldEvent, load_id: str, actuator: Actuator, now: datetime
    ) -> None:
        target = event.targets.get(load_id, {})
        try:
            await async_apply(actuator, target)
        except HomeAssistantError as err:
            LOGGER.warning("Could not switch off load %s: %s", load_id, err)
            self._stop_holding(event, load_id, now, OptOutReason.UNAVAILABLE)
            if holds(actuator, target) is not False:  # moved all the same: restore at the end
                event.unreachable.append(load_id)
            return
        event.confirmed_off.append(load_id)
        event.off_since[load_id] = now
        LOGGER.debug("Switched off load %s for event %s", load_id, event.event_id)

    async def _finish(self, event: HeldEvent, outcome: Outcome, reason: str = "") -> None:
        """End one award: schedule staggered restores of what Jeisson switched off (lock held)."""
        if event.status in (HomeEventStatus.RESTORING, HomeEventStatus.DONE):
            return
        self._cancel_timers(event.award_id)
        was_active = event.status is HomeEventStatus.ACTIVE
        now = dt_util.utcnow()
        event.outcome = outcome
        ramps = [load_id for load_id in event.held_loads() if self._ramps(event, load_id)]
        held = [*event.held_loads(), *event.unreachable, *event.preconditioned_only()]
        event.unreachable.clear()
        for load_id in held:
            stagger = event.restore_stagger_s
            # A ramp ends in the second half of the stagger, its steps evenly before.
            delay = self._rng.uniform(stagger / 2 if load_id in ramps else 0, stagger)
            event.restore_at[load_id] = now + timedelta(seconds=delay)
        event.status = HomeEventStatus.RESTORING if held else HomeEventStatus.DONE
        await self._save()
        if was_active and self.telemetry.event_id == event.event_id:
            self.telemetry.async_report_now(now)
        for load_id, when in event.restore_at.items():
            self._at(event, f"restore:{load_id}", when, self._on_restore_time, load_id)
        for load_id in ramps:
            for step in range(1, RAMP_STEPS):
                when = now + (event.restore_at[load_id] - now) * step / RAMP_STEPS
                self._at(event, f"ramp:{load_id}:{step}", when, self._on_ramp_time, load_id)
        payload: dict[str, Any] = {
            "event_id": event.event_id,
            "award_id": event.award_id,
            "restore_at": {key: value.isoformat() for key, value in event.restore_at.items()},
        }
        if outcome is Outcome.CANCELLED:
            payload["reason"] = reason
            self._hooks.fire(EVENT_CANCELLED, payload)
        else:
            self._hooks.fire(EVENT_ENDED, payload)

    async def _restore(self, award_id: str, load_id: str) -> None:
        """Give one load back after its staggered delay."""
        async with self._lock:
            event = self.schedule.events.get(award_id)
            if event is None or load_id not in event.restore_at:
                return
            self._timers.pop((award_id, f"restore:{load_id}"), None)
            now = dt_util.utcnow()
            self._release(event, load_id, now)
            if not event.restore_at:
                event.status = HomeEventStatus.DONE
            self._owe_restore(event, load_id, now)
            await self._save()
            await self._try_restore(load_id, now)
            await self._save()
        self._after_change()

    def _owe_restore(self, event: HeldEvent, load_id: str, now: datetime) -> None:
        """Record that ``load_id`` must be switched back on (saved before it is tried)."""
        self.schedule.to_restore.setdefault(
            load_id,
            PendingRestore(
                event_id=event.event_id,
                since=now,
                saved=event.settings.get(load_id, {}),
                target=event.targets.get(load_id, {}),
            ),
        )

    def _held_now(self, load_id: str) -> bool:
        """Return True when an open award holds ``load_id`` off (it must stay off)."""
        return any(load_id in event.held_loads() for event in self.schedule.open_events())

    async def _try_restore(self, load_id: str, now: datetime) -> None:
        """Switch an owed load back on if it is off and reachable (lock held; caller saves).

        The debt is settled once the load is on — switched on here, or found on (by the
        homeowner, or by the device itself): what anyone does with it afterwards is theirs.
        """
        pending = self.schedule.to_restore.get(load_id)
        loads = self._hooks.loads()
        if pending is None or self._held_now(load_id):
            return
        if load_id not in loads:
            del self.schedule.to_restore[load_id]  # the load was removed from the home
            return
        actuator = self._hooks.actuator(loads[load_id])
        if actuator.available:
            self._not_back_yet.discard(load_id)
        if actuator.available and holds(actuator, pending.target) is False:
            del self.schedule.to_restore[load_id]
            if pending.failed:
                LOGGER.info("Load %s is on again; nothing left to restore", load_id)
            return
        if now >= pending.since + RETRY_FOR:
            del self.schedule.to_restore[load_id]
            LOGGER.warning(
                "Gave up restoring load %s after event %s: it could not be switched on for "
                "%s; switch it on yourself",
                load_id,
                pending.event_id,
                RETRY_FOR,
            )
            return
        if not actuator.available:
            # Not back since the restart yet: retried when it is, warned about after a while.
            waiting = load_id in self._not_back_yet and now < self._resumed_at + STARTUP_GRACE
            self._restore_failed(pending, load_id, "unreachable", quiet=waiting)
            return
        try:
            await async_restore(actuator, pending.saved)
        except HomeAssistantError as err:
            self._restore_failed(pending, load_id, str(err))
            return
        del self.schedule.to_restore[load_id]
        if pending.failed:
            LOGGER.info("Restored load %s after event %s on a retry", load_id, pending.event_id)
        else:
            LOGGER.debug("Switched load %s back on after event %s", load_id, pending.event_id)

    @staticmethod
    def _restore_failed(
        pending: PendingRestore, load_id: str, why: str, *, quiet: bool = False
    ) -> None:
        """Warn about the first failed restore of a load; later (or quiet) ones are debug only."""
        if quiet:
            LOGGER.debug("Restore of load %s waits for its actuator to come back", load_id)
            return
        if pending.failed:
            LOGGER.debug("Restore of load %s is still failing: %s", load_id, why)
            return
        pending.failed = True
        LOGGER.warning(
            "Could not restore load %s after event %s: %s; retrying when it is reachable "
            "again and every %s for %s",
            load_id,
            pending.event_id,
            why,
            RETRY_INTERVAL,
            RETRY_FOR,
        )

    def _release(self, event: HeldEvent, load_id: str, now: datetime) -> None:
        before = event.earnings
        event.release(load_id, now)
        self.schedule.earnings_total += event.earnings - before

    def _stop_holding(
        self, event: HeldEvent, load_id: str, now: datetime, reason: OptOutReason
    ) -> None:
        """Stop holding one load (switched on by hand, or unreachable) and report it."""
        self._release(event, load_id, now)
        event.opted_out.append(load_id)
        self._report_opt_out(event, load_id, reason)

    def _report_opt_out(self, event: HeldEvent, load_id: str, reason: OptOutReason) -> None:
        """Tell the aggregator (queued while disconnected) and the bus that a load is out."""
        self._hooks.send_opt_out(event.event_id, load_id, reason)
        self._hooks.fire(
            EVENT_OPTED_OUT,
            {"event_id": event.event_id, "load_id": load_id, "reason": reason.value},
        )

    def _taken_back(self, event: HeldEvent, load: LoadConfig, entity_id: str) -> bool:
        """Return True when ``entity_id``'s change took ``load`` away from where Jeisson put it.

        A switched load switched on; a setting load set to anything else than its target.
        """
        actuator = self._hooks.actuator(load)
        if entity_id not in actuator.watched_entity_ids:
            return False
        # Still where Jeisson put it (its own change), or unknown: not taken back.
        return holds(actuator, event.targets.get(load.load_id, {})) is False

    def _give_back(self, event: HeldEvent, load_id: str, now: datetime) -> None:
        """Stop tracking a load the owner took back: an override, or an early restore."""
        if load_id in event.unreachable:
            event.unreachable.remove(load_id)  # back and on: nothing to restore
        elif load_id in event.restore_at:
            self._release(event, load_id, now)  # restored by hand, a bit early
            self._cancel_timer(event.award_id, f"restore:{load_id}")
            if not event.restore_at:
                event.status = HomeEventStatus.DONE
        else:
            self._stop_holding(event, load_id, now, OptOutReason.OVERRIDE)

    async def _handle_switched_on(self, entity_id: str) -> None:
        """Give back what a watched entity took back (switched on, or set elsewhere)."""
        async with self._lock:
            loads = self._hooks.loads()
            now = dt_util.utcnow()
            changed = False
            for event in self.schedule.open_events():
                for load_id in [*event.held_loads(), *event.restore_at, *event.unreachable]:
                    if load_id in loads and self._taken_back(event, loads[load_id], entity_id):
                        self._give_back(event, load_id, now)
                        changed = True
            for load_id in list(self.schedule.to_restore):
                if load_id in loads and (
                    entity_id in self._hooks.actuator(loads[load_id]).watched_entity_ids
                ):
                    await self._try_restore(load_id, now)  # found on: settled
                    changed = True
            if changed:
                await self._save()
        if changed:
            self._after_change()

    async def _check_reachability(self) -> None:
        """Give back held loads whose actuator is unreachable; retry the owed restores."""
        async with self._lock:
            loads = self._hooks.loads()
            now = dt_util.utcnow()
            before = self.schedule.as_dict()
            # While Home Assistant starts, other integrations' entities may not be there yet.
            if self._hass.state is CoreState.running:
                for event in self._active_events():
                    for load_id in event.held_loads():
                        if load_id in loads and self._exhausted(load_id):
                            # A battery down to its minimum charge: given back now.
                            self._stop_holding(event, load_id, now, OptOutReason.UNAVAILABLE)
                            self._owe_restore(event, load_id, now)
                        elif (
                            load_id in loads and not self._hooks.actuator(loads[load_id]).available
                        ):
                            LOGGER.warning(
                                "Load %s became unreachable during event %s; reported as "
                                "unavailable, and restored at the end if it is off",
                                load_id,
                                event.event_id,
                            )
                            self._stop_holding(event, load_id, now, OptOutReason.UNAVAILABLE)
                            event.unreachable.append(load_id)
            for load_id in list(self.schedule.to_restore):
                await self._try_restore(load_id, now)
            changed = self.schedule.as_dict() != before
            if changed:
                await self._save()
        if changed:
            self._after_change()

    # --- timers -----------------------------------------------------------------------------

    def _at(
        self,
        event: HeldEvent,
        name: str,
        when: datetime,
        action: Callable[..., Coroutine[Any, Any, None]],
        *args: str,
    ) -> None:
        key = (event.award_id, name)
        if key in self._timers:
            self._timers.pop(key)()
        award_id = event.award_id

        @callback
        def _fire(_now: datetime) -> None:
            self._timers.pop(key, None)
            self._create_task(action(award_id, *args), f"jeisson {name} {award_id}")

        self._timers[key] = async_track_point_in_utc_time(self._hass, _fire, when)

    def _cancel_timer(self, award_id: str, name: str) -> None:
        if cancel := self._timers.pop((award_id, name), None):
            cancel()

    def _cancel_timers(self, award_id: str) -> None:
        for key in [key for key in self._timers if key[0] == award_id]:
            self._timers.pop(key)()

    async def _on_start_time(self, award_id: str) -> None:
        async with self._lock:
            event = self.schedule.events.get(award_id)
            if event is None or event.status is not HomeEventStatus.AWARDED:
                return
            await self._start(event)
        self._after_change()

    async def _on_end_time(self, award_id: str) -> None:
        async with self._lock:
            event = self.schedule.events.get(award_id)
            if event is None:
                return
            await self._finish(event, Outcome.COMPLETED)
            await self._save()
        self._after_change()

    async def _on_restore_time(self, award_id: str, load_id: str) -> None:
        await self._restore(award_id, load_id)

    # --- thermostats: pre-conditioning and the gradual return -------------------------------

    def _setting_actuator(self, load_id: str) -> SettingActuator | None:
        loads = self._hooks.loads()
        actuator = self._hooks.actuator(loads[load_id]) if load_id in loads else None
        return actuator if isinstance(actuator, SettingActuator) else None

    def _exhausted(self, load_id: str) -> bool:
        actuator = self._setting_actuator(load_id)
        return actuator is not None and actuator.exhausted

    def _ramps(self, event: HeldEvent, load_id: str) -> bool:
        """Return True when the load goes back in steps (a thermostat), not at once."""
        actuator = self._setting_actuator(load_id)
        saved, target = event.settings.get(load_id, {}), event.targets.get(load_id, {})
        return actuator is not None and actuator.ramp(saved, target, 1.0) is not None

    async def _on_ramp_time(self, award_id: str, load_id: str) -> None:
        """Take one step back towards the saved setting (the final step is the restore)."""
        async with self._lock:
            event = self.schedule.events.get(award_id)
            actuator = self._setting_actuator(load_id)
            if event is None or load_id not in event.restore_at or actuator is None:
                return
            target = event.targets.get(load_id, {})
            if holds(actuator, target) is not True:
                return  # moved by someone else: the state listener gives it back
            steps_left = sum(
                1
                for key in self._timers
                if key[0] == award_id and key[1].startswith(f"ramp:{load_id}:")
            )
            step = actuator.ramp(
                event.settings.get(load_id, {}), target, (steps_left + 1) / (steps_left + 2)
            )
            if step is None:
                return
            event.targets[load_id] = step
            await self._save()
            try:
                await actuator.async_apply(step)
            except HomeAssistantError as err:
                LOGGER.warning("Could not step load %s back: %s", load_id, err)

    def _arm_preconditioning(self, event: HeldEvent, now: datetime) -> None:
        """Schedule each thermostat's pre-conditioning before the window (lock held)."""
        loads = self._hooks.loads()
        for load_id in event.loads:
            if load_id in event.preconditioned or load_id not in loads:
                continue
            minutes = loads[load_id].precondition_minutes
            if minutes > 0 and self._setting_actuator(load_id) is not None:
                when = max(now, event.window_start - timedelta(minutes=minutes))
                name = f"precondition:{load_id}"
                self._at(event, name, when, self._on_precondition_time, load_id)

    async def _on_precondition_time(self, award_id: str, load_id: str) -> None:
        """Pre-cool (pre-heat): save the setting, then run at the opposite offset."""
        async with self._lock:
            event = self.schedule.events.get(award_id)
            actuator = self._setting_actuator(load_id)
            if event is None or event.status is not HomeEventStatus.AWARDED or actuator is None:
                return
            if not actuator.available or not actuator.is_on or load_id in event.preconditioned:
                return
            saved = self._saved_setting(event, load_id) or actuator.snapshot()
            if (target := actuator.precondition(saved)) is None:
                return
            event.settings[load_id] = saved
            event.targets[load_id] = target
            event.preconditioned.append(load_id)
            await self._save()
            try:
                await actuator.async_apply(target)
            except HomeAssistantError as err:
                LOGGER.warning("Could not pre-condition load %s: %s", load_id, err)

    # --- state listener and telemetry -------------------------------------------------------

    def _refresh_state_listener(self) -> None:
        if self._unsub_state:
            self._unsub_state()
            self._unsub_state = None
        loads = self._hooks.loads()
        tracked = {
            load_id
            for event in self.schedule.open_events()
            for load_id in [*event.held_loads(), *event.restore_at, *event.unreachable]
        } | set(self.schedule.to_restore)
        watched = {
            entity_id
            for load_id in tracked
            if load_id in loads
            for entity_id in self._hooks.actuator(loads[load_id]).watched_entity_ids[:1]
        }
        if watched:
            self._unsub_state = async_track_state_change_event(
                self._hass, sorted(watched), self._on_state_change
            )

    def _refresh_retry_timer(self) -> None:
        """Tick every RETRY_INTERVAL while a restore is owed or an event holds loads."""
        needed = bool(self.schedule.to_restore) or any(
            event.held_loads() for event in self._active_events()
        )
        if needed and self._unsub_retry is None:
            self._unsub_retry = async_track_time_interval(
                self._hass, self._on_retry_tick, RETRY_INTERVAL, name="jeisson restore retry"
            )
        elif not needed and self._unsub_retry is not None:
            self._unsub_retry()
            self._unsub_retry = None

    @callback
    def _on_retry_tick(self, _now: datetime) -> None:
        self._create_task(self._check_reachability(), "jeisson restore retry")

    @callback
    def _on_state_change(self, event: Event[EventStateChangedData]) -> None:
        new_state = event.data["new_state"]
        old_state = event.data["old_state"]
        if new_state is None:
            return
        if _reachable(new_state) != _reachable(old_state):
            # Dropped off (a held load is given back) or back (an owed restore is retried).
            self._create_task(self._check_reachability(), "jeisson reachability")
        if not _moved(old_state, new_state):
            return
        self._create_task(
            self._handle_switched_on(event.data["entity_id"]), "jeisson homeowner override"
        )

    def _active_events(self) -> list[HeldEvent]:
        return [
            event for event in self.schedule.open_events() if event.status is HomeEventStatus.ACTIVE
        ]

    def _refresh_telemetry(self) -> None:
        """Report fast for the first active event, or slowly outside events."""
        active = self._active_events()
        self.telemetry.async_set_event(active[0].event_id if active else None)

    def sample(self, now: datetime) -> Sample:
        """Return a telemetry sample of the home's declared loads right now."""
        loads = self._hooks.loads()
        actuators = {load_id: self._hooks.actuator(load) for load_id, load in loads.items()}
        readings = {
            load_id: load_reading(load, actuators[load_id]) for load_id, load in loads.items()
        }
        per_load = {load_id: round(kw, 3) for load_id, (kw, _) in readings.items()}
        # Only what a meter measured: a load nothing measures bids its rating.
        self.recent_power.add(
            now,
            {
                load_id: measured
                for load_id, actuator in actuators.items()
                if (measured := actuator.power_kw()) is not None
            },
        )
        shed = sum(event.shed_kw() for event in self._active_events())
        return Sample(
            ts=now,
            power_kw=round(sum(per_load.values()), 3),
            shed_kw=round(shed, 3),
            loads=per_load,
            # False when a load without a power sensor is on: its figure is its rated power.
            measured=all(certain for _, certain in readings.values()),
        )

    def shed_kw(self) -> float:
        """Return the power Jeisson holds off right now."""
        return sum(event.shed_kw() for event in self.schedule.open_events())


def _moved(old_state: State | None, new_state: State) -> bool:
    """Return True when a change may mean the owner took a load back.

    A switch switched on; a setting entity (charger current, setpoint, mode) changed at all.
    """
    if new_state.domain in SETTING_DOMAINS:
        return old_state is None or (old_state.state, old_state.attributes) != (
            new_state.state,
            new_state.attributes,
        )
    return new_state.state == STATE_ON and (old_state is None or old_state.state != STATE_ON)


def _reachable(state: State | None) -> bool:
    """Return True when an entity state says its device can be reached."""
    return state is not None and state.state not in _UNREACHABLE_STATES
