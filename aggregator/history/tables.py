"""The dashboard history's tables, registered on the aggregator's ``metadata`` (migration 0007)."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, String, Table

from aggregator.tables import ID, UtcDateTime, metadata

fleet_samples = Table(
    "fleet_samples",
    metadata,
    # One row a minute: the fleet over time (the dashboard's fleet charts).
    Column("ts", UtcDateTime, primary_key=True),
    Column("homes_total", Integer, nullable=False),
    Column("homes_online", Integer, nullable=False),
    Column("homes_participating", Integer, nullable=False),
    Column("flexible_kw", Float, nullable=False),
)

event_samples = Table(
    "event_samples",
    metadata,
    # Target, committed and delivered kW of an event over time, and when its status changed.
    Column("event_id", ID, ForeignKey("events.event_id"), primary_key=True),
    Column("ts", UtcDateTime, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("target_kw", Float, nullable=False),
    Column("committed_kw", Float, nullable=False),
    Column("delivered_kw", Float, nullable=False),
)
