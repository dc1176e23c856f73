"""Create the test_messages table: previews an admin sent to their own phone.

Revision ID: 0002
Revises: 0001
Create Date: 2024-03-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A test message is sent at once, so it never waits in PENDING, DEFERRED or
# SENDING, and it is never dropped for age.
TEST_MESSAGE_STATES = (
    "suppressed",
    "submitted",
    "delivered",
    "failed",
    "delivery_unknown",
)


def upgrade() -> None:
    listed = ", ".join(f"'{state}'" for state in TEST_MESSAGE_STATES)
    op.create_table(
        "test_messages",
        sa.Column("test_message_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.BigInteger,
            sa.ForeignKey("campaigns.campaign_id"),
            nullable=False,
        ),
        sa.Column("admin_email", sa.Text, nullable=False),
        sa.Column("phone_number_masked", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("segment_key", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("encoding", sa.SmallInteger, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("estimated_cost_micros", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("provider_status", sa.Text, nullable=False, server_default=""),
        sa.Column("cost_micros", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_currency", sa.Text, nullable=False, server_default="KES"),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"state IN ({listed})", name="test_message_state"),
    )
    op.create_index(
        "test_messages_by_provider_id", "test_messages", ["provider_message_id"]
    )
    op.create_index("test_messages_by_campaign", "test_messages", ["campaign_id"])


def downgrade() -> None:
    op.drop_table("test_messages")
