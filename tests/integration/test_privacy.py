"""Member privacy: masking, consent-aware exports, and erasure that keeps the numbers."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import AuditLog, Feedback, Member
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import AlreadyDone
from loyalty.insights.overview import program_summary
from loyalty.ledger.entries import balance
from loyalty.ledger.members import erase_member, export_members, member_profile, search_members
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
