"""Campaigns: configuration, lifecycle and holdout groups (the earn engine: loyalty.ledger.campaign_earning).

Kinds and their ``rule`` parameters
-----------------------------------
=================  ==========================================  =====================================
kind               rule                                        bonus on a qualifying purchase
=================  ==========================================  =====================================
multiplier         ``{"multiplier": 2.0}``                     base points x (multiplier - 1)
category_bonus     ``{"categories": [...], "multiplier": 2}``  same, only in those categories
fixed_bonus        ``{"points": 50, "min_amount": 20}``         fixed points per purchase
spend_threshold    ``{"spend": 300, "points": 500}``           once, on the purchase whose
                                                               cumulative spend in the campaign
                                                               window reaches ``spend``
win_back           ``{"inactive_days": 90, "points": 300}``    once, on the first purchase in the
                                                               window; eligibility: no purchase in
                                                               the ``inactive_days`` before start
birthday           ``{"points": 200, "window_days": 7,         once, on a purchase within
                   "occasion": "birthday"|"anniversary"}``     ``window_days`` of the date
tier_offer         ``{"multiplier": 1.5}`` or ``{"points":..}``  as multiplier / fixed bonus,
                                                               for the eligible tiers only
=================  ==========================================  =====================================

How campaigns stack on one purchase
-----------------------------------
* Base points are earned on the amount actually paid (after any discount).
* Multiplier-type campaigns (multiplier, category_bonus, tier_offer with a multiplier)
  do **not** compound: only the highest multiplier applies, credited to its campaign.
* Fixed bonuses (fixed_bonus, spend_threshold, win_back, birthday, tier_offer with
  points) **add**, each credited to its own campaign.
* A campaign's budget cap stops its bonuses once reached (the last award is cut to
  what remains); base points are never capped.

Eligibility and holdout
-----------------------
On activation the eligible members (segment, tiers, acquisition channels, a fixed
list of members ``member_ids``, minimum spend in the last 12 months, win-back
inactivity) are assigned once and for all:
a stable pseudo-random ``holdout_pct`` of them to ``holdout`` (they get nothing, so
the campaign's effect can be measured against them) and the rest to ``treatment``.
A bonus goes only to treatment members, on purchases inside ``[starts_at, ends_at)``
(and in the campaign's purchase channels, if it names any).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.bulk import id_batches, insert_frame
from db.engine import write_transaction
from db.models import Campaign, CampaignAssignment, LedgerEntry, Member, Purchase, Segment, Tier, stored_id, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.bounds import MAX_BONUS_POINTS, MAX_MULTIPLIER, MAX_POINTS_PER_ENTRY
from loyalty.errors import InvalidInput, NeedsConfirmation, NotFound
from loyalty.formatting import number
from loyalty.program.lifecycle import Removal, archive_record, clone_record, count_rows, delete_record, restore_record
from loyalty.records import locked

__all__ = [
    "CAMPAIGN_KINDS",
    "STATUSES",
    "activate_campaign",
    "archive_campaign",
    "campaign_confirmations",
    "campaign_details",
    "campaign_overview",
    "clone_campaign",
    "delete_campaign",
    "edit_campaign",
    "end_campaign",
    "listed_member_ids",
    "pause_campaign",
    "restore_campaign",
    "save_campaign",
    "stable_uniform",
]

CAMPAIGN_KINDS = {
    "multiplier": "Points multiplier",
    "category_bonus": "Category bonus",
    "fixed_bonus": "Fixed bonus per purchase",
    "spend_threshold": "Spend-threshold bonus",
    "win_back": "Win-back",
    "birthday": "Birthday / anniversary bonus",
    "tier_offer": "Tier-only offer",
}
MULTIPLIER_KINDS = {"multiplier", "category_bonus"}
STATUSES = ("draft", "scheduled", "active", "paused", "ended")
EARNING_STATUSES = ("scheduled", "active", "ended")
COMMUNICATION_CHANNELS = ("email", "app", "sms", "social", "in-store")
# The preview: per-purchase kinds replay the eligible members' purchases of the last
# PREVIEW_LOOKBACK_DAYS (a rate, scaled to the campaign's length); once-per-member kinds
# replay a window as long as the campaign (up to MAX_REPLAY_DAYS). Fewer than
# MIN_PREVIEW_PURCHASES purchases in the window give no estimate, not a 0.
PREVIEW_LOOKBACK_DAYS = 90
MAX_REPLAY_DAYS = 365
MIN_PREVIEW_PURCHASES = 10
ONCE_PER_MEMBER_KINDS = ("spend_threshold", "win_back", "birthday")
# Guard rails: saving a campaign above these asks the person to confirm first.
CONFIRM_MULTIPLIER_ABOVE = 10.0
CONFIRM_BUDGET_ABOVE = 500_000
MIN_SPEND_WINDOW_DAYS = 365
# A campaign for a fixed list of members (eligibility ``member_ids``, a win-back list
# say) stores the list in the campaign; larger groups belong in a segment.
MAX_LISTED_MEMBERS = 10_000


# --- configuration ---------------------------------------------------------------------


# The largest value each number of a rule may take (bounds of every way in: loyalty.bounds).
_RULE_LIMITS = {"multiplier": MAX_MULTIPLIER, "points": MAX_BONUS_POINTS, "spend": 1_000_000_000, "inactive_days": 3_650}


def _check_rule_numbers(rule: dict[str, Any]) -> None:
    """Each number of the rule is a finite number within its limit (a NaN or 1e300 never reaches the ledger)."""
    words = {"multiplier": "The multiplier", "points": "The bonus", "spend": "The spend to reach", "inactive_days": "The number of inactive days"}
    for name, limit in _RULE_LIMITS.items():
        value = rule.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(f"{words[name]} must be a number (got {value!r}).")
        if value > limit:
            raise InvalidInput(f"{words[name]} can be at most {number(limit)} (got {number(value)}).")


def _validate(values: dict[str, Any]) -> None:
    name = (values.get("name") or "").strip()
    if not name:
        raise InvalidInput("A campaign needs a name.")
    kind = values.get("kind")
    if kind not in CAMPAIGN_KINDS:
        raise InvalidInput(f"Unknown campaign type {kind!r}; choose one of {', '.join(CAMPAIGN_KINDS)}.")
    start, end = values.get("starts_at"), values.get("ends_at")
    if not isinstance(start, datetime) or not isinstance(end, datetime) or start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("Start and end need a date and a time zone.")
    if end <= start:
        raise InvalidInput("The campaign ends before it starts.")
    pct = values.get("holdout_pct", 0.0)
    if not 0 <= pct < 0.5:
        raise InvalidInput("The holdout share must be between 0 % and 50 % (the control group gets nothing).")
    budget = values.get("budget_points")
    if budget is not None and not 0 < budget <= MAX_POINTS_PER_ENTRY:
        raise InvalidInput(f"The points budget must be above 0 and at most {MAX_POINTS_PER_ENTRY:,} (leave it empty for no cap).")
    rule = values.get("rule") or {}
    _check_rule_numbers(rule)
    mult = rule.get("multiplier")
    points = rule.get("points")
    if kind in MULTIPLIER_KINDS and (mult is None or mult <= 1):
        raise InvalidInput("A multiplier campaign needs a multiplier above 1 (2 means double points).")
    if kind == "category_bonus" and not rule.get("categories"):
        raise InvalidInput("A category bonus needs at least one category (for example eco-friendly).")
    if kind in {"fixed_bonus", "spend_threshold", "win_back", "birthday"} and (points is None or points <= 0):
        raise InvalidInput("The bonus needs a number of points above 0.")
    if kind == "spend_threshold" and (rule.get("spend") is None or rule["spend"] <= 0):
        raise InvalidInput("A spend-threshold bonus needs the spend to reach, above 0.")
    if kind == "win_back" and (rule.get("inactive_days") is None or rule["inactive_days"] < 1):
        raise InvalidInput("A win-back campaign needs the number of inactive days (at least 1).")
    if kind == "tier_offer":
        if not (values.get("eligibility") or {}).get("tiers"):
            raise InvalidInput("A tier-only offer needs the tiers it is for.")
        if (mult is None or mult <= 1) and (points is None or points <= 0):
            raise InvalidInput("A tier-only offer needs a multiplier above 1 or bonus points above 0.")
    unknown = set(values.get("channels") or []) - set(COMMUNICATION_CHANNELS)
    if unknown:
        raise InvalidInput(f"Unknown channel(s): {', '.join(sorted(unknown))}.")


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    return campaign.model_dump(mode="json", exclude={"created_at", "updated_at", "archived_at"})


def campaign_confirmations(
    rule: dict[str, Any] | None,
    budget_points: int | None,
    *,
    multiplier_above: float = CONFIRM_MULTIPLIER_ABOVE,
    budget_above: int = CONFIRM_BUDGET_ABOVE,
) -> list[str]:
    """Why saving this campaign needs a confirmation (an earn multiplier above 10x, a budget above the limit); empty if it does not."""
    reasons = []
    multiplier = (rule or {}).get("multiplier")
    if multiplier is not None and float(multiplier) > multiplier_above:
        reasons.append(f"An earn multiplier of {float(multiplier):g}x is above {multiplier_above:g}x.")
    if budget_points is not None and budget_points > budget_above:
        reasons.append(f"A points budget of {budget_points:,} is above {budget_above:,}.")
    return reasons


def save_campaign(*, session: Session, actor: Actor, campaign_id: int | None = None, confirmed: bool = False, **fields: Any) -> Campaign:
    """Create a draft campaign, or change one (changes to a running campaign are audited as such).

    Eligibility and holdout cannot change once members have been assigned. A multiplier
    or budget above the guard rails (:func:`campaign_confirmations`) is saved only with
    ``confirmed``; otherwise :class:`NeedsConfirmation` says why.
    """
    require(actor, "program.configure")
    allowed = {"name", "kind", "description", "starts_at", "ends_at", "channels", "eligibility", "rule", "budget_points", "holdout_pct"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(f"Unknown campaign field(s): {', '.join(sorted(unknown))}.")
    with write_transaction(session):
        campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
        if campaign_id is not None and campaign is None:
            raise NotFound(f"No campaign with id {campaign_id}.")
        before = _snapshot(campaign) if campaign else None
        if campaign and campaign.archived_at is not None:
            raise InvalidInput(f"{campaign.name} is archived: restore it before changing it.")
        if campaign and campaign.status != "draft":
            if campaign.status == "ended":
                raise InvalidInput(f"{campaign.name} has ended and can no longer change.")
            frozen = [f for f in ("eligibility", "holdout_pct", "kind") if f in fields and fields[f] != getattr(campaign, f)]
            if frozen:
                raise InvalidInput(f"{campaign.name} already has its members assigned: {', '.join(frozen)} cannot change now.")
        values = {
            **(before or {"description": "", "channels": [], "eligibility": {}, "rule": {}, "budget_points": None, "holdout_pct": 0.0}),
            **fields,
        }
        if campaign:
            values.setdefault("starts_at", campaign.starts_at)
            values["starts_at"] = fields.get("starts_at", campaign.starts_at)
            values["ends_at"] = fields.get("ends_at", campaign.ends_at)
        values["name"] = (values.get("name") or "").strip()
        _validate(values)
        reasons = campaign_confirmations(values["rule"], values["budget_points"])
        if reasons and not confirmed and (before is None or reasons != campaign_confirmations(before["rule"], before["budget_points"])):
            raise NeedsConfirmation(" ".join(reasons) + " Confirm to save it anyway.")
        if "member_ids" in (fields.get("eligibility") or {}):  # checked when set, not on every later edit
            values["eligibility"] = {**values["eligibility"], "member_ids": listed_member_ids(session, values["eligibility"]["member_ids"])}
        clash = session.exec(select(Campaign.id).where(Campaign.name == values["name"])).first()
        if clash is not None and clash != campaign_id:
            raise InvalidInput(f"A campaign named {values['name']!r} already exists.")
        campaign = campaign or Campaign(
            name=values["name"], kind=values["kind"], starts_at=values["starts_at"], ends_at=values["ends_at"], created_by=actor.username
        )
        for field in allowed:
            setattr(campaign, field, values[field])
        campaign.updated_at = utcnow()
        session.add(campaign)
        session.flush()
        action = (
            "campaign.create"
            if before is None
            else ("campaign.update_running" if before["status"] in ("active", "scheduled", "paused") else "campaign.update")
        )
        record_audit(session, actor=actor, action=action, entity="campaign", entity_id=campaign.id, before=before, after=_snapshot(campaign))
    return campaign


# --- eligibility and holdout ------------------------------------------------------------


def listed_member_ids(session: Session, member_ids: Any) -> list[int]:
    """Check a fixed list of members (eligibility ``member_ids``): sorted, without repeats.

    Refused unless the list holds 1 to ``MAX_LISTED_MEMBERS`` member ids (whole
    numbers) of members that exist and are not erased.
    """
    if isinstance(member_ids, (str, bytes)) or not hasattr(member_ids, "__iter__"):
        raise InvalidInput("The campaign's member list must be a list of member ids.")
    values = list(member_ids)
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in values):
        raise InvalidInput("The campaign's member list must hold member ids (whole numbers) only.")
    ids = sorted({int(i) for i in values})
    if not ids:
        raise InvalidInput("A campaign for listed members needs at least one member.")
    if len(ids) > MAX_LISTED_MEMBERS:
        raise InvalidInput(
            f"A campaign can list at most {MAX_LISTED_MEMBERS:,} members (this list has {len(ids):,}); target a segment for a larger group."
        )
    found = {
        i: erased
        for batch in id_batches(np.asarray(ids))
        for i, erased in session.exec(select(Member.id, Member.erased_at).where(col(Member.id).in_(batch))).all()
    }
    for problem, bad in (
        ("do not exist", [i for i in ids if i not in found]),
        ("were erased and cannot be targeted", [i for i in ids if found.get(i) is not None]),
    ):
        if bad:
            shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise InvalidInput(f"{len(bad):,} of the listed members {problem} (member ids {shown}); remove them from the list.")
    return ids


def stable_uniform(campaign_id: int, member_ids: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per member, fixed for the (campaign, member) pair (splitmix64)."""
    with np.errstate(over="ignore"):  # multiplication modulo 2**64 is the point
        x = (np.uint64(campaign_id) * np.uint64(0x9E3779B97F4A7C15)) ^ member_ids.astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def eligible_members(session: Session, eligibility: dict[str, Any], *, kind: str, rule: dict[str, Any], as_of: datetime) -> np.ndarray:
    """Member ids meeting a campaign's eligibility at ``as_of`` (vectorised, in SQL where it can)."""
    query = select(Member.id).where(col(Member.erased_at).is_(None))
    if eligibility.get("tiers"):
        query = query.join(Tier, col(Tier.id) == Member.tier_id).where(col(Tier.name).in_(eligibility["tiers"]))
    if eligibility.get("acquisition_channels"):
        query = query.where(col(Member.acquisition_channel).in_(eligibility["acquisition_channels"]))
    ids = np.asarray(session.exec(query).all(), dtype=np.int64)
    if "member_ids" in eligibility:
        ids = np.intersect1d(ids, np.asarray(eligibility["member_ids"], dtype=np.int64))
    if eligibility.get("segment_id"):
        segment = session.get(Segment, eligibility["segment_id"])
        if segment is None:
            raise InvalidInput("The campaign's segment no longer exists.")
        from loyalty.program.segments import segment_member_ids

        ids = np.intersect1d(ids, segment_member_ids(session, segment.rules, now=as_of))
    if eligibility.get("min_spend"):
        spend = session.exec(
            select(Purchase.member_id)
            .where(
                Purchase.occurred_at >= as_of - timedelta(days=MIN_SPEND_WINDOW_DAYS),
                Purchase.occurred_at < as_of,
                col(Purchase.refunded_at).is_(None),
            )
            .group_by(col(Purchase.member_id))
            .having(func.sum(col(Purchase.amount)) >= float(eligibility["min_spend"]))
        ).all()
        ids = np.intersect1d(ids, np.asarray(spend, dtype=np.int64))
    if kind == "win_back":
        recent = session.exec(
            select(Purchase.member_id)
            .where(Purchase.occurred_at >= as_of - timedelta(days=int(rule["inactive_days"])), Purchase.occurred_at < as_of)
            .distinct()
        ).all()
        ever = session.exec(select(Purchase.member_id).where(Purchase.occurred_at < as_of).distinct()).all()
        ids = np.setdiff1d(np.intersect1d(ids, np.asarray(ever, dtype=np.int64)), np.asarray(recent, dtype=np.int64))
    return ids


def _assign(session: Session, campaign: Campaign, as_of: datetime) -> tuple[int, int]:
    ids = eligible_members(session, campaign.eligibility or {}, kind=campaign.kind, rule=campaign.rule or {}, as_of=as_of)
    holdout = stable_uniform(stored_id(campaign), ids) < campaign.holdout_pct
    frame = pd.DataFrame(
        {"campaign_id": campaign.id, "member_id": ids, "group": np.where(holdout, "holdout", "treatment"), "assigned_at": pd.Timestamp(utcnow())}
    )
    insert_frame(session, "campaign_assignment", frame)
    return int((~holdout).sum()), int(holdout.sum())


# --- lifecycle ---------------------------------------------------------------------------


def activate_campaign(*, session: Session, campaign_id: int, actor: Actor, now: datetime | None = None) -> Campaign:
    """Draft -> scheduled (start in the future) or active; assigns members and the holdout once.

    A paused campaign resumes (its members stay assigned).
    """
    require(actor, "program.configure")
    now = now or utcnow()
    with write_transaction(session):
        campaign = _locked_campaign(session, campaign_id)
        if campaign.archived_at is not None:
            raise InvalidInput(f"{campaign.name} is archived: restore it before starting it.")
        if campaign.status not in ("draft", "paused"):
            raise InvalidInput(f"{campaign.name} is {campaign.status}; only a draft or paused campaign can be started.")
        if campaign.ends_at <= now:
            raise InvalidInput(f"{campaign.name} ended on {campaign.ends_at:%Y-%m-%d}; move its end date first.")
        before = _snapshot(campaign)
        after_extra: dict[str, Any] = {}
        if campaign.status == "draft":
            treatment, holdout = _assign(session, campaign, min(now, campaign.starts_at) if campaign.starts_at > now else now)
            after_extra = {"treatment": treatment, "holdout": holdout}
        campaign.status = "scheduled" if campaign.starts_at > now else "active"
        campaign.updated_at = now
        session.add(campaign)
        record_audit(
            session,
            actor=actor,
            action="campaign.activate",
            entity="campaign",
            entity_id=campaign.id,
            before=before,
            after={**_snapshot(campaign), **after_extra},
        )
    return campaign


def pause_campaign(*, session: Session, campaign_id: int, actor: Actor) -> Campaign:
    return _set_status(session, campaign_id, actor, "paused", allowed_from=("scheduled", "active"))


def end_campaign(*, session: Session, campaign_id: int, actor: Actor, now: datetime | None = None) -> Campaign:
    """End now (purchases after this moment earn no bonus from it)."""
    return _set_status(session, campaign_id, actor, "ended", allowed_from=("scheduled", "active", "paused"), now=now)


def _locked_campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign, locked and read afresh for this transaction."""
    return locked(session, Campaign, campaign_id, "campaign")


def _set_status(
    session: Session, campaign_id: int, actor: Actor, status: str, *, allowed_from: tuple[str, ...], now: datetime | None = None
) -> Campaign:
    require(actor, "program.configure")
    now = now or utcnow()
    with write_transaction(session):
        campaign = _locked_campaign(session, campaign_id)
        if campaign.status not in allowed_from:
            raise InvalidInput(f"{campaign.name} is {campaign.status}; it cannot become {status}.")
        before = _snapshot(campaign)
        campaign.status = status
        if status == "ended" and campaign.ends_at > now:
            campaign.ends_at = now
        campaign.updated_at = now
        session.add(campaign)
        record_audit(
            session, actor=actor, action=f"campaign.{status}", entity="campaign", entity_id=campaign.id, before=before, after=_snapshot(campaign)
        )
    return campaign


def advance_campaigns(session: Session, *, now: datetime | None = None) -> int:
    """Scheduled campaigns whose start has come become active; active ones past their end, ended."""
    now = now or utcnow()
    with write_transaction(session):
        changed = 0
        for campaign in session.exec(select(Campaign).where(col(Campaign.status).in_(["scheduled", "active"]))):
            new = "ended" if campaign.ends_at <= now else ("active" if campaign.starts_at <= now else campaign.status)
            if new != campaign.status:
                campaign.status, campaign.updated_at = new, now
                session.add(campaign)
                changed += 1
    return changed


def campaign_details(session: Session, campaign_id: int) -> dict[str, Any]:
    """One campaign's settings as stored (rule, eligibility, channels, dates...), for its edit form."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"No campaign with id {campaign_id}.")
    return {**campaign.model_dump(exclude={"archived_at"}), "archived": campaign.archived_at is not None}


# --- edit, clone, archive ----------------------------------------------------------------


def edit_campaign(*, session: Session, actor: Actor, campaign_id: int, confirmed: bool = False, **fields: Any) -> Campaign:
    """Change a draft campaign; a campaign that has started (or is scheduled) is refused: clone it instead."""
    require(actor, "program.configure")
    with write_transaction(session):
        campaign = _locked_campaign(session, campaign_id)
        if campaign.status != "draft":
            raise InvalidInput(f"{campaign.name} is {campaign.status}: only a draft can be edited. Clone it to make a new draft.")
        return save_campaign(session=session, actor=actor, campaign_id=campaign_id, confirmed=confirmed, **fields)


def clone_campaign(*, session: Session, actor: Actor, campaign_id: int, now: datetime | None = None) -> Campaign:
    """A new draft with the same rules, eligibility, channels, budget and holdout, named ``"<name> (copy)"``.

    The copy keeps the dates of a campaign that has not started yet; otherwise it runs as
    long, from the next midnight UTC. Audited as created and cloned.
    """
    now = now or utcnow()

    def create(source: Campaign, name: str) -> Campaign:
        starts_at, ends_at = source.starts_at, source.ends_at
        if starts_at <= now:
            starts_at = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
            ends_at = starts_at + (source.ends_at - source.starts_at)
        # The source's guard-rail values were confirmed when it was saved.
        return save_campaign(
            session=session,
            actor=actor,
            confirmed=True,
            name=name,
            kind=source.kind,
            description=source.description,
            starts_at=starts_at,
            ends_at=ends_at,
            channels=list(source.channels or []),
            eligibility=dict(source.eligibility or {}),
            rule=dict(source.rule or {}),
            budget_points=source.budget_points,
            holdout_pct=source.holdout_pct,
        )

    return clone_record(
        session=session,
        actor=actor,
        model=Campaign,
        record_id=campaign_id,
        entity="campaign",
        permission="program.configure",
        name_limit=200,
        create=create,
    )


def _not_running(campaign: Campaign) -> None:
    if campaign.status in ("scheduled", "active", "paused"):
        raise InvalidInput(f"{campaign.name} is {campaign.status}: end it before archiving or deleting it.")


def archive_campaign(*, session: Session, actor: Actor, campaign_id: int) -> Campaign:
    """Hide a draft or ended campaign from the list and pickers; its ledger entries keep naming it."""
    return archive_record(
        session=session, actor=actor, model=Campaign, record_id=campaign_id, entity="campaign", permission="program.configure", check=_not_running
    )


def restore_campaign(*, session: Session, actor: Actor, campaign_id: int) -> Campaign:
    return restore_record(session=session, actor=actor, model=Campaign, record_id=campaign_id, entity="campaign", permission="program.configure")


def _campaign_references(session: Session, campaign: Campaign) -> list[tuple[str, int]]:
    return [
        ("ledger entry", count_rows(session, LedgerEntry.campaign_id, campaign.id)),
        ("assigned member", count_rows(session, CampaignAssignment.campaign_id, campaign.id)),
    ]


def delete_campaign(*, session: Session, actor: Actor, campaign_id: int) -> Removal:
    """Delete a draft or ended campaign that gave no points and assigned nobody; otherwise archive it."""
    return delete_record(
        session=session,
        actor=actor,
        model=Campaign,
        record_id=campaign_id,
        entity="campaign",
        permission="program.configure",
        references=_campaign_references,
        snapshot=_snapshot,
        check=_not_running,
    )


# --- reading ------------------------------------------------------------------------------


def campaign_overview(session: Session, *, include_archived: bool = False) -> pd.DataFrame:
    """Every campaign (archived ones only with ``include_archived``) with its members assigned and the budget burned so far."""
    burned = dict(
        session.exec(
            select(col(LedgerEntry.campaign_id), func.sum(col(LedgerEntry.points)))
            .where(col(LedgerEntry.campaign_id).is_not(None))
            .group_by(col(LedgerEntry.campaign_id))
        ).all()
    )
    groups = session.exec(
        select(col(CampaignAssignment.campaign_id), col(CampaignAssignment.group), func.count()).group_by(
            col(CampaignAssignment.campaign_id), col(CampaignAssignment.group)
        )
    ).all()
    assigned: dict[tuple[int, str], int] = {(c, g): n for c, g, n in groups}
    rows = []
    query = select(Campaign).order_by(col(Campaign.starts_at).desc())
    if not include_archived:
        query = query.where(col(Campaign.archived_at).is_(None))
    for c in session.exec(query):
        points = int(burned.get(c.id, 0))
        rows.append(
            {
                "id": c.id,
                "name": c.name,
                "kind": c.kind,
                "status": c.status,
                "starts_at": c.starts_at,
                "ends_at": c.ends_at,
                "treatment": assigned.get((stored_id(c), "treatment"), 0),
                "holdout": assigned.get((stored_id(c), "holdout"), 0),
                "holdout_pct": c.holdout_pct,
                "budget_points": c.budget_points,
                "points_awarded": points,
                "budget_burned": points / c.budget_points if c.budget_points else None,
                "archived": c.archived_at is not None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "name",
            "kind",
            "status",
            "starts_at",
            "ends_at",
            "treatment",
            "holdout",
            "holdout_pct",
            "budget_points",
            "points_awarded",
            "budget_burned",
            "archived",
        ],
    )
