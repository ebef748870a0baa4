"""Storage of Jeisson's VTN: its clients (business logic or VEN), their tokens, OpenADR objects.

Client secrets and access tokens are random (>= 128 bits) and stored as SHA-256 digests, like the
aggregator's own tokens (``aggregator.auth``). Objects are kept as the validated OpenADR JSON the
VTN serves, plus the columns searches filter on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator.auth import hash_secret, new_token, secrets_match
from aggregator.openadr.tables import openadr_clients, openadr_objects, openadr_tokens
from aggregator.store import new_id
from jeisson.common.protocol import utc_now

PUBLISHER = "jeisson"
"""The owner of the objects Jeisson publishes itself (its program and its events for VENs)."""


class ClientRole(StrEnum):
    """What an OpenADR client of Jeisson's VTN may do."""

    BL = "bl"
    """Business logic (a utility's or the operator's system): writes programs and events."""
    VEN = "ven"
    """A virtual end node: reads programs and events, writes reports, its VEN and resources."""


@dataclass(frozen=True, slots=True)
class VtnClient:
    """A client allowed into Jeisson's VTN (no secret: only its digest is stored)."""

    client_id: str
    name: str
    role: ClientRole
    created_at: datetime
    revoked_at: datetime | None = None
    capacity_kw: float | None = None
    """A VEN taking part in Jeisson's own events: the kW it sheds when dispatched."""


@dataclass(frozen=True, slots=True)
class Participant:
    """A VEN that takes part in Jeisson's own events: its client, its venName, its capacity."""

    client_id: str
    ven_name: str
    capacity_kw: float


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One OpenADR object as served (``body``) with the VTN's bookkeeping."""

    object_id: str
    object_type: str
    owner: str | None
    body: dict[str, Any]
    event_id: str | None = None
    """The event it refers to (a report's eventID; for an event Jeisson publishes, its own)."""
    name: str | None = None
    """Its name (program, VEN...; for an event Jeisson publishes, the VEN client it is for)."""


class VtnStore:
    """Reads and writes the VTN's tables on the aggregator's database engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use ``engine`` (the aggregator store's)."""
        self._engine = engine

    # --- clients and tokens ---------------------------------------------------------------

    async def add_client(
        self, name: str, role: ClientRole, capacity_kw: float | None = None
    ) -> tuple[VtnClient, str]:
        """Create a client; return it and its secret (shown once, stored hashed)."""
        secret = new_token()
        client = VtnClient(
            client_id=new_id("oadr"),
            name=name,
            role=role,
            created_at=utc_now(),
            capacity_kw=capacity_kw,
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(openadr_clients).values(
                    client_id=client.client_id,
                    name=name,
                    role=role.value,
                    secret_hash=hash_secret(secret),
                    created_at=client.created_at,
                    capacity_kw=capacity_kw,
                )
            )
        return client, secret

    async def list_clients(self) -> list[VtnClient]:
        """Return every client, oldest first."""
        query = select(openadr_clients).order_by(openadr_clients.c.created_at)
        async with self._engine.connect() as conn:
            return [_client(row) for row in await conn.execute(query)]

    async def revoke_client(self, client_id: str) -> bool:
        """Revoke a client and its tokens; return False when there is no such live client."""
        table = openadr_clients
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.client_id == client_id, table.c.revoked_at.is_(None))
                .values(revoked_at=utc_now())
            )
            await conn.execute(
                delete(openadr_tokens).where(openadr_tokens.c.client_id == client_id)
            )
        return bool(result.rowcount)

    async def issue_token(
        self, client_id: str, secret: str, lifetime: timedelta
    ) -> tuple[VtnClient, str] | None:
        """Return a new access token for valid credentials (None otherwise)."""
        table = openadr_clients
        query = select(table).where(table.c.client_id == client_id, table.c.revoked_at.is_(None))
        async with self._engine.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None or not secrets_match(secret, row.secret_hash):
                return None
            now = utc_now()
            await conn.execute(
                delete(openadr_tokens).where(
                    openadr_tokens.c.client_id == client_id, openadr_tokens.c.expires_at < now
                )
            )
            token = new_token()
            await conn.execute(
                insert(openadr_tokens).values(
                    token_hash=hash_secret(token), client_id=client_id, expires_at=now + lifetime
                )
            )
        return _client(row), token

    async def client_for_token(self, token: str) -> VtnClient | None:
        """Return the live client an unexpired access token belongs to."""
        query = (
            select(openadr_clients)
            .join(openadr_tokens, openadr_tokens.c.client_id == openadr_clients.c.client_id)
            .where(
                openadr_tokens.c.token_hash == hash_secret(token),
                openadr_tokens.c.expires_at > utc_now(),
                openadr_clients.c.revoked_at.is_(None),
            )
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _client(row)

    async def participants(self) -> list[Participant]:
        """Return the live VEN clients with a capacity and a registered VEN (oldest VEN's name)."""
        clients = openadr_clients
        query = (
            select(clients.c.client_id, clients.c.capacity_kw, openadr_objects.c.name)
            .join(openadr_objects, openadr_objects.c.owner == clients.c.client_id)
            .where(
                clients.c.revoked_at.is_(None),
                clients.c.capacity_kw > 0,
                openadr_objects.c.object_type == "VEN",
            )
            .order_by(clients.c.created_at, openadr_objects.c.created_at)
        )
        found: dict[str, Participant] = {}
        async with self._engine.connect() as conn:
            for row in await conn.execute(query):
                participant = Participant(row.client_id, row.name, row.capacity_kw)
                found.setdefault(row.client_id, participant)
        return list(found.values())

    async def ven_names(self, client_id: str) -> set[str]:
        """Return the venNames of the VEN objects a client registered."""
        query = select(openadr_objects.c.name).where(
            openadr_objects.c.object_type == "VEN", openadr_objects.c.owner == client_id
        )
        async with self._engine.connect() as conn:
            return {row.name for row in await conn.execute(query)}

    # --- objects --------------------------------------------------------------------------

    async def insert_object(
        self,
        object_type: str,
        owner: str | None,
        request: dict[str, Any],
        *,
        columns: dict[str, str] | None = None,
    ) -> StoredObject:
        """Store a new object made from a validated request body; return it as served.

        ``columns`` overrides searchable columns (``event_id``, ``name``): Jeisson files the
        events it publishes under the Jeisson event and the VEN client they are for.
        """
        now = utc_now()
        object_id = new_id(object_type.lower())
        body = {
            "id": object_id,
            "createdDateTime": _stamp(now),
            "modificationDateTime": _stamp(now),
            "objectType": object_type,
            **request,
        }
        filed = {**_columns(body), **(columns or {})}
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(openadr_objects).values(
                    object_id=object_id,
                    object_type=object_type,
                    owner=owner,
                    created_at=now,
                    modified_at=now,
                    body=body,
                    **filed,
                )
            )
        return StoredObject(object_id, object_type, owner, body, filed["event_id"], filed["name"])

    async def replace_object(self, stored: StoredObject, request: dict[str, Any]) -> StoredObject:
        """Replace an object's content (PUT); its id, type, owner and creation time stay."""
        now = utc_now()
        body = {
            "id": stored.object_id,
            "createdDateTime": stored.body["createdDateTime"],
            "modificationDateTime": _stamp(now),
            "objectType": stored.object_type,
            **request,
        }
        async with self._engine.begin() as conn:
            filed = _columns(body)
            if stored.owner == PUBLISHER:  # keep how Jeisson filed its own object
                filed = {**filed, "event_id": stored.event_id, "name": stored.name}
            await conn.execute(
                update(openadr_objects)
                .where(openadr_objects.c.object_id == stored.object_id)
                .values(modified_at=now, body=body, **filed)
            )
        return StoredObject(
            stored.object_id,
            stored.object_type,
            stored.owner,
            body,
            filed["event_id"],
            filed["name"],
        )

    async def delete_object(self, object_id: str) -> None:
        """Delete an object."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(openadr_objects).where(openadr_objects.c.object_id == object_id)
            )

    async def get_object(self, object_type: str, object_id: str) -> StoredObject | None:
        """Return one object of a type, or None."""
        query = select(openadr_objects).where(
            openadr_objects.c.object_id == object_id,
            openadr_objects.c.object_type == object_type,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _object(row)

    async def count_objects(self, object_type: str, owner: str, event_id: str | None = None) -> int:
        """Return how many objects of a type a client owns (about one event, if given)."""
        table = openadr_objects
        query = select(func.count()).where(
            table.c.object_type == object_type, table.c.owner == owner
        )
        if event_id is not None:
            query = query.where(table.c.event_id == event_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def find_objects(
        self,
        object_type: str,
        *,
        program_id: str | None = None,
        event_id: str | None = None,
        owner: str | None = None,
        name: str | None = None,
        event_ids: Collection[str] | None = None,
    ) -> list[StoredObject]:
        """Return the objects of a type matching every filter given, oldest first."""
        table = openadr_objects
        query = select(table).where(table.c.object_type == object_type)
        if event_ids is not None:
            query = query.where(table.c.event_id.in_(sorted(event_ids)))
        for column, value in (
            (table.c.program_id, program_id),
            (table.c.event_id, event_id),
            (table.c.owner, owner),
            (table.c.name, name),
        ):
            if value is not None:
                query = query.where(column == value)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(table.c.created_at, table.c.object_id))
            return [_object(row) for row in rows]


def _stamp(moment: datetime) -> str:
    """Return an OpenADR dateTime (RFC 3339, UTC, millisecond precision)."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_NAME_FIELDS = ("programName", "venName", "resourceName", "clientName")


def _columns(body: dict[str, Any]) -> dict[str, Any]:
    """Return the searchable columns of an object's body."""
    name = next((body[field] for field in _NAME_FIELDS if body.get(field)), None)
    return {"program_id": body.get("programID"), "event_id": body.get("eventID"), "name": name}


def _client(row: Any) -> VtnClient:
    return VtnClient(
        client_id=row.client_id,
        name=row.name,
        role=ClientRole(row.role),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        capacity_kw=row.capacity_kw,
    )


def _object(row: Any) -> StoredObject:
    return StoredObject(
        row.object_id, row.object_type, row.owner, dict(row.body), row.event_id, row.name
    )
