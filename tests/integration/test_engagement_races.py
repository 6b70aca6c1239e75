"""Two transactions adding purchases of one member at once, on PostgreSQL (SQLite writes one at a time).

An import takes no lock of its own; before challenges and referrals are evaluated the members
concerned are locked, so the second transaction sees the first one's purchases, completions and
referral: no reward twice, none missed, no import failing on the completions' unique index.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
from sqlmodel import col, select

from db.engine import get_engine, new_session, write_transaction
from db.models import ChallengeCompletion, LedgerEntry, Purchase, Referral
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.ledger.challenges import define_challenge
from loyalty.ledger.purchases import add_purchases
from loyalty.ledger.referrals import record_referrals
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("maria", "manager")


def one_purchase(member_id: int, external: str, amount: float, at) -> pd.DataFrame:
    row = {"external_id": external, "member_id": member_id, "occurred_at": pd.Timestamp(at), "amount": amount}
    return pd.DataFrame([{**row, "channel": "store", "store": "S1", "category": "grocery"}])


def at_once(url: str, first: pd.DataFrame, second: pd.DataFrame) -> list[str]:
    """``first`` written and held uncommitted while ``second`` is written by another transaction."""
    engine = get_engine(url)
    errors: list[str] = []
    with new_session(engine) as a, new_session(engine) as b:
        with write_transaction(a):
            add_purchases(a, first, actor=SYSTEM_CLI)

            def other() -> None:
                try:
                    with write_transaction(b):
                        add_purchases(b, second, actor=SYSTEM_CLI)
                except Exception as error:  # reported by the test
                    errors.append(f"{type(error).__name__}: {error}")

            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(1.0)  # the other transaction is waiting for the member now
        thread.join(timeout=30)
    return errors


def test_a_referral_is_paid_once_when_two_first_purchases_arrive_at_once(postgres_url, session):
    ana, ben = make_member(session, external_id="ANA"), make_member(session, external_id="BEN")
    with write_transaction(session):
        record_referrals(session, np.array([ben.id]), np.array([ana.id]), at=utc(2026, 1, 1))
    errors = at_once(postgres_url, one_purchase(ben.id, "PA", 30.0, utc(2026, 2, 1)), one_purchase(ben.id, "PB", 40.0, utc(2026, 2, 2)))
    assert errors == []
    session.expire_all()
    bonuses = session.exec(select(LedgerEntry.member_id, LedgerEntry.points).where(col(LedgerEntry.reason).like("referral%"))).all()
    assert sorted(bonuses) == sorted([(ana.id, 500), (ben.id, 250)])
    assert session.exec(select(Referral.status)).one() == "rewarded"


def test_a_challenge_met_by_two_purchases_written_at_once_is_paid_once(postgres_url, session):
    define_challenge(session, name="Three", purchases=3, points=300, starts=utc(2026, 1, 1), actor=MANAGER)
    define_challenge(session, name="Two", purchases=2, points=200, starts=utc(2026, 1, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 10.0, utc(2026, 1, 5))
    errors = at_once(postgres_url, one_purchase(member.id, "QA", 10.0, utc(2026, 2, 1)), one_purchase(member.id, "QB", 10.0, utc(2026, 2, 2)))
    assert errors == [], "neither import fails on the completions' unique index"
    session.expire_all()
    assert len(session.exec(select(Purchase.id).where(Purchase.member_id == member.id)).all()) == 3
    assert sorted(session.exec(select(ChallengeCompletion.points)).all()) == [200, 300], "each challenge paid once, none missed"
