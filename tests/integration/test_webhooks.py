"""Webhooks (issue 18): events written to the outbox with the change that caused them, and
delivered signed, at least once, with backoff, to a real HTTP server on 127.0.0.1.

Time is driven through ``deliver_due(now=...)``; every instant comes from the frozen clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.engine import get_engine, write_transaction
from db.models import LedgerEntry, OutboxEvent, WebhookDelivery, WebhookEndpoint, utcnow
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.cli import main
from loyalty.errors import InvalidInput, NotFound, PermissionDenied
from loyalty.evaluation.jobs import run_job
from loyalty.evaluation.worker import WebhookSender
from loyalty.events import EVENT_TYPES, emit, emit_many
from loyalty.integrations.webhooks import (
    DISABLE_AFTER_FAILURES,
    add_endpoint,
    deliver_due,
    delivery_log,
    enable_endpoint,
    list_endpoints,
    remove_endpoint,
    sign,
    verify_signature,
)
from loyalty.ledger.entries import adjust_points
from loyalty.ledger.imports import import_csv
from loyalty.ledger.purchases import refund_purchase
from loyalty.ledger.redemptions import cancel_redemption, fulfil_redemption, redeem_reward
from tests.factories import make_member, make_purchase, make_reward, make_tier, utc

MANAGER = Actor("max", "manager")


# --- a receiver on 127.0.0.1 ------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once used up
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.requests.append({"headers": headers, "body": body})
            return self.statuses.pop(0) if self.statuses else 200

    def ids(self) -> list[str]:
        return [json.loads(r["body"])["id"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state["receiver"].answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- helpers ------------------------------------------------------------------------------------


def fresh(session: Session) -> Session:
    session.commit()
    session.expire_all()
    return session


def subscribe(session: Session, events: list[str] | tuple[str, ...] = EVENT_TYPES, url: str = "https://example.com/hooks") -> dict[str, Any]:
    return add_endpoint(session, url=url, events=list(events), actor=SYSTEM_CLI)


def outbox(session: Session, event_type: str | None = None) -> list[dict[str, Any]]:
    """The events' data in the order they were written (one emit's events share a time: then by member and data)."""
    query = select(OutboxEvent)
    if event_type:
        query = query.where(OutboxEvent.type == event_type)
    events = fresh(session).exec(query).all()
    return [e.data for e in sorted(events, key=lambda e: (e.created_at, str(e.data.get("member_id")), json.dumps(e.data, sort_keys=True)))]


def count(session: Session, model: type) -> int:
    return int(fresh(session).exec(select(func.count()).select_from(model)).one())


def deliveries(session: Session) -> list[WebhookDelivery]:
    return list(fresh(session).exec(select(WebhookDelivery).order_by(WebhookDelivery.id)))


# --- writing events -----------------------------------------------------------------------------


def test_nothing_is_written_when_no_endpoint_listens(session):
    member = make_member(session)
    make_purchase(session, member, 100.0)
    adjust_points(session=session, member_id=member.id, points=5, reason="goodwill", actor=SYSTEM_CLI)
    subscribe(session, ["tier.changed"])  # listens, but not to points
    adjust_points(session=session, member_id=member.id, points=5, reason="goodwill", actor=SYSTEM_CLI)
    assert (count(session, OutboxEvent), count(session, WebhookDelivery)) == (0, 0)


def test_an_adjustment_writes_one_event_and_a_delivery_to_each_endpoint_listening(session):
    member = make_member(session, external_id="C100")
    points_hook = subscribe(session, ["points.changed"])
    both = subscribe(session, ["points.changed", "tier.changed"], url="http://127.0.0.1:9/both")
    subscribe(session, ["tier.changed"], url="http://127.0.0.1:9/tiers")
    removed = subscribe(session, ["points.changed"], url="http://127.0.0.1:9/gone")
    remove_endpoint(session, removed["id"], SYSTEM_CLI)

    adjust_points(session=session, member_id=member.id, points=40, reason="goodwill", actor=SYSTEM_CLI, now=utc(2026, 11, 1, 9))

    assert outbox(session) == [
        {"member_id": "C100", "points": 40, "kind": "adjust", "reason": "goodwill", "occurred_at": "2026-11-01T09:00:00+00:00"}
    ]
    assert sorted(d.endpoint_id for d in deliveries(session)) == sorted([points_hook["id"], both["id"]])
    assert {(d.status, d.attempts) for d in deliveries(session)} == {("pending", 0)}


def test_a_change_that_rolls_back_leaves_no_event(session):
    member = make_member(session)
    subscribe(session)
    with pytest.raises(RuntimeError), write_transaction(session):
        adjust_points(session=session, member_id=member.id, points=40, reason="goodwill", actor=SYSTEM_CLI)
        raise RuntimeError("the use case fails after the adjustment")
    assert (count(session, LedgerEntry), count(session, OutboxEvent), count(session, WebhookDelivery)) == (0, 0, 0)


def test_emit_writes_in_the_callers_transaction_and_never_commits(session):
    subscribe(session, ["tier.changed"])
    with write_transaction(session):
        assert emit(session, "tier.changed", {"member_id": "X"}) is not None
        session.rollback()  # the caller changes its mind
    assert count(session, OutboxEvent) == 0
    with pytest.raises(ValueError, match="not an event type"):
        emit(session, "points.doubled", {})


def test_many_events_at_once_go_through_the_bulk_writer(session):
    subscribe(session, ["tier.changed"])
    subscribe(session, ["tier.changed"], url="http://127.0.0.1:9/second")
    with write_transaction(session):
        written = emit_many(session, "tier.changed", [{"member_id": f"M{i}", "to": "Gold"} for i in range(1_500)])
    assert len(written) == len(set(written)) == 1_500
    assert (count(session, OutboxEvent), count(session, WebhookDelivery)) == (1_500, 3_000)
    assert outbox(session)[0]["to"] == "Gold"


PURCHASES_CSV = """purchase_id,member_id,occurred_at,amount,channel,store,category
P1,C001,2024-06-01T10:00:00Z,19.99,store,S1,grocery
P2,C001,2024-06-02T11:00:00Z,10.00,web,,fashion
P3,C002,2024-06-03T12:00:00Z,0.39,app,S2,eco
P4,C002,2024-06-04T12:00:00Z,12.00,app,S2,eco
"""


def test_imported_purchases_emit_one_points_changed_per_member_and_kind(session, tmp_path: Path):
    make_member(session, external_id="C001")
    make_member(session, external_id="C002")
    subscribe(session, ["points.changed"])
    path = tmp_path / "purchases.csv"
    path.write_text(PURCHASES_CSV)
    import_csv(session, "purchases", path, actor=SYSTEM_CLI)
    assert outbox(session) == [
        {"member_id": "C001", "points": 29, "kind": "earn", "reason": "purchase", "occurred_at": "2024-06-02T11:00:00+00:00", "entries": 2},
        # P3 earns nothing (no entry); P4 alone: its purchase is named
        {
            "member_id": "C002",
            "points": 12,
            "kind": "earn",
            "reason": "purchase",
            "occurred_at": "2024-06-04T12:00:00+00:00",
            "entries": 1,
            "purchase_id": "P4",
        },
    ]


def test_returns_redemptions_fulfilment_and_cancellation_emit_their_events(session):
    member = make_member(session, external_id="C7")
    make_purchase(session, member, 300.0, occurred_at=utc(2026, 11, 1), external_id="P77")
    reward = make_reward(session, points_cost=100)
    subscribe(session)

    first = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=SYSTEM_CLI, now=utc(2026, 11, 10))
    fulfil_redemption(session=session, redemption_id=first.redemption_id, actor=SYSTEM_CLI)
    second = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=SYSTEM_CLI, now=utc(2026, 11, 11))
    cancel_redemption(session=session, redemption_id=second.redemption_id, actor=SYSTEM_CLI, reason="out of stock at the store")
    refund_purchase(session=session, purchase="P77", actor=SYSTEM_CLI, amount="30.00", reason="one item back")

    redemption_events = outbox(session, "redemption.updated")
    assert redemption_events == [
        {"redemption_id": first.redemption_id, "member_id": "C7", "reward_id": reward.id, "status": "requested", "points": 100},
        {"redemption_id": first.redemption_id, "member_id": "C7", "reward_id": reward.id, "status": "fulfilled", "points": 100},
        {"redemption_id": second.redemption_id, "member_id": "C7", "reward_id": reward.id, "status": "requested", "points": 100},
        {"redemption_id": second.redemption_id, "member_id": "C7", "reward_id": reward.id, "status": "cancelled", "points": 100},
    ]
    changes = [(e["kind"], e["points"], e.get("redemption_id"), e.get("purchase_id")) for e in outbox(session, "points.changed")]
    assert changes == [
        ("redeem", -100, first.redemption_id, None),
        ("redeem", -100, second.redemption_id, None),
        ("reverse", 100, second.redemption_id, None),
        ("reverse", -30, None, "P77"),
    ]


def test_tier_evaluation_emits_tier_changed_once_per_move(session):
    make_tier(session, name="Silver", rank=1, min_spend=100, min_purchases=2, window_months=12, grace_months=3)
    ann = make_member(session, external_id="ANN")
    for month in (3, 4):
        make_purchase(session, ann, 80.0, occurred_at=utc(2026, month, 10))
    subscribe(session, ["tier.changed"])

    run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)  # a re-run moves nobody again

    assert outbox(session) == [{"member_id": "ANN", "from": None, "to": "Silver", "at": "2026-10-15T00:00:00+00:00"}]


def test_the_expiry_job_emits_expired_points_and_points_expiring_within_30_days_once(session):
    # The job as of 15 November expires at its cutoff, 16 November 00:00 UTC.
    gone = make_member(session, external_id="GONE")
    make_purchase(session, gone, 60.0, occurred_at=utc(2025, 11, 1))  # expired on 1 November
    soon = make_member(session, external_id="SOON")
    make_purchase(session, soon, 100.0, occurred_at=utc(2025, 11, 20, 8))  # expires 20 November
    make_purchase(session, soon, 40.0, occurred_at=utc(2025, 11, 20, 15))  # the same day
    make_purchase(session, soon, 50.0, occurred_at=utc(2025, 12, 10))  # 10 December
    make_purchase(session, soon, 70.0, occurred_at=utc(2026, 2, 1))  # February: not within 30 days
    adjust_points(session=session, member_id=soon.id, points=-30, reason="correction", actor=SYSTEM_CLI, now=utc(2026, 11, 2))
    subscribe(session, ["points.changed", "points.expiring"])

    run_job("points-expiry", as_of=date(2026, 11, 15), actor=MANAGER)
    run_job("points-expiry", as_of=date(2026, 11, 15), actor=MANAGER)

    assert outbox(session, "points.changed") == [
        {
            "member_id": "GONE",
            "points": -60,
            "kind": "expire",
            "reason": "lots past their expiry date",
            "occurred_at": "2026-11-16T00:00:00+00:00",
            "entries": 1,
        }
    ]
    # The 30 points spent came out of the soonest-expiring lot.
    assert outbox(session, "points.expiring") == [
        {"member_id": "SOON", "points": 110, "expires_at": "2026-11-20T08:00:00+00:00"},
        {"member_id": "SOON", "points": 50, "expires_at": "2026-12-10T00:00:00+00:00"},
    ]


# --- endpoints ------------------------------------------------------------------------------------


def test_endpoints_are_checked_listed_without_their_secret_and_removed_softly(session):
    with pytest.raises(InvalidInput, match="http"):
        add_endpoint(session, url="ftp://example.com", events=["points.changed"], actor=SYSTEM_CLI)
    with pytest.raises(InvalidInput, match="points.doubled"):
        add_endpoint(session, url="https://example.com", events=["points.doubled"], actor=SYSTEM_CLI)
    with pytest.raises(PermissionDenied):
        add_endpoint(session, url="https://example.com", events=["points.changed"], actor=MANAGER)
    created = subscribe(session, ["points.changed", "points.changed"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    [listed] = list_endpoints(session)
    assert listed["events"] == ["points.changed"] and "secret" not in listed and listed["pending"] == 0
    assert created["secret"] not in json.dumps(listed, default=str)

    remove_endpoint(session, created["id"], SYSTEM_CLI)
    assert list_endpoints(session) == []
    assert fresh(session).get(WebhookEndpoint, created["id"]).removed_at is not None
    with pytest.raises(NotFound):
        remove_endpoint(session, created["id"], SYSTEM_CLI)


# --- signatures -----------------------------------------------------------------------------------


def test_a_known_secret_and_body_give_a_known_signature():
    body = b'{"id":"evt_1"}'
    header = sign("whsec_test", 1_700_000_000, body)
    assert header == "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
    assert header.endswith(hmac.new(b"whsec_test", b"1700000000." + body, hashlib.sha256).hexdigest())
    assert verify_signature("whsec_test", header, body, now=1_700_000_100)
    assert not verify_signature("whsec_test", header, b'{"id":"evt_2"}', now=1_700_000_100)  # a changed body
    assert not verify_signature("whsec_other", header, body, now=1_700_000_100)
    assert not verify_signature("whsec_test", header, body, now=1_700_000_000 + 301)  # too old: a replay
    assert not verify_signature("whsec_test", "v1=abc", body, now=1_700_000_000)


# --- delivery -------------------------------------------------------------------------------------


def test_a_delivery_posts_the_signed_event_to_the_endpoint(session, db_url, receiver):
    member = make_member(session, external_id="C9")
    hook = subscribe(session, ["points.changed"], url=receiver.url)
    adjust_points(session=session, member_id=member.id, points=25, reason="goodwill", actor=SYSTEM_CLI)

    assert deliver_due(get_engine(db_url)) == {"delivered": 1, "retry": 0, "failed": 0, "disabled": 0}

    [request] = receiver.requests
    body = json.loads(request["body"])
    [event] = fresh(session).exec(select(OutboxEvent)).all()
    assert body == {"id": event.id, "type": "points.changed", "created": body["created"], "data": event.data}
    assert datetime.fromisoformat(body["created"]) == event.created_at
    assert event.id.startswith("evt_") and body["data"]["member_id"] == "C9"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["loyalty-event-id"] == event.id
    assert verify_signature(hook["secret"], request["headers"]["loyalty-signature"], request["body"])
    [delivery] = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery_log(session)[0]["status"] == "delivered"
    assert deliver_due(get_engine(db_url))["delivered"] == 0  # delivered once


def test_a_failing_endpoint_is_retried_with_growing_waits_and_given_up_after_24_hours(session, db_url, receiver):
    member = make_member(session)
    subscribe(session, ["points.changed"], url=receiver.url)
    adjust_points(session=session, member_id=member.id, points=25, reason="goodwill", actor=SYSTEM_CLI)
    receiver.statuses = [500] * 10
    engine, start = get_engine(db_url), utcnow() + timedelta(seconds=1)

    moment, waits = start, []
    for _ in range(4):
        assert deliver_due(engine, now=moment)["retry"] == 1
        [delivery] = deliveries(session)
        waits.append((delivery.next_attempt_at - moment).total_seconds())
        assert deliver_due(engine, now=moment + timedelta(seconds=1))["retry"] == 0  # not due yet
        moment = delivery.next_attempt_at
    assert [round(w / base, 1) >= 0.8 and w <= base for w, base in zip(waits, (10, 20, 40, 80))] == [True] * 4
    assert waits == sorted(waits)
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error[:8]) == (4, 500, "HTTP 500")

    assert deliver_due(engine, now=start + timedelta(hours=24, minutes=1))["failed"] == 1
    [delivery] = deliveries(session)
    assert delivery.status == "failed" and delivery.last_error.startswith("gave up after 24 hours")
    assert len(receiver.requests) == 4


def test_an_endpoint_failing_for_an_hour_is_disabled_and_a_burst_of_failures_is_not(session, db_url, receiver):
    member = make_member(session)
    hook = subscribe(session, ["points.changed"], url=receiver.url)
    for _ in range(12):
        adjust_points(session=session, member_id=member.id, points=1, reason="burst", actor=SYSTEM_CLI)
    receiver.statuses = [503] * 200
    engine, moment = get_engine(db_url), utcnow() + timedelta(seconds=1)

    assert deliver_due(engine, now=moment)["retry"] == 12  # twelve failures within a second
    [endpoint] = list_endpoints(fresh(session))
    assert (endpoint["consecutive_failures"], endpoint["disabled_at"]) == (12, None)

    while endpoint["disabled_at"] is None and moment < utcnow() + timedelta(hours=3):
        moment = max(d.next_attempt_at for d in deliveries(session))
        deliver_due(engine, now=moment)
        [endpoint] = list_endpoints(fresh(session))
    assert endpoint["disabled_at"] is not None and "failed attempts in a row" in endpoint["disabled_reason"]
    assert endpoint["consecutive_failures"] >= DISABLE_AFTER_FAILURES
    assert moment - utcnow() >= timedelta(minutes=59)

    adjust_points(session=session, member_id=member.id, points=1, reason="while disabled", actor=SYSTEM_CLI)
    assert count(session, OutboxEvent) == 12  # a disabled endpoint receives no new events
    receiver.statuses = []
    enable_endpoint(session, hook["id"], SYSTEM_CLI)
    assert deliver_due(engine, now=moment + timedelta(seconds=1))["delivered"] == 12
    [endpoint] = list_endpoints(fresh(session))
    assert (endpoint["consecutive_failures"], endpoint["disabled_at"], endpoint["pending"]) == (0, None, 0)


def test_two_workers_delivering_at_once_post_each_event_once(session, db_url, receiver):
    member = make_member(session)
    subscribe(session, ["points.changed"], url=receiver.url)
    for _ in range(30):
        adjust_points(session=session, member_id=member.id, points=1, reason="race", actor=SYSTEM_CLI)
    receiver.delay = 0.01
    engine, barrier, results = get_engine(db_url), threading.Barrier(2), []

    def worker() -> None:
        barrier.wait(10)
        results.append(deliver_due(engine))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r["delivered"] for r in results) == 30
    assert Counter(receiver.ids()).most_common(1)[0][1] == 1 and len(receiver.ids()) == 30
    assert len(results) == 2


def test_the_worker_thread_delivers_an_event_within_seconds_and_stops_in_time(session, db_url, receiver):
    member = make_member(session)
    subscribe(session, ["points.changed"], url=receiver.url)
    sender = WebhookSender(get_engine(db_url), every_seconds=0.1, timeout=2.0)
    sender.start()
    try:
        adjust_points(session=session, member_id=member.id, points=3, reason="now", actor=SYSTEM_CLI)
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.requests) == 1
    finally:
        started = time.monotonic()
        assert sender.stop()
        assert time.monotonic() - started < 5


# --- the command line -----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, f"expected one line of JSON on stdout, got {out}"
    return code, json.loads(out[0])


def test_the_webhooks_commands_add_list_and_remove_with_json(db_url, capsys):
    code, created = run_cli(capsys, "webhooks", "add", "--url", "https://example.com/in", "--events", "points.changed,tier.changed", "--json")
    assert code == 0 and set(created) == {"id", "secret"}
    code, listed = run_cli(capsys, "webhooks", "list", "--json")
    assert code == 0 and [(e["id"], e["url"], e["events"]) for e in listed] == [
        (created["id"], "https://example.com/in", ["points.changed", "tier.changed"])
    ]
    assert created["secret"] not in json.dumps(listed)
    code, refused = run_cli(capsys, "webhooks", "add", "--url", "https://example.com/in", "--events", "points.doubled", "--json")
    assert code == 2 and refused["ok"] is False and "points.doubled" in refused["error"]
    code, removed = run_cli(capsys, "webhooks", "remove", str(created["id"]), "--json")
    assert code == 0 and removed["ok"] is True and removed["id"] == created["id"]
    code, missing = run_cli(capsys, "webhooks", "remove", str(created["id"]), "--json")
    assert code == 4 and missing["ok"] is False
    assert run_cli(capsys, "webhooks", "list", "--json") == (0, [])


def test_webhooks_add_without_json_says_the_secret_is_shown_once(db_url, capsys):
    assert main(["webhooks", "add", "--url", "http://127.0.0.1:8080/in", "--events", "points.expiring"]) == 0
    out = capsys.readouterr().out
    assert "shown once" in out and "whsec_" in out
