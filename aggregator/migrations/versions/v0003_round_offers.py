"""The homes offered a round become rows of their own.

Revision ID: 0003
Revises: 0002
Created: 2026-12-10

``rounds.offered_homes`` (one JSON list per round, rewritten whenever a home joined an open
round) becomes the table ``round_offers``: one row per home and round, so a home that connects
while a round is open costs one small insert, and thousands of offers are written with one
``executemany``. Existing lists are copied over.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROUNDS = sa.table(
    "rounds",
    sa.column("event_id", sa.String),
    sa.column("round", sa.Integer),
    sa.column("offered_homes", sa.JSON),
)
_OFFERS = sa.table(
    "round_offers",
    sa.column("event_id", sa.String),
    sa.column("round", sa.Integer),
    sa.column("home_id", sa.String),
)


def _homes(value: object) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(home) for home in value] if isinstance(value, list) else []


def upgrade() -> None:
    """Create ``round_offers``, copy every round's list into it, drop the list."""
    op.create_table(
        "round_offers",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.event_id"), primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("home_id", sa.String(64), sa.ForeignKey("homes.home_id"), primary_key=True),
    )
    connection = op.get_bind()
    rows = [
        {"event_id": row.event_id, "round": row.round, "home_id": home}
        for row in connection.execute(sa.select(_ROUNDS))
        for home in dict.fromkeys(_homes(row.offered_homes))
    ]
    if rows:
        connection.execute(sa.insert(_OFFERS), rows)
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("offered_homes")


def downgrade() -> None:
    """Put the lists back into ``rounds`` and drop ``round_offers``."""
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("offered_homes", sa.JSON, nullable=False, server_default="[]"))
    connection = op.get_bind()
    offered: dict[tuple[str, int], list[str]] = {}
    for row in connection.execute(sa.select(_OFFERS)):
        offered.setdefault((row.event_id, row.round), []).append(row.home_id)
    for (event_id, number), homes in offered.items():
        connection.execute(
            sa.update(_ROUNDS)
            .where(_ROUNDS.c.event_id == event_id, _ROUNDS.c.round == number)
            .values(offered_homes=homes)
        )
    op.drop_table("round_offers")
