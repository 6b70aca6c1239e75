"""Copies of one request arriving at once, at a real API server with two worker processes.

A till that times out and retries, or a queue that delivers twice, sends the same request
again while the first is still running, to whichever worker takes it. Ten copies with one
Idempotency-Key give one effect and ten equal answers; ten copies of one purchase under ten
keys give one purchase and nine 409s. On SQLite and PostgreSQL (the server gets the test's
database and frozen clock through its environment).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from db.models import LedgerEntry, Purchase, Redemption
from loyalty.access.roles import SYSTEM_CLI
from loyalty.integrations.apikeys import create_key
from tests.factories import make_member, make_purchase, make_reward

PROJECT = Path(__file__).resolve().parents[2]
COPIES = 10
START_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db_url, tmp_path) -> Iterator[str]:
    port = _free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "loyalty", "api", "--port", str(port), "--workers", "2"],
            cwd=PROJECT,
            env={**os.environ, "LOYALTY_DATABASE_URL": db_url, "LOYALTY_API_RATE": "10000"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API server did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _at_once(requests: list[tuple[str, dict, dict]]) -> list[httpx.Response]:
    """Send each (url, headers, json) from its own thread, released together."""
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def send(i: int, url: str, headers: dict, body: dict) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            client.get(url.split("/v1/")[0] + "/openapi.json")  # connection open before the barrier
            barrier.wait(timeout=REQUEST_TIMEOUT_S)
            try:
                answers[i] = client.post(url, headers=headers, json=body)
            except BaseException as error:  # reported below, not lost in a thread
                answers[i] = error

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S * 2)
    assert not any(t.is_alive() for t in threads), "a request never returned"
    failures = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not failures, failures
    return [a for a in answers if isinstance(a, httpx.Response)]


def test_ten_copies_with_one_key_earn_once_and_answer_alike(server, session, now):
    key = create_key(session, name="till", scopes=["purchases:write"], actor=SYSTEM_CLI)["key"]
    make_member(session, external_id="R1")
    body = {"purchase_id": "RACE-1", "member_id": "R1", "occurred_at": (now - timedelta(minutes=1)).isoformat(), "amount": 42.5}
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "retry-me"}
    answers = _at_once([(f"{server}/v1/purchases", headers, body)] * COPIES)
    assert [a.status_code for a in answers] == [201] * COPIES, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") != "true" for a in answers) == 1, "one answer is the original, the rest replays"
    session.rollback()
    assert len(session.exec(select(Purchase)).all()) == 1
    assert [e.points for e in session.exec(select(LedgerEntry))] == [42]


def test_one_purchase_under_ten_keys_is_stored_once_the_others_get_409(server, session, now):
    key = create_key(session, name="shop", scopes=["purchases:write"], actor=SYSTEM_CLI)["key"]
    make_member(session, external_id="R2")
    body = {"purchase_id": "RACE-2", "member_id": "R2", "occurred_at": (now - timedelta(minutes=1)).isoformat(), "amount": 10}
    answers = _at_once([(f"{server}/v1/purchases", {"Authorization": f"Bearer {key}", "Idempotency-Key": f"k{i}"}, body) for i in range(COPIES)])
    assert sorted(a.status_code for a in answers) == [201] + [409] * (COPIES - 1), [a.text for a in answers]
    assert all("RACE-2" in a.json()["error"]["message"] for a in answers if a.status_code == 409)
    session.rollback()
    assert len(session.exec(select(LedgerEntry)).all()) == 1


def test_ten_copies_of_a_redemption_with_one_key_redeem_once(server, session, now):
    key = create_key(session, name="app", scopes=["redemptions:write"], actor=SYSTEM_CLI)["key"]
    member = make_member(session, external_id="R3")
    make_purchase(session, member, 500.0, now - timedelta(days=1))
    reward = make_reward(session, points_cost=100)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "redeem-once"}
    answers = _at_once([(f"{server}/v1/redemptions", headers, {"member_id": "R3", "reward_id": reward.id})] * COPIES)
    assert [a.status_code for a in answers] == [201] * COPIES and len({a.content for a in answers}) == 1
    assert answers[0].json()["balance"] == 400
    session.rollback()
    assert len(session.exec(select(Redemption)).all()) == 1
