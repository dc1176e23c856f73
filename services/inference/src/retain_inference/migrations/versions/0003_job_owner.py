"""Jobs record the replica that runs them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for jobs recorded before this column existed, and for queued
    # scheduled runs that no replica has claimed yet.
    op.add_column("jobs", sa.Column("owner", sa.Text))


def downgrade() -> None:
    op.drop_column("jobs", "owner")
