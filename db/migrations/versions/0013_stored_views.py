"""stored views of the analysis pages

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 13:30:00

Scale 2 (issue 20): the nightly ``page-views`` job stores what each analysis page shows for
its default filters, so a page reads one row instead of scanning purchases and the ledger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString
_moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "stored_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=40), nullable=False),
        sa.Column("params", _text(length=400), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", _moment(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_view")),
        sa.UniqueConstraint("name", "params", name="uq_stored_view_name_params"),
    )


def downgrade() -> None:
    op.drop_table("stored_view")
