"""Index the delivery reports not applied yet.

The sweeper looks for them on every pass, and they are few next to the
applied ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "delivery_reports_unapplied",
        "delivery_reports",
        ["report_id"],
        postgresql_where=sa.text("NOT applied"),
    )


def downgrade() -> None:
    op.drop_index("delivery_reports_unapplied", table_name="delivery_reports")
