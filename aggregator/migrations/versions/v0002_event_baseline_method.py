"""Events get a baseline method; telemetry's home/time index covers power readings.

Revision ID: 0002
Revises: 0001
Created: 2026-11-29

``events.baseline_method`` (NULL: the program's default) says how settlement computes the
event's baselines. ``ix_telemetry_home_ts_power`` replaces ``ix_telemetry_home_ts``: with
``power_kw`` in the key, reading a set of homes over a time range (settlement) is answered from
the index alone on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``events.baseline_method`` and widen the telemetry index."""
    op.add_column("events", sa.Column("baseline_method", sa.String(32), nullable=True))
    op.create_index("ix_telemetry_home_ts_power", "telemetry", ["home_id", "ts", "power_kw"])
    op.drop_index("ix_telemetry_home_ts", table_name="telemetry")


def downgrade() -> None:
    """Restore the narrower index and drop the column."""
    op.create_index("ix_telemetry_home_ts", "telemetry", ["home_id", "ts"])
    op.drop_index("ix_telemetry_home_ts_power", table_name="telemetry")
    op.drop_column("events", "baseline_method")
