"""A home's lifecycle and expiring operator tokens.

Revision ID: 0011
Revises: 0010
Created: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``homes.suspended_at``, ``homes.removed_at`` and ``operator_tokens.expires_at``."""
    op.add_column("homes", sa.Column("suspended_at", _TS))
    op.add_column("homes", sa.Column("removed_at", _TS))
    op.add_column("operator_tokens", sa.Column("expires_at", _TS))


def downgrade() -> None:
    """Drop the columns again."""
    op.drop_column("operator_tokens", "expires_at")
    op.drop_column("homes", "removed_at")
    op.drop_column("homes", "suspended_at")
