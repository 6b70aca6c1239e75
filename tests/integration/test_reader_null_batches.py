"""Nullable columns read through SQLite's reader process (review of issue 20's fourth pass).

The reader's driver (ADBC) takes a column's type from the first 65,536 rows of an answer: a
column NULL in all of them was taken for integers, and the first text after them failed the
query ("Type mismatch ... expected INT64 but got STRING"). The nightly tier evaluation and the
expiring-points scan read nullable timestamps that way; here each starts with more than a
batch of NULLs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
from sqlmodel import Session

from db.bulk import insert_frame
from db.engine import write_transaction
from tests.factories import make_member, make_purchase, make_tier, utc

MORE_THAN_A_BATCH = 70_000  # the reader's batches hold 65,536 rows
ON = pd.Timestamp("2024-01-01", tz="UTC")


@pytest.fixture(autouse=True)
def _sqlite_reader_only(session: Session) -> None:
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("the reader process serves SQLite")
    pytest.importorskip("adbc_driver_sqlite", reason="pip install adbc-driver-sqlite (requirements.txt)")


def test_tier_evaluation_reads_members_after_a_batch_without_a_tier(session: Session) -> None:
    from loyalty.evaluation.tiers import _read_members

    untiered = pd.DataFrame(
        {
            "external_id": [f"N{i:06d}" for i in range(MORE_THAN_A_BATCH)],
            "name": "",
            "email": "",
            "phone": "",
            "joined_at": ON,
            "acquisition_channel": "store",
            "city": "",
            "marketing_consent": False,
            "created_at": ON,
        }
    )
    with write_transaction(session):
        insert_frame(session, "member", untiered)
    since = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    gold = make_member(session, tier_id=make_tier(session, name="Gold").id, tier_since=since)
    members = _read_members(session, date(2026, 3, 1))
    assert members.current_since.loc[gold.id] == pd.Timestamp(since), "to the microsecond"
    assert int(members.current_since.isna().sum()) == MORE_THAN_A_BATCH
    assert members.frame.loc[gold.id, "joined_at"] == pd.Timestamp(utc(2024, 1, 1))


def test_expiring_points_are_read_after_a_batch_of_entries_without_an_expiry(session: Session) -> None:
    from loyalty.ledger.outbox import expiring_points

    spender, keeper = make_member(session, external_id="SPENDER"), make_member(session, external_id="KEEPER")
    debts = pd.DataFrame(
        {
            "member_id": spender.id,
            "kind": "expire",
            "points": -1,
            "occurred_at": ON,
            "expires_at": pd.Series([None] * MORE_THAN_A_BATCH, dtype="datetime64[us, UTC]"),
            "reason": "test",
            "actor": "test",
            "created_at": ON,
        }
    )
    with write_transaction(session):
        insert_frame(session, "ledger_entry", debts)  # first in the table: the scan's first batch is all NULL
    make_purchase(session, spender, 200_000.0, utc(2025, 3, 10))
    make_purchase(session, keeper, 40.0, utc(2025, 3, 12))
    now = utc(2026, 3, 1, 8)
    per_member = expiring_points(session, after=now)
    assert expiring_points(session, after=now, read_last_commit=True).to_dict("records") == per_member.to_dict("records")
    points = dict(zip(per_member["member_id"], per_member["points"]))
    assert points[keeper.id] == 40 and 0 < points[spender.id] < 200_000, "the spender's debts were taken from the lot"
