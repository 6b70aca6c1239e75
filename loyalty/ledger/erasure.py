"""Erasing a member (right to erasure): their name, e-mail, phone and birth date leave every place the product keeps them.

* the member row (blanked; the company's member id stays, so a later import knows the
  member is erased and does not bring the data back);
* free text about them: their feedback comments (blanked), the reasons of their ledger
  movements and pending adjustments (each personal value replaced by a pseudonym);
* the audit trail: every before/after value holding one of their personal values gets the
  pseudonym instead (who did what, when, stays);
* files the product wrote: the rejected rows set aside beside an import (their rows'
  personal columns blanked);
* messages to them: the name they carry removed, those not sent yet suppressed.

Purchases, points and NPS scores stay, no longer linked to a person, so KPIs do not change.
The pseudonym (``erased-member-<8 hex>``) is the same everywhere for one member, so an
auditor can still tell that two entries were about the same person.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, or_, update
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import AuditLog, Feedback, LedgerEntry, Member, PendingAdjustment, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import AlreadyDone
from loyalty.ledger.members import find_member

__all__ = ["erase_member", "pseudonym"]

# Columns of a rejected-rows file that hold personal data.
PERSONAL_COLUMNS = ("name", "email", "phone", "city", "birth_date", "comment")


def pseudonym(external_id: str) -> str:
    return "erased-member-" + hashlib.sha256(external_id.encode()).hexdigest()[:8]


def erase_member(*, session: Session, external_id: str, actor: Actor) -> dict[str, int]:
    """Anonymise a member everywhere (see the module notes); returns how many places were changed, by kind."""
    require(actor, "members.erase")
    with write_transaction(session):
        member = find_member(session, external_id)
        if member.erased_at is not None:
            raise AlreadyDone(f"Member {external_id} was already erased on {member.erased_at:%Y-%m-%d}.")
        values = _personal_values(member)
        alias = pseudonym(external_id)
        member.name, member.email, member.phone, member.city = "", "", "", ""
        member.birth_date, member.marketing_consent, member.erased_at = None, False, utcnow()
        session.add(member)
        changed = {
            "feedback_comments": session.execute(
                update(Feedback).where(col(Feedback.member_id) == member.id, col(Feedback.comment) != "").values(comment="")
            ).rowcount,  # type: ignore[attr-defined]
            "ledger_reasons": _scrub_reasons(session, LedgerEntry, member, values, alias),
            "pending_reasons": _scrub_reasons(session, PendingAdjustment, member, values, alias),
            "audit_entries": _pseudonymise_audit(session, values, alias),
            # Messages not sent yet are never sent now; each keeps no name.
            "messages": _scrub_messages(session, member),
        }
        files = _rejected_files(session)
        record_audit(session, actor=actor, action="member.erase", entity="member", entity_id=external_id, after={"erased": True, "pseudonym": alias})
    # After the commit: a file is rewritten only once the database no longer holds the data.
    changed["rejected_files"] = sum(_scrub_file(path, external_id, values) for path in files)
    return changed


def _scrub_messages(session: Session, member: Member) -> int:
    from db.models import MemberMessage

    changed = 0
    for message in session.exec(select(MemberMessage).where(MemberMessage.member_id == member.id)):
        message.data = {k: v for k, v in (message.data or {}).items() if k != "name"}
        if message.status in ("queued", "failed"):
            message.status, message.reason = "suppressed", "member erased"
        session.add(message)
        changed += 1
    return changed


def _personal_values(member: Member) -> list[str]:
    """The member's personal values as they may appear in text (short ones would match too much)."""
    values = [member.name, member.email, member.phone, member.birth_date.isoformat() if isinstance(member.birth_date, date) else ""]
    return sorted({v.strip() for v in values if v and len(v.strip()) >= 4}, key=len, reverse=True)


def _replace(text: str, values: list[str], alias: str) -> str:
    for value in values:
        text = re.sub(re.escape(value), alias, text, flags=re.IGNORECASE)
    return text


def _scrub_reasons(session: Session, model: type[LedgerEntry] | type[PendingAdjustment], member: Member, values: list[str], alias: str) -> int:
    if not values:
        return 0
    changed = 0
    query: Any = select(model).where(col(model.member_id) == member.id, col(model.reason) != "")  # either model: both have member_id and reason
    for row in session.exec(query):
        scrubbed = _replace(row.reason, values, alias)
        if scrubbed != row.reason:
            row.reason = scrubbed
            session.add(row)
            changed += 1
    return changed


def _pseudonymise_audit(session: Session, values: list[str], alias: str) -> int:
    """Replace the member's personal values in audit before/after values (also as JSON escapes them)."""
    if not values:
        return 0
    forms = {form for v in values for form in (v, json.dumps(v)[1:-1])}
    text_of = [cast(AuditLog.before, Text), cast(AuditLog.after, Text)]
    matches = or_(*(column.contains(form, autoescape=True) for column in text_of for form in forms))
    changed = 0
    for row in session.exec(select(AuditLog).where(matches)):
        before, after = _replace_in(row.before, values, alias), _replace_in(row.after, values, alias)
        if (before, after) != (row.before, row.after):
            row.before, row.after = before, after
            session.add(row)
            changed += 1
    return changed


def _replace_in(value: Any, values: list[str], alias: str) -> Any:
    if isinstance(value, str):
        return _replace(value, values, alias)
    if isinstance(value, dict):
        return {k: _replace_in(v, values, alias) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_in(v, values, alias) for v in value]
    return value


def _rejected_files(session: Session) -> list[Path]:
    """The rejected-rows files imports wrote (named in their audit entries) that still exist."""
    rows = session.exec(select(AuditLog.after).where(AuditLog.action == "data.import")).all()
    paths = {Path(after["rejected_file"]) for after in rows if isinstance(after, dict) and after.get("rejected_file")}
    return sorted(path for path in paths if path.is_file())


def _scrub_file(path: Path, external_id: str, values: list[str]) -> int:
    """Blank the personal columns of the member's rows in a rejected-rows file; 1 if it changed."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    if not rows:
        return 0
    header = rows[0]
    personal = [i for i, name in enumerate(header) if name.strip() in PERSONAL_COLUMNS]
    member_column = header.index("member_id") if "member_id" in header else None
    changed = False
    for row in rows[1:]:
        mine = member_column is not None and member_column < len(row) and row[member_column].strip() == external_id
        for i, cell in enumerate(row):
            blank = mine and i in personal and cell
            scrubbed = "" if blank else (_replace(cell, values, "[erased]") if values else cell)
            if scrubbed != cell:
                row[i], changed = scrubbed, True
    if not changed:
        return 0
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(partial, path)
    return 1
