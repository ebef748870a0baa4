"""History for the operator dashboard: fleet samples and event samples.

Revision ID: 0007
Revises: 0006
Created: 2026-12-11

``fleet_samples`` holds one row a minute (homes enrolled, online, taking part, flexible kW) for
the fleet charts; ``event_samples`` holds each event's target, committed and delivered kW every
few seconds while it runs, and a row at each status change, so the chart and the activity list
come from the server rather than from the time a browser tab was open.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
"""Spelt out (not imported from ``aggregator.tables``) so this revision never changes."""


def upgrade() -> None:
    """Create ``fleet_samples`` and ``event_samples``."""
    op.create_table(
        "fleet_samples",
        sa.Column("ts", _TS, primary_key=True),
        sa.Column("homes_total", sa.Integer, nullable=False),
        sa.Column("homes_online", sa.Integer, nullable=False),
        sa.Column("homes_participating", sa.Integer, nullable=False),
        sa.Column("flexible_kw", sa.Float, nullable=False),
    )
    op.create_table(
        "event_samples",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.event_id"), primary_key=True),
        sa.Column("ts", _TS, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target_kw", sa.Float, nullable=False),
        sa.Column("committed_kw", sa.Float, nullable=False),
        sa.Column("delivered_kw", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("event_samples")
    op.drop_table("fleet_samples")
