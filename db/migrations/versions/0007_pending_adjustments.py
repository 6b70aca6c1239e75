"""pending adjustments

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_adjustment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("decision_note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["ledger_entry_id"], ["ledger_entry.id"], name=op.f("fk_pending_adjustment_ledger_entry_id_ledger_entry")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_pending_adjustment_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_adjustment")),
    )
    with op.batch_alter_table("pending_adjustment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_adjustment_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pending_adjustment_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pending_adjustment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_adjustment_status"))
        batch_op.drop_index(batch_op.f("ix_pending_adjustment_member_id"))
    op.drop_table("pending_adjustment")
