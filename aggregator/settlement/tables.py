"""The settlement tables: program settings, statements, receipts, reliability.

Registered on :data:`aggregator.tables.metadata` (imported at the end of that module), so
migrations and schema checks see them; written and read by :mod:`.repository`.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from aggregator.tables import ID, UtcDateTime, metadata

settlement_program = Table(
    "settlement_program",
    metadata,
    Column("program_id", ID, primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("holiday_country", String(8)),
    Column("holiday_subdivision", String(16)),
    Column("settle_after_s", Float, nullable=False),
    Column("estimated_pay_ratio", Float, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per settled version of an event's statement; rows are only ever inserted.
statements = Table(
    "statements",
    metadata,
    Column("event_id", ID, ForeignKey("events.event_id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("settled_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("group_events", JSON, nullable=False),
    Column("baseline_method", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("interval_minutes", Integer, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("estimated_pay_ratio", Float, nullable=False),
    Column("homes", Integer, nullable=False),
    Column("payment", Float, nullable=False),
    Column("correction", Float, nullable=False),
    Column("totals", JSON, nullable=False),
    Column("detail", JSON, nullable=False),
)

statement_lines = Table(
    "statement_lines",
    metadata,
    Column("event_id", ID, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
    Column("settled_at", UtcDateTime, nullable=False),
    Column("status", String(24), nullable=False),
    Column("baseline_outcome", String(24), nullable=False),
    Column("baseline_reason", Text, nullable=False),
    Column("price", Float, nullable=False),
    Column("committed_kw", Float, nullable=False),
    Column("committed_kwh", Float, nullable=False),
    Column("delivered_kwh", Float, nullable=False),
    Column("paid_kwh", Float, nullable=False),
    Column("payment", Float, nullable=False),
    Column("previous_payment", Float),
    Column("data_quality", String(24), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_statement_lines_home", "home_id", "settled_at"),
)

statement_receipts = Table(
    "statement_receipts",
    metadata,
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
    Column("event_id", ID, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("acked_at", UtcDateTime, nullable=False),
)

home_reliability = Table(
    "home_reliability",
    metadata,
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
    Column("score", Float, nullable=False),
    Column("events", Integer, nullable=False),
    Column("delivered_kwh", Float, nullable=False),
    Column("committed_kwh", Float, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
