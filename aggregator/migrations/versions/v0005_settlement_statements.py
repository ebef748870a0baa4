"""Settlement: program settings, final statements, receipts, reliability; measured samples.

Revision ID: 0005
Revises: 0004
Created: 2026-12-04

``settlement_program`` holds the program's calendar and rules; ``statements`` and
``statement_lines`` the immutable, versioned statements (rows are only inserted);
``statement_receipts`` which home acknowledged which statement; ``home_reliability`` each
home's reliability score. ``telemetry.measured`` says whether a sample was metered (NULL: the
home did not say), and the settlement index covers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)
UtcDateTime = sa.DateTime(timezone=True)
"""Spelt out (not imported from ``aggregator.tables``): this revision keeps its schema."""


def upgrade() -> None:
    """Create the settlement tables and add ``telemetry.measured``."""
    op.create_table(
        "settlement_program",
        sa.Column("program_id", ID, primary_key=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("holiday_country", sa.String(8)),
        sa.Column("holiday_subdivision", sa.String(16)),
        sa.Column("settle_after_s", sa.Float, nullable=False),
        sa.Column("estimated_pay_ratio", sa.Float, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "statements",
        sa.Column("event_id", ID, sa.ForeignKey("events.event_id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("settled_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("group_events", sa.JSON, nullable=False),
        sa.Column("baseline_method", sa.String(32), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("interval_minutes", sa.Integer, nullable=False),
        sa.Column("window_start", UtcDateTime, nullable=False),
        sa.Column("window_end", UtcDateTime, nullable=False),
        sa.Column("estimated_pay_ratio", sa.Float, nullable=False),
        sa.Column("homes", sa.Integer, nullable=False),
        sa.Column("payment", sa.Float, nullable=False),
        sa.Column("correction", sa.Float, nullable=False),
        sa.Column("totals", sa.JSON, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "statement_lines",
        sa.Column("event_id", ID, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("home_id", ID, sa.ForeignKey("homes.home_id"), primary_key=True),
        sa.Column("settled_at", UtcDateTime, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("baseline_outcome", sa.String(24), nullable=False),
        sa.Column("baseline_reason", sa.Text, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("committed_kw", sa.Float, nullable=False),
        sa.Column("committed_kwh", sa.Float, nullable=False),
        sa.Column("delivered_kwh", sa.Float, nullable=False),
        sa.Column("paid_kwh", sa.Float, nullable=False),
        sa.Column("payment", sa.Float, nullable=False),
        sa.Column("previous_payment", sa.Float),
        sa.Column("data_quality", sa.String(24), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_statement_lines_home", "statement_lines", ["home_id", "settled_at"])
    op.create_table(
        "statement_receipts",
        sa.Column("home_id", ID, sa.ForeignKey("homes.home_id"), primary_key=True),
        sa.Column("event_id", ID, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("acked_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "home_reliability",
        sa.Column("home_id", ID, sa.ForeignKey("homes.home_id"), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("delivered_kwh", sa.Float, nullable=False),
        sa.Column("committed_kwh", sa.Float, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    with op.batch_alter_table("telemetry") as batch:
        batch.add_column(sa.Column("measured", sa.Boolean))
    op.drop_index("ix_telemetry_home_ts_power", table_name="telemetry")
    op.create_index(
        "ix_telemetry_home_ts_power", "telemetry", ["home_id", "ts", "power_kw", "measured"]
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` created."""
    op.drop_index("ix_telemetry_home_ts_power", table_name="telemetry")
    with op.batch_alter_table("telemetry") as batch:
        batch.drop_column("measured")
    op.create_index("ix_telemetry_home_ts_power", "telemetry", ["home_id", "ts", "power_kw"])
    op.drop_table("home_reliability")
    op.drop_table("statement_receipts")
    op.drop_index("ix_statement_lines_home", table_name="statement_lines")
    op.drop_table("statement_lines")
    op.drop_table("statements")
    op.drop_table("settlement_program")
