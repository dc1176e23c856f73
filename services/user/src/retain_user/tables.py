"""The user service's tables, as SQLAlchemy Core metadata.

Enums are stored as their protobuf numbers (smallint). Phone numbers and first
names are stored only as Fernet tokens; ``phone_hash`` finds customers who
share a number. migrations/versions contains the same schema as hand-written DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    # Identity: a fresh database numbers customers 1, 2, ... in request order.
    sa.Column("customer_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("external_id", sa.Text, nullable=False, unique=True),
    sa.Column("phone_encrypted", BYTEA, nullable=False),
    # HMAC-SHA256 of the E.164 number under a key derived from the data key.
    sa.Column("phone_hash", BYTEA, nullable=False, index=True),
    sa.Column("first_name_encrypted", BYTEA, nullable=False),
    # Keyed hash of phone and first name, so an upsert can tell whether the
    # encrypted fields changed without decrypting them.
    sa.Column("personal_digest", BYTEA, nullable=False),
    sa.Column("language", sa.SmallInteger, nullable=False),
    sa.Column("vertical", sa.SmallInteger, nullable=False),
    sa.Column("attributes", JSONB, nullable=False),
    sa.Column("fictitious", sa.Boolean, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("language IN (1, 2)", name="customers_language_check"),
    sa.CheckConstraint("vertical IN (1, 2)", name="customers_vertical_check"),
)

# The append-only consent ledger: rows are inserted, never updated or deleted.
consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("consent_event_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "customer_id",
        sa.BigInteger,
        sa.ForeignKey("customers.customer_id"),
        nullable=False,
    ),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("purpose", sa.SmallInteger, nullable=False),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("source", sa.SmallInteger, nullable=False),
    sa.Column("notice_version", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("record_time", sa.DateTime(timezone=True), nullable=False),
    sa.Index("consent_events_customer_idx", "customer_id", "consent_event_id"),
    sa.CheckConstraint("channel IN (1, 2, 3)", name="consent_events_channel_check"),
    sa.CheckConstraint("purpose IN (1, 2)", name="consent_events_purpose_check"),
)

# The latest ledger row per (customer, channel, purpose), kept current in the
# same statement that appends to the ledger. "Latest" means the greatest
# (occur_time, consent_event_id), so imports of older rows never win.
consent_state = sa.Table(
    "consent_state",
    metadata,
    sa.Column(
        "customer_id",
        sa.BigInteger,
        sa.ForeignKey("customers.customer_id"),
        primary_key=True,
    ),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("purpose", sa.SmallInteger, primary_key=True),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column(
        "consent_event_id",
        sa.BigInteger,
        sa.ForeignKey("consent_events.consent_event_id"),
        nullable=False,
    ),
)

# Opt-outs by phone number and channel. They outlive customers: a number that
# sent STOP stays opted out for customers upserted later with the same number.
opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("phone_hash", BYTEA, primary_key=True),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("source", sa.SmallInteger, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel IN (1, 2, 3)", name="opt_outs_channel_check"),
)
