"""a covering index for the counts of member messages

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:10:00

Scale 2 (issue 20): the Member messages page counts the last 30 days' messages by day, kind,
status and channel; at a million members one night queues over a million, and this index lets
the count read the index alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_member_message_created_kind_status_channel", "member_message", ["created_at", "kind", "status", "channel"])


def downgrade() -> None:
    op.drop_index("ix_member_message_created_kind_status_channel", table_name="member_message")
