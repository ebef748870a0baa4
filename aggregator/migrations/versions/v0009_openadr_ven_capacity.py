"""OpenADR: the capacity of a third-party VEN taking part in Jeisson's own events.

Revision ID: 0009
Revises: 0008
Created: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``openadr_clients.capacity_kw`` (NULL: the client takes no part in Jeisson's events)."""
    op.add_column("openadr_clients", sa.Column("capacity_kw", sa.Float()))


def downgrade() -> None:
    """Drop ``openadr_clients.capacity_kw``."""
    op.drop_column("openadr_clients", "capacity_kw")
