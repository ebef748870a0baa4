"""Storage of Jeisson's VEN side: the utility VTNs it follows, event links, reports sent."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator.openadr.mapping import ProgramMapping
from aggregator.openadr.tables import openadr_event_links, openadr_reports_sent, openadr_vtns
from aggregator.store import new_id
from jeisson.common.protocol import utc_now


@dataclass(frozen=True, slots=True)
class VtnConfig:
    """A utility VTN Jeisson follows as a VEN (the secret stays sealed)."""

    vtn_id: str
    name: str
    base_url: str
    ven_name: str
    programs: tuple[ProgramMapping, ...]
    poll_interval_s: float
    created_at: datetime
    token_url: str | None = None
    client_id: str | None = None
    secret_box: str | None = None
    enabled: bool = True
    remote_ven_id: str | None = None
    last_poll_at: datetime | None = None
    last_error: str | None = None
    callback_url: str | None = None
    """Where the VTN is asked to send notifications (None: polling only)."""
    remote_subscription_id: str | None = None
    callback_token_hash: str | None = None
    """Digest of the bearer token the subscription gives the VTN to present on the callback."""


@dataclass(frozen=True, slots=True)
class EventLink:
    """What became of one utility event."""

    vtn_id: str
    remote_event_id: str
    remote_program_id: str
    fingerprint: str
    status: str
    event: dict[str, Any]
    jeisson_event_id: str | None = None
    note: str | None = None


class VenStore:
    """Reads and writes the VEN side's tables on the aggregator's database engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine`` (the aggregator store's)."""
        self._engine = engine

    async def add_vtn(self, config: VtnConfig) -> VtnConfig:
        """Store a new VTN configuration (its id is made here unless given)."""
        stored = replace(config, vtn_id=config.vtn_id or new_id("vtn"))
        async with self._engine.begin() as conn:
            await conn.execute(insert(openadr_vtns).values(**_vtn_values(stored)))
        return stored

    async def list_vtns(self) -> list[VtnConfig]:
        """Return every VTN configuration."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(openadr_vtns).order_by(openadr_vtns.c.created_at))
            return [_vtn(row) for row in rows]

    async def get_vtn(self, vtn_id: str) -> VtnConfig | None:
        """Return one VTN configuration."""
        query = select(openadr_vtns).where(openadr_vtns.c.vtn_id == vtn_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _vtn(row)

    async def remove_vtn(self, vtn_id: str) -> bool:
        """Forget a VTN (its links and reports stay for the record)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(openadr_vtns).where(openadr_vtns.c.vtn_id == vtn_id))
        return bool(result.rowcount)

    async def note_poll(
        self, vtn_id: str, *, error: str | None, remote_ven_id: str | None = None
    ) -> None:
        """Record a poll's time and outcome (and the VEN id the VTN gave us)."""
        values: dict[str, Any] = {"last_poll_at": utc_now(), "last_error": error}
        if remote_ven_id is not None:
            values["remote_ven_id"] = remote_ven_id
        async with self._engine.begin() as conn:
            await conn.execute(
                update(openadr_vtns).where(openadr_vtns.c.vtn_id == vtn_id).values(**values)
            )

    async def note_subscription(
        self, vtn_id: str, subscription_id: str | None, token_hash: str | None
    ) -> None:
        """Record the webhook subscription made on a VTN and its token's digest (None: none)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(openadr_vtns)
                .where(openadr_vtns.c.vtn_id == vtn_id)
                .values(remote_subscription_id=subscription_id, callback_token_hash=token_hash)
            )

    async def links(self, vtn_id: str) -> list[EventLink]:
        """Return the links of a VTN's events."""
        table = openadr_event_links
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(table).where(table.c.vtn_id == vtn_id))
            return [_link(row) for row in rows]

    async def save_link(self, link: EventLink) -> None:
        """Insert or replace a link."""
        table = openadr_event_links
        values = {
            "vtn_id": link.vtn_id,
            "remote_event_id": link.remote_event_id,
            "remote_program_id": link.remote_program_id,
            "jeisson_event_id": link.jeisson_event_id,
            "fingerprint": link.fingerprint,
            "status": link.status,
            "note": link.note,
            "event": link.event,
            "updated_at": utc_now(),
        }
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(table).where(
                    table.c.vtn_id == link.vtn_id, table.c.remote_event_id == link.remote_event_id
                )
            )
            await conn.execute(insert(table).values(**values))

    async def reported(self, vtn_id: str) -> set[tuple[str, int]]:
        """Return the (event, interval) pairs already reported to a VTN."""
        table = openadr_reports_sent
        query = select(table.c.remote_event_id, table.c.interval_id).where(table.c.vtn_id == vtn_id)
        async with self._engine.connect() as conn:
            return {(row[0], row[1]) for row in await conn.execute(query)}

    async def reports(self, vtn_id: str) -> list[dict[str, Any]]:
        """Return every report sent to a VTN."""
        table = openadr_reports_sent
        query = select(table).where(table.c.vtn_id == vtn_id).order_by(table.c.sent_at)
        async with self._engine.connect() as conn:
            return [
                {
                    "event": row.remote_event_id,
                    "interval": row.interval_id,
                    "report_id": row.remote_report_id,
                    "committed_kw": row.committed_kw,
                    "delivered_kw": row.delivered_kw,
                    "sent_at": row.sent_at.isoformat(),
                }
                for row in await conn.execute(query)
            ]

    async def save_report(
        self,
        vtn_id: str,
        event_id: str,
        interval_id: int,
        *,
        report_id: str | None,
        committed_kw: float,
        delivered_kw: float,
    ) -> None:
        """Record a report the VTN accepted."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(openadr_reports_sent).values(
                    vtn_id=vtn_id,
                    remote_event_id=event_id,
                    interval_id=interval_id,
                    remote_report_id=report_id,
                    committed_kw=committed_kw,
                    delivered_kw=delivered_kw,
                    sent_at=utc_now(),
                )
            )


def _vtn_values(config: VtnConfig) -> dict[str, Any]:
    return {
        "vtn_id": config.vtn_id,
        "name": config.name,
        "base_url": config.base_url,
        "token_url": config.token_url,
        "client_id": config.client_id,
        "secret_box": config.secret_box,
        "ven_name": config.ven_name,
        "programs": [item.model_dump() for item in config.programs],
        "poll_interval_s": config.poll_interval_s,
        "callback_url": config.callback_url,
        "remote_subscription_id": config.remote_subscription_id,
        "callback_token_hash": config.callback_token_hash,
        "enabled": config.enabled,
        "created_at": config.created_at,
    }


def _vtn(row: Any) -> VtnConfig:
    return VtnConfig(
        vtn_id=row.vtn_id,
        name=row.name,
        base_url=row.base_url,
        ven_name=row.ven_name,
        programs=tuple(ProgramMapping.model_validate(item) for item in row.programs),
        poll_interval_s=row.poll_interval_s,
        created_at=row.created_at,
        token_url=row.token_url,
        client_id=row.client_id,
        secret_box=row.secret_box,
        enabled=row.enabled,
        remote_ven_id=row.remote_ven_id,
        last_poll_at=row.last_poll_at,
        last_error=row.last_error,
        callback_url=row.callback_url,
        remote_subscription_id=row.remote_subscription_id,
        callback_token_hash=row.callback_token_hash,
    )


def _link(row: Any) -> EventLink:
    return EventLink(
        vtn_id=row.vtn_id,
        remote_event_id=row.remote_event_id,
        remote_program_id=row.remote_program_id,
        fingerprint=row.fingerprint,
        status=row.status,
        event=dict(row.event),
        jeisson_event_id=row.jeisson_event_id,
        note=row.note,
    )
