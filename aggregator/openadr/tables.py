"""The OpenADR tables, registered on the aggregator's schema (``aggregator.tables.metadata``).

VTN side: the clients allowed in (business logic or VEN; secrets and tokens stored hashed; a
VEN's capacity when it takes part in Jeisson's events), and every OpenADR object (its validated
JSON plus the columns searches filter on), those Jeisson publishes for its own events included. VEN
side: each utility VTN Jeisson follows (its client secret encrypted; the bearer token of its
webhook subscription hashed), the link of each of its events to a Jeisson event, and every
interval report sent.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table, Text

from aggregator.tables import ID, UtcDateTime, metadata

OBJECT_ID = String(128)
"""OpenADR object ids are at most 128 characters."""

openadr_clients = Table(
    "openadr_clients",
    metadata,
    Column("client_id", ID, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(8), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    # A VEN client taking part in Jeisson's own events: the kW the operator agreed it sheds.
    Column("capacity_kw", Float),
)

openadr_tokens = Table(
    "openadr_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("client_id", ID, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_openadr_tokens_client", "client_id"),
)

openadr_objects = Table(
    "openadr_objects",
    metadata,
    Column("object_id", OBJECT_ID, primary_key=True),
    Column("object_type", String(16), nullable=False),
    Column("program_id", OBJECT_ID),
    Column("event_id", OBJECT_ID),
    Column("owner", ID),
    Column("name", String(128)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("modified_at", UtcDateTime, nullable=False),
    Column("body", JSON, nullable=False),
    Index("ix_openadr_objects_type_program", "object_type", "program_id"),
)

openadr_vtns = Table(
    "openadr_vtns",
    metadata,
    Column("vtn_id", ID, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("base_url", String(2000), nullable=False),
    Column("token_url", String(2000)),
    Column("client_id", String(256)),
    Column("secret_box", Text),
    Column("ven_name", String(128), nullable=False),
    Column("programs", JSON, nullable=False),
    Column("poll_interval_s", Float, nullable=False),
    Column("callback_url", String(2000)),
    Column("enabled", Boolean, nullable=False),
    Column("remote_ven_id", String(128)),
    Column("remote_subscription_id", String(128)),
    Column("callback_token_hash", String(64)),
    Column("last_poll_at", UtcDateTime),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
)

openadr_event_links = Table(
    "openadr_event_links",
    metadata,
    Column("vtn_id", ID, primary_key=True),
    Column("remote_event_id", OBJECT_ID, primary_key=True),
    Column("remote_program_id", OBJECT_ID, nullable=False),
    Column("jeisson_event_id", ID),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", Text),
    Column("event", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_openadr_event_links_jeisson", "jeisson_event_id"),
)

openadr_reports_sent = Table(
    "openadr_reports_sent",
    metadata,
    Column("vtn_id", ID, primary_key=True),
    Column("remote_event_id", OBJECT_ID, primary_key=True),
    Column("interval_id", Integer, primary_key=True),
    Column("remote_report_id", OBJECT_ID),
    Column("committed_kw", Float, nullable=False),
    Column("delivered_kw", Float, nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
)
