"""Property-based tests of the import (Hypothesis): whatever a file holds, the import either
takes it whole or refuses it with problems that name a line, and never raises anything else.
What it takes stays within the bounds of loyalty.bounds."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import Session, select

from db.models import LedgerEntry, Purchase
from loyalty.access.roles import SYSTEM_CLI
from loyalty.errors import InvalidInput
from loyalty.ledger.imports import ImportRefused, import_csv

HEADER = "purchase_id,member_id,occurred_at,amount,channel,store,category"

amounts = st.one_of(
    st.decimals(min_value=-10, max_value=2_000_000, places=3, allow_nan=False).map(str),
    st.sampled_from(["0", "1e300", "inf", "nan", "", "12,50", "1e-3", "900000000000000000", "0x10", " 7 ", "-0"]),
)
moments = st.one_of(
    st.dates().map(str),
    st.sampled_from(["2026-01-05T10:00:00Z", "0000-01-01", "2026-02-30", "yesterday", "", "2026-11-16T23:59:59+14:00", "9999-12-31T23:59:59Z"]),
)
text = st.text(alphabet=st.sampled_from(list('ab=+-@\t\r\n",; \x00é')), max_size=8)
row = st.tuples(
    st.text(alphabet="P0123456789", min_size=1, max_size=4), st.sampled_from(["M1", "M2", "M404", ""]), moments, amounts, text, text, text
)


def csv_line(values: tuple[str, ...], extra: int) -> str:
    quoted = ['"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n\r') else v for v in values]
    return ",".join(quoted + ["x"] * extra if extra >= 0 else quoted[:extra])


@pytest.fixture
def members(session: Session) -> Session:
    data = b"member_id,name,email,joined_at,acquisition_channel\nM1,Ann,a@x.com,2025-01-01,web\nM2,Bob,b@x.com,2025-01-01,store\n"
    import_csv(session, "members", io.BytesIO(data), actor=SYSTEM_CLI)
    return session


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(row, st.sampled_from([0, 0, 0, 1, -1])), min_size=1, max_size=6))
def test_a_purchases_file_is_imported_whole_or_refused_naming_lines_never_otherwise(members: Session, rows):
    lines = [HEADER] + [csv_line(values, extra) for values, extra in rows]
    data = ("\n".join(lines) + "\n").encode()
    members.rollback()
    before = (
        members.exec(select(func.count()).select_from(Purchase)).one(),
        members.exec(select(func.coalesce(func.sum(LedgerEntry.points), 0))).one(),
    )
    try:
        import_csv(members, "purchases", io.BytesIO(data), actor=SYSTEM_CLI)
    except ImportRefused as refused:
        assert refused.problems and all(p.line >= 1 and p.reason for p in refused.problems)
        members.rollback()
        after = (
            members.exec(select(func.count()).select_from(Purchase)).one(),
            members.exec(select(func.coalesce(func.sum(LedgerEntry.points), 0))).one(),
        )
        assert after == before
        return
    except InvalidInput as refused:  # a domain refusal in words is fine too
        assert str(refused)
        return
    members.rollback()
    worst = members.exec(select(func.max(Purchase.amount), func.min(Purchase.amount))).one()
    assert worst == (None, None) or (worst[1] > 0 and worst[0] <= 1_000_000)
