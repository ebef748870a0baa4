"""What a home may tell the aggregator: bounds on its figures and on how fast it may send.

Homes are untrusted input. A home's figures are bounded by its own inventory (the rated kW of
the loads it declared), its samples' timestamps by the clock and its enrolment, and how much it
sends by per-home token buckets. Everything here is pure (the caller passes the time), so the
bounds are tested without a server; :mod:`aggregator.sessions` and :mod:`aggregator.negotiation`
apply them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from aggregator.records import HomeRecord
from jeisson.common.protocol import BidStep, ErrorCode, Load, ProtocolError, Telemetry

CLOCK_SKEW: Final = timedelta(minutes=5)
"""A sample may be dated this far ahead of the server's clock (the home's clock runs fast)."""
MAX_SAMPLE_AGE: Final = timedelta(days=7)
"""Samples older than this are refused: far past any settlement window (24 h by default) and
any outbox a home keeps while offline."""
MEASURED_HEADROOM: Final = 1.5
"""A measured figure may exceed the rated kW it is bounded by this many times (meters and
nameplates disagree; a motor draws more than its rating while starting)."""
KW_TOLERANCE: Final = 0.01
"""kW allowed above a bound for rounding (homes round figures to a few decimals)."""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """How much one home may send (sustained rate and burst of each bucket)."""

    frames_per_s: float = 20.0
    frame_burst: float = 400.0
    """Room for a reconnect that re-sends a whole outbox at once."""
    samples_per_s: float = 100.0
    """Telemetry rows per second (a home sampling every 10 s sends 0.1)."""
    sample_burst: float = 20_000.0


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        """Start full at monotonic time ``now``."""
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, tokens: float, now: float) -> float:
        """Take ``tokens``; return 0.0, or the seconds to wait when there are too few (none taken).

        A request larger than the burst can never be served whole: its wait is the time to fill
        the bucket, and the caller should refuse it for good.
        """
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens <= self._tokens:
            self._tokens -= tokens
            return 0.0
        return (min(tokens, self._burst) - self._tokens) / self._rate


def rated_kw(loads: Iterable[Load]) -> float:
    """Return the rated kW of some loads."""
    return sum(load.rated_kw for load in loads)


def check_telemetry(telemetry: Telemetry, home: HomeRecord, now: datetime) -> None:
    """Refuse a batch whose samples a home with ``home``'s inventory cannot have measured.

    Every sample must be dated after the home's enrolment, at most :data:`MAX_SAMPLE_AGE` ago
    and at most :data:`CLOCK_SKEW` ahead of ``now``; name only the home's loads; and stay within
    :data:`MEASURED_HEADROOM` times their rated kW (``shed_kw`` within the curtailable loads').
    Raises :class:`ProtocolError` (nothing of the batch is stored).
    """
    inventory = {load.load_id: load for load in home.loads}
    all_kw = _bound(rated_kw(inventory.values()))
    curtailable_kw = _bound(rated_kw(load for load in inventory.values() if load.curtailable))
    earliest = now - MAX_SAMPLE_AGE
    if home.enrolled_at is not None:
        earliest = max(earliest, home.enrolled_at - CLOCK_SKEW)
    latest = now + CLOCK_SKEW
    for number, sample in enumerate(telemetry.samples):
        where = f"samples.{number}"
        if sample.ts > latest:
            _refuse(
                telemetry,
                f"{where}.ts {sample.ts.isoformat()} is in the future "
                f"(server time {now.isoformat()})",
            )
        if sample.ts < earliest:
            _refuse(
                telemetry,
                f"{where}.ts {sample.ts.isoformat()} is before "
                f"{earliest.isoformat()} (enrolment or the {MAX_SAMPLE_AGE.days}-day limit)",
            )
        if sample.power_kw > all_kw:
            _refuse(
                telemetry,
                f"{where}.power_kw {sample.power_kw} exceeds what this home's "
                f"loads can draw ({all_kw:.2f} kW)",
            )
        if sample.shed_kw > curtailable_kw:
            _refuse(
                telemetry,
                f"{where}.shed_kw {sample.shed_kw} exceeds what this home's "
                f"curtailable loads can shed ({curtailable_kw:.2f} kW)",
            )
        for load_id, kw in sample.loads.items():
            load = inventory.get(load_id)
            if load is None:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_LOAD,
                    f"{where}.loads: {load_id!r} is not a load of this home",
                    telemetry.id,
                )
            if kw > _bound(load.rated_kw):
                _refuse(
                    telemetry,
                    f"{where}.loads.{load_id} {kw} exceeds "
                    f"{MEASURED_HEADROOM}x its rated {load.rated_kw} kW",
                )


def first_step_beyond_rating(steps: Sequence[BidStep], inventory: Mapping[str, Load]) -> int | None:
    """Return the index of the first bid step asking more than its loads' ratings leave.

    A step's kW is the home's expected change, from its loads' measured power: a load may appear
    in several (partial) steps, together offering at most :data:`MEASURED_HEADROOM` times its
    rated kW (plus :data:`KW_TOLERANCE`). None when every step fits.
    """
    left = {load_id: _bound(load.rated_kw) for load_id, load in inventory.items()}
    for number, step in enumerate(steps):
        if step.kw > sum(left.get(load_id, 0.0) for load_id in step.loads):
            return number
        rest = step.kw
        for load_id in step.loads:
            used = min(left.get(load_id, 0.0), rest)
            left[load_id] = left.get(load_id, 0.0) - used
            rest -= used
    return None


def bounded_commitment(kw: float, load_ids: Iterable[str], inventory: Mapping[str, Load]) -> float:
    """Return the kW a home may commit with those loads: what it said, at most their rated kW."""
    return min(kw, rated_kw(inventory[i] for i in load_ids if i in inventory))


def _bound(kw: float) -> float:
    return kw * MEASURED_HEADROOM + KW_TOLERANCE


def _refuse(telemetry: Telemetry, text: str) -> None:
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, text, telemetry.id)
