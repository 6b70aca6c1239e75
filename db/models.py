"""The program's tables, defined once.

Every timestamp is timezone-aware and stored in UTC (sqlmodel's ``UTCDateTime``).
Points balances are never stored: a member's balance is the sum of that member's
``ledger_entry`` rows (see ``loyalty.ledger.entries``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Protocol, cast

from sqlalchemy import JSON, Column, Index, MetaData, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

# A naming convention makes constraint names stable, so Alembic's batch mode can
# alter SQLite tables (https://alembic.sqlalchemy.org/en/latest/naming.html).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Row(Protocol):
    id: int | None


def stored_id(row: _Row) -> int:
    """The id of a row read from the database or flushed to it (``id`` is None only before that)."""
    assert row.id is not None, f"{type(row).__name__} has no id: it was never stored"
    return row.id


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model, for SQLAlchemy Core statements (set by SQLModel at class creation, not in its stubs)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def _json(**kwargs: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, **kwargs))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON))


# --- people -------------------------------------------------------------------------


class Member(SQLModel, table=True):
    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=200, index=True)
    phone: str = Field(default="", max_length=50)
    joined_at: datetime
    acquisition_channel: str = Field(default="unknown", max_length=50, index=True)
    birth_date: date | None = None
    city: str = Field(default="", max_length=100)
    marketing_consent: bool = False
    tier_id: int | None = Field(default=None, foreign_key="tier.id", index=True)
    tier_since: datetime | None = None
    erased_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Purchase(SQLModel, table=True):
    __tablename__ = "purchase"
    __table_args__ = (Index("ix_purchase_member_occurred", "member_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # The source system's purchase id, or a content hash when the file has none:
    # the idempotency key of imports.
    external_id: str = Field(max_length=80, unique=True)
    member_id: int = Field(foreign_key="member.id")
    occurred_at: datetime = Field(index=True)
    amount: float
    channel: str = Field(default="", max_length=50)
    store: str = Field(default="", max_length=100)
    category: str = Field(default="", max_length=100, index=True)
    # Set when the purchase is returned in full (by one refund or the last of several returns).
    refunded_at: datetime | None = None
    # What partial and full returns have taken back so far, in cents (never above the amount).
    returned_cents: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    imported_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    """An answer to the NPS question (0-10) with an optional comment."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("member_id", "submitted_at"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    submitted_at: datetime = Field(index=True)
    score: int
    comment: str = ""


# --- the points ledger ---------------------------------------------------------------


class LedgerEntry(SQLModel, table=True):
    """One append-only movement of points.

    Positive entries (earn, bonus, positive adjust, returned points) are lots with an
    ``expires_at``; negative entries (redeem, expire, reverse, negative adjust) consume
    lots soonest-expiring first.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_member_occurred", "member_id", "occurred_at"), Index("ix_ledger_kind_occurred", "kind", "occurred_at"))

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    kind: str = Field(max_length=16)
    points: int
    occurred_at: datetime
    expires_at: datetime | None = None
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id", index=True)
    redemption_id: int | None = Field(default=None, foreign_key="redemption.id", index=True)
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id", index=True)
    reason: str = Field(default="", max_length=500)
    actor: str = Field(default="system", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class PendingAdjustment(SQLModel, table=True):
    """A point adjustment above the approval limit, waiting for a second admin (loyalty.ledger.approvals)."""

    __tablename__ = "pending_adjustment"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    points: int
    reason: str = Field(max_length=500)
    requested_by: str = Field(max_length=100)
    requested_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="pending", max_length=10, index=True)  # pending, approved, rejected
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = None
    decision_note: str = Field(default="", max_length=500)
    ledger_entry_id: int | None = Field(default=None, foreign_key="ledger_entry.id")


# --- program configuration ------------------------------------------------------------


class ProgramSetting(SQLModel, table=True):
    __tablename__ = "program_setting"

    key: str = Field(primary_key=True, max_length=100)
    value: Any = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="system", max_length=100)


class Tier(SQLModel, table=True):
    __tablename__ = "tier"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    rank: int = Field(unique=True)
    min_spend: float = 0.0
    min_purchases: int = 0
    window_months: int = 12
    multiplier: float = 1.0
    benefits: list[str] = _json_list()
    grace_months: int = 0


class TierMovement(SQLModel, table=True):
    __tablename__ = "tier_movement"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    from_tier_id: int | None = Field(default=None, foreign_key="tier.id")
    to_tier_id: int | None = Field(default=None, foreign_key="tier.id")
    moved_at: datetime = Field(index=True)
    reason: str = Field(default="", max_length=500)
    as_of: date | None = None


class Segment(SQLModel, table=True):
    __tablename__ = "segment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    description: str = ""
    rules: dict[str, Any] = _json()
    created_by: str = Field(default="system", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    archived_at: datetime | None = None  # hidden from pickers and lists; restorable


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=40)
    status: str = Field(default="draft", max_length=20, index=True)
    starts_at: datetime
    ends_at: datetime
    channels: list[str] = _json_list()
    eligibility: dict[str, Any] = _json()
    rule: dict[str, Any] = _json()
    budget_points: int | None = None
    holdout_pct: float = 0.0
    description: str = ""
    created_by: str = Field(default="system", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    archived_at: datetime | None = None  # hidden from pickers and lists; restorable


class CampaignAssignment(SQLModel, table=True):
    """A member's stable place in a campaign: ``treatment`` or ``holdout``."""

    __tablename__ = "campaign_assignment"
    # The second index lets the Campaigns page count each group from the index alone (migration 0015).
    __table_args__ = (Index("ix_assignment_member", "member_id"), Index("ix_assignment_campaign_group", "campaign_id", "group"))

    campaign_id: int = Field(foreign_key="campaign.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    group: str = Field(max_length=10)
    assigned_at: datetime = Field(default_factory=utcnow)


class Reward(SQLModel, table=True):
    __tablename__ = "reward"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=30)
    description: str = ""
    points_cost: int
    # None means unlimited stock.
    stock: int | None = None
    min_tier_id: int | None = Field(default=None, foreign_key="tier.id")
    partner: str = Field(default="", max_length=100)
    available_from: datetime | None = None
    available_until: datetime | None = None
    active: bool = True
    archived_at: datetime | None = None  # hidden from pickers and lists; restorable


class Redemption(SQLModel, table=True):
    __tablename__ = "redemption"
    __table_args__ = (Index("ix_redemption_status_requested", "status", "requested_at"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    reward_id: int = Field(foreign_key="reward.id", index=True)
    points: int
    status: str = Field(default="requested", max_length=20)
    requested_at: datetime = Field(default_factory=utcnow)
    fulfilled_at: datetime | None = None
    cancelled_at: datetime | None = None
    handled_by: str = Field(default="", max_length=100)
    note: str = ""


# --- goals, KPIs and evaluations ---------------------------------------------------------


class Goal(SQLModel, table=True):
    __tablename__ = "goal"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    objective: str = Field(max_length=50)
    owner: str = Field(default="", max_length=100)
    starts_on: date
    ends_on: date
    reporting_frequency: str = Field(default="monthly", max_length=20)
    strategy: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    archived_at: datetime | None = None  # hidden from pickers and lists; restorable


class KpiTarget(SQLModel, table=True):
    __tablename__ = "kpi_target"

    id: int | None = Field(default=None, primary_key=True)
    goal_id: int = Field(foreign_key="goal.id", index=True)
    metric: str = Field(max_length=50)
    target_value: float
    direction: str = Field(default="up", max_length=4)
    period: str = Field(default="month", max_length=10)
    segment_id: int | None = Field(default=None, foreign_key="segment.id")
    archived_at: datetime | None = None  # hidden from pickers and lists; restorable


class KpiSnapshot(SQLModel, table=True):
    __tablename__ = "kpi_snapshot"
    __table_args__ = (UniqueConstraint("metric", "period", "period_start", "dimension", "dimension_value", name="uq_kpi_snapshot_key"),)

    id: int | None = Field(default=None, primary_key=True)
    metric: str = Field(max_length=50)
    period: str = Field(max_length=10)
    period_start: date = Field(index=True)
    period_end: date
    dimension: str = Field(default="overall", max_length=20)
    dimension_value: str = Field(default="", max_length=100)
    value: float | None = None
    computed_at: datetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    __tablename__ = "alert"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    severity: str = Field(default="warning", max_length=10)
    metric: str = Field(default="", max_length=50)
    message: str
    as_of: date = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    acknowledged_by: str = Field(default="", max_length=100)


class JobRun(SQLModel, table=True):
    __tablename__ = "job_run"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=50, index=True)
    as_of: date | None = None
    status: str = Field(default="running", max_length=20)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    rows: int = 0
    error: str = ""
    progress: float = 0.0
    owner: str = Field(default="", max_length=120, sa_column_kwargs={"server_default": ""})  # host:pid of the process running it
    heartbeat_at: datetime | None = None  # renewed while it runs: a run whose beat stops has lost its process


class Report(SQLModel, table=True):
    __tablename__ = "report"

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=20, index=True)
    cadence: str = Field(default="monthly", max_length=10)
    format: str = Field(max_length=10)
    title: str = ""
    content: bytes = b""
    created_at: datetime = Field(default_factory=utcnow)


class StoredView(SQLModel, table=True):
    """What an analysis page shows for its first view, computed by the nightly ``page-views`` job
    (issue 20): the page reads this row instead of scanning the purchase and ledger tables.

    ``params`` is the JSON of the view's arguments (an Analyse page's default filters); ``payload``
    a zip of the view's frames (Parquet) and numbers (JSON), see ``loyalty.evaluation.views``.
    """

    __tablename__ = "stored_view"
    __table_args__ = (UniqueConstraint("name", "params", name="uq_stored_view_name_params"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40)
    params: str = Field(max_length=400)
    as_of: date
    computed_at: datetime = Field(default_factory=utcnow)
    seconds: float = 0.0
    payload: bytes = b""


# --- access ----------------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=200, index=True)
    role: str = Field(max_length=20)
    password_hash: str = Field(default="", max_length=200)
    active: bool = True
    failed_attempts: int = 0
    locked_until: datetime | None = None
    last_login_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class SignInSession(SQLModel, table=True):
    """One sign-in of a user in one browser (see loyalty.access.sessions).

    Only hashes are stored: the one-time grant the browser exchanges for its cookie, and
    the token the cookie carries. A session ends at sign-out, idle time-out, password
    reset or when the account is disabled; an ended session never comes back.
    """

    __tablename__ = "sign_in_session"

    id: str = Field(primary_key=True, max_length=32)
    username: str = Field(max_length=100, index=True)
    grant_hash: str | None = Field(default=None, max_length=64, index=True)
    grant_expires_at: datetime | None = None
    token_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    end_reason: str = Field(default="", max_length=40)


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100, index=True)
    action: str = Field(max_length=60)
    entity: str = Field(max_length=40)
    entity_id: str = Field(default="", max_length=80)
    before: Any = Field(default=None, sa_column=Column(JSON))
    after: Any = Field(default=None, sa_column=Column(JSON))


# --- decisions (what-if scenarios, forecasts) ----------------------------------------


class Scenario(SQLModel, table=True):
    """A named what-if: changes to the program's rules and what the replay gave.

    ``changes`` holds the rule changes (tiers, earn rate, reward costs, expiry) and
    ``result`` the replay's summary under the changed and the current rules, so saved
    scenarios can be compared without replaying them again.
    """

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = ""
    changes: dict[str, Any] = _json()
    result: dict[str, Any] = _json()
    window_start: date | None = None
    window_end: date | None = None
    created_by: str = Field(default="system", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class LiabilityForecast(SQLModel, table=True):
    """One month of a stored points-liability forecast, with its band.

    ``measure`` is one of outstanding, earned, redeemed, expired or breakage; money is
    points times the point value in the program settings, applied when read.
    """

    __tablename__ = "liability_forecast"
    __table_args__ = (Index("ix_liability_forecast_as_of_month", "as_of", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    as_of: date
    month: date
    measure: str = Field(max_length=20)
    points: float
    points_low: float | None = None
    points_high: float | None = None
    computed_at: datetime = Field(default_factory=utcnow)


# --- integrations (the real-time API and webhooks) -------------------------------------


class ApiKey(SQLModel, table=True):
    """A key the company's systems send as ``Authorization: Bearer KEY`` (loyalty.integrations.apikeys).

    Only the SHA-256 of the key is stored (the key is 32 random bytes, so a slow hash adds
    nothing); ``prefix`` is its first characters, shown so people can tell keys apart.
    """

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = _json_list()
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=100)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class IdempotencyRecord(SQLModel, table=True):
    """The answer given to one ``Idempotency-Key`` of one API key, replayed on a retry.

    Written in the same transaction as the request's effect, so a key has an answer exactly
    when its effect happened; the unique key makes a concurrent copy wait for it.
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_record_api_key_id_key"),)

    id: int | None = Field(default=None, primary_key=True)
    api_key_id: int = Field(foreign_key="api_key.id")
    key: str = Field(max_length=200)
    method: str = Field(max_length=10)
    path: str = Field(max_length=300)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives signed events (loyalty.integrations.webhooks)."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=500)
    events: list[str] = _json_list()
    # Kept readable: it signs every body (HMAC-SHA256), so it cannot be a one-way hash.
    secret: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=100)
    consecutive_failures: int = 0
    disabled_at: datetime | None = None
    disabled_reason: str = Field(default="", max_length=300)
    removed_at: datetime | None = None


class OutboxEvent(SQLModel, table=True):
    """An event written in the same transaction as the change that caused it."""

    __tablename__ = "outbox_event"

    id: str = Field(primary_key=True, max_length=40)
    type: str = Field(max_length=40, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    data: Any = Field(default=None, sa_column=Column(JSON))


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint: pending until delivered, retried with backoff, given up after 24 hours."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_id_endpoint_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="outbox_event.id", max_length=40, index=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id", index=True)
    status: str = Field(default="pending", max_length=12)  # pending, delivered, failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str = Field(default="", max_length=500)


# --- engagement -----------------------------------------------------------------------------


class Challenge(SQLModel, table=True):
    """A goal members reach by buying (loyalty.ledger.challenges): ``target`` purchases, a
    spend of ``min_spend``, or a streak of ``target`` consecutive months with a purchase;
    within ``within_days`` of each other if set, in ``category`` if set. Pays ``points`` and/or
    ``badge`` up to ``max_completions`` times per member."""

    __tablename__ = "challenge"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=20)  # purchases, spend, streak_months
    target: int = 0  # purchases, or consecutive months
    min_spend: float | None = None
    within_days: int | None = None
    category: str = Field(default="", max_length=100)
    points: int = 0
    badge: str = Field(default="", max_length=100)
    starts_at: datetime
    ends_at: datetime | None = None
    segment_id: int | None = Field(default=None, foreign_key="segment.id")
    max_completions: int = 1
    holdout_pct: float = 0.0
    status: str = Field(default="active", max_length=10)  # active, ended
    created_by: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class ChallengeCompletion(SQLModel, table=True):
    """A member meeting a challenge, once per ``sequence``; ``purchase_id`` is the purchase that met it.

    ``ledger_entry_id`` is the reward paid; ``reversed_at`` is set when a full refund of that
    purchase within the return window took the reward back.
    """

    __tablename__ = "challenge_completion"
    __table_args__ = (UniqueConstraint("challenge_id", "member_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id")
    member_id: int = Field(foreign_key="member.id", index=True)
    sequence: int = 1
    purchase_id: int = Field(foreign_key="purchase.id", index=True)
    completed_at: datetime
    points: int = 0
    ledger_entry_id: int | None = Field(default=None, foreign_key="ledger_entry.id")
    reversed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Referral(SQLModel, table=True):
    """A member (the referee) brought by another (the referrer) with the referrer's code.

    ``pending`` until the referee's first purchase of at least the minimum amount, which pays
    both bonuses (``rewarded``: ``purchase_id`` and the two ledger entries); a full refund of
    that purchase within the return window takes both back (``reversed``).
    """

    __tablename__ = "referral"

    id: int | None = Field(default=None, primary_key=True)
    referrer_id: int = Field(foreign_key="member.id", index=True)
    referee_id: int = Field(foreign_key="member.id", unique=True)
    code: str = Field(max_length=16)
    referred_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="pending", max_length=10, index=True)  # pending, rewarded, reversed
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id", index=True)
    rewarded_at: datetime | None = None
    referrer_points: int = 0
    referee_points: int = 0
    reversed_at: datetime | None = None


class MemberMessage(SQLModel, table=True):
    """A message to a member (loyalty.engagement.messages): queued, sent, failed or suppressed (with the reason).

    ``dedupe_key`` names what the message is about (an expiry day, a tier move, a completion, a
    campaign), so running the daily job twice never queues the same message twice.
    """

    __tablename__ = "member_message"
    __table_args__ = (
        UniqueConstraint("member_id", "kind", "dedupe_key"),
        # Covers the Member messages page's counts per day, kind, status and channel (issue 20).
        Index("ix_member_message_created_kind_status_channel", "created_at", "kind", "status", "channel"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    kind: str = Field(max_length=30)
    dedupe_key: str = Field(max_length=100)
    channel: str = Field(max_length=10)  # email, csv
    status: str = Field(max_length=12, index=True)  # queued, sent, failed, suppressed
    reason: str = Field(default="", max_length=300)
    data: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow, index=True)
    sent_at: datetime | None = None
    attempts: int = 0


class MessageTemplate(SQLModel, table=True):
    """A manager's wording of one kind of message (the defaults live in loyalty.engagement.messages)."""

    __tablename__ = "message_template"

    kind: str = Field(primary_key=True, max_length=30)
    subject: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=100)
