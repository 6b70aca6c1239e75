"""The rewards catalogue: adding and changing rewards (audited)."""

from __future__ import annotations

from datetime import datetime
from numbers import Real
from typing import Any

from sqlmodel import Session, select

from db.engine import write_transaction
from db.models import Redemption, Reward, Tier
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput
from loyalty.program.lifecycle import Removal, archive_record, clone_record, count_rows, delete_record, restore_record
from loyalty.records import locked

__all__ = ["REWARD_FIELDS", "REWARD_KINDS", "archive_reward", "clone_reward", "delete_reward", "restore_reward", "save_reward"]

REWARD_KINDS = {
    "discount": "Discount",
    "product": "Product",
    "experience": "Experience or event",
    "exclusive_access": "Exclusive access",
    "partner": "Partner reward",
    "donation": "Donation (sustainability)",
}
REWARD_FIELDS = ("name", "kind", "description", "points_cost", "stock", "min_tier_id", "partner", "available_from", "available_until", "active")


MAX_REWARD_POINTS = 1_000_000_000
MAX_STOCK = 1_000_000_000


def _validate(session: Session, values: dict[str, Any], reward_id: int | None) -> None:
    name = (values.get("name") or "").strip()
    if not name:
        raise InvalidInput("A reward needs a name.")
    clash = session.exec(select(Reward.id).where(Reward.name == name)).first()
    if clash is not None and clash != reward_id:
        raise InvalidInput(f"A reward named {name!r} already exists.")
    if values.get("kind") not in REWARD_KINDS:
        raise InvalidInput(f"Unknown kind {values.get('kind')!r}; choose one of {', '.join(REWARD_KINDS)}.")
    cost = values.get("points_cost")
    if isinstance(cost, bool) or not isinstance(cost, int) or not 0 < cost <= MAX_REWARD_POINTS:
        raise InvalidInput(f"The points cost must be a whole number above 0 and at most {MAX_REWARD_POINTS:,}.")
    stock = values.get("stock")
    if stock is not None:
        if isinstance(stock, bool) or not isinstance(stock, Real) or not float(stock).is_integer():
            raise InvalidInput(f"Stock must be a whole number, not {stock!r} (leave it empty for unlimited).")
        if stock < 0:
            raise InvalidInput("Stock cannot be negative (leave it empty for unlimited).")
        if float(stock) > MAX_STOCK:
            raise InvalidInput(f"Stock can be at most {MAX_STOCK:,} (leave it empty for unlimited).")
    start, end = values.get("available_from"), values.get("available_until")
    for label, moment in (("start", start), ("end", end)):
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise InvalidInput(f"The availability {label} needs a date and time zone.")
    if start and end and end <= start:
        raise InvalidInput("The availability window ends before it starts.")
    if values.get("min_tier_id") is not None and session.get(Tier, values["min_tier_id"]) is None:
        raise InvalidInput("The required tier does not exist.")
    if values.get("kind") == "partner" and not (values.get("partner") or "").strip():
        raise InvalidInput("A partner reward needs the partner's name.")


_UNSEEN = object()


def save_reward(*, session: Session, actor: Actor, reward_id: int | None = None, stock_seen: Any = _UNSEEN, **fields: Any) -> Reward:
    """Create a reward (no ``reward_id``) or change one; refusals name the field and reason.

    ``stock_seen``: the stock the editor was shown. If redemptions changed it since, the
    save is refused rather than putting back units that were already taken.
    """
    require(actor, "program.configure")
    unknown = set(fields) - set(REWARD_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown reward field(s): {', '.join(sorted(unknown))}.")
    with write_transaction(session):
        reward = locked(session, Reward, reward_id, "reward") if reward_id is not None else None
        if reward is not None and reward.archived_at is not None:
            raise InvalidInput(f"{reward.name} is archived: restore it before changing it.")
        if reward is not None and stock_seen is not _UNSEEN and reward.stock != stock_seen:
            raise InvalidInput(f"{reward.name}'s stock changed to {reward.stock} since you opened it (redemptions): reload and try again.")
        before = reward.model_dump(include=set(REWARD_FIELDS), mode="json") if reward else None
        values = {
            **(
                before
                or {
                    "description": "",
                    "stock": None,
                    "min_tier_id": None,
                    "partner": "",
                    "available_from": None,
                    "available_until": None,
                    "active": True,
                }
            ),
            **fields,
        }
        if reward:
            values["available_from"] = fields.get("available_from", reward.available_from)
            values["available_until"] = fields.get("available_until", reward.available_until)
        values["name"] = (values.get("name") or "").strip()
        _validate(session, values, reward_id)
        reward = reward or Reward(name=values["name"], kind=values["kind"], points_cost=values["points_cost"])
        for field in REWARD_FIELDS:
            setattr(reward, field, values[field])
        session.add(reward)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="reward.create" if before is None else "reward.update",
            entity="reward",
            entity_id=reward.id,
            before=before,
            after=reward.model_dump(include=set(REWARD_FIELDS), mode="json"),
        )
    return reward


def clone_reward(*, session: Session, actor: Actor, reward_id: int) -> Reward:
    """A new reward with the same settings, named ``"<name> (copy)"``; audited as created and cloned."""
    return clone_record(
        session=session,
        actor=actor,
        model=Reward,
        record_id=reward_id,
        entity="reward",
        permission="program.configure",
        name_limit=200,
        create=lambda source, name: save_reward(session=session, actor=actor, **{**source.model_dump(include=set(REWARD_FIELDS)), "name": name}),
    )


def archive_reward(*, session: Session, actor: Actor, reward_id: int) -> Reward:
    """Take a reward out of the catalogue members see and pickers offer; its redemptions keep their reward."""
    return archive_record(session=session, actor=actor, model=Reward, record_id=reward_id, entity="reward", permission="program.configure")


def restore_reward(*, session: Session, actor: Actor, reward_id: int) -> Reward:
    return restore_record(session=session, actor=actor, model=Reward, record_id=reward_id, entity="reward", permission="program.configure")


def _reward_references(session: Session, reward: Reward) -> list[tuple[str, int]]:
    return [("redemption", count_rows(session, Redemption.reward_id, reward.id))]


def delete_reward(*, session: Session, actor: Actor, reward_id: int) -> Removal:
    """Delete a reward never redeemed; one with redemptions is archived instead (they keep naming it)."""
    return delete_record(
        session=session,
        actor=actor,
        model=Reward,
        record_id=reward_id,
        entity="reward",
        permission="program.configure",
        references=_reward_references,
        snapshot=lambda r: r.model_dump(include=set(REWARD_FIELDS), mode="json"),
    )
