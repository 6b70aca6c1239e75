"""The Referrals page: the rules in force, pending and paid referrals, the referral KPIs from the snapshot, top referrers."""

from __future__ import annotations

import io
from datetime import date

from sqlmodel import select

from db.models import Member
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.evaluation.jobs import run_job
from loyalty.ledger.imports import import_csv
from loyalty.ledger.referrals import referral_code
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import open_page


def test_without_referrals_the_page_says_how_members_join_referred(app):
    at = open_page(app, "analyst", "pages/referrals.py")
    assert not at.exception
    assert "No referral yet" in at.info[0].value
    assert "pays the referrer 500 points and them 250 points" in at.caption[0].value


def test_referrals_with_the_snapshot_kpis_and_the_top_referrers(app, session):
    ana = make_member(session, external_id="RA", joined_at=utc(2026, 1, 5))
    upload = io.BytesIO(
        (
            "member_id,name,email,joined_at,acquisition_channel,referred_by\n"
            f"RB,Bo,rb@example.com,2026-06-03,web,{referral_code(ana.id)}\n"
            f"RC,Cy,rc@example.com,2026-06-04,web,{referral_code(ana.id)}\n"
        ).encode()
    )
    upload.name = "members.csv"
    import_csv(session, "members", upload, actor=SYSTEM_CLI)
    make_purchase(session, session.exec(select(Member).where(Member.external_id == "RB")).one(), 30.0, utc(2026, 6, 10))
    run_job("kpi-snapshot", as_of=date(2026, 7, 1), actor=Actor("max", "manager"))
    at = open_page(app, "analyst", "pages/referrals.py")
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert (shown["Waiting for a first purchase"], shown["Paid"], shown["Taken back (refunded)"]) == ("1", "1", "0")
    assert (shown["Referrals"], shown["Referral conversion"], shown["Referral bonus cost"]) == ("2", "50.0%", "EUR 7.50")
    top = at.dataframe[0].value
    assert top[["member", "referred", "paid", "bonus_points"]].values.tolist() == [["RA", 2, 1, 500]]
