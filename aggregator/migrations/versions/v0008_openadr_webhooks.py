"""OpenADR: the hashed bearer token a utility's VTN presents on Jeisson's webhook callback.

Revision ID: 0008
Revises: 0007
Created: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``openadr_vtns.callback_token_hash``."""
    op.add_column("openadr_vtns", sa.Column("callback_token_hash", sa.String(64)))


def downgrade() -> None:
    """Drop ``openadr_vtns.callback_token_hash``."""
    op.drop_column("openadr_vtns", "callback_token_hash")
