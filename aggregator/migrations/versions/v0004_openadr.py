"""OpenADR 3: the VTN's clients, tokens and objects; the VEN's utility VTNs, event links, reports.

Revision ID: 0004
Revises: 0003
Created: 2026-12-05

Types are spelt out here, as in 0001, so this revision keeps creating the same tables whatever
later code does (``aggregator.openadr.tables`` describes them for the running code).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(64)
_OBJECT_ID = sa.String(128)
_TS = sa.DateTime(timezone=True)
_URL = sa.String(2000)


def upgrade() -> None:
    """Create the OpenADR tables."""
    op.create_table(
        "openadr_clients",
        sa.Column("client_id", _ID, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
    )
    op.create_table(
        "openadr_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", _ID, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_index("ix_openadr_tokens_client", "openadr_tokens", ["client_id"])
    op.create_table(
        "openadr_objects",
        sa.Column("object_id", _OBJECT_ID, primary_key=True),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("program_id", _OBJECT_ID),
        sa.Column("event_id", _OBJECT_ID),
        sa.Column("owner", _ID),
        sa.Column("name", sa.String(128)),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("modified_at", _TS, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_openadr_objects_type_program", "openadr_objects", ["object_type", "program_id"]
    )
    op.create_table(
        "openadr_vtns",
        sa.Column("vtn_id", _ID, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("base_url", _URL, nullable=False),
        sa.Column("token_url", _URL),
        sa.Column("client_id", sa.String(256)),
        sa.Column("secret_box", sa.Text()),
        sa.Column("ven_name", sa.String(128), nullable=False),
        sa.Column("programs", sa.JSON(), nullable=False),
        sa.Column("poll_interval_s", sa.Float(), nullable=False),
        sa.Column("callback_url", _URL),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("remote_ven_id", sa.String(128)),
        sa.Column("remote_subscription_id", sa.String(128)),
        sa.Column("last_poll_at", _TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "openadr_event_links",
        sa.Column("vtn_id", _ID, primary_key=True),
        sa.Column("remote_event_id", _OBJECT_ID, primary_key=True),
        sa.Column("remote_program_id", _OBJECT_ID, nullable=False),
        sa.Column("jeisson_event_id", _ID),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_openadr_event_links_jeisson", "openadr_event_links", ["jeisson_event_id"])
    op.create_table(
        "openadr_reports_sent",
        sa.Column("vtn_id", _ID, primary_key=True),
        sa.Column("remote_event_id", _OBJECT_ID, primary_key=True),
        sa.Column("interval_id", sa.Integer(), primary_key=True),
        sa.Column("remote_report_id", _OBJECT_ID),
        sa.Column("committed_kw", sa.Float(), nullable=False),
        sa.Column("delivered_kw", sa.Float(), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop the OpenADR tables."""
    for table in (
        "openadr_reports_sent",
        "openadr_event_links",
        "openadr_vtns",
        "openadr_objects",
        "openadr_tokens",
        "openadr_clients",
    ):
        op.drop_table(table)
