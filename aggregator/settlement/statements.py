"""Final statements: what each home is paid for an event, versioned, immutable, exportable.

A statement is the settlement of one event frozen at a moment: a header (rules, window, totals)
and one line per home. Statements are only ever added: settling again produces a new *version*
only when a payment changed (late telemetry, a corrected rule), and every line of a correction
carries the payment of the version before, so the difference is visible (``correction``).
A home's **ledger** lists every line that changed what it is owed (first statements and
corrections), each booked at its settlement time, with period totals.

This module holds the records and their JSON/CSV forms; :mod:`.repository` stores them and
:mod:`.settler` decides when to settle.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Final

from aggregator.settlement.report import (
    CSV_SIGNIFICANT_DIGITS,
    EventSettlement,
    HomeSettlement,
)

PAYMENT_TOLERANCE: Final = 1e-9
"""Payments closer than this (in currency units) are the same: no new version for round-off."""
FIRST_VERSION: Final = 1

STATEMENT_CSV_COLUMNS: Final = (
    "event_id",
    "version",
    "home_id",
    "status",
    "baseline_outcome",
    "baseline_reason",
    "committed_kw",
    "price_per_kwh",
    "currency",
    "baseline_kwh",
    "measured_kwh",
    "delivered_kwh",
    "data_quality",
    "estimated_kwh",
    "paid_kwh",
    "payment",
    "previous_payment",
    "correction",
    "missing_intervals",
    "reliability",
)
LEDGER_CSV_COLUMNS: Final = (
    "home_id",
    "booked_at",
    "period",
    "event_id",
    "version",
    "event_start",
    "delivered_kwh",
    "paid_kwh",
    "payment",
    "previous_payment",
    "amount",
    "currency",
)
TOTAL_ROW: Final = "TOTAL"
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """Return a CSV text cell that spreadsheets will not run as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_PREFIXES) else value


def _number(value: float | None) -> str:
    """Return a CSV number cell (empty when unknown)."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{CSV_SIGNIFICANT_DIGITS}g}"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """What one home is paid for one event in one version of its statement."""

    event_id: str
    version: int
    home_id: str
    settled_at: datetime
    status: str
    baseline_outcome: str
    baseline_reason: str
    price: float
    committed_kw: float
    committed_kwh: float
    """Committed kW times the event's duration: what full delivery would be."""
    delivered_kwh: float
    paid_kwh: float
    payment: float
    previous_payment: float | None
    """The payment of the version before (None in a first statement)."""
    data_quality: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Per-interval figures and the rest of the settlement row (JSON-ready)."""

    @property
    def correction(self) -> float:
        """Return what this line adds to what the home is owed (the whole payment in v1)."""
        return self.payment - (self.previous_payment or 0.0)

    @property
    def delivery_ratio(self) -> float | None:
        """Return delivered ÷ committed energy, capped at 1 (None without a commitment)."""
        if self.committed_kwh <= 0:
            return None
        return min(1.0, self.delivered_kwh / self.committed_kwh)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the line as JSON-ready data."""
        return {
            **self.detail,
            "event_id": self.event_id,
            "version": self.version,
            "home_id": self.home_id,
            "settled_at": self.settled_at.isoformat(),
            "status": self.status,
            "baseline_outcome": self.baseline_outcome,
            "baseline_reason": self.baseline_reason,
            "price_per_kwh": self.price,
            "committed_kw": self.committed_kw,
            "committed_kwh": self.committed_kwh,
            "delivered_kwh": self.delivered_kwh,
            "paid_kwh": self.paid_kwh,
            "payment": self.payment,
            "previous_payment": self.previous_payment,
            "correction": self.correction,
            "data_quality": self.data_quality,
        }

    def csv_row(self, currency: str) -> list[str]:
        """Return the line's cells in :data:`STATEMENT_CSV_COLUMNS` order."""
        detail = self.detail
        return [
            _text(self.event_id),
            str(self.version),
            _text(self.home_id),
            self.status,
            self.baseline_outcome,
            _text(self.baseline_reason),
            _number(self.committed_kw),
            _number(self.price),
            currency,
            _number(detail.get("baseline_kwh")),
            _number(detail.get("measured_kwh")),
            _number(self.delivered_kwh),
            self.data_quality,
            _number(detail.get("estimated_kwh")),
            _number(self.paid_kwh),
            _number(self.payment),
            _number(self.previous_payment),
            _number(self.correction),
            str(detail.get("missing_intervals", "")),
            _number(detail.get("reliability")),
        ]


@dataclass(frozen=True, slots=True)
class Statement:
    """One version of an event's statement: the header and every home's line."""

    event_id: str
    version: int
    settled_at: datetime
    reason: str
    """Why this version exists ("first statement", "correction: ...")."""
    group_events: tuple[str, ...]
    """The events settled together with this one (overlapping; itself included)."""
    baseline_method: str
    timezone: str
    currency: str
    interval_minutes: int
    window_start: datetime
    window_end: datetime
    estimated_pay_ratio: float
    homes: int
    payment: float
    correction: float
    """Total payment less the previous version's (the whole payment in version 1)."""
    totals: dict[str, Any]
    detail: dict[str, Any]
    lines: tuple[StatementLine, ...] = ()

    def header_json(self) -> dict[str, Any]:
        """Return the header as JSON-ready data."""
        return {
            "event_id": self.event_id,
            "version": self.version,
            "settled_at": self.settled_at.isoformat(),
            "reason": self.reason,
            "group_events": list(self.group_events),
            "baseline_method": self.baseline_method,
            "timezone": self.timezone,
            "currency": self.currency,
            "interval_minutes": self.interval_minutes,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "estimated_pay_ratio": self.estimated_pay_ratio,
            "homes_count": self.homes,
            "payment": self.payment,
            "correction": self.correction,
            "totals": self.totals,
            **self.detail,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """Return the statement with its lines as JSON-ready data."""
        return {**self.header_json(), "homes": [line.to_json_dict() for line in self.lines]}

    def to_csv(self) -> str:
        """Return the statement as CSV: a header, one row per home and a totals row."""
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(STATEMENT_CSV_COLUMNS)
        writer.writerows(line.csv_row(self.currency) for line in self.lines)
        total = [""] * len(STATEMENT_CSV_COLUMNS)
        total[0], total[1], total[2] = _text(self.event_id), str(self.version), TOTAL_ROW
        total[STATEMENT_CSV_COLUMNS.index("currency")] = self.currency
        for name in ("committed_kw", "delivered_kwh", "paid_kwh", "payment", "correction"):
            total[STATEMENT_CSV_COLUMNS.index(name)] = _number(
                math.fsum(float(row) for row in _column(self.lines, name))
            )
        writer.writerow(total)
        return buffer.getvalue()


def _column(lines: Iterable[StatementLine], name: str) -> Iterable[float]:
    for line in lines:
        yield line.correction if name == "correction" else getattr(line, name)


def _line_detail(home: HomeSettlement, reliability: float | None) -> dict[str, Any]:
    """Return the parts of a settlement row that are kept as JSON detail."""
    row = home.to_json_dict()
    detail = {
        key: row[key]
        for key in (
            "adjustment_factor",
            "baseline_kw",
            "measured_kw",
            "weight_by_interval",
            "estimated_by_interval",
            "delivered_kwh_by_interval",
            "baseline_kwh",
            "measured_kwh",
            "estimated_kwh",
            "estimated_intervals",
            "missing_intervals",
        )
    }
    detail["reliability"] = reliability
    return detail


def changed(previous: Statement, lines: Sequence[StatementLine]) -> bool:
    """Return True when ``lines`` pay anyone differently from ``previous``."""
    before = {line.home_id: line.payment for line in previous.lines}
    after = {line.home_id: line.payment for line in lines}
    if before.keys() != after.keys():
        return True
    return any(abs(after[home] - before[home]) > PAYMENT_TOLERANCE for home in after)


def build_statement(
    report: EventSettlement,
    *,
    previous: Statement | None,
    settled_at: datetime,
    reason: str,
    group_events: Sequence[str],
    timezone: str,
    window: tuple[datetime, datetime],
    reliability: dict[str, float] | None = None,
) -> Statement | None:
    """Turn a computed settlement into the next statement version (None: nothing changed)."""
    version = FIRST_VERSION if previous is None else previous.version + 1
    paid_before = (
        {} if previous is None else {line.home_id: line.payment for line in previous.lines}
    )
    hours = (window[1] - window[0]).total_seconds() / 3600
    scores = reliability or {}
    lines = tuple(
        StatementLine(
            event_id=report.event_id,
            version=version,
            home_id=home.home_id,
            settled_at=settled_at,
            status=home.status.value,
            baseline_outcome=home.baseline_outcome.value,
            baseline_reason=home.baseline_reason,
            price=home.price_per_kwh,
            committed_kw=home.committed_kw,
            committed_kwh=home.committed_kw * hours,
            delivered_kwh=home.delivered_kwh,
            paid_kwh=home.paid_kwh,
            payment=home.payment,
            previous_payment=None if previous is None else paid_before.get(home.home_id, 0.0),
            data_quality=home.data_quality.value,
            detail=_line_detail(home, scores.get(home.home_id)),
        )
        for home in report.homes
    )
    if previous is not None and not changed(previous, lines):
        return None
    if previous is not None:
        # A home paid before and absent now is owed nothing: its line shows the reversal.
        gone = sorted(paid_before.keys() - {line.home_id for line in lines})
        lines += tuple(_reversal(previous, home_id, version, settled_at) for home_id in gone)
    payment = math.fsum(line.payment for line in lines)
    totals = report.totals.to_json_dict()
    return Statement(
        event_id=report.event_id,
        version=version,
        settled_at=settled_at,
        reason=reason,
        group_events=tuple(group_events),
        baseline_method=report.baseline_method.value,
        timezone=timezone,
        currency=report.currency,
        interval_minutes=report.interval_minutes,
        window_start=window[0],
        window_end=window[1],
        estimated_pay_ratio=report.estimated_pay_ratio,
        homes=len(lines),
        payment=payment,
        correction=payment - (0.0 if previous is None else previous.payment),
        totals=totals,
        detail={"interval_starts": list(report.interval_starts)},
        lines=lines,
    )


def _reversal(previous: Statement, home_id: str, version: int, at: datetime) -> StatementLine:
    old = next(line for line in previous.lines if line.home_id == home_id)
    return StatementLine(
        event_id=old.event_id,
        version=version,
        home_id=home_id,
        settled_at=at,
        status="withdrawn",
        baseline_outcome=old.baseline_outcome,
        baseline_reason="no longer settled in this event",
        price=old.price,
        committed_kw=0.0,
        committed_kwh=0.0,
        delivered_kwh=0.0,
        paid_kwh=0.0,
        payment=0.0,
        previous_payment=old.payment,
        data_quality=old.data_quality,
        detail={},
    )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One booking on a home's account: a first statement's line or a correction."""

    line: StatementLine
    currency: str
    event_start: datetime

    @property
    def amount(self) -> float:
        """Return what this entry adds to the home's balance."""
        return self.line.correction


@dataclass(frozen=True, slots=True)
class Ledger:
    """Every booking of one home, oldest first, with totals per period (local month)."""

    home_id: str
    entries: tuple[LedgerEntry, ...]
    zone: tzinfo

    def period_of(self, entry: LedgerEntry) -> str:
        """Return the entry's booking period: its local ``YYYY-MM``."""
        return entry.line.settled_at.astimezone(self.zone).strftime("%Y-%m")

    def totals(self) -> list[dict[str, Any]]:
        """Return per booking period and currency: the entries and the amount booked."""
        sums: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self.entries:
            key = (self.period_of(entry), entry.currency)
            total = sums.setdefault(
                key, {"period": key[0], "currency": key[1], "entries": 0, "amount": 0.0}
            )
            total["entries"] += 1
            total["amount"] += entry.amount
        return list(sums.values())

    def to_json_dict(self) -> dict[str, Any]:
        """Return the ledger as JSON-ready data."""
        return {
            "home_id": self.home_id,
            "entries": [
                {
                    "booked_at": entry.line.settled_at.isoformat(),
                    "period": self.period_of(entry),
                    "event_id": entry.line.event_id,
                    "version": entry.line.version,
                    "event_start": entry.event_start.isoformat(),
                    "status": entry.line.status,
                    "delivered_kwh": entry.line.delivered_kwh,
                    "paid_kwh": entry.line.paid_kwh,
                    "payment": entry.line.payment,
                    "previous_payment": entry.line.previous_payment,
                    "amount": entry.amount,
                    "currency": entry.currency,
                }
                for entry in self.entries
            ],
            "totals": self.totals(),
            "balance": {
                currency: math.fsum(e.amount for e in self.entries if e.currency == currency)
                for currency in sorted({entry.currency for entry in self.entries})
            },
        }

    def to_csv(self) -> str:
        """Return the ledger as CSV: one row per entry, then one TOTAL row per period."""
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(LEDGER_CSV_COLUMNS)
        for entry in self.entries:
            line = entry.line
            writer.writerow(
                [
                    _text(self.home_id),
                    line.settled_at.isoformat(),
                    self.period_of(entry),
                    _text(line.event_id),
                    str(line.version),
                    entry.event_start.isoformat(),
                    _number(line.delivered_kwh),
                    _number(line.paid_kwh),
                    _number(line.payment),
                    _number(line.previous_payment),
                    _number(entry.amount),
                    entry.currency,
                ]
            )
        for total in self.totals():
            row = [""] * len(LEDGER_CSV_COLUMNS)
            row[0], row[2] = TOTAL_ROW, total["period"]
            row[LEDGER_CSV_COLUMNS.index("amount")] = _number(total["amount"])
            row[LEDGER_CSV_COLUMNS.index("currency")] = total["currency"]
            writer.writerow(row)
        return buffer.getvalue()
