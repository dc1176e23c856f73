"""Scheduled scoring: one row per interval, and the runs it started.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key is what makes one scheduled run per interval certain,
    # whichever replica schedules it.
    op.create_table(
        "scheduled_scorings",
        sa.Column("slot_time", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("as_of_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shard_count", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column(
        "scoring_runs",
        sa.Column(
            "slot_time",
            sa.DateTime(timezone=True),
            sa.ForeignKey("scheduled_scorings.slot_time"),
        ),
    )
    op.create_index("scoring_runs_slot_time", "scoring_runs", ["slot_time"])
    # Replicas look for queued scheduled runs every second.
    op.create_index(
        "jobs_queued_kind",
        "jobs",
        ["kind", "create_time"],
        postgresql_where=sa.text("state = 1"),
    )


def downgrade() -> None:
    op.drop_index("jobs_queued_kind", table_name="jobs")
    op.drop_index("scoring_runs_slot_time", table_name="scoring_runs")
    op.drop_column("scoring_runs", "slot_time")
    op.drop_table("scheduled_scorings")
