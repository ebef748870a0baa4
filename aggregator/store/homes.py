"""Stored homes, their enrolment codes and tokens, and operator tokens."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import func, insert, select, update
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
class Enrolled:
    """A completed enrolment: the plain token is returned exactly once."""

    home_id: str
    token: str


class HomeStore(StoreBase):
    """Operators, homes and enrolment."""

    _operator_tokens: dict[str, float]
    """Hashes of operator tokens the database found valid, and when (monotonic)."""

    async def create_operator_token(self, name: str) -> str:
        """Create an operator token and return it (only its hash is stored)."""
        token = new_token()
        async with self._begin() as conn:
            await conn.execute(
                insert(tables.operator_tokens).values(
                    token_id=new_id("op"),
                    name=name,
                    token_hash=hash_secret(token),
                    created_at=utc_now(),
                )
            )
        return token

    async def operator_token_is_valid(self, token: str) -> bool:
        """Return True when ``token`` is a live operator token.

        The database decides; only when it cannot be read is a token that it found valid in the
        last :data:`OPERATOR_TOKEN_OUTAGE_S` seconds trusted (a revocation counts at once).
        """
        token_hash = hash_secret(token)
        query = select(tables.operator_tokens.c.token_id).where(
            tables.operator_tokens.c.token_hash == token_hash,
            tables.operator_tokens.c.revoked_at.is_(None),
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
        """Issue a fresh one-time code for an existing home (re-enrolment); None if unknown."""
        async with self._begin() as conn:
            exists = await conn.execute(
                select(tables.homes.c.home_id).where(tables.homes.c.home_id == home_id)
            )
            if exists.first() is None:
                return None
            return await self._insert_enrolment_code(conn, home_id)

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
            await conn.execute(
                update(tables.homes)
                .where(tables.homes.c.home_id == row.home_id)
                # The first enrolment is kept: a home's samples may not predate it.
                .values(
                    token_hash=hash_secret(token),
                    enrolled_at=func.coalesce(tables.homes.c.enrolled_at, now),
                )
            )
        return Enrolled(home_id=row.home_id, token=token)

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
