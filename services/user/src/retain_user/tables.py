"""The user service's tables, as SQLAlchemy Core metadata.

Enums are stored as their protobuf numbers (smallint). Phone numbers and first
names are stored only as Fernet tokens; ``phone_hash`` finds customers who
share a number. Passwords, refresh tokens and API key secrets are stored only
as hashes. migrations/versions contains the same schema as hand-written DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB

metadata = sa.MetaData()

TIMESTAMPTZ = sa.DateTime(timezone=True)

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

# Dashboard accounts. Emails are stored normalised (trimmed, lowercase), so
# the unique constraint ignores case. Roles are user.v1.Role numbers.
admins = sa.Table(
    "admins",
    metadata,
    sa.Column("admin_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    # argon2id in PHC string format: $argon2id$v=19$m=...,t=...,p=...$salt$hash
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.SmallInteger, nullable=False),
    sa.Column("phone_encrypted", BYTEA, nullable=True),
    sa.Column("create_time", TIMESTAMPTZ, nullable=False),
    sa.CheckConstraint("role IN (1, 2)", name="admins_role_check"),
)

# Failed sign-ins by normalised email, whether or not an admin has that
# email, so that lockout looks the same for both and reveals no accounts.
# TODO: the retention job should delete rows with no failure or lock in the
# last 15 minutes. Until it exists, every email that failed keeps a row.
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("email", sa.Text, primary_key=True),
    # failure_times holds the failures of the last lockout window, oldest
    # first; a lockout empties it.
    sa.Column("failure_times", ARRAY(TIMESTAMPTZ), nullable=False),
    sa.Column("locked_until_time", TIMESTAMPTZ, nullable=True),
)

# ES256 key pairs that sign access tokens; the newest one signs.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    # kid is the RFC 7638 thumbprint of the public key.
    sa.Column("kid", sa.Text, primary_key=True),
    # PKCS#8 PEM of the private key, encrypted with the data key (Fernet).
    sa.Column("private_key_encrypted", BYTEA, nullable=False),
    sa.Column("public_jwk", JSONB, nullable=False),
    sa.Column("create_time", TIMESTAMPTZ, nullable=False, index=True),
)

# A sign-in session: the family of refresh tokens that rotate from one
# sign-in. Access tokens carry session_id as their "sid" claim, so a
# revoked session also revokes the access tokens issued in it.
admin_sessions = sa.Table(
    "admin_sessions",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column(
        "admin_id", sa.BigInteger, sa.ForeignKey("admins.admin_id"), nullable=False
    ),
    sa.Column("create_time", TIMESTAMPTZ, nullable=False),
    sa.Column("revoke_time", TIMESTAMPTZ, nullable=True),
    # revoke_reason is "sign_out" or "refresh_token_reused".
    sa.Column("revoke_reason", sa.Text, nullable=True),
)

# Refresh tokens by SHA-256 of the token. A token is used once: refreshing
# sets rotate_time and issues the next token of the same session.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", BYTEA, primary_key=True),
    sa.Column(
        "session_id",
        sa.Text,
        sa.ForeignKey("admin_sessions.session_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("create_time", TIMESTAMPTZ, nullable=False),
    sa.Column("expire_time", TIMESTAMPTZ, nullable=False),
    sa.Column("rotate_time", TIMESTAMPTZ, nullable=True),
)

# Partner API keys. The secret is stored only as its SHA-256 hash.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("api_key_id", sa.Text, primary_key=True),
    # list_position orders ListApiKeys pages.
    sa.Column(
        "list_position", sa.BigInteger, sa.Identity(), nullable=False, unique=True
    ),
    sa.Column("secret_hash", BYTEA, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("requests_per_minute", sa.Integer, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("create_time", TIMESTAMPTZ, nullable=False),
    sa.Column("revoke_time", TIMESTAMPTZ, nullable=True),
    sa.CheckConstraint(
        "requests_per_minute BETWEEN 1 AND 100000",
        name="api_keys_requests_per_minute_check",
    ),
)

# The audit log of changes to admin accounts, sessions and API keys. Rows are
# inserted, never updated, and never contain a password, token or key secret.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("audit_event_id", sa.BigInteger, sa.Identity(), primary_key=True),
    # subject is the admin behind Envoy, else the caller's mesh name.
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("occur_time", TIMESTAMPTZ, nullable=False),
)
