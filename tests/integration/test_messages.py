"""Messages to members: consent, the monthly cap, never queued twice, e-mail or a CSV for the provider, templates."""

from __future__ import annotations

import csv
import io
import json
from email import message_from_bytes, policy

import pytest
from sqlmodel import select

from db.engine import write_transaction
from db.models import MemberMessage, TierMovement
from loyalty.access.roles import Actor
from loyalty.engagement.messages import export_csv, list_messages, preview, queue_messages, save_template, send_queued, templates
from loyalty.errors import InvalidInput
from loyalty.ledger.challenges import define_challenge
from loyalty.settings import update_settings
from tests.factories import make_member, make_purchase, make_tier, utc
from tests.smtp_sink import running_smtp_sink

MANAGER = Actor("maria", "manager")
ADMIN = Actor("ada", "admin")
NOW = utc(2026, 3, 1, 8)


def statuses(session) -> list[tuple[str, str, str, str]]:
    session.rollback()
    session.expire_all()  # the rows were changed through Core statements, not these objects
    rows = session.exec(select(MemberMessage).order_by(MemberMessage.member_id, MemberMessage.kind)).all()
    return [(m.kind, m.channel, m.status, m.reason) for m in rows]


@pytest.fixture
def expiring(session):
    """Two members whose 2025-03-10 points expire on 2026-03-10: one consented to marketing, one did not."""
    yes = make_member(session, external_id="YES", name="Yann", marketing_consent=True)
    no = make_member(session, external_id="NO", name="Nora", marketing_consent=False)
    for member in (yes, no):
        make_purchase(session, member, 80.0, utc(2025, 3, 10))
    return yes, no


def test_expiry_reminders_go_only_to_members_who_consented_and_a_second_run_queues_nothing(session, expiring):
    first = queue_messages(session, now=NOW)
    assert (first["queued"], first["suppressed"], first["channel"]) == (1, 1, "csv")
    assert statuses(session) == [("points_expiring", "csv", "queued", ""), ("points_expiring", "csv", "suppressed", "no marketing consent")]
    again = queue_messages(session, now=NOW.replace(hour=20))
    assert (again["queued"], again["suppressed"]) == (0, 0)
    (message,) = [m for m in list_messages(session, status="queued")]
    assert message == {
        "member_id": "YES",
        "kind": "points_expiring",
        "channel": "csv",
        "status": "queued",
        "reason": "",
        "created_at": NOW,
        "sent_at": None,
    }


def test_the_monthly_cap_keeps_the_expiry_reminder_and_suppresses_the_rest(session, expiring):
    yes, _ = expiring
    update_settings(session=session, actor=ADMIN, messages_per_member_per_month=1)
    gold = make_tier(session, name="Gold", rank=5)
    with write_transaction(session):
        session.add(TierMovement(member_id=yes.id, from_tier_id=None, to_tier_id=gold.id, moved_at=utc(2026, 2, 28), reason="spend"))
    queue_messages(session, now=NOW)
    mine = [s for s in statuses(session) if s[2] != "suppressed" or "cap" in s[3]]
    assert mine == [("points_expiring", "csv", "queued", ""), ("tier_up", "csv", "suppressed", "frequency cap: 1 messages this month")]


def test_a_completed_challenge_is_news_and_the_csv_for_the_provider_marks_messages_sent(session):
    member = make_member(session, external_id="CHL", name="Chloe", email="chloe@example.com", marketing_consent=True)
    define_challenge(session, name="Two buys", purchases=2, points=100, starts=utc(2026, 1, 1), actor=MANAGER)
    make_purchase(session, member, 10.0, utc(2026, 2, 1))
    make_purchase(session, member, 10.0, utc(2026, 2, 2))
    queued = queue_messages(session, now=None)  # completions are news for a week after they are recorded
    assert queued["by_kind"] == {"challenge_completed": 1}
    content, count = export_csv(session, actor=MANAGER)
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert count == 1 and rows[0]["email"] == "chloe@example.com" and rows[0]["subject"] == "You completed Two buys"
    assert "earned 100 points" in rows[0]["body"] and rows[0]["name"] == "Chloe"
    assert [s[2] for s in statuses(session)] == ["sent"]
    assert export_csv(session, actor=MANAGER)[1] == 0, "exported once"


def test_with_an_smtp_server_messages_are_mailed_in_the_managers_wording(session, expiring, monkeypatch):
    yes, _ = expiring
    save_template(session, kind="points_expiring", subject="Hurry, {name}: {points} points", body="They expire on {expires_on}.", actor=MANAGER)
    with running_smtp_sink(monkeypatch) as sink:
        assert queue_messages(session, now=NOW)["channel"] == "email"
        assert send_queued(session) == {"sent": 1, "failed": 0, "suppressed": 0}
        (raw,) = sink.messages
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == yes.email and mail["Subject"] == "Hurry, Yann: 80 points"
    assert mail.get_content().strip() == "They expire on 2026-03-10."
    assert statuses(session)[0][:3] == ("points_expiring", "email", "sent")


def test_an_unreachable_mail_server_fails_the_message_with_the_reason_and_it_is_tried_again(session, expiring, monkeypatch):
    monkeypatch.setenv("LOYALTY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LOYALTY_SMTP_PORT", "1")  # nothing listens there
    queue_messages(session, now=NOW)
    assert send_queued(session) == {"sent": 0, "failed": 1, "suppressed": 0}
    kind, channel, status, reason = statuses(session)[0]
    assert (status, channel) == ("failed", "email") and "could not reach the mail server 127.0.0.1:1" in reason
    with running_smtp_sink(monkeypatch) as sink:
        assert send_queued(session) == {"sent": 1, "failed": 0, "suppressed": 0}
        assert len(sink.messages) == 1


def test_a_template_with_an_unknown_placeholder_is_refused_naming_it_and_the_preview_fills_an_example(session):
    with pytest.raises(InvalidInput, match=r"body: unknown placeholder \{balance\}; this message knows \{name\}, \{tier\}"):
        save_template(session, kind="tier_up", subject="Welcome to {tier}", body="Your balance is {balance}", actor=MANAGER)
    assert templates(session)["tier_up"]["changed_by"] == ""
    assert preview("tier_up", "Welcome to {tier}", "Hello {name}") == ("Welcome to Gold", "Hello Alex Example")


def test_messages_list_on_the_command_line(db_url, session, expiring, capsys):
    from loyalty.cli import main

    queue_messages(session, now=NOW)
    assert main(["messages", "list", "--status", "suppressed", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {k: row[k] for k in ("member_id", "kind", "channel", "status", "reason")} == {
        "member_id": "NO",
        "kind": "points_expiring",
        "channel": "csv",
        "status": "suppressed",
        "reason": "no marketing consent",
    }
    with pytest.raises(SystemExit) as refused:
        main(["messages", "list", "--status", "lost"])
    assert refused.value.code == 2 and "invalid choice: 'lost'" in capsys.readouterr().err


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_messages_are_made_a_few_members_at_a_time_with_the_same_wording_values_and_cap(session, monkeypatch, chunk):
    """The job makes and writes the messages of CHUNK_MEMBERS members at a time (memory at a
    million members); chunks of one and two members give exactly what one chunk gives."""
    import loyalty.engagement.messages as module

    monkeypatch.setattr(module, "CHUNK_MEMBERS", chunk)
    update_settings(session=session, actor=ADMIN, messages_per_member_per_month=1)
    gold = make_tier(session, name="Gold", rank=5)
    up = make_member(session, external_id="UP", name="Una", marketing_consent=True)
    down = make_member(session, external_id="DOWN", name="Dan", marketing_consent=True)
    quiet = make_member(session, external_id="QUIET", name="Quinn", marketing_consent=False)
    for member, amount in ((up, 1500.0), (down, 80.0), (quiet, 2500.0)):
        make_purchase(session, member, amount, utc(2025, 3, 10))
    with write_transaction(session):
        session.add(TierMovement(member_id=up.id, from_tier_id=None, to_tier_id=gold.id, moved_at=utc(2026, 2, 27), reason="spend"))
        session.add(TierMovement(member_id=down.id, from_tier_id=gold.id, to_tier_id=None, moved_at=utc(2026, 2, 28), reason="spend"))
    result = queue_messages(session, now=NOW)
    assert (result["queued"], result["suppressed"]) == (2, 3)
    assert result["by_kind"] == {"points_expiring": 3, "tier_up": 1, "tier_down": 1}
    session.rollback()
    made = session.exec(select(MemberMessage).order_by(MemberMessage.member_id, MemberMessage.id)).all()
    assert [(m.member_id, m.kind, m.dedupe_key.split(":")[0], m.status, m.reason, m.data) for m in made] == [
        (up.id, "points_expiring", "expiry", "queued", "", {"points": "1,500", "expires_on": "2026-03-10", "name": "Una"}),
        (up.id, "tier_up", "move", "suppressed", "frequency cap: 1 messages this month", {"tier": "Gold", "name": "Una"}),
        (down.id, "points_expiring", "expiry", "queued", "", {"points": "80", "expires_on": "2026-03-10", "name": "Dan"}),
        (down.id, "tier_down", "move", "suppressed", "frequency cap: 1 messages this month", {"tier": "no tier", "name": "Dan"}),
        (
            quiet.id,
            "points_expiring",
            "expiry",
            "suppressed",
            "no marketing consent",
            {"points": "2,500", "expires_on": "2026-03-10", "name": "Quinn"},
        ),
    ]
    assert queue_messages(session, now=NOW)["by_kind"] == {}, "a second run makes none again"


def test_the_daily_job_run_twice_queues_each_reminder_once(session, expiring):
    from datetime import date

    from loyalty.evaluation.jobs import run_job

    first = run_job("member-messages", as_of=date(2026, 3, 1), actor=MANAGER)
    second = run_job("member-messages", as_of=date(2026, 3, 1), actor=MANAGER)
    assert (first["status"], first["queued"], first["suppressed"]) == ("succeeded", 1, 1)
    assert (second["status"], second["queued"], second["suppressed"]) == ("succeeded", 0, 0)
    assert len(statuses(session)) == 2


def test_consent_withdrawn_or_an_erasure_after_queueing_stops_the_message_and_the_name_goes(session, monkeypatch):
    from loyalty.ledger.erasure import erase_member

    era = make_member(session, external_id="ERA", name="Erin Secret", marketing_consent=True)
    wdr = make_member(session, external_id="WDR", name="Walt", marketing_consent=True)
    ok = make_member(session, external_id="OK", name="Olga", marketing_consent=True)
    for member in (era, wdr, ok):
        make_purchase(session, member, 80.0, utc(2025, 3, 10))
    assert queue_messages(session, now=NOW)["queued"] == 3
    erase_member(session=session, external_id="ERA", actor=ADMIN)
    wdr.marketing_consent = False
    session.add(wdr)
    session.commit()
    content, count = export_csv(session, actor=MANAGER)
    assert count == 1 and "Erin" not in content.decode() and [r["member_id"] for r in csv.DictReader(io.StringIO(content.decode()))] == ["OK"]
    session.rollback()
    rows = {m.member_id: m for m in session.exec(select(MemberMessage))}
    assert (rows[era.id].status, rows[era.id].reason, rows[era.id].data.get("name")) == ("suppressed", "member erased", None)
    assert (rows[wdr.id].status, rows[wdr.id].reason) == ("suppressed", "consent withdrawn before sending")


def test_two_sending_runs_at_once_never_mail_a_message_twice(session, expiring, monkeypatch):
    from datetime import timedelta

    from loyalty.engagement import messages

    with running_smtp_sink(monkeypatch) as sink:
        queue_messages(session, now=NOW)
        # A run that claimed the message a moment ago and is still sending: this one leaves it alone.
        first = messages._claim(session, messages.utcnow(), 10)
        assert len(first) == 1
        assert send_queued(session) == {"sent": 0, "failed": 0, "suppressed": 0}
        # The claim of a run that died is taken again after an hour (its try counted).
        later = first[0][0].sent_at + timedelta(hours=2)
        monkeypatch.setattr(messages, "utcnow", lambda: later)
        assert send_queued(session) == {"sent": 1, "failed": 0, "suppressed": 0}
        assert len(sink.messages) == 1
    session.rollback()
    session.expire_all()
    (message,) = [m for m in session.exec(select(MemberMessage)) if m.status != "suppressed"]
    assert (message.status, message.attempts) == ("sent", 2)


def test_the_overview_counts_by_day_kind_and_status_and_every_message_waiting_for_the_csv(session, monkeypatch):
    from loyalty.engagement import messages as module
    from loyalty.engagement.messages import message_overview

    monkeypatch.setattr(module, "_smtp", lambda: None)
    member = make_member(session)
    rows = [
        ("points_expiring", "queued", "csv", utc(2026, 3, 1, 9)),
        ("points_expiring", "queued", "csv", utc(2026, 3, 1, 23)),
        ("tier_up", "suppressed", "csv", utc(2026, 3, 2, 8)),
        ("tier_up", "sent", "email", utc(2026, 3, 2, 9)),
        ("tier_up", "queued", "csv", utc(2026, 1, 5, 9)),  # older than the 30 days: still waits for the CSV
    ]
    for i, (kind, status, channel, at) in enumerate(rows):
        session.add(MemberMessage(member_id=member.id, kind=kind, dedupe_key=str(i), channel=channel, status=status, created_at=at))
    session.commit()
    overview = message_overview(session, now=utc(2026, 3, 3, 12))
    assert overview["per_status"] == {"queued": 2, "sent": 1, "failed": 0, "suppressed": 1}
    assert overview["queued_for_csv"] == 3
    daily = overview["daily"].to_dict("records")
    assert daily == [{"day": "01 Mar", "kind": "points_expiring", "messages": 2}, {"day": "02 Mar", "kind": "tier_up", "messages": 2}]


def test_the_chart_keeps_the_days_in_order_whichever_kinds_each_day_has():
    """Plotly orders categories as the traces bring them: the first kind's days came first (the demo
    drew 01 Dec before 08 Nov, since only 01 Dec had campaign offers)."""
    import pandas as pd

    from loyalty.ui.charts import messages_per_day

    daily = pd.DataFrame(
        [("28 Feb", "tier_up", 3), ("01 Mar", "campaign_offer", 1), ("01 Mar", "tier_up", 2), ("02 Mar", "points_expiring", 4)],
        columns=["day", "kind", "messages"],
    )
    fig = messages_per_day(daily)
    assert [trace.name for trace in fig.data] == ["campaign offer", "points expiring", "tier up"]
    assert list(fig.layout.xaxis.categoryarray) == ["28 Feb", "01 Mar", "02 Mar"]
    assert fig.layout.xaxis.categoryorder == "array"


def test_expiring_points_read_from_the_last_commit_in_parts_are_the_sessions_own(session, monkeypatch):
    """The nightly job reads the ledger as last committed, in parts at once (SQLite): the same
    reminders as the per-member query, spent lots and erased members included."""
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("the reader processes serve SQLite")
    pytest.importorskip("adbc_driver_sqlite", reason="pip install adbc-driver-sqlite (requirements.txt)")
    from sqlalchemy import text

    from loyalty.analytics import data, reader
    from loyalty.ledger.outbox import expiring_points
    from loyalty.ledger.redemptions import redeem_reward
    from tests.factories import make_reward

    spender, keeper, erased, later = (make_member(session, external_id=name) for name in ("SPENDER", "KEEPER", "ERASED", "LATER"))
    make_purchase(session, spender, 80.0, utc(2025, 3, 10))
    make_purchase(session, spender, 50.0, utc(2025, 3, 25))
    redeem_reward(session=session, member_id=spender.id, reward_id=make_reward(session, points_cost=100).id, actor=ADMIN, now=utc(2025, 5, 1))
    make_purchase(session, keeper, 40.0, utc(2025, 3, 12))
    make_purchase(session, keeper, 10.0, utc(2025, 3, 12, 18))
    make_purchase(session, erased, 60.0, utc(2025, 3, 11))
    make_purchase(session, later, 70.0, utc(2025, 9, 1))
    with write_transaction(session):
        session.execute(text("UPDATE member SET erased_at = :now WHERE id = :id"), {"now": "2026-01-01 00:00:00.000000", "id": erased.id})
    per_member = expiring_points(session, after=NOW)
    monkeypatch.setattr(data, "READ_PARTS", 2)
    monkeypatch.setattr(reader, "READ_PARTS", 2)
    monkeypatch.setattr(data, "SPLIT_MIN_ROWS", 2)
    assert data.id_parts(session, "ledger_entry", "auto") is not None, "read in two parts"
    last_commit = expiring_points(session, after=NOW, read_last_commit=True)
    assert last_commit.to_dict("records") == per_member.to_dict("records")
    points = dict(zip(per_member["member_id"], per_member["points"]))
    assert set(points) == {spender.id, keeper.id}, "the erased member and the later lot are left out"
    assert 0 < points[spender.id] < 50 and points[keeper.id] == 50, "the spent lot is gone, the same day's lots add up"


def test_what_is_known_of_every_member_at_once_is_what_each_chunk_reads(session, expiring):
    """The nightly job reads members and their earlier messages once (_KnownTables), not per chunk:
    the same people, earlier messages and this month's counts; on the second night nothing is queued twice."""
    from sqlalchemy import text

    from loyalty.engagement.messages import _known, _KnownTables

    extra = make_member(session, external_id="GONE", name=None, email="  gone@example.com \t", marketing_consent=True)
    with write_transaction(session):
        session.execute(text("UPDATE member SET erased_at = :now WHERE id = :id"), {"now": "2026-02-01 00:00:00.000000", "id": extra.id})
    assert queue_messages(session, now=NOW)["queued"] == 1
    ids = sorted([expiring[0].id, expiring[1].id, extra.id])
    later = utc(2026, 3, 20, 8)
    for now in (NOW, later):
        each = _known(session, ids, now)
        at_once = _KnownTables.read(session, now, ids[0], ids[-1]).of(ids[0], ids[-1])
        assert at_once["sent_before"] == each["sent_before"] and len(each["sent_before"]) == 2
        assert at_once["this_month"] == each["this_month"] == {expiring[0].id: 1}
        people, expected = at_once["members"].loc[ids], each["members"].loc[ids]
        assert people.to_dict("index") == expected.to_dict("index")
        assert people.loc[extra.id, "email"] == "gone@example.com" and people.loc[extra.id, "erased"]
    assert queue_messages(session, now=later, read_last_commit=True) == {"queued": 0, "suppressed": 0, "by_kind": {}, "channel": "csv"}
