"""Create customers, the consent ledger, consent state and opt-outs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("external_id", sa.Text, nullable=False, unique=True),
        sa.Column("phone_encrypted", BYTEA, nullable=False),
        sa.Column("phone_hash", BYTEA, nullable=False),
        sa.Column("first_name_encrypted", BYTEA, nullable=False),
        sa.Column("personal_digest", BYTEA, nullable=False),
        sa.Column("language", sa.SmallInteger, nullable=False),
        sa.Column("vertical", sa.SmallInteger, nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        sa.Column("fictitious", sa.Boolean, nullable=False),
        sa.Column("create_time", TIMESTAMPTZ, nullable=False),
        sa.Column("update_time", TIMESTAMPTZ, nullable=False),
        sa.CheckConstraint("language IN (1, 2)", name="customers_language_check"),
        sa.CheckConstraint("vertical IN (1, 2)", name="customers_vertical_check"),
    )
    op.create_index("ix_customers_phone_hash", "customers", ["phone_hash"])

    op.create_table(
        "consent_events",
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
        sa.Column("occur_time", TIMESTAMPTZ, nullable=False),
        sa.Column("record_time", TIMESTAMPTZ, nullable=False),
        sa.CheckConstraint("channel IN (1, 2, 3)", name="consent_events_channel_check"),
        sa.CheckConstraint("purpose IN (1, 2)", name="consent_events_purpose_check"),
    )
    op.create_index(
        "consent_events_customer_idx",
        "consent_events",
        ["customer_id", "consent_event_id"],
    )

    op.create_table(
        "consent_state",
        sa.Column(
            "customer_id",
            sa.BigInteger,
            sa.ForeignKey("customers.customer_id"),
            primary_key=True,
        ),
        sa.Column("channel", sa.SmallInteger, primary_key=True),
        sa.Column("purpose", sa.SmallInteger, primary_key=True),
        sa.Column("granted", sa.Boolean, nullable=False),
        sa.Column("occur_time", TIMESTAMPTZ, nullable=False),
        sa.Column(
            "consent_event_id",
            sa.BigInteger,
            sa.ForeignKey("consent_events.consent_event_id"),
            nullable=False,
        ),
    )

    op.create_table(
        "opt_outs",
        sa.Column("phone_hash", BYTEA, primary_key=True),
        sa.Column("channel", sa.SmallInteger, primary_key=True),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        sa.Column("source", sa.SmallInteger, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("occur_time", TIMESTAMPTZ, nullable=False),
        sa.Column("update_time", TIMESTAMPTZ, nullable=False),
        sa.CheckConstraint("channel IN (1, 2, 3)", name="opt_outs_channel_check"),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
    op.drop_table("consent_state")
    op.drop_table("consent_events")
    op.drop_table("customers")
