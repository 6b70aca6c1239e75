"""Bad input, tried as a careless user and as an attacker would: files, the actions the pages
call, and values typed into forms. Each is refused naming its line, field and reason, or
accepted correctly; none crashes, and a refused one changes nothing.

Set LOYALTY_BAD_INPUTS_TABLE=path to write the outcomes as a Markdown table.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.models import AuditLog, Campaign, Feedback, LedgerEntry, Member, PendingAdjustment, Purchase, Reward, Tier
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import InvalidInput
from loyalty.ledger.approvals import request_adjustment
from loyalty.ledger.imports import ImportRefused, import_csv
from loyalty.ledger.purchases import record_purchase, refund_purchase
from loyalty.program.campaigns import save_campaign
from loyalty.program.rewards import save_reward
from loyalty.program.tiers import save_tiers
from loyalty.settings import update_settings
from tests.factories import utc

ADMIN = Actor("ada", "admin")
MANAGER = Actor("max", "manager")
OPERATIONS = Actor("olga", "operations")

MEMBERS = "member_id,name,email,joined_at,acquisition_channel\n"
PURCHASES = "purchase_id,member_id,occurred_at,amount,channel,store,category\n"
FEEDBACK = "member_id,submitted_at,score,comment\n"
TIERS = [{"name": "Bronze", "min_spend": 0, "min_purchases": 0, "window_months": 12, "multiplier": 1.0, "benefits": [], "grace_months": 0}]


@dataclass(frozen=True)
class Case:
    id: str
    way: str  # file, page, cli
    tried: str
    run: Callable[[Session], object]
    refused: str | None  # a fragment of the message; None: accepted
    line: int | None = None  # the line the message names (files)
    field: str | None = None  # the column or field it names


def file(kind: str, text: str | bytes) -> Callable[[Session], object]:
    data = text.encode() if isinstance(text, str) else text
    return lambda session: import_csv(session, kind, io.BytesIO(data), actor=SYSTEM_CLI)


def purchase_row(row: str) -> Callable[[Session], object]:
    return file("purchases", PURCHASES + row + "\n")


F, P = "file", "page"
CASES = [
    # --- purchases: amounts
    Case(
        "amount-huge",
        F,
        "amount 900000000000000000",
        purchase_row("P10,M1,2026-01-05,900000000000000000,web,S1,food"),
        "above the largest purchase",
        2,
        "amount",
    ),
    Case("amount-1e300", F, "amount 1e300", purchase_row("P10,M1,2026-01-05,1e300,web,S1,food"), "above the largest purchase", 2, "amount"),
    Case("amount-inf", F, "amount inf", purchase_row("P10,M1,2026-01-05,inf,web,S1,food"), "is not a number", 2, "amount"),
    Case("amount-nan", F, "amount NaN", purchase_row("P10,M1,2026-01-05,NaN,web,S1,food"), "is not a number", 2, "amount"),
    Case("amount-zero", F, "amount 0", purchase_row("P10,M1,2026-01-05,0,web,S1,food"), "must be above zero", 2, "amount"),
    Case("amount-negative", F, "amount -5", purchase_row("P10,M1,2026-01-05,-5,web,S1,food"), "is negative: record a refund instead", 2, "amount"),
    Case("amount-3-decimals", F, "amount 10.123 (EUR)", purchase_row("P10,M1,2026-01-05,10.123,web,S1,food"), "more decimals than EUR", 2, "amount"),
    Case(
        "amount-decimal-comma",
        F,
        "amount 10,50 in a comma file",
        file("purchases", PURCHASES + 'P10,M1,2026-01-05,"10,50",web,S1,food\n'),
        "decimals with a point",
        2,
        "amount",
    ),
    Case("amount-words", F, "amount 'ten'", purchase_row("P10,M1,2026-01-05,ten,web,S1,food"), "is not a number", 2, "amount"),
    Case("amount-empty", F, "amount empty", purchase_row("P10,M1,2026-01-05,,web,S1,food"), "is empty", 2, "amount"),
    Case("amount-hex", F, "amount 0x10", purchase_row("P10,M1,2026-01-05,0x10,web,S1,food"), "is not a number", 2, "amount"),
    Case("amount-at-max", F, "amount 1000000 (the largest allowed)", purchase_row("P10,M1,2026-01-05,1000000,web,S1,food"), None),
    Case("amount-trailing-zeros", F, "amount 12.500", purchase_row("P10,M1,2026-01-05,12.500,web,S1,food"), None),
    # --- purchases: dates
    Case("date-2099", F, "purchase dated 2099", purchase_row("P10,M1,2099-01-01,10,web,S1,food"), "is in the future", 2, "occurred_at"),
    Case(
        "date-tomorrow-plus", F, "purchase dated 3 days ahead", purchase_row("P10,M1,2026-11-19,10,web,S1,food"), "is in the future", 2, "occurred_at"
    ),
    Case("date-year-0", F, "purchase dated 0000-01-01", purchase_row("P10,M1,0000-01-01,10,web,S1,food"), "", 2, "occurred_at"),
    Case("date-1900", F, "purchase dated 1900", purchase_row("P10,M1,1900-01-01,10,web,S1,food"), "before the program's start", 2, "occurred_at"),
    Case("date-9999", F, "purchase dated 9999-12-31", purchase_row("P10,M1,9999-12-31,10,web,S1,food"), "", 2, "occurred_at"),
    Case("date-month-13", F, "purchase dated 2026-13-01", purchase_row("P10,M1,2026-13-01,10,web,S1,food"), "is not a date", 2, "occurred_at"),
    Case("date-feb-30", F, "purchase dated 2026-02-30", purchase_row("P10,M1,2026-02-30,10,web,S1,food"), "is not a date", 2, "occurred_at"),
    Case("date-us-format", F, "purchase dated 05/01/2026", purchase_row("P10,M1,05/01/2026,10,web,S1,food"), "is not a date", 2, "occurred_at"),
    Case("date-words", F, "purchase dated 'yesterday'", purchase_row("P10,M1,yesterday,10,web,S1,food"), "is not a date", 2, "occurred_at"),
    Case("date-empty", F, "purchase date empty", purchase_row("P10,M1,,10,web,S1,food"), "is empty", 2, "occurred_at"),
    Case("date-offset", F, "purchase at 2026-01-05T23:30:00-05:00", purchase_row("P10,M1,2026-01-05T23:30:00-05:00,10,web,S1,food"), None),
    # --- purchases: shape of the file
    Case(
        "row-one-value-too-many",
        F,
        "a row with one value too many",
        file("purchases", PURCHASES + "P10,M1,2026-01-05,10,web,S1,food,extra\nP11,M2,2026-01-05,10,web,S1,food\n"),
        "has 8 values where the header has 7 columns",
        2,
        "",
    ),
    Case(
        "row-one-value-too-few",
        F,
        "a row with one value too few",
        file("purchases", PURCHASES + "P10,M1,2026-01-05,10,web,S1\n"),
        "has 6 values where the header has 7 columns",
        2,
        "",
    ),
    Case(
        "row-bad-after-good",
        F,
        "a misfit row after good ones",
        file("purchases", PURCHASES + "P10,M1,2026-01-05,10,web,S1,food\nP11,M2,2026-01-05\n"),
        "has 3 values",
        3,
        "",
    ),
    Case(
        "row-quoted-newline",
        F,
        "a quoted line break before a bad row",
        file("purchases", PURCHASES + 'P10,M1,2026-01-05,10,web,"S\n1",food\nP11,M2,2026-01-05,-1,web,S1,food\n'),
        "is negative",
        4,
        "amount",
    ),
    Case("unknown-member", F, "a purchase of an unknown member", purchase_row("P10,M404,2026-01-05,10,web,S1,food"), "M404", 2, "member_id"),
    Case(
        "missing-column",
        F,
        "no amount column",
        file("purchases", "purchase_id,member_id,occurred_at,channel,store,category\nP10,M1,2026-01-05,web,S1,food\n"),
        "amount",
        1,
        "amount",
    ),
    Case("header-only", F, "a header and no row", file("purchases", PURCHASES), None),
    Case("empty-file", F, "an empty file", file("purchases", b""), "the file is empty", 1, ""),
    Case("blank-file", F, "a file of blank lines", file("purchases", b"\n\n\n"), "the file is empty", 1, ""),
    Case(
        "latin-1",
        F,
        "a Latin-1 file",
        file("purchases", (PURCHASES + "P10,M1,2026-01-05,10,web,Caf\xe9,food\n").encode("latin-1")),
        "not UTF-8",
        2,
        "",
    ),
    Case("utf-16", F, "a UTF-16 file", file("purchases", (PURCHASES + "P10,M1,2026-01-05,10,web,S1,food\n").encode("utf-16")), "not UTF-8", 1, ""),
    Case(
        "utf-8-bom",
        F,
        "UTF-8 with a byte-order mark",
        file("purchases", codecs.BOM_UTF8 + (PURCHASES + "P10,M1,2026-01-05,10,web,S1,food\n").encode()),
        None,
    ),
    Case("binary", F, "a PNG renamed .csv", file("purchases", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"), "not UTF-8", 1, ""),
    Case("nul-byte", F, "a NUL character in a store", purchase_row("P10,M1,2026-01-05,10,web,S\x001,food"), "NUL character", 2, "store"),
    Case(
        "unclosed-quote",
        F,
        "a quote never closed",
        file("purchases", PURCHASES + 'P10,M1,2026-01-05,10,web,"S1,food\nP11,M2,2026-01-05,10,web,S1,food\n'),
        "never closed",
        2,
        "",
    ),
    Case(
        "semicolon-file",
        F,
        "a semicolon file with decimal points",
        file("purchases", PURCHASES.replace(",", ";") + "P10;M1;2026-01-05;10.50;web;S1;food\n"),
        None,
    ),
    Case(
        "long-store",
        F,
        "a store name of 5,000 characters",
        purchase_row("P10,M1,2026-01-05,10,web," + "S" * 5000 + ",food"),
        "characters long",
        2,
        "store",
    ),
    Case(
        "same-id-twice",
        F,
        "one purchase id twice with other amounts",
        file("purchases", PURCHASES + "P10,M1,2026-01-05,10,web,S1,food\nP10,M1,2026-01-05,12,web,S1,food\n"),
        "appears on lines 2, 3",
        2,
        "purchase_id",
    ),
    Case(
        "formula-in-store",
        F,
        "a store '=HYPERLINK(...)' (kept as text)",
        purchase_row('P10,M1,2026-01-05,10,web,"=HYPERLINK(""http://x"")",food'),
        None,
    ),
    Case(
        "every-problem-at-once",
        F,
        "four kinds of problem in one file",
        file(
            "purchases",
            PURCHASES + "P10,M1,2099-01-01,10,web,S1,food\nP11,M1,2026-01-05,-1,web,S1,food\nP12,M1\nP13,M404,2026-01-05,10,web,S1,food\n",
        ),
        "4 problems in 4 rows",
        None,
        None,
    ),
    # --- members
    Case(
        "member-joined-future",
        F,
        "a member joining in 2099",
        file("members", MEMBERS + "M9,Zoe,z@x.com,2099-01-01,web\n"),
        "is in the future",
        2,
        "joined_at",
    ),
    Case(
        "member-joined-1899",
        F,
        "a member joining in 1899",
        file("members", MEMBERS + "M9,Zoe,z@x.com,1899-01-01,web\n"),
        "before the program's start",
        2,
        "joined_at",
    ),
    Case(
        "member-born-future",
        F,
        "a birth date in 2090",
        file("members", MEMBERS.rstrip() + ",birth_date\nM9,Zoe,z@x.com,2025-01-01,web,2090-01-01\n"),
        "is in the future",
        2,
        "birth_date",
    ),
    Case(
        "member-born-1800",
        F,
        "a birth date in 1800",
        file("members", MEMBERS.rstrip() + ",birth_date\nM9,Zoe,z@x.com,2025-01-01,web,1800-01-01\n"),
        "before 1900",
        2,
        "birth_date",
    ),
    Case(
        "member-consent-maybe",
        F,
        "marketing consent 'maybe'",
        file("members", MEMBERS.rstrip() + ",marketing_consent\nM9,Zoe,z@x.com,2025-01-01,web,maybe\n"),
        "not yes or no",
        2,
        "marketing_consent",
    ),
    Case("member-empty-id", F, "a member without an id", file("members", MEMBERS + ",Zoe,z@x.com,2025-01-01,web\n"), "is empty", 2, "member_id"),
    Case(
        "member-shifted",
        F,
        "a member row with a value too many",
        file("members", MEMBERS + "M9,Zoe,extra,z@x.com,2025-01-01,web\n"),
        "has 6 values where the header has 5",
        2,
        "",
    ),
    Case(
        "member-script-name",
        F,
        "a name '<script>alert(1)</script>' (kept as text)",
        file("members", MEMBERS + "M9,<script>alert(1)</script>,z@x.com,2025-01-01,web\n"),
        None,
    ),
    # --- feedback
    Case("score-11", F, "an NPS score of 11", file("feedback", FEEDBACK + "M1,2026-01-05,11,\n"), "", 2, "score"),
    Case("score-fraction", F, "an NPS score of 7.5", file("feedback", FEEDBACK + "M1,2026-01-05,7.5,\n"), "", 2, "score"),
    Case("feedback-future", F, "an answer dated 2099", file("feedback", FEEDBACK + "M1,2099-01-05,9,\n"), "is in the future", 2, "submitted_at"),
    # --- what the pages call
    Case(
        "adjust-huge",
        P,
        "an adjustment of 10^12 points",
        lambda s: request_adjustment(session=s, member_id=member_id(s, "M1"), points=10**12, reason="x", actor=ADMIN),
        "at most 1,000,000 points",
    ),
    Case(
        "adjust-fraction",
        P,
        "an adjustment of 2.5 points",
        lambda s: request_adjustment(session=s, member_id=member_id(s, "M1"), points=2.5, reason="x", actor=ADMIN),
        "whole number",
    ),  # type: ignore[arg-type]
    Case(
        "adjust-zero",
        P,
        "an adjustment of 0 points",
        lambda s: request_adjustment(session=s, member_id=member_id(s, "M1"), points=0, reason="x", actor=ADMIN),
        "changes nothing",
    ),
    Case(
        "adjust-no-reason",
        P,
        "an adjustment without a reason",
        lambda s: request_adjustment(session=s, member_id=member_id(s, "M1"), points=5, reason="  ", actor=ADMIN),
        "needs a reason",
    ),
    Case(
        "refund-more",
        P,
        "a return above what is left",
        lambda s: refund_purchase(session=s, purchase="P1", amount="1000", actor=OPERATIONS),
        "can be returned now",
    ),
    Case(
        "refund-3-decimals",
        P,
        "a return of 1.005",
        lambda s: refund_purchase(session=s, purchase="P1", amount="1.005", actor=OPERATIONS),
        "two decimals",
    ),
    Case("refund-negative", P, "a return of -5", lambda s: refund_purchase(session=s, purchase="P1", amount="-5", actor=OPERATIONS), "above zero"),
    Case(
        "refund-words", P, "a return of 'all'", lambda s: refund_purchase(session=s, purchase="P1", amount="all", actor=OPERATIONS), "not an amount"
    ),
    Case(
        "record-huge",
        P,
        "one purchase of 1e18 (the API path)",
        lambda s: record_purchase(session=s, member_id=member_id(s, "M1"), amount=1e18, occurred_at=utc(2026, 11, 1), actor=SYSTEM_CLI),
        "above the largest purchase",
    ),
    Case(
        "record-future",
        P,
        "one purchase dated next year",
        lambda s: record_purchase(session=s, member_id=member_id(s, "M1"), amount=10, occurred_at=utc(2027, 11, 1), actor=SYSTEM_CLI),
        "in the future",
    ),
    Case(
        "reward-cost-huge",
        P,
        "a reward costing 10^12 points",
        lambda s: save_reward(session=s, actor=MANAGER, name="X", kind="product", points_cost=10**12),
        "at most 1,000,000,000",
    ),
    Case(
        "reward-stock-fraction",
        P,
        "a stock of 2.5",
        lambda s: save_reward(session=s, actor=MANAGER, name="X", kind="product", points_cost=100, stock=2.5),
        "whole number",
    ),
    Case(
        "campaign-multiplier-1000",
        P,
        "a campaign multiplier of 1000",
        lambda s: campaign(s, kind="multiplier", rule={"multiplier": 1000}),
        "at most 100",
    ),
    Case(
        "campaign-multiplier-nan",
        P,
        "a campaign multiplier of NaN",
        lambda s: campaign(s, kind="multiplier", rule={"multiplier": float("nan")}),
        "must be a number",
    ),
    Case("campaign-bonus-huge", P, "a bonus of 10^9 points", lambda s: campaign(s, kind="fixed_bonus", rule={"points": 10**9}), "at most 1,000,000"),
    Case(
        "campaign-budget-huge",
        P,
        "a budget of 10^15 points",
        lambda s: campaign(s, kind="multiplier", rule={"multiplier": 2}, budget_points=10**15),
        "at most 2,000,000,000",
    ),
    Case(
        "tier-multiplier-huge",
        P,
        "a tier multiplier of 1e9",
        lambda s: save_tiers(session=s, actor=MANAGER, tiers=[TIERS[0] | {"multiplier": 1e9}]),
        "at most 100",
    ),
    Case(
        "tier-multiplier-inf",
        P,
        "a tier multiplier of inf",
        lambda s: save_tiers(session=s, actor=MANAGER, tiers=[TIERS[0] | {"multiplier": float("inf")}]),
        "is not a number",
    ),
    Case(
        "setting-rate-huge",
        P,
        "an earn rate of 10^6 points per EUR",
        lambda s: update_settings(session=s, actor=ADMIN, points_per_currency_unit=1e6),
        "at most 1,000",
    ),
    Case(
        "setting-max-amount-0",
        P,
        "a largest purchase of 0",
        lambda s: update_settings(session=s, actor=ADMIN, max_purchase_amount=0),
        "must be above 0",
    ),
    Case(
        "setting-start-future",
        P,
        "a program start in 2090",
        lambda s: update_settings(session=s, actor=ADMIN, program_start=date(2090, 1, 1)),
        "between 1900-01-01 and today",
    ),
    Case("setting-start-text", P, "a program start 'soon'", lambda s: update_settings(session=s, actor=ADMIN, program_start="soon"), "YYYY-MM-DD"),
]


def member_id(session: Session, external_id: str) -> int:
    return session.exec(select(Member.id).where(Member.external_id == external_id)).one()


def campaign(session: Session, **fields) -> Campaign:
    return save_campaign(session=session, actor=MANAGER, name="Bad", starts_at=utc(2026, 12, 1), ends_at=utc(2026, 12, 31), **fields)


@pytest.fixture
def program(session: Session) -> Session:
    """Two members, a tier, and one purchase P1 of EUR 40 (40 points)."""
    save_tiers(session=session, actor=MANAGER, tiers=TIERS)
    import_csv(
        session, "members", io.BytesIO((MEMBERS + "M1,Ann,a@x.com,2025-01-01,web\nM2,Bob,b@x.com,2025-01-01,store\n").encode()), actor=SYSTEM_CLI
    )
    import_csv(session, "purchases", io.BytesIO((PURCHASES + "P1,M1,2026-10-01,40,web,S1,food\n").encode()), actor=SYSTEM_CLI)
    return session


def state(session: Session) -> dict[str, object]:
    """What a refused input must leave as it was."""
    session.rollback()
    tables = (Member, Purchase, LedgerEntry, Feedback, Reward, Campaign, Tier, PendingAdjustment, AuditLog)
    counts: dict[str, object] = {model.__tablename__: session.exec(select(func.count()).select_from(model)).one() for model in tables}
    counts["points"] = session.exec(select(func.coalesce(func.sum(LedgerEntry.points), 0))).one()
    counts["returned"] = session.exec(select(func.sum(Purchase.returned_cents))).one()
    return counts


OUTCOMES: list[tuple[Case, str]] = []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_naming_line_field_and_reason_and_changes_nothing(program: Session, case: Case):
    before = state(program)
    if case.refused is None:
        case.run(program)
        OUTCOMES.append((case, "accepted"))
        return
    with pytest.raises(InvalidInput) as refused:
        case.run(program)
    message = refused.value.report() if isinstance(refused.value, ImportRefused) else str(refused.value)
    assert case.refused in message
    if isinstance(refused.value, ImportRefused) and case.line is not None:
        first = refused.value.problems[0]
        assert (first.line, first.column) == (case.line, case.field), message
        assert first.reason
    assert state(program) == before
    OUTCOMES.append((case, "refused: " + (str(refused.value.problems[0]) if isinstance(refused.value, ImportRefused) else message)))


# --- the command line: a clear line on stderr, an exit code, nothing changed -------------------------

CLI_CASES = [
    ("adjust a member by 10^12 points", ["adjust", "--member", "M1", "--points", str(10**12), "--reason", "x"], 2, "at most 1,000,000 points"),
    ("adjust an unknown member", ["adjust", "--member", "M404", "--points", "5", "--reason", "x"], 4, "No member with id M404"),
    ("refund an amount 'all'", ["refund", "--purchase", "P1", "--amount", "all"], 2, "not an amount of money"),
    ("refund more than the purchase", ["refund", "--purchase", "P1", "--amount", "1000"], 2, "can be returned now"),
    ("refund an unknown purchase", ["refund", "--purchase", "P404"], 4, "P404"),
    ("import a file that does not exist", ["import", "purchases", "/nonexistent/feed.csv"], 1, "No such file or directory"),
    ("import a 2099 purchase", ["import", "purchases", "{feed}"], 2, "Nothing was imported: feed.csv has 1 problem in 1 row"),
    ("export a segment without its name", ["export", "segment", "--out", "{out}"], 2, "Name the segment"),
    ("export into a folder that does not exist", ["export", "members", "--out", "/nonexistent/dir/m.csv"], 1, "No such file or directory"),
    ("evaluate as of a future day", ["evaluate", "--job", "kpi-snapshot", "--as-of", "2099-01-01"], 2, "future"),
    ("an executive report of month 13", ["report", "--period", "2026-13", "--out", "{out}"], 2, "2026-13"),
]


@pytest.mark.parametrize("tried,argv,code,said", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_on_the_command_line_is_one_line_an_exit_code_and_changes_nothing(program: Session, tmp_path, capsys, tried, argv, code, said):
    from loyalty.cli import main

    feed = tmp_path / "feed.csv"
    feed.write_text(PURCHASES + "P10,M1,2099-01-01,10,web,S1,food\n")
    argv = [a.format(feed=feed, out=tmp_path / "out.csv") for a in argv]
    from loyalty.bootstrap import prepare_database

    prepare_database(announce=False)  # the first start's admin, before the snapshot
    before = state(program)
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    # One line says it, like every other error (an import refused lists its problems after that line, one per line).
    said_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(said_lines) == 1 and said in said_lines[0] and "Traceback" not in err, err
    assert state(program) == before
    OUTCOMES.append((Case(tried, "cli", tried, lambda s: None, said), f"refused, exit {code}: {said_lines[0]}"))


def test_the_catalogue_tries_at_least_sixty_bad_inputs():
    assert len(CASES) + len(CLI_CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def teardown_module() -> None:
    if target := os.environ.get("LOYALTY_BAD_INPUTS_TABLE"):
        rows = ["| # | way in | tried | outcome |", "|---|---|---|---|"]
        for n, (case, outcome) in enumerate(OUTCOMES, start=1):
            rows.append(f"| {n} | {case.way} | {case.tried.replace('|', '/')} | {outcome.replace('|', '/').replace(chr(10), ' ')} |")
        with open(target, "w", encoding="utf-8") as out:
            out.write("\n".join(rows) + "\n")
