"""Initial schema: what ``metadata.create_all`` created before migrations existed.

Revision ID: 0001
Revises:
Created: 2026-11-29

Types are spelt out here (not imported from ``aggregator.tables``) so this revision keeps
creating the same schema whatever later code does. ``UtcDateTime`` is ``DateTime(timezone=True)``
in the database: ``timestamp with time zone`` on PostgreSQL. The one difference from the old
``create_all``: ``telemetry_batches`` no longer declares a unique constraint repeating its primary
key (PostgreSQL folded the two anyway; an old SQLite file keeps a redundant index, harmlessly).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(64)
_HASH = sa.String(64)
_TS = sa.DateTime(timezone=True)
_TELEMETRY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "server_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "operator_tokens",
        sa.Column("token_id", _ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", _HASH, nullable=False, unique=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
    )
    op.create_table(
        "homes",
        sa.Column("home_id", _ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("token_hash", _HASH, unique=True),
        sa.Column("enrolled_at", _TS),
        sa.Column("loads", sa.JSON(), nullable=False),
        sa.Column("participating", sa.Boolean(), nullable=False),
        sa.Column("last_curtailed_at", _TS),
        sa.Column("last_seen_at", _TS),
        sa.Column("software_version", sa.String(64)),
    )
    op.create_table(
        "enrolment_codes",
        sa.Column("code_hash", _HASH, primary_key=True),
        sa.Column("home_id", _ID, sa.ForeignKey("homes.home_id"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS),
    )
    op.create_table(
        "events",
        sa.Column("event_id", _ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target_kw", sa.Float(), nullable=False),
        sa.Column("price_cap", sa.Float(), nullable=False),
        sa.Column("start", _TS, nullable=False),
        sa.Column("end", _TS, nullable=False),
        sa.Column("bid_window_s", sa.Float(), nullable=False),
        sa.Column("restore_stagger_s", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("clearing_price", sa.Float()),
        sa.Column("current_round", sa.Integer(), nullable=False),
        sa.Column("cancel_reason", sa.Text()),
    )
    op.create_index("ix_events_status", "events", ["status"])
    op.create_table(
        "rounds",
        sa.Column("event_id", _ID, sa.ForeignKey("events.event_id"), primary_key=True),
        sa.Column("round", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target_kw", sa.Float(), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("deadline", _TS, nullable=False),
        sa.Column("offered_homes", sa.JSON(), nullable=False),
        sa.Column("cleared_at", _TS),
        sa.Column("clearing_price", sa.Float()),
        sa.Column("offered_kw", sa.Float(), nullable=False),
        sa.Column("accepted_kw", sa.Float(), nullable=False),
        sa.Column("shortfall_kw", sa.Float(), nullable=False),
        sa.Column("bids", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
    )
    op.create_table(
        "bids",
        sa.Column("event_id", _ID, primary_key=True),
        sa.Column("round", sa.Integer(), primary_key=True),
        sa.Column("home_id", _ID, sa.ForeignKey("homes.home_id"), primary_key=True),
        sa.Column("message_id", _ID, nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_table(
        "awards",
        sa.Column("award_id", _ID, primary_key=True),
        sa.Column("event_id", _ID, sa.ForeignKey("events.event_id"), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("home_id", _ID, sa.ForeignKey("homes.home_id"), nullable=False),
        sa.Column("kw", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
        sa.Column("load_kw", sa.JSON(), nullable=False),
        sa.Column("opted_out_loads", sa.JSON(), nullable=False),
        sa.Column("acked_at", _TS),
    )
    op.create_index("ix_awards_event_home", "awards", ["event_id", "home_id"])
    op.create_table(
        "opt_outs",
        sa.Column("event_id", _ID, primary_key=True),
        sa.Column("home_id", _ID, sa.ForeignKey("homes.home_id"), primary_key=True),
        sa.Column("load_id", _ID, primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("message_id", _ID, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_table(
        "telemetry",
        sa.Column("id", _TELEMETRY_ID, primary_key=True, autoincrement=True),
        sa.Column("home_id", _ID, sa.ForeignKey("homes.home_id"), nullable=False),
        sa.Column("event_id", _ID),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("power_kw", sa.Float(), nullable=False),
        sa.Column("shed_kw", sa.Float(), nullable=False),
        sa.Column("loads", sa.JSON(), nullable=False),
    )
    op.create_index("ix_telemetry_home_ts", "telemetry", ["home_id", "ts"])
    op.create_index("ix_telemetry_event", "telemetry", ["event_id"])
    op.create_table(
        "telemetry_batches",
        sa.Column("home_id", _ID, primary_key=True),
        sa.Column("message_id", _ID, primary_key=True),
        sa.Column("received_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop every table (children first)."""
    for table in (
        "telemetry_batches",
        "telemetry",
        "opt_outs",
        "awards",
        "bids",
        "rounds",
        "events",
        "enrolment_codes",
        "homes",
        "operator_tokens",
        "server_meta",
    ):
        op.drop_table(table)
