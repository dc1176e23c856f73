"""Create admins, sign-in lockout, signing keys, sessions, API keys and audit.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    _create_accounts()
    _create_tokens()
    _create_api_keys_and_audit()


def _create_accounts() -> None:
    op.create_table(
        "admins",
        sa.Column("admin_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.SmallInteger, nullable=False),
        sa.Column("phone_encrypted", BYTEA, nullable=True),
        sa.Column("create_time", TIMESTAMPTZ, nullable=False),
        sa.CheckConstraint("role IN (1, 2)", name="admins_role_check"),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("email", sa.Text, primary_key=True),
        sa.Column("failure_times", ARRAY(TIMESTAMPTZ), nullable=False),
        sa.Column("locked_until_time", TIMESTAMPTZ, nullable=True),
    )


def _create_tokens() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text, primary_key=True),
        sa.Column("private_key_encrypted", BYTEA, nullable=False),
        sa.Column("public_jwk", JSONB, nullable=False),
        sa.Column("create_time", TIMESTAMPTZ, nullable=False),
    )
    op.create_index("ix_signing_keys_create_time", "signing_keys", ["create_time"])
    op.create_table(
        "admin_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column(
            "admin_id",
            sa.BigInteger,
            sa.ForeignKey("admins.admin_id"),
            nullable=False,
        ),
        sa.Column("create_time", TIMESTAMPTZ, nullable=False),
        sa.Column("revoke_time", TIMESTAMPTZ, nullable=True),
        sa.Column("revoke_reason", sa.Text, nullable=True),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", BYTEA, primary_key=True),
        sa.Column(
            "session_id",
            sa.Text,
            sa.ForeignKey("admin_sessions.session_id"),
            nullable=False,
        ),
        sa.Column("create_time", TIMESTAMPTZ, nullable=False),
        sa.Column("expire_time", TIMESTAMPTZ, nullable=False),
        sa.Column("rotate_time", TIMESTAMPTZ, nullable=True),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])


def _create_api_keys_and_audit() -> None:
    op.create_table(
        "api_keys",
        sa.Column("api_key_id", sa.Text, primary_key=True),
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
    op.create_table(
        "audit_events",
        sa.Column("audit_event_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("occur_time", TIMESTAMPTZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("api_keys")
    op.drop_table("refresh_tokens")
    op.drop_table("admin_sessions")
    op.drop_table("signing_keys")
    op.drop_table("sign_in_failures")
    op.drop_table("admins")
