"""member messages and their templates

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 04:40:00

Engagement (issue 19): messages to members (points expiring, tier moves, challenges
completed, campaign offers) with their status, and the managers' wording of each kind.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString
_moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "member_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(length=30), nullable=False),
        sa.Column("dedupe_key", _text(length=100), nullable=False),
        sa.Column("channel", _text(length=10), nullable=False),
        sa.Column("status", _text(length=12), nullable=False),
        sa.Column("reason", _text(length=300), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("sent_at", _moment(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_member_message_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_message")),
        sa.UniqueConstraint("member_id", "kind", "dedupe_key", name=op.f("uq_member_message_member_id")),
    )
    op.create_index(op.f("ix_member_message_created_at"), "member_message", ["created_at"], unique=False)
    op.create_index(op.f("ix_member_message_member_id"), "member_message", ["member_id"], unique=False)
    op.create_index(op.f("ix_member_message_status"), "member_message", ["status"], unique=False)
    op.create_table(
        "message_template",
        sa.Column("kind", _text(length=30), nullable=False),
        sa.Column("subject", _text(length=200), nullable=False),
        sa.Column("body", _text(length=4000), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.Column("updated_by", _text(length=100), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_message_template")),
    )


def downgrade() -> None:
    op.drop_table("message_template")
    op.drop_index(op.f("ix_member_message_status"), table_name="member_message")
    op.drop_index(op.f("ix_member_message_member_id"), table_name="member_message")
    op.drop_index(op.f("ix_member_message_created_at"), table_name="member_message")
    op.drop_table("member_message")
