"""Sending each home its statements, and remembering which ones it has stored.

A statement line becomes a ``statement`` message (protocol schema 2) for its home. Homes get
them when a statement is settled (if connected) and, on every connection, every latest-version
line they have not acknowledged yet (oldest first, at most :data:`MAX_PENDING_PER_CONNECT`;
the rest after those are acknowledged, on the next connection). A home that speaks schema 1
gets none (it would refuse the message). A ``statement_ack`` is stored as a receipt before the
home's ``ack``, so an acknowledged statement is never sent again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

from aggregator.settlement.repository import Delivery, SettlementRepository
from aggregator.settlement.statements import Statement as StoredStatement
from aggregator.settlement.statements import StatementLine
from jeisson.common.protocol import (
    STATEMENT_SCHEMA_VERSION,
    DataQuality,
    ErrorCode,
    ProtocolError,
    ServerMessage,
    Statement,
    StatementAck,
)

_LOGGER = logging.getLogger(__name__)

MAX_PENDING_PER_CONNECT: Final = 50
"""Statements sent to a home when it connects (more wait for the next connection)."""
MAX_ID_LENGTH: Final = 64
MAX_REASON_LENGTH: Final = 500


class HomeLink(Protocol):
    """What the courier needs of the connected homes (the session registry)."""

    def send(self, home_id: str, message: ServerMessage) -> bool:
        """Queue a message for a connected home; False when it is not connected."""

    def schema_version(self, home_id: str) -> int | None:
        """Return the schema a connected home speaks (None: not connected)."""


def statement_message_id(event_id: str, version: int) -> str:
    """Return the stable id of a statement message (re-sends keep it)."""
    candidate = f"statement-{event_id}-v{version}"
    if len(candidate) <= MAX_ID_LENGTH:
        return candidate
    digest = hashlib.sha256(f"{event_id}/{version}".encode()).hexdigest()[:40]
    return f"statement-{digest}"


def statement_message(delivery: Delivery) -> Statement:
    """Return the ``statement`` message of one stored line."""
    line = delivery.line
    reliability = line.detail.get("reliability")
    return Statement(
        id=statement_message_id(line.event_id, line.version),
        event_id=line.event_id,
        version=line.version,
        settled_at=line.settled_at,
        window_start=delivery.window_start,
        window_end=delivery.window_end,
        status=line.status,
        committed_kw=line.committed_kw,
        delivered_kwh=line.delivered_kwh,
        paid_kwh=line.paid_kwh,
        estimated_kwh=float(line.detail.get("estimated_kwh") or 0.0),
        data_quality=DataQuality(line.data_quality),
        price=line.price,
        payment=line.payment,
        previous_payment=line.previous_payment,
        currency=delivery.currency,
        baseline=line.baseline_outcome,
        baseline_reason=line.baseline_reason[:MAX_REASON_LENGTH],
        reliability=None if reliability is None else float(reliability),
    )


class StatementCourier:
    """Sends statements to homes and records their acknowledgements."""

    def __init__(self, repository: SettlementRepository, homes: HomeLink) -> None:
        """Deliver through ``homes``; read and write receipts through ``repository``."""
        self._repository = repository
        self._homes = homes

    def _speaks_statements(self, home_id: str) -> bool:
        version = self._homes.schema_version(home_id)
        return version is not None and version >= STATEMENT_SCHEMA_VERSION

    async def home_ready(self, home_id: str) -> int:
        """Send a newly connected home its unacknowledged statements; return how many."""
        if not self._speaks_statements(home_id):
            return 0
        pending = await self._repository.unacknowledged(home_id, MAX_PENDING_PER_CONNECT)
        return sum(self._homes.send(home_id, statement_message(item)) for item in pending)

    async def deliver(self, statements: Sequence[StoredStatement]) -> int:
        """Send new statements to their connected homes; return how many were queued."""
        sent = 0
        for statement in statements:
            window = (statement.window_start, statement.window_end)
            for line in statement.lines:
                if self._speaks_statements(line.home_id):
                    message = statement_message(_delivery(line, statement.currency, window))
                    sent += self._homes.send(line.home_id, message)
        if sent:
            _LOGGER.info("Sent %d statements to connected homes", sent)
        return sent

    async def acknowledged(self, home_id: str, ack: StatementAck) -> None:
        """Store that the home stored a statement; refuse one it was never sent."""
        if not await self._repository.has_line(home_id, ack.event_id, ack.version):
            raise ProtocolError(
                ErrorCode.UNKNOWN_EVENT,
                f"no statement version {ack.version} of event {ack.event_id} for this home",
                ack.id,
            )
        await self._repository.record_receipt(home_id, ack.event_id, ack.version)


def _delivery(line: StatementLine, currency: str, window: tuple[datetime, datetime]) -> Delivery:
    return Delivery(line, currency, window[0], window[1])
