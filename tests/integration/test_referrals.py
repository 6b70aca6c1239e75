"""Referrals: a code per member, accepted by the members import and the API; the first real purchase pays both once."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import col, select

from db.models import LedgerEntry, Member, Referral
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.ledger.entries import return_purchase
from loyalty.ledger.imports import ImportRefused, import_csv
from loyalty.ledger.referrals import decode, member_referral, referral_code, referral_codes
from tests.factories import make_member, make_purchase, utc

OPERATIONS = Actor("olaf", "operations")
HEADER = "member_id,name,email,joined_at,acquisition_channel,referred_by"


def import_members(session, *lines: str):
    upload = io.BytesIO(("\n".join([HEADER, *lines]) + "\n").encode())
    upload.name = "members.csv"
    return import_csv(session, "members", upload, actor=SYSTEM_CLI)


def bonuses(session, member_id: int) -> list[int]:
    session.expire_all()
    return [
        e.points
        for e in session.exec(
            select(LedgerEntry).where(LedgerEntry.member_id == member_id, col(LedgerEntry.reason).like("referral%")).order_by(col(LedgerEntry.id))
        )
    ]


def test_codes_are_unique_read_back_and_forgiving_of_look_alike_letters():
    ids = np.arange(1, 200_001)
    codes = referral_codes(ids)
    assert len(set(codes)) == len(ids) and all(len(c) == 8 for c in codes[:100])
    assert [decode(c) for c in codes[:1000]] == ids[:1000].tolist()
    code = referral_code(42)
    assert decode(code.lower()) == 42 and decode(code.replace("0", "O").replace("1", "I")) == 42
    assert decode("ABC") is None and decode("ABCDEFGU") is None  # too short; U is not a letter of the alphabet


def test_the_members_import_records_a_referral_and_the_first_purchase_above_the_minimum_pays_both_once(session):
    ana = make_member(session, external_id="ANA", email="ana@example.com")
    import_members(session, f"BEN,Ben,ben@example.com,2026-01-10,web,{referral_code(ana.id)}")
    ben = session.exec(select(Member).where(Member.external_id == "BEN")).one()
    referral = session.exec(select(Referral)).one()
    assert (referral.referrer_id, referral.referee_id, referral.status) == (ana.id, ben.id, "pending")
    make_purchase(session, ben, 12.0, utc(2026, 2, 1))  # below the 20.00 minimum
    assert bonuses(session, ana.id) == [] and bonuses(session, ben.id) == []
    first = make_purchase(session, ben, 35.0, utc(2026, 2, 3))
    make_purchase(session, ben, 50.0, utc(2026, 2, 5))
    assert bonuses(session, ana.id) == [500] and bonuses(session, ben.id) == [250]
    session.refresh(referral)
    assert (referral.status, referral.purchase_id, referral.rewarded_at) == ("rewarded", first, utc(2026, 2, 3))
    assert member_referral(session, ben.id) == {"referral_code": referral_code(ben.id), "referred_by": "ANA", "referrals": 0}
    assert member_referral(session, ana.id)["referrals"] == 1


def test_a_full_refund_of_the_first_purchase_within_the_window_takes_both_back_for_good(session):
    ana = make_member(session, external_id="ANA2")
    import_members(session, f"BEA,Bea,bea@example.com,2026-01-10,web,{referral_code(ana.id)}")
    bea = session.exec(select(Member).where(Member.external_id == "BEA")).one()
    first = make_purchase(session, bea, 40.0, utc(2026, 3, 1))
    return_purchase(session=session, purchase_id=first, actor=OPERATIONS, now=utc(2026, 3, 1) + timedelta(days=10))
    assert bonuses(session, ana.id) == [500, -500] and bonuses(session, bea.id) == [250, -250]
    assert session.exec(select(Referral.status)).one() == "reversed"
    make_purchase(session, bea, 40.0, utc(2026, 3, 20))
    assert bonuses(session, ana.id) == [500, -500], "a reversed referral pays no more"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("CAL,Cal,cal@example.com,2026-01-10,web,ZZZZ", "is not a referral code"),
        ("CAL,Cal,cal@example.com,2026-01-10,web,{unknown}", "is no member's referral code"),
        ("CAL,Cal,ana3@example.com,2026-01-10,web,{ana}", "has the same e-mail: a member cannot refer themselves"),
        ("ANA3,Ana,ana3@example.com,2026-01-10,web,{ana}", "is the member's own referral code"),
    ],
)
def test_a_bad_referral_code_refuses_the_file_naming_line_and_column(session, line, reason):
    ana = make_member(session, external_id="ANA3", email="ana3@example.com")
    unknown = referral_code(ana.id + 1000)
    with pytest.raises(ImportRefused) as refused:
        import_members(session, "DAN,Dan,dan@example.com,2026-01-10,web,", line.format(ana=referral_code(ana.id), unknown=unknown))
    problem = refused.value.problems[0]
    assert (problem.line, problem.column) == (3, "referred_by") and reason in problem.reason
    assert session.exec(select(Member.external_id).where(Member.external_id.in_(["DAN", "CAL"]))).all() == []
    assert session.exec(select(Referral)).all() == []


def test_a_member_keeps_the_referral_they_joined_with(session):
    ana, eva = make_member(session, external_id="ANA4"), make_member(session, external_id="EVA4")
    import_members(session, f"FAY,Fay,fay@example.com,2026-01-10,web,{referral_code(ana.id)}")
    import_members(session, f"FAY,Fay,fay@example.com,2026-01-10,web,{referral_code(ana.id)}")  # the same file again: nothing new
    with pytest.raises(ImportRefused) as refused:
        import_members(session, f"FAY,Fay,fay@example.com,2026-01-10,web,{referral_code(eva.id)}")
    assert "differs from the referral code this member joined with" in refused.value.problems[0].reason
    assert [r.referrer_id for r in session.exec(select(Referral))] == [ana.id]


def test_the_api_takes_a_referral_code_and_refuses_a_bad_one_naming_the_field(db_url, session):
    from fastapi.testclient import TestClient

    from db.engine import get_engine
    from loyalty.integrations.api import ApiLimits, create_app
    from loyalty.integrations.apikeys import create_key

    key = create_key(session, name="shop", scopes=["members:read", "members:write"], actor=SYSTEM_CLI)["key"]
    api = TestClient(create_app(get_engine(db_url), limits=ApiLimits(key_cache_seconds=0)))
    headers = {"Authorization": f"Bearer {key}"}
    ana = make_member(session, external_id="ANA5", email="ana5@example.com")
    body = {"member_id": "GIL", "name": "Gil", "email": "gil@example.com", "joined_at": "2026-02-01T10:00:00Z"}
    made = api.post("/v1/members", headers=headers, json={**body, "referred_by": referral_code(ana.id).lower()})
    assert made.status_code == 201, made.text
    assert made.json()["referred_by"] == "ANA5" and made.json()["referral_code"] == referral_code(made_id(session, "GIL"))
    refused = api.post(
        "/v1/members", headers=headers, json={**body, "member_id": "HAL", "email": "ana5@example.com", "referred_by": referral_code(ana.id)}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["problems"] == [
        {
            "field": "referred_by",
            "message": f"'{referral_code(ana.id)}' belongs to member ANA5, who has the same e-mail: a member cannot refer themselves",
        }
    ]


def made_id(session, external: str) -> int:
    session.rollback()
    return int(session.exec(select(Member.id).where(Member.external_id == external)).one())


def test_referral_kpis_counted_by_hand(session):
    from datetime import date

    from loyalty.analytics.metrics import compute_kpis

    ana = make_member(session, external_id="KA", joined_at=utc(2026, 1, 5))
    dan = make_member(session, external_id="KD", joined_at=utc(2026, 1, 6))
    import_members(
        session, f"KB,Bo,kb@example.com,2026-06-03,web,{referral_code(ana.id)}", f"KC,Cy,kc@example.com,2026-06-04,web,{referral_code(ana.id)}"
    )
    bo = session.exec(select(Member).where(Member.external_id == "KB")).one()
    assert [r.referred_at for r in session.exec(select(Referral).order_by(Referral.id))] == [utc(2026, 6, 3), utc(2026, 6, 4)], "when they joined"
    make_purchase(session, bo, 30.0, utc(2026, 6, 10))  # pays 500 + 250 points
    make_purchase(session, dan, 100.0, utc(2026, 6, 12))
    make_purchase(session, ana, 45.0, utc(2026, 5, 20))  # active in May only
    names = ["referrals", "referral_conversion", "referral_bonus_cost", "referred_revenue_per_member", "unreferred_revenue_per_member"]
    frame = compute_kpis(session, date(2026, 6, 1), date(2026, 7, 1), metrics=names)
    assert dict(zip(frame["metric"], frame["value"])) == pytest.approx(
        {
            "referrals": 2,
            "referral_conversion": 0.5,
            "referral_bonus_cost": 7.5,
            "referred_revenue_per_member": 30.0,
            "unreferred_revenue_per_member": 100.0,
        }
    )


def test_a_member_already_in_the_programme_cannot_be_referred(session):
    ana = make_member(session, external_id="ANA6", email="ana6@example.com")
    old = make_member(session, external_id="OLD6", email="old6@example.com")
    make_purchase(session, old, 90.0, utc(2023, 2, 1))
    with pytest.raises(ImportRefused) as refused:
        import_members(session, f"OLD6,Old,old6@example.com,2023-01-10,web,{referral_code(ana.id)}")
    assert "is for a member who already joined: a member is referred when joining" in refused.value.problems[0].reason
    assert session.exec(select(Referral)).all() == []


def test_only_purchases_since_the_referral_count_as_the_first(session):
    ana, ben = make_member(session, external_id="ANA7"), make_member(session, external_id="BEN7")
    make_purchase(session, ben, 90.0, utc(2026, 1, 5))  # before the referral was recorded
    from db.engine import write_transaction
    from loyalty.ledger.referrals import record_referrals

    with write_transaction(session):
        record_referrals(session, np.array([ben.id]), np.array([ana.id]), at=utc(2026, 2, 1))
    make_purchase(session, ben, 5.0, utc(2026, 2, 3))  # below the minimum: still nothing
    assert bonuses(session, ana.id) == []
    second = make_purchase(session, ben, 25.0, utc(2026, 2, 4))
    assert bonuses(session, ana.id) == [500] and session.exec(select(Referral.purchase_id)).one() == second
