"""Jobs carry a lease that the replica running them renews.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for jobs that no replica has taken yet and for jobs recorded before
    # this column existed.
    op.add_column("jobs", sa.Column("lease_expire_time", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("jobs", "lease_expire_time")
