"""The aggregator's database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC datetime on every backend.

    PostgreSQL stores it as ``timestamp with time zone``; SQLite (no zone type) as the naive
    UTC wall-clock time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and store UTC (naive on SQLite, which has no zone)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return stored values as aware UTC datetimes."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"the database returned {type(value).__name__} for a timestamp")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = String(64)

TELEMETRY_ID = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit on PostgreSQL (billions of samples); SQLite's rowid alias must be spelt INTEGER."""

metadata = MetaData()

server_meta = Table(
    "server_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

operator_tokens = Table(
    "operator_tokens",
    metadata,
    Column("token_id", ID, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
)

homes = Table(
    "homes",
    metadata,
    Column("home_id", ID, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("token_hash", String(64), unique=True),
    Column("enrolled_at", UtcDateTime),
    Column("loads", JSON, nullable=False, default=list),
    Column("participating", Boolean, nullable=False, default=True),
    Column("last_curtailed_at", UtcDateTime),
    Column("last_seen_at", UtcDateTime),
    Column("software_version", String(64)),
    Column("suspended_at", UtcDateTime),
    Column("removed_at", UtcDateTime),
)

enrolment_codes = Table(
    "enrolment_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
)

events = Table(
    "events",
    metadata,
    Column("event_id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("target_kw", Float, nullable=False),
    Column("price_cap", Float, nullable=False),
    Column("start", UtcDateTime, nullable=False),
    Column("end", UtcDateTime, nullable=False),
    Column("bid_window_s", Float, nullable=False),
    Column("restore_stagger_s", Float, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("clearing_price", Float),
    Column("current_round", Integer, nullable=False, default=0),
    Column("cancel_reason", Text),
    # How settlement computes this event's baselines; NULL means the program default.
    Column("baseline_method", String(32)),
    # Shed ("down") or power up ("up"); every event before schema 3 is "down".
    Column("direction", String(8), nullable=False, default="down", server_default="down"),
)

rounds = Table(
    "rounds",
    metadata,
    Column("event_id", ID, ForeignKey("events.event_id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("target_kw", Float, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("deadline", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime),
    Column("clearing_price", Float),
    Column("offered_kw", Float, nullable=False, default=0.0),
    Column("accepted_kw", Float, nullable=False, default=0.0),
    Column("shortfall_kw", Float, nullable=False, default=0.0),
    Column("bids", Integer, nullable=False, default=0),
    Column("steps", Integer, nullable=False, default=0),
)

round_offers = Table(
    "round_offers",
    metadata,
    # One row per home offered a round (a home that connects while the round is open is added).
    Column("event_id", ID, ForeignKey("events.event_id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
)

bids = Table(
    "bids",
    metadata,
    Column("event_id", ID, primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
    Column("message_id", ID, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

awards = Table(
    "awards",
    metadata,
    Column("award_id", ID, primary_key=True),
    Column("event_id", ID, ForeignKey("events.event_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("home_id", ID, ForeignKey("homes.home_id"), nullable=False),
    Column("kw", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("load_kw", JSON, nullable=False, default=dict),
    Column("opted_out_loads", JSON, nullable=False, default=list),
    Column("acked_at", UtcDateTime),
    # The level of each load awarded by partial steps (schema 3); {} when none.
    Column("load_levels", JSON, nullable=False, default=dict, server_default="{}"),
    Index("ix_awards_event_home", "event_id", "home_id"),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("event_id", ID, primary_key=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), primary_key=True),
    # "" stands for the whole event, so the primary key makes repeats harmless.
    Column("load_id", ID, primary_key=True),
    Column("reason", String(16), nullable=False),
    Column("message_id", ID, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

telemetry = Table(
    "telemetry",
    metadata,
    Column("id", TELEMETRY_ID, primary_key=True, autoincrement=True),
    Column("home_id", ID, ForeignKey("homes.home_id"), nullable=False),
    Column("event_id", ID),
    Column("ts", UtcDateTime, nullable=False),
    Column("power_kw", Float, nullable=False),
    Column("shed_kw", Float, nullable=False),
    Column("loads", JSON, nullable=False, default=dict),
    # True: every figure metered; False: some load's figure is an estimate (rated power while
    # on); NULL: the home did not say (schema 1). Settlement pays estimates at a discount.
    Column("measured", Boolean),
    # Covers settlement's reads (home_id IN ..., ts range, power_kw, measured) from the index.
    Index("ix_telemetry_home_ts_power", "home_id", "ts", "power_kw", "measured"),
    Index("ix_telemetry_event", "event_id"),
)

telemetry_batches = Table(
    "telemetry_batches",
    metadata,
    Column("home_id", ID, primary_key=True),
    Column("message_id", ID, primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
)

event_leases = Table(
    "event_leases",
    metadata,
    # Which aggregator process coordinates an unfinished event (clustered deployments only).
    # ``token`` grows by one at every change of holder: each step's transaction checks it (the
    # fence), so a process that lost the lease can no longer write for the event.
    Column("event_id", ID, primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# The OpenADR tables live with their package; importing them registers them on ``metadata``.
from aggregator.history import tables as _history_tables  # noqa: E402, F401
from aggregator.openadr import tables as _openadr_tables  # noqa: E402, F401
from aggregator.settlement import tables as _settlement_tables  # noqa: E402, F401
