"""referrals

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:35:00

Engagement (issue 19): a member brought by another member's referral code, and the bonuses
the referee's first qualifying purchase paid. Codes are not stored: each is computed from the
member's id (loyalty.ledger.referrals).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString
_moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referrer_id", sa.Integer(), nullable=False),
        sa.Column("referee_id", sa.Integer(), nullable=False),
        sa.Column("code", _text(length=16), nullable=False),
        sa.Column("referred_at", _moment(), nullable=False),
        sa.Column("status", _text(length=10), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=True),
        sa.Column("rewarded_at", _moment(), nullable=True),
        sa.Column("referrer_points", sa.Integer(), nullable=False),
        sa.Column("referee_points", sa.Integer(), nullable=False),
        sa.Column("reversed_at", _moment(), nullable=True),
        sa.ForeignKeyConstraint(["purchase_id"], ["purchase.id"], name=op.f("fk_referral_purchase_id_purchase")),
        sa.ForeignKeyConstraint(["referee_id"], ["member.id"], name=op.f("fk_referral_referee_id_member")),
        sa.ForeignKeyConstraint(["referrer_id"], ["member.id"], name=op.f("fk_referral_referrer_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
        sa.UniqueConstraint("referee_id", name=op.f("uq_referral_referee_id")),
    )
    op.create_index(op.f("ix_referral_purchase_id"), "referral", ["purchase_id"], unique=False)
    op.create_index(op.f("ix_referral_referrer_id"), "referral", ["referrer_id"], unique=False)
    op.create_index(op.f("ix_referral_status"), "referral", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_referral_status"), table_name="referral")
    op.drop_index(op.f("ix_referral_referrer_id"), table_name="referral")
    op.drop_index(op.f("ix_referral_purchase_id"), table_name="referral")
    op.drop_table("referral")
