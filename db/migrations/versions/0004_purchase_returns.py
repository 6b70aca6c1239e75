"""partial returns: the amount of a purchase returned so far, in cents

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.add_column(sa.Column("returned_cents", sa.Integer(), server_default="0", nullable=False))
    # A purchase refunded before partial returns existed was returned in full.
    op.execute("UPDATE purchase SET returned_cents = CAST(ROUND(amount * 100) AS INTEGER) WHERE refunded_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_column("returned_cents")
