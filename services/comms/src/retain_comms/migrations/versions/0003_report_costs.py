"""Add the cost of a voice call to delivery_reports.

A voice call's final callback carries its cost, and it may arrive before the
worker has recorded the call's session id, so the report keeps the cost until
it is applied.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "delivery_reports",
        sa.Column("cost_micros", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column(
        "delivery_reports",
        sa.Column("cost_currency", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("delivery_reports", "cost_currency")
    op.drop_column("delivery_reports", "cost_micros")
