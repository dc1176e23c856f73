"""Create the campaign, ledger, report, alert, inbound and control tables.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CAMPAIGN_STATUSES = (
    "draft",
    "awaiting_approval",
    "approved",
    "running",
    "paused",
    "finished",
)
MESSAGE_STATES = (
    "pending",
    "deferred",
    "suppressed",
    "sending",
    "submitted",
    "delivered",
    "failed",
    "dropped",
    "delivery_unknown",
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("campaign_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("status_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_by_subject", sa.Text, nullable=False, server_default=""),
        sa.Column("approved_by", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "launched_scoring_run_id", sa.BigInteger, nullable=False, server_default="0"
        ),
        *[
            sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
            for name in (
                "at_risk_count",
                "no_consent_count",
                "capped_count",
                "eligible_count",
                "treated_count",
                "held_out_count",
                "suppressed_count",
            )
        ],
        _time("create_time"),
        _time("update_time"),
        _time("launch_time", nullable=True),
        _time("finish_time", nullable=True),
        sa.CheckConstraint(
            _one_of("status", CAMPAIGN_STATUSES), name="campaign_status"
        ),
    )
    op.create_index("campaigns_by_status", "campaigns", ["status"])

    op.create_table(
        "assignments",
        sa.Column(
            "campaign_id",
            sa.BigInteger,
            sa.ForeignKey("campaigns.campaign_id"),
            primary_key=True,
        ),
        sa.Column("customer_id", sa.BigInteger, primary_key=True),
        sa.Column("arm", sa.Text, nullable=False),
        sa.Column("drop_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("churn_probability", sa.Float, nullable=False),
        sa.CheckConstraint(
            "(arm IN ('treatment', 'control') AND drop_reason = '') OR "
            "(arm = 'dropped' AND drop_reason IN ('no_consent', 'capped'))",
            name="assignment_arm",
        ),
    )

    op.create_table(
        "messages",
        sa.Column("message_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.BigInteger,
            sa.ForeignKey("campaigns.campaign_id"),
            nullable=False,
        ),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("channel", sa.SmallInteger, nullable=False),
        sa.Column("purpose", sa.SmallInteger, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("encoding", sa.SmallInteger, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("estimated_cost_micros", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_currency", sa.Text, nullable=False, server_default="KES"),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("provider_status", sa.Text, nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        _time("not_before_time", nullable=True),
        _time("expire_time"),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0"),
        _time("create_time"),
        _time("update_time"),
        _time("submit_time", nullable=True),
        sa.UniqueConstraint("campaign_id", "customer_id", name="one_message_each"),
        sa.CheckConstraint(_one_of("state", MESSAGE_STATES), name="message_state"),
        sa.CheckConstraint("attempt_count IN (0, 1)", name="at_most_one_attempt"),
    )
    op.create_index("messages_by_campaign_state", "messages", ["campaign_id", "state"])
    op.create_index("messages_by_state_update", "messages", ["state", "update_time"])
    op.create_index(
        "messages_by_customer_time", "messages", ["customer_id", "create_time"]
    )
    op.create_index(
        "messages_by_provider_id",
        "messages",
        ["provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )

    op.create_table(
        "delivery_reports",
        sa.Column("report_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("provider_message_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("failure_reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("applied", sa.Boolean, nullable=False),
        _time("receive_time"),
    )
    op.create_index(
        "unapplied_reports",
        "delivery_reports",
        ["provider_message_id"],
        postgresql_where=sa.text("NOT applied"),
    )

    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("campaign_id", sa.BigInteger, nullable=False, server_default="0"),
        _time("create_time"),
    )

    op.create_table(
        "inbound_messages",
        sa.Column("inbound_message_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("provider_id", sa.Text, unique=True),
        sa.Column("customer_ids", postgresql.ARRAY(sa.BigInteger), nullable=False),
        sa.Column("phone_number_masked", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        _time("receive_time"),
        sa.CheckConstraint(
            "action IN ('opt_out', 'opt_in', 'kept')", name="inbound_action"
        ),
    )

    op.create_table(
        "control",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("stopped", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _time("update_time"),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute(
        "INSERT INTO control (id, stopped, reason, update_time) "
        "VALUES (1, false, '', now())"
    )


def downgrade() -> None:
    for table in (
        "control",
        "inbound_messages",
        "alerts",
        "delivery_reports",
        "messages",
        "assignments",
        "campaigns",
    ):
        op.drop_table(table)
