"""challenges and their completions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:50:00

Engagement (issue 19): challenges members meet by buying, and each completion with the
purchase that met it and the reward paid (badges are completions whose challenge names one).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString
_moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "challenge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=100), nullable=False),
        sa.Column("kind", _text(length=20), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("min_spend", sa.Float(), nullable=True),
        sa.Column("within_days", sa.Integer(), nullable=True),
        sa.Column("category", _text(length=100), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("badge", _text(length=100), nullable=False),
        sa.Column("starts_at", _moment(), nullable=False),
        sa.Column("ends_at", _moment(), nullable=True),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("max_completions", sa.Integer(), nullable=False),
        sa.Column("holdout_pct", sa.Float(), nullable=False),
        sa.Column("status", _text(length=10), nullable=False),
        sa.Column("created_by", _text(length=100), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segment.id"], name=op.f("fk_challenge_segment_id_segment")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenge")),
        sa.UniqueConstraint("name", name=op.f("uq_challenge_name")),
    )
    op.create_table(
        "challenge_completion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=False),
        sa.Column("completed_at", _moment(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=True),
        sa.Column("reversed_at", _moment(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["challenge_id"], ["challenge.id"], name=op.f("fk_challenge_completion_challenge_id_challenge")),
        sa.ForeignKeyConstraint(["ledger_entry_id"], ["ledger_entry.id"], name=op.f("fk_challenge_completion_ledger_entry_id_ledger_entry")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_challenge_completion_member_id_member")),
        sa.ForeignKeyConstraint(["purchase_id"], ["purchase.id"], name=op.f("fk_challenge_completion_purchase_id_purchase")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenge_completion")),
        sa.UniqueConstraint("challenge_id", "member_id", "sequence", name=op.f("uq_challenge_completion_challenge_id")),
    )
    op.create_index(op.f("ix_challenge_completion_member_id"), "challenge_completion", ["member_id"], unique=False)
    op.create_index(op.f("ix_challenge_completion_purchase_id"), "challenge_completion", ["purchase_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_challenge_completion_purchase_id"), table_name="challenge_completion")
    op.drop_index(op.f("ix_challenge_completion_member_id"), table_name="challenge_completion")
    op.drop_table("challenge_completion")
    op.drop_table("challenge")
