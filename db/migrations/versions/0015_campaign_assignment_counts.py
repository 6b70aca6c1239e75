"""a covering index for the members of each campaign group

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 16:20:00

Scale 2 (issue 20): the Campaigns page counts each campaign's treatment and holdout members;
at a million members the assignments run to millions of rows, and with this index the count
reads the index alone, in order, instead of the table through its primary key.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_assignment_campaign_group", "campaign_assignment", ["campaign_id", "group"])


def downgrade() -> None:
    op.drop_index("ix_assignment_campaign_group", table_name="campaign_assignment")
