"""Purchases written together (the API's group commit): each row keeps its own checks and answer."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from db.models import IdempotencyRecord, LedgerEntry, Purchase
from loyalty.access.roles import Actor
from loyalty.errors import AlreadyDone, InvalidInput, LoyaltyError, NotFound
from loyalty.integrations.idempotency import Answer, Keyed, answer_many
from loyalty.ledger.purchases import RecordedPurchase, record_purchases
from tests.factories import make_member, make_tier

TILL_A, TILL_B = Actor("api:till-a", "integration"), Actor("api:till-b", "integration")


def row(purchase: str, member: str, amount: float, at) -> dict:
    return {"purchase_id": purchase, "member_id": member, "occurred_at": at, "amount": amount, "channel": "store"}


def test_a_batch_records_the_good_rows_and_refuses_each_bad_one_with_its_reason(session, now):
    gold = make_tier(session, name="Gold", multiplier=1.5)
    make_member(session, external_id="A1", tier_id=gold.id)
    make_member(session, external_id="A2")
    make_member(session, external_id="GONE", erased_at=now - timedelta(days=1))
    at = now - timedelta(minutes=3)
    rows = [
        row("B-1", "A1", 10.0, at),
        row("B-2", "NOBODY", 10.0, at),
        row("B-3", "A2", -4.0, at),
        row("B-1", "A2", 99.0, at),  # the same purchase id again, in the same batch
        row("B-4", "A2", 20.0, at),
        row("B-5", "GONE", 5.0, at),
        row("B-6", "A1", 30.0, at),
    ]
    outcomes = record_purchases(session, rows, actors=[TILL_A, TILL_B, TILL_A, TILL_B, TILL_B, TILL_A, TILL_A])
    assert outcomes[0] == RecordedPurchase("B-1", "A1", 15, 15 + 45)  # the balance after the whole batch
    assert isinstance(outcomes[1], NotFound) and "NOBODY" in str(outcomes[1])
    assert isinstance(outcomes[2], InvalidInput) and "amount" in str(outcomes[2])
    assert isinstance(outcomes[3], AlreadyDone) and "member A1" in str(outcomes[3])
    assert outcomes[4] == RecordedPurchase("B-4", "A2", 20, 20)
    assert isinstance(outcomes[5], NotFound) and "erased" in str(outcomes[5])
    assert outcomes[6] == RecordedPurchase("B-6", "A1", 45, 60)
    session.rollback()
    assert sorted(session.exec(select(Purchase.external_id))) == ["B-1", "B-4", "B-6"]
    actors = dict(session.exec(select(Purchase.external_id, LedgerEntry.actor).join(LedgerEntry, LedgerEntry.purchase_id == Purchase.id)).all())
    assert actors == {"B-1": "api:till-a", "B-4": "api:till-b", "B-6": "api:till-a"}


def _answers(session, outcomes):
    return [Answer(201, {"p": o.purchase}) if isinstance(o, RecordedPurchase) else Answer(409, {"e": str(o)}) for o in outcomes]


def test_copies_in_one_batch_run_once_and_replay_and_stored_keys_replay_later(session, now):
    make_member(session, external_id="A3")
    at = now - timedelta(minutes=1)
    rows = [row("K-1", "A3", 10.0, at), row("K-1", "A3", 10.0, at), row("K-2", "A3", 5.0, at), row("K-3", "A3", 5.0, at)]
    keyed = [
        Keyed(1, "same", "POST", "/v1/purchases", "f1"),
        Keyed(1, "same", "POST", "/v1/purchases", "f1"),
        Keyed(1, "same", "POST", "/v1/purchases", "other"),
        Keyed(1, None, "POST", "/v1/purchases", "f3"),
    ]
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.integrations.apikeys import create_key

    create_key(session, name="k", scopes=["purchases:write"], actor=SYSTEM_CLI)  # api key id 1

    def refusal(error: LoyaltyError) -> Answer:
        return Answer(409, {"e": type(error).__name__})

    def effect(session, indexes):
        return _answers(session, record_purchases(session, [rows[i] for i in indexes], actors=[TILL_A] * len(indexes)))

    first = answer_many(session, keyed, effect=effect, refusal=refusal)
    assert first[0] == Answer(201, {"p": "K-1"}) and first[1] == Answer(201, {"p": "K-1"}, replayed=True)
    assert first[2] == Answer(409, {"e": "KeyReused"}) and first[3] == Answer(201, {"p": "K-3"})
    later = answer_many(session, [keyed[0]], effect=effect, refusal=refusal)
    assert later == [Answer(201, {"p": "K-1"}, replayed=True)]
    session.rollback()
    assert sorted(session.exec(select(Purchase.external_id))) == ["K-1", "K-3"]
    assert len(session.exec(select(IdempotencyRecord)).all()) == 1


def test_answers_older_than_a_day_are_purged_by_the_nightly_expiry_and_free_their_key(session, now):
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.evaluation.jobs import run_job
    from loyalty.integrations.apikeys import create_key

    create_key(session, name="k", scopes=["purchases:write"], actor=SYSTEM_CLI)
    session.add(
        IdempotencyRecord(
            api_key_id=1,
            key="old",
            method="POST",
            path="/v1/purchases",
            request_hash="h",
            status_code=201,
            response_body="{}",
            created_at=now - timedelta(hours=25),
        )
    )
    session.add(
        IdempotencyRecord(
            api_key_id=1,
            key="new",
            method="POST",
            path="/v1/purchases",
            request_hash="h",
            status_code=201,
            response_body="{}",
            created_at=now - timedelta(hours=1),
        )
    )
    session.commit()
    result = run_job("points-expiry", actor=SYSTEM_CLI)
    assert result["status"] == "succeeded" and result["idempotency_answers_purged"] == 1
    session.rollback()
    assert [r.key for r in session.exec(select(IdempotencyRecord))] == ["new"]


def test_one_idempotency_key_under_two_api_keys_is_two_requests_and_found_through_the_pair_index(session, now):
    """Tills choose their own keys, so two tills may send the same one: each is its own request.
    The batch finds stored answers through the unique (API key, key) index; it used to search the
    index of created_at, that is every answer of the last day, for each batch (at 300 purchases/s,
    millions of rows by evening)."""
    from sqlalchemy import event

    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.integrations.apikeys import create_key

    for name in ("till-a", "till-b"):
        create_key(session, name=name, scopes=["purchases:write"], actor=SYSTEM_CLI)  # api key ids 1 and 2
    make_member(session, external_id="A4")
    at = now - timedelta(minutes=1)
    rows = [row("T-1", "A4", 10.0, at), row("T-2", "A4", 20.0, at)]
    keyed = [Keyed(1, "shared", "POST", "/v1/purchases", "f1"), Keyed(2, "shared", "POST", "/v1/purchases", "f2")]

    def effect(session, indexes):
        return _answers(session, record_purchases(session, [rows[i] for i in indexes], actors=[TILL_A] * len(indexes)))

    lookups: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "FROM idempotency_record" in statement:
            lookups.append((statement, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        first = answer_many(session, keyed, effect=effect, refusal=lambda error: Answer(409, {"e": str(error)}))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert first == [Answer(201, {"p": "T-1"}), Answer(201, {"p": "T-2"})]
    again = answer_many(session, list(reversed(keyed)), effect=effect, refusal=lambda error: Answer(409, {"e": str(error)}))
    assert again == [Answer(201, {"p": "T-2"}, replayed=True), Answer(201, {"p": "T-1"}, replayed=True)]
    assert len(lookups) == 1
    if engine.dialect.name == "sqlite":
        statement, parameters = lookups[0]
        plan = " ".join(str(r[-1]) for r in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert "api_key_id=? AND key=?" in plan, plan
