"""Model registry, jobs, scoring runs and scores.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("progress_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("progress_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("result_id", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("config", postgresql.JSONB, nullable=False),
        sa.Column("cutoff_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label_end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer, nullable=False),
        sa.Column("metrics", postgresql.JSONB, nullable=False),
        sa.Column("checkpoint", sa.LargeBinary, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promote_time", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "promotions",
        sa.Column("promotion_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "model_version",
            sa.Text,
            sa.ForeignKey("model_versions.model_version"),
            nullable=False,
        ),
        sa.Column("promoted_by", sa.Text, nullable=False),
        sa.Column("promote_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "scoring_runs",
        sa.Column("scoring_run_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("as_of_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_customer_id", sa.BigInteger, nullable=False),
        sa.Column("max_customer_id", sa.BigInteger, nullable=False),
        sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.job_id"), nullable=False),
        sa.Column("scored_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("finished", sa.Boolean, nullable=False, server_default="false"),
    )
    op.create_table(
        "scores",
        sa.Column(
            "scoring_run_id",
            sa.BigInteger,
            sa.ForeignKey("scoring_runs.scoring_run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("customer_id", sa.BigInteger, primary_key=True),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("churn_probability", sa.Float, nullable=False),
        sa.Column("expected_days", sa.Float, nullable=False),
        sa.Column("reasons", postgresql.JSONB, nullable=False),
    )
    op.create_index("scores_customer", "scores", ["customer_id"])


def downgrade() -> None:
    for table in ("scores", "scoring_runs", "promotions", "model_versions", "jobs"):
        op.drop_table(table)
