"""Looking members up: search, and everything about one member on one screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from db.models import Feedback, Member, Purchase, Redemption, Reward, Tier, stored_id
from loyalty.access.privacy import mask_contacts
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound
from loyalty.ledger.challenges import member_badges, member_challenges, streak_months
from loyalty.ledger.entries import member_balance, member_ledger, open_lots, spendable_balances
from loyalty.ledger.referrals import member_referral
from loyalty.settings import get_settings

__all__ = ["MemberProfile", "export_members", "find_member", "mask", "member_export_rows", "member_key", "member_profile", "search_members"]

PERSONAL_FIELDS = ("name", "email", "phone", "city", "birth_date")


def mask(value: object) -> str:
    text = "" if value is None else str(value)
    if not text:
        return ""
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    return text[:1] + "***"


def find_member(session: Session, external_id: str) -> Member:
    member = session.exec(select(Member).where(Member.external_id == external_id)).one_or_none()
    if member is None:
        raise NotFound(f"No member with id {external_id}.")
    return member


def member_key(session: Session, external_id: str) -> int:
    """The stored id of the member known to people as ``external_id``; :class:`NotFound` when there is none."""
    return stored_id(find_member(session, external_id))


def search_members(session: Session, query: str, *, actor: Actor, limit: int = 50) -> pd.DataFrame:
    """Members whose id, name or email contains ``query`` (case-insensitive), with what each can spend now."""
    require(actor, "members.view")
    q = query.strip()
    stmt = select(Member, col(Tier.name)).join(Tier, col(Tier.id) == Member.tier_id, isouter=True).order_by(col(Member.external_id)).limit(limit)
    show_pii = actor.can("members.view_pii")
    if q:
        like = f"%{q.lower()}%"
        # Roles that see masked names may not search by them (a search would confirm a guess).
        fields = [Member.external_id, Member.name, Member.email] if show_pii else [Member.external_id]
        stmt = stmt.where(or_(*(func.lower(f).like(like) for f in fields)))
    rows = session.exec(stmt).all()
    points = spendable_balances(session, [stored_id(m) for m, _ in rows])
    return pd.DataFrame(
        [
            {
                "member": m.external_id,
                "name": m.name if show_pii else mask(m.name),
                "email": m.email if show_pii else mask(m.email),
                "tier": tier or "",
                "balance": points[stored_id(m)],
                "joined_at": m.joined_at,
                "acquisition_channel": m.acquisition_channel,
            }
            for m, tier in rows
        ],
        columns=["member", "name", "email", "tier", "balance", "joined_at", "acquisition_channel"],
    )


@dataclass
class MemberProfile:
    """Everything about one member; ``balance`` is what the member can spend now."""

    member: dict
    tier: str
    balance: int
    expiring_90_days: int
    next_expiry_on: date | None
    next_expiry_points: int
    ledger: pd.DataFrame
    purchases: pd.DataFrame
    redemptions: pd.DataFrame
    feedback: pd.DataFrame
    total_spend: float
    purchase_count: int
    # Purchases not yet returned in full, company id -> a label naming date, amount and returns.
    returnable: dict[str, str]
    currency: str
    # Engagement: badges held ({"name", "earned_at"}), each active challenge's progress
    # (name, progress, target, completed_at, completions), and the months in a row with a purchase.
    badges: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[dict[str, Any]] = field(default_factory=list)
    streak_months: int = 0
    referral: dict[str, Any] = field(default_factory=dict)  # {"referral_code", "referred_by", "referrals"}

    def summary(self) -> dict[str, Any]:
        """What ``members show --json`` prints: the member's numbers, badges and challenges."""
        return {
            "member_id": self.member["external_id"],
            "balance": self.balance,
            "tier": self.tier or None,
            "next_expiry": self.next_expiry_on,
            "next_expiry_points": self.next_expiry_points,
            "badges": self.badges,
            "challenges": [{k: c[k] for k in ("name", "progress", "target", "completed_at")} for c in self.challenges],
            "streak_months": self.streak_months,
            "referral_code": self.referral.get("referral_code"),
            "referred_by": self.referral.get("referred_by"),
            "referrals": self.referral.get("referrals", 0),
        }


def member_profile(session: Session, external_id: str, *, actor: Actor) -> MemberProfile:
    require(actor, "members.view")
    member = find_member(session, external_id)
    tier_row = session.get(Tier, member.tier_id) if member.tier_id else None
    tier = tier_row.name if tier_row else ""
    details = member.model_dump(exclude={"tier_id"})
    if not actor.can("members.view_pii"):
        for field in PERSONAL_FIELDS:
            details[field] = mask(details[field])
    purchases = pd.DataFrame(
        session.exec(
            select(
                Purchase.external_id,
                Purchase.occurred_at,
                Purchase.amount,
                Purchase.returned_cents / 100.0,  # type: ignore[call-overload]  # typed for at most 4 columns
                Purchase.channel,
                Purchase.store,
                Purchase.category,
                Purchase.refunded_at,
            )
            .where(Purchase.member_id == member.id)
            .order_by(col(Purchase.occurred_at).desc(), col(Purchase.id).desc())
        ).all(),
        columns=["purchase", "occurred_at", "amount", "returned", "channel", "store", "category", "refunded_at"],
    )
    redemptions = pd.DataFrame(
        session.exec(
            select(Redemption.id, Redemption.requested_at, Reward.name, Redemption.points, Redemption.status)  # type: ignore[call-overload]  # typed for at most 4 columns
            .join(Reward, Reward.id == Redemption.reward_id)
            .where(Redemption.member_id == member.id)
            .order_by(col(Redemption.requested_at).desc())
        ).all(),
        columns=["redemption_id", "requested_at", "reward", "points", "status"],
    )
    feedback = pd.DataFrame(
        session.exec(
            select(Feedback.submitted_at, Feedback.score, Feedback.comment)
            .where(Feedback.member_id == member.id)
            .order_by(col(Feedback.submitted_at).desc())
        ).all(),
        columns=["submitted_at", "score", "comment"],
    )
    if not actor.can("members.view_pii"):  # what the member wrote may hold their contact details
        feedback["comment"] = mask_contacts(feedback["comment"].astype("str"))
    now = pd.Timestamp.now(tz="UTC")
    soon = now + pd.Timedelta(days=90)
    expiring = sum(
        lot.remaining for lot in open_lots(session, stored_id(member)) if lot.expires_at is not None and now < pd.Timestamp(lot.expires_at) <= soon
    )
    active = purchases[purchases["refunded_at"].isna()] if not purchases.empty else purchases
    points = member_balance(session, stored_id(member), as_of=now.to_pydatetime())
    currency = get_settings(session).currency
    returnable = {
        row.purchase: f"{row.purchase} · {row.occurred_at:%Y-%m-%d} · {currency} {row.amount:,.2f}"
        + (f" ({currency} {row.returned:,.2f} returned)" if row.returned else "")
        for row in active.itertuples()
    }
    return MemberProfile(
        member=details,
        tier=tier,
        balance=points.points,
        expiring_90_days=int(expiring),
        next_expiry_on=points.next_expiry_on,
        next_expiry_points=points.next_expiry_points,
        ledger=member_ledger(session, stored_id(member)).iloc[::-1].reset_index(drop=True),
        purchases=purchases,
        redemptions=redemptions,
        feedback=feedback,
        total_spend=float((active["amount"] - active["returned"]).sum()) if not active.empty else 0.0,
        purchase_count=len(active),
        returnable=returnable,
        currency=currency,
        badges=member_badges(session, stored_id(member)),
        challenges=member_challenges(session, stored_id(member), now=now.to_pydatetime()),
        streak_months=streak_months(active["occurred_at"], now.to_pydatetime()) if not active.empty else 0,
        referral=member_referral(session, stored_id(member)),
    )


EXPORT_PURPOSES = ("analysis", "marketing")


def export_members(
    session: Session, *, actor: Actor, purpose: str = "analysis", external_ids: list[str] | None = None, member_ids: list[int] | None = None
) -> pd.DataFrame:
    """A member list for export (CSV), audited.

    For ``marketing`` the list leaves out members without marketing consent and erased
    members. Personal fields are masked for roles that may not see them.
    """
    from loyalty.access.audit import record_audit

    frame = member_export_rows(session, actor=actor, purpose=purpose, external_ids=external_ids, member_ids=member_ids)
    record_audit(session, actor=actor, action="members.export", entity="member", after={"purpose": purpose, "rows": len(frame)})
    session.commit()
    return frame


MEMBER_EXPORT_COLUMNS = ["member_id", "name", "email", "phone", "city", "tier", "joined_at", "acquisition_channel", "marketing_consent"]


def member_export_rows(
    session: Session, *, actor: Actor, purpose: str = "analysis", external_ids: list[str] | None = None, member_ids: list[int] | None = None
) -> pd.DataFrame:
    """The rows of a member export (not audited: the caller audits the export once), masked as ``actor`` may see them."""
    require(actor, "members.export")
    if purpose not in EXPORT_PURPOSES:
        raise InvalidInput(f"Unknown export purpose {purpose!r}; choose analysis or marketing.")
    from db.engine import begin_write

    begin_write(session)  # the export is audited
    stmt = select(Member, col(Tier.name)).join(Tier, col(Tier.id) == Member.tier_id, isouter=True).order_by(col(Member.external_id))
    if external_ids is not None:
        stmt = stmt.where(col(Member.external_id).in_(external_ids))
    if purpose == "marketing":
        stmt = stmt.where(col(Member.marketing_consent).is_(True), col(Member.erased_at).is_(None))
    if member_ids is None:
        rows = session.exec(stmt).all()
    else:
        ids = [int(i) for i in member_ids]
        # In chunks: a segment can hold more members than one statement can bind.
        rows = [row for start in range(0, len(ids), 10_000) for row in session.exec(stmt.where(col(Member.id).in_(ids[start : start + 10_000])))]
    show_pii = actor.can("members.view_pii")
    return pd.DataFrame(
        [
            {
                "member_id": m.external_id,
                "name": m.name if show_pii else mask(m.name),
                "email": m.email if show_pii else mask(m.email),
                "phone": m.phone if show_pii else mask(m.phone),
                "city": m.city if show_pii else mask(m.city),
                "tier": tier or "",
                "joined_at": m.joined_at,
                "acquisition_channel": m.acquisition_channel,
                "marketing_consent": m.marketing_consent,
            }
            for m, tier in rows
        ],
        columns=MEMBER_EXPORT_COLUMNS,
    )
