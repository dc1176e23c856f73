"""Scores of a run can be read in order of churn probability.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "scores_by_probability",
        "scores",
        ["scoring_run_id", "churn_probability", "customer_id"],
    )


def downgrade() -> None:
    op.drop_index("scores_by_probability", table_name="scores")
