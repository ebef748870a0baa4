"""Flexible loads: an event's direction (power-up events) and awarded load levels.

Revision ID: 0010
Revises: 0009
Created: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``events.direction`` (existing events shed: ``down``) and ``awards.load_levels``."""
    op.add_column(
        "events",
        sa.Column("direction", sa.String(8), nullable=False, server_default="down"),
    )
    op.add_column(
        "awards",
        sa.Column("load_levels", sa.JSON(), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    """Drop ``awards.load_levels`` and ``events.direction``."""
    op.drop_column("awards", "load_levels")
    op.drop_column("events", "direction")
