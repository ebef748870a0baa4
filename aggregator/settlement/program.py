"""The settlement program: its calendar and the rules a statement is computed under.

One aggregator runs one program. Its settings are stored (table ``settlement_program``) so
every process, the CLI and later corrections settle under the same rules; ``serve --timezone
... --holidays ...`` changes them (``docs/settlement.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from aggregator.settlement.calendar import ProgramCalendar

DEFAULT_SETTLE_AFTER: Final = timedelta(hours=24)
"""How long after an event ends its statement is settled: the late-telemetry window. A home
that was offline sends what it buffered when it reconnects (the client queues batches); a day
covers an overnight outage of the home's internet or of Home Assistant."""
DEFAULT_ESTIMATED_PAY_RATIO: Final = 0.5
"""A kWh measured from estimates (a load without a power sensor at its rated power while on)
is paid half a metered kWh: the switch state proves the load was off, not how much it would
have drawn (a water heater at temperature draws nothing whatever its rating)."""
HISTORY_DAYS: Final = 20
"""Calendar days of like-day candidates: enough for 10 like weekdays around event days."""
MAX_SETTLE_AFTER: Final = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class ProgramSettings:
    """The rules statements are settled under."""

    calendar: ProgramCalendar = field(default_factory=ProgramCalendar)
    settle_after: timedelta = DEFAULT_SETTLE_AFTER
    estimated_pay_ratio: float = DEFAULT_ESTIMATED_PAY_RATIO
    history_days: int = HISTORY_DAYS

    def __post_init__(self) -> None:
        """Refuse settings settlement cannot work with."""
        if not timedelta(0) <= self.settle_after <= MAX_SETTLE_AFTER:
            raise ValueError(f"settle_after must lie in [0, {MAX_SETTLE_AFTER}]")
        if not 0 <= self.estimated_pay_ratio <= 1:
            raise ValueError("estimated_pay_ratio must lie in [0, 1]")
        if not 1 <= self.history_days <= 60:
            raise ValueError("history_days must lie in [1, 60]")
