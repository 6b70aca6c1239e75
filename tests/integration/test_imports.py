"""CSV imports: members, purchases and NPS answers, all or nothing, and idempotent.

Every file is written inline into ``tmp_path``; expectations are computed by hand.
"""

from __future__ import annotations

import io
import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.models import AuditLog, Feedback, LedgerEntry, Member, Purchase
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import PermissionDenied
from loyalty.ledger import imports
from loyalty.ledger.entries import balance
from loyalty.ledger.erasure import erase_member
from loyalty.ledger.imports import MAX_PROBLEMS_SHOWN, ImportRefused, import_csv, preview_csv
from loyalty.settings import update_settings
from tests.factories import make_member, make_purchase, utc

MEMBERS_CSV = """member_id,name,email,joined_at,acquisition_channel,birth_date,city,marketing_consent,phone
C001,Ana Lima,ana@example.com,2024-01-05T10:00:00Z,store,1990-05-01,Porto,yes,+351 900 000 001
C002,Ben Okoro,ben@example.com,2024-02-10 09:30:00,web,,Lisbon,no,
C003,Chen Wei,chen@example.com,2024-03-01T12:00:00+02:00,app,1985-12-31,,1,
"""

PURCHASES_CSV = """purchase_id,member_id,occurred_at,amount,channel,store,category
P1,C001,2024-06-01T10:00:00Z,19.99,store,S1,grocery
P2,C001,2024-06-02T11:00:00Z,10.00,web,,fashion
P3,C002,2024-06-03T12:00:00Z,0.39,app,S2,eco
"""

FEEDBACK_CSV = """member_id,submitted_at,score,comment
C001,2024-07-01T09:00:00Z,9,"Great rewards"
C002,2024-07-02T09:00:00Z,3,
C003,2024-07-03,10,"Fast, friendly"
"""


def write_csv(tmp_path: Path, text: str, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def counts(session: Session) -> dict[str, int]:
    """Rows in every table an import writes to (seen by a fresh read transaction)."""
    session.commit()
    return {
        model.__tablename__: session.execute(select(func.count()).select_from(model)).scalar_one()
        for model in (Member, Purchase, LedgerEntry, Feedback, AuditLog)
    }


def import_file(session: Session, kind: str, path: Path | io.BytesIO, **options):
    return import_csv(session, kind, path, actor=SYSTEM_CLI, **options)


@pytest.fixture
def members(session, tmp_path):
    """The three members of ``MEMBERS_CSV``, imported."""
    import_file(session, "members", write_csv(tmp_path, MEMBERS_CSV, "members.csv"))
    session.expire_all()
    return {m.external_id: m for m in session.exec(select(Member))}


# --- happy paths -------------------------------------------------------------------------


def test_importing_members_stores_them_with_utc_timestamps_and_optional_details(session, tmp_path):
    result = import_file(session, "members", write_csv(tmp_path, MEMBERS_CSV))

    assert (result.imported, result.skipped, result.rejected, result.problems) == (3, 0, 0, [])
    session.expire_all()
    by_id = {m.external_id: m for m in session.exec(select(Member))}
    ana, ben, chen = by_id["C001"], by_id["C002"], by_id["C003"]
    assert (ana.name, ana.email, ana.city, ana.phone, ana.acquisition_channel) == (
        "Ana Lima",
        "ana@example.com",
        "Porto",
        "+351 900 000 001",
        "store",
    )
    assert ana.birth_date == date(1990, 5, 1) and ben.birth_date is None
    assert (ana.marketing_consent, ben.marketing_consent, chen.marketing_consent) == (True, False, True)
    # No offset means UTC; an offset is converted to UTC.
    assert ana.joined_at == utc(2024, 1, 5, 10, 0)
    assert ben.joined_at == utc(2024, 2, 10, 9, 30)
    assert chen.joined_at == utc(2024, 3, 1, 10, 0)


def test_imported_purchases_earn_floor_of_amount_times_the_rate(session, tmp_path, members):
    update_settings(session=session, actor=SYSTEM_CLI, points_per_currency_unit=2.5)

    result = import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV))

    assert (result.imported, result.skipped, result.rejected) == (3, 0, 0)
    session.expire_all()
    purchases = {p.external_id: p for p in session.exec(select(Purchase))}
    assert set(purchases) == {"P1", "P2", "P3"}
    assert purchases["P1"].occurred_at == utc(2024, 6, 1, 10, 0)
    assert (purchases["P2"].amount, purchases["P2"].channel, purchases["P2"].store) == (10.0, "web", "")
    earned = dict(session.execute(select(LedgerEntry.purchase_id, LedgerEntry.points).where(LedgerEntry.kind == "earn")).all())
    assert earned == {
        purchases["P1"].id: math.floor(19.99 * 2.5),  # 49
        purchases["P2"].id: math.floor(10.00 * 2.5),  # 25
        # 0.39 x 2.5 = 0.975 earns nothing, so no ledger entry.
    }
    assert balance(session, members["C001"].id) == 74
    assert balance(session, members["C002"].id) == 0


def test_importing_feedback_stores_each_nps_answer(session, tmp_path, members):
    result = import_file(session, "feedback", write_csv(tmp_path, FEEDBACK_CSV))

    assert (result.imported, result.skipped, result.rejected) == (3, 0, 0)
    session.expire_all()
    rows = session.execute(
        select(Member.external_id, Feedback.submitted_at, Feedback.score, Feedback.comment)
        .join(Member, Member.id == Feedback.member_id)
        .order_by(Member.external_id)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("C001", utc(2024, 7, 1, 9), 9, "Great rewards"),
        ("C002", utc(2024, 7, 2, 9), 3, ""),
        ("C003", utc(2024, 7, 3), 10, "Fast, friendly"),
    ]


@pytest.mark.parametrize(
    "kind, text", [("members", MEMBERS_CSV), ("purchases", PURCHASES_CSV), ("feedback", FEEDBACK_CSV)], ids=["members", "purchases", "feedback"]
)
def test_importing_the_same_file_twice_changes_nothing(session, tmp_path, members, kind, text):
    path = write_csv(tmp_path, text, f"{kind}.csv")
    if kind != "members":
        import_file(session, kind, path)
    before = counts(session)
    points = balance(session, members["C001"].id)

    again = import_file(session, kind, path)

    assert (again.imported, again.skipped, again.rejected) == (0, 3, 0)
    after = counts(session)
    assert after["audit_log"] == before["audit_log"] + 1  # the attempt is audited, nothing else changes
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}
    assert balance(session, members["C001"].id) == points


def test_purchases_without_an_id_are_keyed_by_content_and_identical_rows_stay_distinct(session, tmp_path, members):
    text = """member_id,occurred_at,amount,channel,store,category
C001,2024-06-01T10:00:00Z,3.50,store,S1,coffee
C001,2024-06-01T10:00:00Z,3.50,store,S1,coffee
C002,2024-06-01T10:00:00Z,3.50,store,S1,coffee
"""
    path = write_csv(tmp_path, text)

    first = import_file(session, "purchases", path)
    second = import_file(session, "purchases", path)

    assert (first.imported, second.imported, second.skipped) == (3, 0, 3)
    keys = sorted(session.exec(select(Purchase.external_id)))
    assert len(keys) == 3 and all(k.startswith("h:") for k in keys)
    # Two identical coffees share a content hash and are told apart by occurrence 0 and 1.
    assert len({k.rsplit(":", 1)[0] for k in keys}) == 2
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["0", "0", "1"]


def test_a_same_purchase_written_differently_is_recognised(session, tmp_path, members):
    import_file(
        session,
        "purchases",
        write_csv(tmp_path, "member_id,occurred_at,amount,channel,store,category\nC001,2024-06-01T10:00:00Z,3.5,store,S1,coffee\n", "a.csv"),
    )
    # Same purchase: offset notation and trailing zero differ, the content does not.
    again = import_file(
        session,
        "purchases",
        write_csv(tmp_path, "member_id,occurred_at,amount,channel,store,category\nC001,2024-06-01 12:00:00+02:00,3.50,store,S1,coffee\n", "b.csv"),
    )
    assert (again.imported, again.skipped) == (0, 1)


def test_a_column_mapping_renames_the_files_own_columns(session, tmp_path, members):
    text = """Receipt,Customer,Date,Total,Channel,Shop,Category
R1,C001,2024-06-01T10:00:00Z,20.00,store,S1,grocery
"""
    mapping = {
        "Receipt": "purchase_id",
        "Customer": "member_id",
        "Date": "occurred_at",
        "Total": "amount",
        "Channel": "channel",
        "Shop": "store",
        "Category": "category",
    }

    result = import_file(session, "purchases", write_csv(tmp_path, text), mapping=mapping)

    assert result.imported == 1
    purchase = session.exec(select(Purchase)).one()
    assert (purchase.external_id, purchase.member_id, purchase.amount) == ("R1", members["C001"].id, 20.0)


def test_create_members_creates_members_joined_at_their_first_purchase(session, tmp_path, members):
    text = """purchase_id,member_id,occurred_at,amount,channel,store,category
N1,NEW1,2024-06-05T10:00:00Z,5,store,S1,grocery
N2,NEW1,2024-06-01T08:00:00Z,7,store,S1,grocery
N3,C001,2024-06-02T08:00:00Z,1,store,S1,grocery
"""
    result = import_file(session, "purchases", write_csv(tmp_path, text), create_members=True)

    assert (result.imported, result.members_created) == (3, 1)
    created = session.exec(select(Member).where(Member.external_id == "NEW1")).one()
    assert created.joined_at == utc(2024, 6, 1, 8)
    assert created.acquisition_channel == "unknown"
    assert balance(session, created.id) == 12


# --- bad input: refused, nothing written -----------------------------------------------------

BAD_FILES = [
    ("purchases", "P9,C001,2024-06-01T10:00:00Z,abc,store,S1,grocery", 2, "amount", "'abc' is not a number"),
    ("purchases", "P9,C001,2024-06-01T10:00:00Z,-5,store,S1,grocery", 2, "amount", "'-5' is negative"),
    ("purchases", "P9,C001,yesterday,5,store,S1,grocery", 2, "occurred_at", "'yesterday' is not a date"),
    ("purchases", "P9,C001,2024-02-30,5,store,S1,grocery", 2, "occurred_at", "'2024-02-30' is not a date"),
    ("purchases", "P9,C001,2024-06-01,,store,S1,grocery", 2, "amount", "is empty"),
    ("purchases", "P9,C001,2024-06-01,nan,store,S1,grocery", 2, "amount", "'nan' is not a number"),
    ("purchases", "P9,GHOST,2024-06-01T10:00:00Z,5,store,S1,grocery", 2, "member_id", "'GHOST' is not a known member"),
    ("purchases", "P9,,2024-06-01T10:00:00Z,5,store,S1,grocery", 2, "member_id", "is empty"),
    (
        "purchases",
        "P9,C001,2024-06-01,5,store,S1,grocery\nP9,C001,2024-06-01,6,store,S1,grocery",
        2,
        "purchase_id",
        "purchase_id 'P9' appears on lines 3, 4 with different content",
    ),
    ("feedback", "C001,2024-07-01,11,", 2, "score", "'11' is outside 0-10"),
    ("feedback", "C001,2024-07-01,-1,", 2, "score", "'-1' is outside 0-10"),
    ("feedback", "C001,2024-07-01,7.5,", 2, "score", "'7.5' is not a whole number"),
    ("feedback", "C001,2024-07-01,ten,", 2, "score", "'ten' is not a number"),
    ("feedback", "GHOST,2024-07-01,7,", 2, "member_id", "'GHOST' is not a known member"),
    ("members", "C009,Dee,dee@example.com,2024-01-01,web,,,maybe,", 2, "marketing_consent", "'maybe' is not yes or no"),
    ("members", "C009,Dee,dee@example.com,2024-01-01,web,1990-13-01,,,", 2, "birth_date", "'1990-13-01' is not a date"),
    ("members", ",Dee,dee@example.com,2024-01-01,web,,,,", 2, "member_id", "is empty"),
    ("members", "C009,Dee,dee@example.com,,web,,,,", 2, "joined_at", "is empty"),
    ("members", "C009," + "x" * 201 + ",dee@example.com,2024-01-01,web,,,,", 2, "name", "is 201 characters long; at most 200 fit"),
]
HEADERS = {
    "purchases": "purchase_id,member_id,occurred_at,amount,channel,store,category",
    "feedback": "member_id,submitted_at,score,comment",
    "members": "member_id,name,email,joined_at,acquisition_channel,birth_date,city,marketing_consent,phone",
}


@pytest.mark.parametrize(
    "kind, rows, line, column, reason",
    BAD_FILES,
    ids=[
        "amount-not-a-number",
        "negative-amount",
        "unparseable-timestamp",
        "impossible-date",
        "empty-amount",
        "nan-amount",
        "unknown-member",
        "empty-member-id",
        "conflicting-purchase-id-in-file",
        "score-above-10",
        "score-below-0",
        "score-not-whole",
        "score-not-a-number",
        "feedback-unknown-member",
        "consent-not-boolean",
        "bad-birth-date",
        "member-without-id",
        "member-without-joined-at",
        "name-too-long",
    ],
)
def test_a_bad_row_refuses_the_whole_file_naming_line_column_and_reason(session, tmp_path, members, kind, rows, line, column, reason):
    # A valid row first: it must not be written either.
    valid = {
        "purchases": "OK1,C001,2024-06-01T10:00:00Z,5,store,S1,grocery",
        "feedback": "C002,2024-07-05T10:00:00Z,8,fine",
        "members": "C010,Eve,eve@example.com,2024-01-01,web,,,,",
    }[kind]
    path = write_csv(tmp_path, f"{HEADERS[kind]}\n{valid}\n{rows}\n")
    before = counts(session)

    with pytest.raises(ImportRefused) as refused:
        import_file(session, kind, path)

    problem = refused.value.problems[0]
    assert (problem.line, problem.column) == (line + 1, column)  # +1: the valid row comes first
    assert reason in problem.reason
    assert f"line {line + 1}, column {column}: " in refused.value.report()
    assert counts(session) == before
    assert not (tmp_path / "file.rejected.csv").exists()


@pytest.mark.parametrize(
    "kind, header, missing",
    [
        ("purchases", "purchase_id,member_id,occurred_at,channel,store,category", "amount"),
        ("members", "member_id,name,email,acquisition_channel", "joined_at"),
        ("feedback", "member_id,score,comment", "submitted_at"),
    ],
    ids=["purchases-without-amount", "members-without-joined-at", "feedback-without-submitted-at"],
)
def test_a_missing_required_column_is_one_problem_on_line_1(session, tmp_path, members, kind, header, missing):
    path = write_csv(tmp_path, f"{header}\n" + ",".join(["x"] * len(header.split(","))) + "\n")
    before = counts(session)

    with pytest.raises(ImportRefused) as refused:
        import_file(session, kind, path, skip_invalid=True)

    assert [(p.line, p.column) for p in refused.value.problems] == [(1, missing)]
    assert "required column is missing" in refused.value.problems[0].reason
    assert counts(session) == before


def test_every_problem_of_a_file_is_listed_in_line_order(session, tmp_path, members):
    text = """purchase_id,member_id,occurred_at,amount,channel,store,category
P1,C001,2024-06-01,5,store,S1,grocery
P2,C001,soon,-1,store,S1,grocery
P3,GHOST,2024-06-01,x,store,S1,grocery
"""
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", write_csv(tmp_path, text))

    assert [(p.line, p.column) for p in refused.value.problems] == [(3, "occurred_at"), (3, "amount"), (4, "amount"), (4, "member_id")]
    assert refused.value.rejected == 2


def test_the_report_shows_the_first_50_problems_then_how_many_more(session, tmp_path, members):
    rows = "\n".join(f"P{i},C001,2024-06-01,bad{i},store,S1,grocery" for i in range(60))
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", write_csv(tmp_path, HEADERS["purchases"] + "\n" + rows + "\n"))

    report = refused.value.report().splitlines()
    assert len(refused.value.problems) == 60
    assert report[1] == "line 2, column amount: 'bad0' is not a number"
    assert report[MAX_PROBLEMS_SHOWN] == "line 51, column amount: 'bad49' is not a number"
    assert report[-1] == "... and 10 more problems"
    assert len(report) == 1 + MAX_PROBLEMS_SHOWN + 1


def test_line_numbers_count_blank_lines_and_line_breaks_inside_quoted_values(session, tmp_path, members):
    text = 'member_id,submitted_at,score,comment\nC001,2024-07-01,9,"first line\nsecond line"\n\nC002,2024-07-02,12,too high\n'
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "feedback", write_csv(tmp_path, text))

    assert [(p.line, p.column) for p in refused.value.problems] == [(5, "score")]


def test_a_file_that_is_not_utf8_is_refused_with_advice(session, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("member_id,name,email,joined_at,acquisition_channel\nC1,José,j@example.com,2024-01-01,web\n".encode("latin-1"))

    with pytest.raises(ImportRefused) as refused:
        import_file(session, "members", path)

    assert refused.value.problems[0].line == 2
    assert "UTF-8" in refused.value.problems[0].reason


def test_a_purchase_id_already_imported_with_different_content_is_a_conflict(session, tmp_path, members):
    import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV, "day1.csv"))
    changed = PURCHASES_CSV.replace("P2,C001,2024-06-02T11:00:00Z,10.00", "P2,C001,2024-06-02T11:00:00Z,12.00")
    before = counts(session)

    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", write_csv(tmp_path, changed, "day2.csv"))

    assert [(p.line, p.column) for p in refused.value.problems] == [(3, "purchase_id")]
    assert "'P2' was already imported with different content (amount was '10.0')" in refused.value.problems[0].reason
    assert counts(session) == before


def test_feedback_at_the_same_moment_with_another_score_is_a_conflict(session, tmp_path, members):
    import_file(session, "feedback", write_csv(tmp_path, FEEDBACK_CSV, "a.csv"))

    with pytest.raises(ImportRefused) as refused:
        import_file(session, "feedback", write_csv(tmp_path, FEEDBACK_CSV.replace(",9,", ",6,"), "b.csv"))

    assert [(p.line, p.column) for p in refused.value.problems] == [(2, "score")]
    assert "different score ('9')" in refused.value.problems[0].reason


def test_importing_needs_the_data_import_permission(session, tmp_path, members):
    with pytest.raises(PermissionDenied):
        import_csv(session, "purchases", write_csv(tmp_path, PURCHASES_CSV), actor=Actor("ann", "analyst"))


# --- skip invalid ----------------------------------------------------------------------------


def test_skip_invalid_imports_the_valid_rows_and_writes_the_rejected_ones_beside_the_file(session, tmp_path, members):
    text = """purchase_id,member_id,occurred_at,amount,channel,store,category
P1,C001,2024-06-01T10:00:00Z,10,store,S1,grocery
P2,C001,2024-06-01T10:00:00Z,abc,store,S1,grocery
P3,GHOST,2024-06-01T10:00:00Z,5,store,S1,grocery
P4,C002,2024-06-01T10:00:00Z,7,store,S1,grocery
"""
    path = write_csv(tmp_path, text, "june.csv")

    result = import_file(session, "purchases", path, skip_invalid=True)

    assert (result.imported, result.skipped, result.rejected) == (2, 0, 2)
    assert sorted(session.exec(select(Purchase.external_id))) == ["P1", "P4"]
    assert result.rejected_path == tmp_path / "june.rejected.csv"
    rejected = pd.read_csv(result.rejected_path, dtype=str, keep_default_na=False)
    assert list(rejected.columns) == ["line", "reasons", "purchase_id", "member_id", "occurred_at", "amount", "channel", "store", "category"]
    assert list(rejected["line"]) == ["3", "4"]
    assert list(rejected["purchase_id"]) == ["P2", "P3"]
    assert rejected["reasons"][0] == "column amount: 'abc' is not a number"
    assert rejected["reasons"][1].startswith("column member_id: 'GHOST' is not a known member")
    assert [(p.line, p.column) for p in result.problems] == [(3, "amount"), (4, "member_id")]


def test_an_upload_gets_its_rejected_rows_back_as_csv(session, members):
    upload = io.BytesIO(b"member_id,submitted_at,score,comment\nC001,2024-07-01,9,ok\nC002,2024-07-01,99,no\n")
    upload.name = "nps.csv"

    result = import_file(session, "feedback", upload, skip_invalid=True)

    assert (result.imported, result.rejected, result.rejected_path) == (1, 1, None)
    rejected = pd.read_csv(io.BytesIO(result.rejected_csv), dtype=str)
    assert rejected.loc[0, "line"] == "3" and "outside 0-10" in rejected.loc[0, "reasons"]


def test_a_fixed_rejected_file_can_be_imported_as_it_is(session, tmp_path, members):
    path = write_csv(tmp_path, HEADERS["purchases"] + "\nP1,C001,2024-06-01,1O,store,S1,grocery\n", "june.csv")
    result = import_file(session, "purchases", path, skip_invalid=True)
    fixed = result.rejected_path.read_text().replace(",1O,", ",10,")
    result.rejected_path.write_text(fixed)

    again = import_file(session, "purchases", result.rejected_path)

    assert again.imported == 1
    assert session.exec(select(Purchase.amount)).one() == 10.0


# --- members: updates and erasure ------------------------------------------------------------


def test_a_member_whose_details_changed_is_updated(session, tmp_path, members):
    changed = MEMBERS_CSV.replace("Ana Lima,ana@example.com", "Ana Lima-Souza,ana@new.example.com")

    result = import_file(session, "members", write_csv(tmp_path, changed, "members2.csv"))

    assert (result.imported, result.skipped) == (1, 2)
    session.expire_all()
    ana = session.get(Member, members["C001"].id)
    assert (ana.name, ana.email, ana.city) == ("Ana Lima-Souza", "ana@new.example.com", "Porto")


def test_a_members_file_without_optional_columns_leaves_them_as_they_are(session, tmp_path, members):
    text = "member_id,name,email,joined_at,acquisition_channel\nC001,Ana L.,ana@example.com,2024-01-05T10:00:00Z,store\n"

    result = import_file(session, "members", write_csv(tmp_path, text, "short.csv"))

    assert result.imported == 1
    session.expire_all()
    ana = session.get(Member, members["C001"].id)
    assert (ana.name, ana.city, ana.birth_date, ana.marketing_consent) == ("Ana L.", "Porto", date(1990, 5, 1), True)


def test_an_erased_member_is_not_restored_by_a_members_import(session, tmp_path, members):
    erase_member(session=session, external_id="C001", actor=SYSTEM_CLI)

    result = import_file(session, "members", write_csv(tmp_path, MEMBERS_CSV, "again.csv"))

    assert (result.imported, result.skipped) == (0, 3)
    session.expire_all()
    ana = session.get(Member, members["C001"].id)
    assert (ana.name, ana.email, ana.phone, ana.city, ana.birth_date) == ("", "", "", "", None)
    assert ana.erased_at is not None and not ana.marketing_consent


def test_feedback_of_an_erased_member_keeps_the_score_but_never_the_comment(session, tmp_path, members):
    path = write_csv(tmp_path, FEEDBACK_CSV)
    import_file(session, "feedback", path)
    erase_member(session=session, external_id="C001", actor=SYSTEM_CLI)

    again = import_file(session, "feedback", path)  # the old file, comment included
    late = import_file(
        session, "feedback", write_csv(tmp_path, "member_id,submitted_at,score,comment\nC001,2024-08-01,10,call me on 900 000 001\n", "late.csv")
    )

    assert (again.imported, again.skipped, late.imported) == (0, 3, 1)
    comments = session.exec(select(Feedback.comment).where(Feedback.member_id == members["C001"].id)).all()
    assert comments == ["", ""]


# --- progress, audit, preview -----------------------------------------------------------------


def test_progress_is_reported_up_to_the_rows_in_the_file(session, tmp_path, members):
    calls: list[tuple[int, int]] = []

    import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV), progress=lambda done, total: calls.append((done, total)))

    assert calls[-1] == (3, 3)
    assert all(total == 3 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_an_import_is_audited_with_its_counts(session, tmp_path, members):
    import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV, "june.csv"))

    entry = session.exec(select(AuditLog).where(AuditLog.entity == "purchases")).one()
    assert (entry.action, entry.actor) == ("data.import", SYSTEM_CLI.username)
    assert entry.after == {"file": "june.csv", "imported": 3, "skipped": 0, "rejected": 0}


def test_existing_purchases_recorded_elsewhere_are_recognised_by_their_id(session, tmp_path):
    ana = make_member(session, external_id="C001")
    make_purchase(session, ana, 19.99, occurred_at=utc(2024, 6, 1, 10), external_id="P1", channel="store", store="S1", category="grocery")

    result = import_file(
        session,
        "purchases",
        write_csv(tmp_path, "purchase_id,member_id,occurred_at,amount,channel,store,category\nP1,C001,2024-06-01T10:00:00Z,19.99,store,S1,grocery\n"),
    )

    assert (result.imported, result.skipped) == (0, 1)


def test_the_preview_shows_columns_missing_ones_and_the_first_rows(tmp_path):
    text = "Customer,occurred_at,amount,channel,store,category\n" + "C1,2024-06-01,5,store,S1,grocery\n" * 30

    plain = preview_csv(io.BytesIO(text.encode()), "purchases")
    mapped = preview_csv(io.BytesIO(text.encode()), "purchases", mapping={"Customer": "member_id"}, rows=5)

    assert plain["missing"] == ["member_id"] and plain["rows"] == 30
    assert plain["columns"][0] == "Customer" and len(plain["sample"]) == 20
    assert mapped["missing"] == [] and mapped["sample"].columns[0] == "member_id" and len(mapped["sample"]) == 5


# --- the command line ---------------------------------------------------------------------------


def test_the_cli_refuses_a_bad_file_with_exit_code_2_and_lists_the_problems(session, tmp_path, members, capsys):
    from loyalty.cli import main

    path = write_csv(tmp_path, PURCHASES_CSV.replace("19.99", "abc"))
    before = counts(session)

    assert main(["import", "purchases", str(path)]) == 2

    err = capsys.readouterr().err
    assert "line 2, column amount: 'abc' is not a number" in err
    after = counts(session)
    # The command line's start-up may audit the creation of its first admin; nothing else.
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}
    assert session.exec(select(AuditLog).where(AuditLog.action == "data.import", AuditLog.entity == "purchases")).all() == []


def test_the_cli_prints_a_one_line_json_summary(session, tmp_path, members, capsys):
    from loyalty.cli import main

    path = write_csv(tmp_path, PURCHASES_CSV)
    capsys.readouterr()

    assert main(["import", "purchases", str(path), "--json"]) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert main(["import", "purchases", str(path), "--json"]) == 0
    second = capsys.readouterr().out.strip().splitlines()

    assert [json.loads(line) for line in first] == [{"imported": 3, "skipped": 0, "rejected": 0}]
    assert [json.loads(line) for line in second] == [{"imported": 0, "skipped": 3, "rejected": 0}]


def test_the_cli_maps_columns_creates_members_and_sets_invalid_rows_aside(session, tmp_path, capsys):
    from loyalty.cli import main

    path = write_csv(
        tmp_path,
        "Receipt,Customer,Date,Total,channel,store,category\nR1,NEW1,2024-06-01,10,store,S1,grocery\nR2,NEW2,2024-06-02,oops,store,S1,grocery\n",
        "pos.csv",
    )

    code = main(
        [
            "import",
            "purchases",
            str(path),
            "--map",
            "Receipt=purchase_id",
            "--map",
            "Customer=member_id",
            "--map",
            "Date=occurred_at",
            "--map",
            "Total=amount",
            "--create-members",
            "--skip-invalid",
            "--json",
        ]
    )

    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"imported": 1, "skipped": 0, "rejected": 1}
    assert (tmp_path / "pos.rejected.csv").exists()
    assert sorted(session.exec(select(Member.external_id))) == ["NEW1"]


# --- more bad input, and the machinery of big files -----------------------------------------


def test_a_member_listed_twice_with_different_details_is_refused(session, tmp_path):
    text = MEMBERS_CSV + "C001,Ana Lima,other@example.com,2024-01-05T10:00:00Z,store,1990-05-01,Porto,yes,\n"

    with pytest.raises(ImportRefused) as refused:
        import_file(session, "members", write_csv(tmp_path, text))

    assert [(p.line, p.column) for p in refused.value.problems] == [(2, "member_id"), (5, "member_id")]
    assert "appears on lines 2, 5 with different content" in refused.value.problems[0].reason


def test_a_mapping_that_names_no_column_of_the_file_is_refused(session, tmp_path, members):
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV), mapping={"Total": "amount"})

    assert [(p.line, p.column) for p in refused.value.problems] == [(1, "Total")]


def test_lookups_in_chunks_find_every_purchase_already_imported(session, tmp_path, members, monkeypatch):
    monkeypatch.setattr(imports, "LOOKUP_CHUNK", 7)
    rows = "\n".join(f"Q{i},C00{1 + i % 3},2024-06-01T10:{i % 60:02d}:00Z,{i}.25,store,S1,grocery" for i in range(50))
    path = write_csv(tmp_path, HEADERS["purchases"] + "\n" + rows + "\n")

    first = import_file(session, "purchases", path)
    second = import_file(session, "purchases", path)

    assert (first.imported, second.imported, second.skipped) == (50, 0, 50)


def sqlite_indexes(session: Session) -> list[tuple[str, str]]:
    from sqlalchemy import text

    session.commit()
    return sorted(
        session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('purchase', 'ledger_entry')")).all()
    )


def test_a_large_first_load_rebuilds_exactly_the_indexes_it_set_aside(session, tmp_path, members, monkeypatch):
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("index deferral is SQLite's bulk-load path")
    monkeypatch.setattr(imports, "DEFER_INDEXES_MIN_ROWS", 1)
    before = sqlite_indexes(session)

    result = import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV))

    assert result.imported == 3
    assert sqlite_indexes(session) == before and len(before) >= 8
    assert balance(session, members["C001"].id) == 29  # 19 + 10: the load itself is intact


def test_a_load_that_fails_midway_leaves_the_indexes_and_the_data_as_they_were(session, tmp_path, members, monkeypatch):
    monkeypatch.setattr(imports, "DEFER_INDEXES_MIN_ROWS", 1)
    real_add_purchases = imports.add_purchases

    def add_then_fail(*args, **kwargs):
        real_add_purchases(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "add_purchases", add_then_fail)
    before = counts(session)
    indexes = sqlite_indexes(session) if session.get_bind().dialect.name == "sqlite" else None

    with pytest.raises(RuntimeError):
        import_file(session, "purchases", write_csv(tmp_path, PURCHASES_CSV))

    session.rollback()
    assert counts(session) == before
    if indexes is not None:
        assert sqlite_indexes(session) == indexes
