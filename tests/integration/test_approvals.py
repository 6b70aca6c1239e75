"""Large point adjustments wait for a second admin."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import AuditLog, LedgerEntry
from loyalty.access.roles import Actor
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, PermissionDenied
from loyalty.ledger.approvals import approve_adjustment, decided_adjustments, pending_adjustments, reject_adjustment, request_adjustment
from loyalty.ledger.entries import balance
from loyalty.settings import update_settings
from tests.factories import make_member

OPS = Actor("olga", "operations")
ADMIN = Actor("ada", "admin")
OTHER_ADMIN = Actor("bob", "admin")


def _entries(session, member_id) -> list[LedgerEntry]:
    return session.exec(select(LedgerEntry).where(LedgerEntry.member_id == member_id)).all()


def test_up_to_the_limit_an_adjustment_is_posted_at_once(session):
    member = make_member(session)
    outcome = request_adjustment(session=session, member_id=member.id, points=10_000, reason="goodwill", actor=OPS)
    assert not outcome.pending and outcome.entry.points == 10_000 and outcome.limit == 10_000
    assert balance(session, member.id) == 10_000
    assert pending_adjustments(session) == []


def test_above_the_limit_it_waits_and_a_second_admin_posts_it_once(session):
    member = make_member(session)
    outcome = request_adjustment(session=session, member_id=member.id, points=10_001, reason="lost card", actor=ADMIN)
    assert outcome.pending and outcome.entry is None
    assert balance(session, member.id) == 0 and _entries(session, member.id) == []
    [waiting] = pending_adjustments(session)
    assert (waiting["member"], waiting["points"], waiting["requested_by"]) == (member.external_id, 10_001, "ada")

    with pytest.raises(PermissionDenied, match="second person"):
        approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=ADMIN)
    with pytest.raises(PermissionDenied, match="Only an admin"):
        approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=OPS)
    entry = approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=OTHER_ADMIN, note="checked")
    assert entry.points == 10_001 and "approved by bob" in entry.reason
    assert balance(session, member.id) == 10_001
    with pytest.raises(AlreadyDone, match="approved by bob"):
        approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=Actor("cy", "admin"))
    assert balance(session, member.id) == 10_001  # never twice
    assert pending_adjustments(session) == []
    assert [(w["status"], w["decided_by"], w["decision_note"]) for w in decided_adjustments(session)] == [("approved", "bob", "checked")]
    actions = session.exec(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions[-2:] == ["points.adjust", "points.adjust_approved"] and "points.adjust_requested" in actions


def test_a_rejected_adjustment_posts_nothing_and_cannot_be_approved_later(session):
    member = make_member(session)
    outcome = request_adjustment(session=session, member_id=member.id, points=-50_000, reason="fraud", actor=OPS)
    reject_adjustment(session=session, adjustment_id=outcome.pending_id, actor=ADMIN, note="no evidence")
    with pytest.raises(AlreadyDone, match="rejected by ada"):
        approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=OTHER_ADMIN)
    assert _entries(session, member.id) == [] and balance(session, member.id) == 0


def test_an_approval_that_would_go_below_zero_is_refused_and_stays_pending(session):
    member = make_member(session)
    outcome = request_adjustment(session=session, member_id=member.id, points=-20_000, reason="clawback", actor=OPS)
    with pytest.raises(InsufficientPoints):
        approve_adjustment(session=session, adjustment_id=outcome.pending_id, actor=ADMIN)
    assert [w["id"] for w in pending_adjustments(session)] == [outcome.pending_id]


def test_the_limit_comes_from_the_settings_and_input_is_checked(session):
    update_settings(session=session, actor=ADMIN, adjustment_approval_limit=500)
    member = make_member(session)
    assert request_adjustment(session=session, member_id=member.id, points=501, reason="x", actor=OPS).pending
    with pytest.raises(InvalidInput, match="reason"):
        request_adjustment(session=session, member_id=member.id, points=50_000, reason=" ", actor=OPS)
    with pytest.raises(InvalidInput, match="0 points"):
        request_adjustment(session=session, member_id=member.id, points=0, reason="x", actor=OPS)
    with pytest.raises(InvalidInput, match="approval limit"):
        update_settings(session=session, actor=ADMIN, adjustment_approval_limit=-1)


def test_the_cli_files_a_large_adjustment_for_approval_and_says_so(session, capsys):
    import json

    from loyalty.cli import main

    member = make_member(session)
    assert main(["adjust", "--member", member.external_id, "--points", "25000", "--reason", "migration", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["balance"] == 0 and out["pending_approval"] == pending_adjustments(session)[0]["id"]
    assert main(["adjust", "--member", member.external_id, "--points", "25", "--reason", "goodwill", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": True, "member": member.external_id, "balance": 25, "pending_approval": None}
