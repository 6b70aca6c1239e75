"""Referrals: members bring members with a code; the newcomer's first real purchase pays both.

Every member has a referral code: eight letters and digits (Crockford's base 32, so O reads
as 0 and I or L as 1) computed from the member's id by an invertible scramble, so codes are
unique, need no column, and do not reveal how many members there are. A member joins
referred (the members import's ``referred_by`` column, so also the API): an unknown code, a
member's own code, or a code of a member with the same e-mail is refused with its line.

The referee's first purchase of at least ``referral_min_purchase`` (Settings) pays the
referrer ``referral_referrer_points`` and the referee ``referral_referee_points``, once
(:func:`pay_referrals`, in the transaction writing the purchase). A full refund of that
purchase within the return window takes both back (:func:`reverse_for_refund`); the referral
is then ``reversed`` and pays no more (a refunded first purchase is the usual referral fraud).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, insert, text, update
from sqlmodel import Session, col, select

from db.bulk import allocate_ids, id_batches, insert_frame
from db.models import LedgerEntry, Member, Referral, table_of, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor
from loyalty.ledger.kinds import BONUS, REVERSE, expiry_dates
from loyalty.ledger.outbox import emit_entries, emit_entry
from loyalty.periods import as_utc
from loyalty.settings import get_settings

__all__ = ["pending_referees", "CODE_PATTERN", "code_problems", "decode", "pay_referrals", "referral_code", "referral_codes", "reverse_for_refund"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BITS = 40
_MASK = (1 << _BITS) - 1
_SCRAMBLE = 0x5DEECE66D  # odd: multiplying by it is a bijection modulo 2**40
_UNSCRAMBLE = pow(_SCRAMBLE, -1, 1 << _BITS)
CODE_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")
_LARGEST_ID = 2**31 - 1  # member ids are 32-bit
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def referral_codes(member_ids: np.ndarray) -> np.ndarray:
    """The codes of these member ids (vectorised)."""
    scrambled = (np.asarray(member_ids, dtype=np.uint64) * np.uint64(_SCRAMBLE)) & np.uint64(_MASK)
    digits = [(scrambled >> np.uint64(5 * (7 - i))) & np.uint64(31) for i in range(8)]
    letters = np.array(list(_ALPHABET))
    out = letters[digits[0].astype(np.int64)].astype(object)
    for d in digits[1:]:
        out = out + letters[d.astype(np.int64)]
    return out


def referral_code(member_id: int) -> str:
    return str(referral_codes(np.array([member_id]))[0])


def normalised(code: str) -> str:
    return (code or "").strip().upper().translate(_READ_AS)


def decode(code: str) -> int | None:
    """The member id a code stands for (whether that member exists is for the caller), or None if it is no code."""
    code = normalised(code)
    if not CODE_PATTERN.match(code):
        return None
    value = 0
    for letter in code:
        value = value * 32 + _ALPHABET.index(letter)
    return (value * _UNSCRAMBLE) & _MASK


def code_problems(session: Session, codes: pd.Series, referee_external: pd.Series, referee_email: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """For each row (code, the referee's member id and e-mail): the referrer's id (0: none) and the reason it is refused ("" if not).

    Refused: not a code; no member with it (or an erased one); the member's own code; a code of
    a member with the same e-mail; a member already referred by someone else; a member already
    in the programme (a member is referred when joining; the same code again is accepted).
    """
    n = len(codes)
    referrer = np.zeros(n, dtype=np.int64)
    reasons = np.full(n, "", dtype=object)
    decoded = [decode(c) for c in codes]
    for i, value in enumerate(decoded):
        if value is None:
            reasons[i] = "is not a referral code (8 letters and digits)"
        elif value > _LARGEST_ID:
            reasons[i] = "is no member's referral code"
        else:
            referrer[i] = value
    wanted = np.unique(referrer[referrer > 0])
    known: dict[int, tuple[str, str, bool]] = {}
    for batch in id_batches(wanted):
        for member_id, external, email, erased in session.exec(
            select(Member.id, Member.external_id, Member.email, Member.erased_at).where(col(Member.id).in_(batch))
        ):
            known[int(member_id or 0)] = (external, (email or "").strip().lower(), erased is not None)
    stored = _stored_referees(session, referee_external)
    for i in range(n):
        if reasons[i]:
            continue
        found = known.get(int(referrer[i]))
        if found is None or found[2]:
            reasons[i] = "is no member's referral code"
        elif found[0] == referee_external.iloc[i]:
            reasons[i] = "is the member's own referral code"
        elif referee_email is not None and found[1] and found[1] == str(referee_email.iloc[i]).strip().lower():
            reasons[i] = f"belongs to member {found[0]}, who has the same e-mail: a member cannot refer themselves"
        elif (before := stored.get(referee_external.iloc[i])) is not None and before != int(referrer[i]):
            reasons[i] = "differs from the referral code this member joined with (a referral is not changed)"
        elif before is None and referee_external.iloc[i] in stored:
            reasons[i] = "is for a member who already joined: a member is referred when joining"
        if reasons[i]:
            referrer[i] = 0
    return referrer, reasons


def _stored_referees(session: Session, external_ids: pd.Series) -> dict[str, int | None]:
    """Of these member ids, those stored, each with the id of the member who referred them (None: not referred)."""
    keys = list(dict.fromkeys(str(v) for v in external_ids))
    found: dict[str, int | None] = {}
    for start in range(0, len(keys), 10_000):
        rows = session.exec(
            select(Member.external_id, Referral.referrer_id)
            .join(Referral, col(Referral.referee_id) == Member.id, isouter=True)
            .where(col(Member.external_id).in_(keys[start : start + 10_000]))
        ).all()
        found.update({external: None if referrer is None else int(referrer) for external, referrer in rows})
    return found


def record_referrals(session: Session, referee_ids: np.ndarray, referrer_ids: np.ndarray, *, at: datetime | Sequence[datetime] | None = None) -> int:
    """Store new referrals (referees not referred yet), made ``at`` (one moment, or one per row; default now).
    Returns how many were added. In the caller's transaction."""
    if not len(referee_ids):
        return 0
    moments = [at or utcnow()] * len(referee_ids) if at is None or isinstance(at, datetime) else list(at)
    taken: set[int] = set()
    for batch in id_batches(np.unique(referee_ids)):
        taken.update(int(r) for r in session.exec(select(Referral.referee_id).where(col(Referral.referee_id).in_(batch))))
    codes = referral_codes(referrer_ids)
    rows = [
        {"referrer_id": int(referrer), "referee_id": int(referee), "code": str(code), "referred_at": moment, "status": "pending"}
        for referee, referrer, code, moment in zip(referee_ids, referrer_ids, codes, moments)
        if int(referee) not in taken and int(referee) != int(referrer)
    ]
    rows = list({r["referee_id"]: r for r in rows}.values())
    if rows:
        session.execute(insert(table_of(Referral)), [{**r, "referrer_points": 0, "referee_points": 0} for r in rows])
    return len(rows)


_PENDING = text("SELECT id, referrer_id, referee_id, referred_at FROM referral WHERE status = 'pending' AND referee_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


def _pending(session: Session, member_ids: Sequence[int] | np.ndarray) -> list[tuple[int, int, int, datetime]]:
    """``(referral, referrer, referee, referred_at)`` of these members' referrals waiting for a first
    qualifying purchase. One plain statement a batch: every batch of purchases the API writes asks."""
    found = []
    for batch in id_batches(np.unique(np.asarray(member_ids, dtype=np.int64))):
        rows = session.execute(_PENDING, {"ids": batch}).all()
        found += [(int(i), int(referrer), int(referee), as_utc(at)) for i, referrer, referee, at in rows]
    return found


def pending_referees(session: Session, member_ids: Sequence[int] | np.ndarray) -> list[int]:
    """Those of these members whose referral waits for its first qualifying purchase."""
    return [referee for _, _, referee, _ in _pending(session, member_ids)]


def pay_referrals(session: Session, purchases: pd.DataFrame, *, actor: str) -> int:
    """Pay the referrals whose referee's first qualifying purchase is now written; returns how many were paid.

    The first qualifying purchase is the referee's earliest purchase, made since the referral, of
    at least the minimum amount and not refunded in full. Each referral is claimed by a
    conditional update (pending to rewarded) before its bonuses are written: of two transactions
    paying the same referral, the second finds it rewarded and writes nothing.
    """
    if purchases.empty:
        return 0
    pending = _pending(session, purchases["member_id"].to_numpy(dtype=np.int64))
    if not pending:
        return 0
    settings = get_settings(session)
    referees = np.array([p[2] for p in pending], dtype=np.int64)
    statement = text(
        "SELECT id, member_id, occurred_at FROM purchase WHERE member_id IN :ids AND amount >= :least AND refunded_at IS NULL"
    ).bindparams(bindparam("ids", expanding=True))
    found = pd.DataFrame(
        [r for batch in id_batches(referees) for r in session.execute(statement, {"ids": batch, "least": settings.referral_min_purchase}).all()],
        columns=["id", "member_id", "occurred_at"],
    )
    if found.empty:
        return 0
    found["occurred_at"] = pd.to_datetime(found["occurred_at"], utc=True)
    since = pd.Series(
        {referee: pd.Timestamp(at).tz_convert("UTC") if pd.Timestamp(at).tzinfo else pd.Timestamp(at, tz="UTC") for _, _, referee, at in pending}
    )
    found = found[found["occurred_at"].to_numpy() >= found["member_id"].map(since).to_numpy()]  # a purchase before the referral does not count
    first = found.sort_values(["member_id", "occurred_at", "id"]).groupby("member_id").first()
    table = table_of(Referral)
    entries: list[dict[str, Any]] = []
    paid = 0
    for referral_id, referrer, referee, _ in pending:
        if referee not in first.index:
            continue
        purchase_id, at = int(first.at[referee, "id"]), first.at[referee, "occurred_at"].to_pydatetime()
        claimed = session.execute(
            update(table)
            .where(table.c.id == referral_id, table.c.status == "pending")
            .values(
                status="rewarded",
                purchase_id=purchase_id,
                rewarded_at=at,
                referrer_points=settings.referral_referrer_points,
                referee_points=settings.referral_referee_points,
            )
        ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult
        if not claimed:
            continue  # another transaction paid it meanwhile
        paid += 1
        for member, points, reason in (
            (referrer, settings.referral_referrer_points, "referral bonus: a member you referred made a first purchase"),
            (referee, settings.referral_referee_points, "referral bonus: welcome"),
        ):
            if points > 0:
                entries.append({"member_id": member, "kind": BONUS, "points": points, "occurred_at": at, "reason": reason})
    if entries:
        frame = pd.DataFrame(entries)
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
        frame["expires_at"] = expiry_dates(frame["occurred_at"], settings.expiry_months)
        frame["id"] = allocate_ids(session, "ledger_entry", len(frame))
        frame["actor"], frame["created_at"] = actor, pd.Timestamp(utcnow())
        insert_frame(session, "ledger_entry", frame)
        emit_entries(session, frame)
    return paid


def reverse_for_refund(session: Session, *, purchase_id: int, refunded_at: datetime, actor: Actor) -> int:
    """A purchase was refunded in full within the return window: take back the referral bonuses it
    paid, for good. Runs in the refund's transaction. Returns the points taken back."""
    taken = 0
    for referral in session.exec(select(Referral).where(Referral.purchase_id == purchase_id, Referral.status == "rewarded")).all():
        for member, points, reason in (
            (referral.referrer_id, referral.referrer_points, "referral bonus taken back: the referred member's first purchase was refunded"),
            (referral.referee_id, referral.referee_points, "referral bonus taken back: first purchase refunded"),
        ):
            if points:
                entry = LedgerEntry(member_id=member, kind=REVERSE, points=-points, occurred_at=refunded_at, reason=reason, actor=actor.username)
                session.add(entry)
                emit_entry(session, entry)
                taken += points
        referral.status, referral.reversed_at = "reversed", refunded_at
        session.add(referral)
        record_audit(
            session,
            actor=actor,
            action="referral.reverse",
            entity="referral",
            entity_id=referral.id,
            after={"points": referral.referrer_points + referral.referee_points},
        )
    if taken:
        session.flush()
    return taken


def member_referral(session: Session, member_id: int) -> dict[str, Any]:
    """``{"referral_code", "referred_by", "referrals"}``: the member's code, who referred them (their member id), how many they referred."""
    referred_by = session.exec(
        select(Member.external_id).join(Referral, col(Referral.referrer_id) == Member.id).where(Referral.referee_id == member_id)
    ).first()
    count = session.execute(text("SELECT COUNT(*) FROM referral WHERE referrer_id = :m"), {"m": member_id}).scalar_one()
    return {"referral_code": referral_code(member_id), "referred_by": referred_by, "referrals": int(count)}
