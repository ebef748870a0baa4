"""Event leases: which process of a cluster coordinates each unfinished event.

Revision ID: 0006
Revises: 0005
Created: 2026-12-12

One row per event that a clustered aggregator coordinates: the holder's node id, a fencing
token that grows at every change of holder, and when the lease runs out (the database's clock).
Single-process deployments never write it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``event_leases``."""
    op.create_table(
        "event_leases",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_event_leases_expires_at", "event_leases", ["expires_at"])


def downgrade() -> None:
    """Drop ``event_leases``."""
    op.drop_index("ix_event_leases_expires_at", table_name="event_leases")
    op.drop_table("event_leases")
