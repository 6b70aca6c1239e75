"""Member privacy: masking, consent-aware exports, and erasure that keeps the numbers."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import AuditLog, Feedback, Member
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import AlreadyDone
from loyalty.insights.overview import program_summary
from loyalty.ledger.entries import balance
from loyalty.ledger.erasure import erase_member
from loyalty.ledger.members import export_members, member_profile, search_members
from tests.factories import make_member, make_purchase, utc

ANALYST, MANAGER = Actor("ann", "analyst"), Actor("max", "manager")


@pytest.fixture
def members(session):
    ana = make_member(
        session, external_id="M1", name="Ana Lima", email="ana@example.com", phone="+351 900 000 001", city="Porto", marketing_consent=True
    )
    ben = make_member(session, external_id="M2", name="Ben Okoro", email="ben@example.com", marketing_consent=False)
    make_purchase(session, ana, 100.0, occurred_at=utc(2026, 10, 1))
    make_purchase(session, ben, 60.0, occurred_at=utc(2026, 10, 2))
    session.add(Feedback(member_id=ana.id, submitted_at=utc(2026, 10, 3), score=9, comment="Ana here, call me on 900 000 001"))
    session.commit()
    return ana, ben


def test_an_analyst_sees_purchases_but_not_contact_details(session, members):
    profile = member_profile(session, "M1", actor=ANALYST)
    assert profile.member["email"] == "a***@example.com"
    assert profile.member["phone"] == "+***"
    assert profile.member["name"] == "A***"
    assert profile.total_spend == 100.0
    assert set(search_members(session, "", actor=ANALYST)["email"]) == {"a***@example.com", "b***@example.com"}


def test_a_marketing_export_leaves_out_members_without_consent(session, members):
    marketing = export_members(session, actor=MANAGER, purpose="marketing")
    assert list(marketing["member_id"]) == ["M1"]
    analysis = export_members(session, actor=MANAGER, purpose="analysis")
    assert list(analysis["member_id"]) == ["M1", "M2"]
    assert session.exec(select(AuditLog).where(AuditLog.action == "members.export")).all()


def test_erasing_a_member_blanks_personal_data_but_keeps_every_total(session, members):
    ana, _ = members
    before = program_summary(session, now=utc(2026, 11, 1))
    points_before = balance(session, ana.id)

    erase_member(session=session, external_id="M1", actor=SYSTEM_CLI)

    session.expire_all()
    erased = session.exec(select(Member).where(Member.external_id == "M1")).one()
    assert (erased.name, erased.email, erased.phone, erased.city) == ("", "", "", "")
    assert erased.erased_at is not None and not erased.marketing_consent
    assert session.exec(select(Feedback.comment)).all() == [""]
    assert session.exec(select(Feedback.score)).all() == [9]
    after = program_summary(session, now=utc(2026, 11, 1))
    assert balance(session, ana.id) == points_before
    assert (after.members, after.active_members, after.points_outstanding) == (before.members, before.active_members, before.points_outstanding)
    assert after.monthly.equals(before.monthly)
    assert list(export_members(session, actor=MANAGER, purpose="marketing")["member_id"]) == []


def test_erasing_twice_is_refused(session, members):
    erase_member(session=session, external_id="M2", actor=SYSTEM_CLI)
    with pytest.raises(AlreadyDone):
        erase_member(session=session, external_id="M2", actor=SYSTEM_CLI)


def test_the_cli_erases_a_member(session, members, capsys):
    from loyalty.cli import main

    assert main(["members", "erase", "M2", "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out
    session.expire_all()
    assert session.exec(select(Member.email).where(Member.external_id == "M2")).one() == ""


def test_an_analyst_cannot_find_a_member_by_a_masked_name_or_email(session, members):
    assert search_members(session, "ana@example.com", actor=ANALYST).empty
    assert list(search_members(session, "M1", actor=ANALYST)["member"]) == ["M1"]
    assert list(search_members(session, "ana@example.com", actor=MANAGER)["member"]) == ["M1"]
    assert list(export_members(session, actor=ANALYST, purpose="analysis")["city"])[0] == "P***"


def test_erasing_a_member_removes_their_data_from_ledger_reasons_audit_values_comments_and_rejected_files(session, members, tmp_path):
    from pathlib import Path

    from db.models import LedgerEntry
    from loyalty.access.audit import record_audit
    from loyalty.ledger.entries import adjust_points
    from loyalty.ledger.erasure import pseudonym
    from loyalty.ledger.imports import ImportRefused, import_csv  # noqa: F401

    ana, _ = members
    adjust_points(session=session, member_id=ana.id, points=10, reason="Goodwill for Ana Lima (ana@example.com)", actor=SYSTEM_CLI)
    record_audit(
        session,
        actor=SYSTEM_CLI,
        action="member.update",
        entity="member",
        entity_id="M1",
        before={"email": "ana@example.com"},
        after={"email": "ana.lima@example.com"},
    )
    session.commit()
    feed = tmp_path / "members.csv"
    feed.write_text(
        "member_id,name,email,joined_at,acquisition_channel\nM1,Ana Lima,ana@example.com,2099-01-01,web\nM3,Cy,cy@example.com,2025-01-01,web\n"
    )
    result = import_csv(session, "members", feed, actor=SYSTEM_CLI, skip_invalid=True)
    rejected = Path(result.rejected_path)
    assert "Ana Lima" in rejected.read_text()

    changed = erase_member(session=session, external_id="M1", actor=SYSTEM_CLI)

    alias = pseudonym("M1")
    session.expire_all()
    reasons = session.exec(select(LedgerEntry.reason).where(LedgerEntry.member_id == ana.id, LedgerEntry.kind == "adjust")).all()
    assert reasons == [f"Goodwill for {alias} ({alias})"]
    audit = session.exec(select(AuditLog).where(AuditLog.action == "member.update")).one()
    assert (audit.before, audit.after) == ({"email": alias}, {"email": "ana.lima@example.com"})  # a value that is not theirs stays
    assert session.exec(select(Feedback.comment)).all() == [""]
    text = rejected.read_text()
    assert "Ana Lima" not in text and "ana@example.com" not in text and "M1" in text  # the row stays, its line and reason too
    everything = " ".join(str(row) for row in session.exec(select(AuditLog.before, AuditLog.after)).all())
    assert "Ana Lima" not in everything and "ana@example.com" not in everything
    assert changed == {
        "feedback_comments": 1,
        "ledger_reasons": 1,
        "pending_reasons": 0,
        "audit_entries": 2,
        "messages": 0,
        "rejected_files": 1,
    }  # the update and the adjustment's own entry


def test_an_analyst_sees_comments_with_contacts_masked_and_an_executive_none(session, members):
    from loyalty.insights.analysis import Filters, feedback_view

    filters = Filters(start=utc(2026, 1, 1).date(), end=utc(2026, 12, 1).date())
    manager = feedback_view(session, filters, actor=MANAGER)["comments"]["comment"].tolist()
    analyst = feedback_view(session, filters, actor=ANALYST)["comments"]["comment"].tolist()
    executive = feedback_view(session, filters, actor=Actor("eve", "executive"))["comments"]
    assert manager == ["Ana here, call me on 900 000 001"]
    assert analyst == ["Ana here, call me on [phone]"]
    assert executive.empty
    assert member_profile(session, "M1", actor=ANALYST).feedback["comment"].tolist() == ["Ana here, call me on [phone]"]
