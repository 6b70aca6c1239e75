"""integrations: API keys, idempotency records, webhook endpoints, the outbox and deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:10:00

The real-time API (issue 18): keys stored as hashes, the answer to each idempotency key
(written with the request's effect), webhook endpoints, and the transactional outbox with
one delivery row per event and endpoint.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate emits
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString
_moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _text(length=100), nullable=False),
        sa.Column("prefix", _text(length=16), nullable=False),
        sa.Column("key_hash", _text(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("created_by", _text(length=100), nullable=False),
        sa.Column("last_used_at", _moment(), nullable=True),
        sa.Column("revoked_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )
    op.create_index(op.f("ix_api_key_name"), "api_key", ["name"], unique=False)
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("key", _text(length=200), nullable=False),
        sa.Column("method", _text(length=10), nullable=False),
        sa.Column("path", _text(length=300), nullable=False),
        sa.Column("request_hash", _text(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", _text(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_key.id"], name=op.f("fk_idempotency_record_api_key_id_api_key")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
        sa.UniqueConstraint("api_key_id", "key", name="uq_idempotency_record_api_key_id_key"),
    )
    op.create_index(op.f("ix_idempotency_record_created_at"), "idempotency_record", ["created_at"], unique=False)
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", _text(length=500), nullable=False),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("secret", _text(length=80), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("created_by", _text(length=100), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_at", _moment(), nullable=True),
        sa.Column("disabled_reason", _text(length=300), nullable=False),
        sa.Column("removed_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
    )
    op.create_table(
        "outbox_event",
        sa.Column("id", _text(length=40), nullable=False),
        sa.Column("type", _text(length=40), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_event")),
    )
    op.create_index(op.f("ix_outbox_event_type"), "outbox_event", ["type"], unique=False)
    op.create_index(op.f("ix_outbox_event_created_at"), "outbox_event", ["created_at"], unique=False)
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", _text(length=40), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("status", _text(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _moment(), nullable=False),
        sa.Column("last_attempt_at", _moment(), nullable=True),
        sa.Column("delivered_at", _moment(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", _text(length=500), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoint.id"], name=op.f("fk_webhook_delivery_endpoint_id_webhook_endpoint")),
        sa.ForeignKeyConstraint(["event_id"], ["outbox_event.id"], name=op.f("fk_webhook_delivery_event_id_outbox_event")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_id_endpoint_id"),
    )
    op.create_index(op.f("ix_webhook_delivery_event_id"), "webhook_delivery", ["event_id"], unique=False)
    op.create_index(op.f("ix_webhook_delivery_endpoint_id"), "webhook_delivery", ["endpoint_id"], unique=False)
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_delivery")
    op.drop_table("outbox_event")
    op.drop_table("webhook_endpoint")
    op.drop_table("idempotency_record")
    op.drop_table("api_key")
