"""Event leases in PostgreSQL: which process coordinates each event, with a fencing token.

A lease row (``event_leases``) names the holder (a node id), a token and when the lease runs
out, by the database's clock (so the processes' clocks never matter). Taking over an expired
lease adds one to the token; renewing keeps it. Every write of a coordinator's step carries
``Fence(event_id, token)``, which the step's own transaction checks under a share lock on the
row (:meth:`aggregator.store.Unit.check_fence`): once another process took over, the stale
coordinator's writes are refused by the database. Nothing is decided twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql

from aggregator import tables
from aggregator.records import EventStatus
from aggregator.store import Store

_TERMINAL = (EventStatus.COMPLETED.value, EventStatus.CANCELLED.value)


class LeaseStore:
    """The lease operations of one process (``holder``) on the shared database."""

    def __init__(self, store: Store, holder: str, ttl_s: float) -> None:
        """Take and keep leases as ``holder``, each good for ``ttl_s`` after its last renewal."""
        self._engine = store.engine
        self.holder = holder
        self._ttl = timedelta(seconds=ttl_s)

    async def acquire(self, event_id: str) -> int | None:
        """Take the event's lease if nobody holds it (or it ran out); return the new token.

        None when another process holds a live lease. A lease taken over gets the previous
        token plus one; an event that never had one starts at 1.
        """
        leases = tables.event_leases
        insert = postgresql.insert(leases).values(
            event_id=event_id, holder=self.holder, token=1, expires_at=func.now() + self._ttl
        )
        statement = insert.on_conflict_do_update(
            index_elements=[leases.c.event_id],
            set_={
                "holder": self.holder,
                "token": leases.c.token + 1,
                "expires_at": func.now() + self._ttl,
            },
            where=leases.c.expires_at < func.now(),
        ).returning(leases.c.token)
        async with self._engine.begin() as conn:
            token = (await conn.execute(statement)).scalar_one_or_none()
        return None if token is None else int(token)

    async def renew(self, held: dict[str, int]) -> set[str]:
        """Extend every lease in ``held`` (event id → token); return the ids still held.

        A lease that ran out but that nobody took over is still ours (its token did not move),
        so it is renewed too; one taken over is not in the answer.
        """
        if not held:
            return set()
        leases = tables.event_leases
        statement = (
            update(leases)
            .where(leases.c.holder == self.holder, leases.c.event_id.in_(list(held)))
            .values(expires_at=func.now() + self._ttl)
            .returning(leases.c.event_id, leases.c.token)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return {str(row.event_id) for row in rows if held.get(str(row.event_id)) == row.token}

    async def hand_over(self, held: dict[str, int]) -> None:
        """Let leases run out now, so other processes take the events over at once."""
        if not held:
            return
        leases = tables.event_leases
        conditions = [
            and_(leases.c.event_id == event_id, leases.c.token == token)
            for event_id, token in held.items()
        ]
        statement = (
            update(leases)
            .where(leases.c.holder == self.holder, or_(*conditions))
            .values(expires_at=func.now() - timedelta(seconds=1))
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def release(self, event_id: str, token: int) -> None:
        """Delete a finished event's lease (its end or cancel has been sent)."""
        leases = tables.event_leases
        statement = delete(leases).where(leases.c.event_id == event_id, leases.c.token == token)
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def orphans(self, limit: int = 100) -> list[str]:
        """Return events that need a coordinator, oldest first.

        Unfinished events without a lease or whose lease ran out, and finished events whose
        lease ran out (their coordinator died between storing the end and telling the homes).
        """
        events = tables.events
        leases = tables.event_leases
        query = (
            select(events.c.event_id)
            .select_from(events.outerjoin(leases, leases.c.event_id == events.c.event_id))
            .where(
                or_(
                    and_(leases.c.event_id.is_(None), events.c.status.not_in(_TERMINAL)),
                    leases.c.expires_at < func.now(),
                )
            )
            .order_by(events.c.created_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [str(row.event_id) for row in await conn.execute(query)]

    async def holders(self, event_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Return the live holder and token of each of these events that has one."""
        leases = tables.event_leases
        query = select(leases.c.event_id, leases.c.holder, leases.c.token).where(
            leases.c.event_id.in_(list(event_ids)), leases.c.expires_at >= func.now()
        )
        async with self._engine.connect() as conn:
            return {
                str(row.event_id): (str(row.holder), int(row.token))
                for row in await conn.execute(query)
            }
