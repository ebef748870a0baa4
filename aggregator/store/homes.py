"""Stored homes, their enrolment codes and tokens, and operator tokens."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from aggregator import tables
from aggregator.auth import hash_secret, new_enrolment_code, new_token, normalise_enrolment_code
from aggregator.records import HomeRecord, new_id
from aggregator.store.base import StoreBase
from aggregator.store.changes import HOMES, HomeCurtailed, HomeInventory, HomeSeen, Update
from jeisson.common.protocol import Load, utc_now

ENROLMENT_CODE_LIFETIME: Final = timedelta(days=7)
OPERATOR_TOKEN_OUTAGE_S: Final = 600.0
"""While the database cannot be read, an operator token found valid this recently still is, so
the operator can watch events (and see why they are stuck) during an outage."""


class EnrolmentRejected(Exception):
    """An enrolment code was refused; ``reason`` says why."""

    class Reason(StrEnum):
        """Why the code was refused."""

        UNKNOWN = "invalid_code"
        USED = "code_used"
        EXPIRED = "code_expired"

    def __init__(self, reason: Reason) -> None:
        """Store the reason."""
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OperatorToken:
    """An operator token as stored (its hash never leaves the store)."""

    token_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        """Return True when the token is neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A completed enrolment: the plain token is returned exactly once."""

    home_id: str
    token: str = field(repr=False)
    name: str


class HomeStore(StoreBase):
    """Operators, homes and enrolment."""

    _operator_tokens: dict[str, float]
    """Hashes of operator tokens the database found valid, and when (monotonic)."""

    async def create_operator_token(self, name: str, expires_at: datetime | None = None) -> str:
        """Create an operator token and return it (only its hash is stored)."""
        return (await self.issue_operator_token(name, expires_at))[1]

    async def issue_operator_token(
        self, name: str, expires_at: datetime | None = None
    ) -> tuple[OperatorToken, str]:
        """Create an operator token; return it as stored and its plain text (shown once)."""
        token = new_token()
        record = OperatorToken(
            token_id=new_id("op"), name=name, created_at=utc_now(), expires_at=expires_at
        )
        async with self._begin() as conn:
            await conn.execute(
                insert(tables.operator_tokens).values(
                    token_id=record.token_id,
                    name=name,
                    token_hash=hash_secret(token),
                    created_at=record.created_at,
                    expires_at=expires_at,
                )
            )
        return record, token

    async def operator_tokens(self) -> list[OperatorToken]:
        """Return every operator token, oldest first (revoked and expired ones too)."""
        table = tables.operator_tokens
        query = select(
            table.c.token_id,
            table.c.name,
            table.c.created_at,
            table.c.expires_at,
            table.c.revoked_at,
        ).order_by(table.c.created_at, table.c.token_id)
        async with self._engine.connect() as conn:
            return [OperatorToken(*row) for row in await conn.execute(query)]

    async def operator_token_id(self, token: str) -> str | None:
        """Return the id of the operator token ``token`` (live or not); None if unknown."""
        table = tables.operator_tokens
        query = select(table.c.token_id).where(table.c.token_hash == hash_secret(token))
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def revoke_operator_token(self, token_id: str) -> OperatorToken | None:
        """Revoke an operator token (at once, also for open dashboard streams); None if unknown."""
        table = tables.operator_tokens
        async with self._begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.token_id == token_id, table.c.revoked_at.is_(None))
                .values(revoked_at=utc_now())
            )
            row = (
                await conn.execute(
                    select(
                        table.c.token_id,
                        table.c.name,
                        table.c.created_at,
                        table.c.expires_at,
                        table.c.revoked_at,
                    ).where(table.c.token_id == token_id)
                )
            ).first()
        self._operator_tokens.clear()  # nothing found valid before counts during an outage now
        return None if row is None else OperatorToken(*row)

    async def operator_token_is_valid(self, token: str) -> bool:
        """Return True when ``token`` is a live operator token.

        The database decides; only when it cannot be read is a token that it found valid in the
        last :data:`OPERATOR_TOKEN_OUTAGE_S` seconds trusted (a revocation counts at once).
        """
        token_hash = hash_secret(token)
        table = tables.operator_tokens
        query = select(table.c.token_id).where(
            table.c.token_hash == token_hash,
            table.c.revoked_at.is_(None),
            or_(table.c.expires_at.is_(None), table.c.expires_at > utc_now()),
        )
        try:
            async with self._engine.connect() as conn:
                valid = (await conn.execute(query)).first() is not None
        except (SQLAlchemyError, OSError):
            seen = self._operator_tokens.get(token_hash)
            if seen is not None and time.monotonic() - seen < OPERATOR_TOKEN_OUTAGE_S:
                return True
            raise
        if valid:
            self._operator_tokens[token_hash] = time.monotonic()
        else:
            self._operator_tokens.pop(token_hash, None)
        return valid

    async def add_home(self, name: str) -> tuple[HomeRecord, str]:
        """Add a home and return it with its one-time enrolment code."""
        home = HomeRecord(home_id=new_id("home"), name=name, created_at=utc_now())
        async with self._begin() as conn:
            await conn.execute(insert(tables.homes).values(HOMES.to_row(home)))
            code = await self._insert_enrolment_code(conn, home.home_id)
        return home, code

    async def new_enrolment_code(self, home_id: str) -> str | None:
        """Issue a fresh one-time code for a home, voiding its older ones; None if unknown.

        A removed home gets no code (None, as if unknown).
        """
        homes = tables.homes
        async with self._begin() as conn:
            exists = await conn.execute(
                select(homes.c.home_id).where(
                    homes.c.home_id == home_id, homes.c.removed_at.is_(None)
                )
            )
            if exists.first() is None:
                return None
            await self._void_codes(conn, home_id, utc_now())
            return await self._insert_enrolment_code(conn, home_id)

    @staticmethod
    async def _void_codes(conn: AsyncConnection, home_id: str, now: datetime) -> None:
        """Make a home's unused codes expire now (using one afterwards fails: code_expired)."""
        codes = tables.enrolment_codes
        await conn.execute(
            update(codes)
            .where(codes.c.home_id == home_id, codes.c.used_at.is_(None), codes.c.expires_at > now)
            .values(expires_at=now)
        )

    async def revoke_home_token(self, home_id: str) -> HomeRecord | None:
        """Void a home's token and unused codes (it must enrol again); None if unknown."""
        return await self._change_home(home_id, {"token_hash": None}, void_codes=True)

    async def suspend_home(self, home_id: str, *, suspended: bool) -> HomeRecord | None:
        """Suspend a home (it may not connect) or resume it; None if unknown."""
        return await self._change_home(home_id, {"suspended_at": utc_now() if suspended else None})

    async def remove_home(self, home_id: str) -> HomeRecord | None:
        """Remove a home: void its token and codes, keep its history; None if unknown."""
        return await self._change_home(
            home_id, {"removed_at": utc_now(), "token_hash": None}, void_codes=True
        )

    async def _change_home(
        self, home_id: str, values: dict[str, object], *, void_codes: bool = False
    ) -> HomeRecord | None:
        """Update one home (not a removed one) in one transaction; return it as it now is."""
        homes = tables.homes
        async with self._begin() as conn:
            await conn.execute(
                update(homes)
                .where(homes.c.home_id == home_id, homes.c.removed_at.is_(None))
                .values(**values)
            )
            if void_codes:
                await self._void_codes(conn, home_id, utc_now())
            row = (await conn.execute(select(homes).where(homes.c.home_id == home_id))).first()
        return None if row is None else HOMES.from_row(row)

    async def _insert_enrolment_code(self, conn: AsyncConnection, home_id: str) -> str:
        code = new_enrolment_code()
        now = utc_now()
        await conn.execute(
            insert(tables.enrolment_codes).values(
                code_hash=hash_secret(code),
                home_id=home_id,
                created_at=now,
                expires_at=now + ENROLMENT_CODE_LIFETIME,
            )
        )
        return code

    async def enroll(self, code: str) -> Enrolled:
        """Consume an enrolment code and give the home a new token (revoking any older one)."""
        code_hash = hash_secret(normalise_enrolment_code(code))
        codes = tables.enrolment_codes
        now = utc_now()
        async with self._begin() as conn:
            row = (await conn.execute(select(codes).where(codes.c.code_hash == code_hash))).first()
            if row is None:
                raise EnrolmentRejected(EnrolmentRejected.Reason.UNKNOWN)
            if row.used_at is not None:
                raise EnrolmentRejected(EnrolmentRejected.Reason.USED)
            if row.expires_at <= now:
                raise EnrolmentRejected(EnrolmentRejected.Reason.EXPIRED)
            # Conditional update: of two concurrent enrolments with one code, only one wins.
            consumed = await conn.execute(
                update(codes)
                .where(codes.c.code_hash == code_hash, codes.c.used_at.is_(None))
                .values(used_at=now)
            )
            if consumed.rowcount != 1:
                raise EnrolmentRejected(EnrolmentRejected.Reason.USED)
            token = new_token()
            changed = await conn.execute(
                update(tables.homes)
                .where(tables.homes.c.home_id == row.home_id, tables.homes.c.removed_at.is_(None))
                # The first enrolment is kept: a home's samples may not predate it.
                .values(
                    token_hash=hash_secret(token),
                    enrolled_at=func.coalesce(tables.homes.c.enrolled_at, now),
                )
            )
            if changed.rowcount != 1:  # removed meanwhile: the code voided with it
                raise EnrolmentRejected(EnrolmentRejected.Reason.EXPIRED)
            name = await conn.scalar(
                select(tables.homes.c.name).where(tables.homes.c.home_id == row.home_id)
            )
        return Enrolled(home_id=row.home_id, token=token, name=str(name))

    async def home_for_token(self, token: str) -> HomeRecord | None:
        """Return the home a token belongs to, or None."""
        query = select(tables.homes).where(tables.homes.c.token_hash == hash_secret(token))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else HOMES.from_row(row)

    async def get_home(self, home_id: str) -> HomeRecord | None:
        """Return one home, or None."""
        query = select(tables.homes).where(tables.homes.c.home_id == home_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else HOMES.from_row(row)

    async def list_homes(self) -> list[HomeRecord]:
        """Return every home, oldest first."""
        query = select(tables.homes).order_by(tables.homes.c.created_at)
        async with self._engine.connect() as conn:
            return [HOMES.from_row(row) for row in await conn.execute(query)]

    async def save_inventory(
        self, home_id: str, loads: Sequence[Load], *, participating: bool
    ) -> None:
        """Replace a home's declared loads and participation flag."""
        async with self.transaction() as unit:
            await unit.apply([Update(HomeInventory(home_id, tuple(loads), participating))])

    async def mark_seen(self, home_id: str, software_version: str) -> None:
        """Record that a home said hello now, with its software version."""
        async with self.transaction() as unit:
            await unit.apply([Update(HomeSeen(home_id, utc_now(), software_version))])

    async def set_last_curtailed(self, home_id: str, at: datetime) -> None:
        """Record when a home last committed to curtail (rotates the burden on ties)."""
        async with self.transaction() as unit:
            await unit.apply([Update(HomeCurtailed(home_id, at))])
