"""Idempotent writes: a retry with the same ``Idempotency-Key`` gets the first answer again.

The answer is stored in the same transaction as the request's effect, with the key claimed
first: a concurrent copy of the request (another API worker, another connection) waits on
that claim (SQLite: the write lock; PostgreSQL: the unique index) and, once the first
commits, finds the answer and replays it. So a key has a stored answer exactly when its
effect happened, and never two effects. Answers are kept for :data:`KEPT_FOR`.

Refusals of the domain (not enough points, an over-return) are answers too and are stored:
the retry of a refused redemption is refused the same way, not tried again later with
another outcome. Faults (a database that is down) store nothing, so a retry runs anew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import IdempotencyRecord, utcnow
from loyalty.errors import InvalidInput, LoyaltyError

__all__ = ["KEPT_FOR", "Answer", "KeyReused", "Keyed", "answer_many", "answer_now", "answer_once", "check_key", "purge_expired", "request_hash"]

KEPT_FOR = timedelta(hours=24)
ATTEMPTS = 3
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


class KeyReused(LoyaltyError):
    """The same Idempotency-Key came with another request (another body or address): 409."""

    exit_code = 2


def request_hash(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path with its query, and the body's bytes
    (JSON re-serialised with sorted keys, so spacing and key order do not count)."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def _stored(session: Session, api_key_id: int, key: str, now: datetime) -> IdempotencyRecord | None:
    return session.exec(
        select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key, col(IdempotencyRecord.created_at) > now - KEPT_FOR
        )
    ).first()


def _replay(record: IdempotencyRecord, fingerprint: str) -> Answer:
    if record.request_hash != fingerprint:
        raise KeyReused(
            f"Idempotency-Key {record.key!r} was used {record.created_at:%Y-%m-%d %H:%M:%S} UTC for another request "
            f"({record.method} {record.path}); use a new key for a new request."
        )
    return Answer(record.status_code, json.loads(record.response_body), replayed=True)


class _Refused(Exception):
    """Carries a refusal's answer out of the transaction that must roll its effect back."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


def answer_once(
    session: Session,
    *,
    api_key_id: int,
    key: str,
    method: str,
    path: str,
    body: bytes,
    effect: Callable[[Session], Answer],
    refusal: Callable[[LoyaltyError], Answer],
    now: datetime | None = None,
) -> Answer:
    """Run ``effect`` once per (API key, ``key``) and store its answer; replay it on a retry.

    ``effect`` runs inside the transaction (domain functions join it) and returns the answer;
    a :class:`LoyaltyError` it raises rolls its writes back and is stored as ``refusal(error)``.
    """
    key = check_key(key)
    now = now or utcnow()
    fingerprint = request_hash(method, path, body)
    return _retried(lambda: _answer_once(session, api_key_id, key, method, path, fingerprint, effect, refusal, now), session)


def check_key(key: str) -> str:
    """The key without surrounding spaces, or InvalidInput if it cannot be one."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.")
    return key


def _retried(attempt: Callable[[], Answer], session: Session) -> Answer:
    """Run ``attempt`` again when a concurrent transaction took a unique value first (PostgreSQL
    reports it at the insert): the next attempt sees what that one committed and answers by it."""
    for _ in range(ATTEMPTS - 1):
        try:
            return attempt()
        except IntegrityError:
            session.rollback()
    return attempt()


def _answer_once(
    session: Session,
    api_key_id: int,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    effect: Callable[[Session], Answer],
    refusal: Callable[[LoyaltyError], Answer],
    now: datetime,
) -> Answer:
    if (record := _stored(session, api_key_id, key, now)) is not None:
        return _replay(record, fingerprint)
    try:
        with write_transaction(session):
            if (record := _stored(session, api_key_id, key, now)) is not None:  # committed while we waited for the lock
                return _replay(record, fingerprint)
            # An answer older than KEPT_FOR frees its key. Only such an answer: on PostgreSQL this
            # statement sees what committed since the check above, and deleting a concurrent copy's
            # fresh answer would let this request run its effect a second time.
            session.execute(
                delete(IdempotencyRecord).where(
                    col(IdempotencyRecord.api_key_id) == api_key_id,
                    col(IdempotencyRecord.key) == key,
                    col(IdempotencyRecord.created_at) <= now - KEPT_FOR,
                )
            )
            claim = IdempotencyRecord(
                api_key_id=api_key_id,
                key=key,
                method=method,
                path=path[:300],
                request_hash=fingerprint,
                status_code=0,
                response_body="",
                created_at=now,
            )
            session.add(claim)
            session.flush()  # PostgreSQL: a concurrent copy waits here until this transaction ends
            answer = _answered(session, effect, refusal)
            claim.status_code, claim.response_body = answer.status_code, json.dumps(answer.body, default=str)
            session.add(claim)
        return answer
    except IntegrityError:  # a concurrent copy committed this key first: its answer is ours
        session.rollback()
        record = _stored(session, api_key_id, key, now)
        if record is None:
            raise  # another unique value (the purchase id): _retried runs it again
        return _replay(record, fingerprint)


def answer_now(session: Session, *, effect: Callable[[Session], Answer], refusal: Callable[[LoyaltyError], Answer]) -> Answer:
    """A write without an Idempotency-Key: ``effect`` in one transaction, a refusal rolled back."""

    def attempt() -> Answer:
        with write_transaction(session):
            return _answered(session, effect, refusal)

    return _retried(attempt, session)


def _answered(session: Session, effect: Callable[[Session], Answer], refusal: Callable[[LoyaltyError], Answer]) -> Answer:
    try:
        with session.begin_nested():  # the effect's writes alone roll back on a refusal (or a dry run)
            return effect(session)
    except LoyaltyError as error:
        return refusal(error)


@dataclass(frozen=True)
class Keyed:
    """One request of a batch: its API key, its Idempotency-Key (None: none sent) and its fingerprint."""

    api_key_id: int
    key: str | None
    method: str
    path: str
    fingerprint: str


def answer_many(
    session: Session,
    requests: list[Keyed],
    *,
    effect: Callable[[Session, list[int]], list[Answer]],
    refusal: Callable[[LoyaltyError], Answer],
    now: datetime | None = None,
) -> list[Answer]:
    """:func:`answer_once` for a batch of requests, in one transaction.

    A request whose key has a stored answer gets it replayed; of several copies in the batch
    the first runs and the others replay its answer; ``effect(session, indexes)`` answers the
    rest, and each answer is stored with its key. A conflict with a concurrent transaction
    (PostgreSQL's unique index) raises IntegrityError: the caller answers the batch one by one.
    """
    now = now or utcnow()
    answers: list[Answer | None] = [None] * len(requests)
    with write_transaction(session):
        pairs = {(r.api_key_id, r.key) for r in requests if r.key}
        stored = {
            (record.api_key_id, record.key): record
            for record in session.exec(select(IdempotencyRecord).where(*_pairs_of(pairs), col(IdempotencyRecord.created_at) > now - KEPT_FOR))
            if (record.api_key_id, record.key) in pairs
        }
        first: dict[tuple[int, str], int] = {}
        run: list[int] = []
        for i, r in enumerate(requests):
            if r.key is None:
                run.append(i)
            elif (r.api_key_id, r.key) in stored:
                answers[i] = _replayed_or_refused(stored[(r.api_key_id, r.key)], r.fingerprint, refusal)
            elif (r.api_key_id, r.key) not in first:
                first[(r.api_key_id, r.key)] = i
                run.append(i)
        if stale := [key for key in first if key not in stored]:  # answers older than KEPT_FOR free their keys
            session.execute(
                delete(IdempotencyRecord).where(
                    *_pairs_of(set(stale)), col(IdempotencyRecord.created_at) <= now - KEPT_FOR
                )  # other pairs it meets are as old: gone too
            )
        records = []
        for i, answer in zip(run, effect(session, run)):
            answers[i] = answer
            r = requests[i]
            if r.key is not None:
                records.append(
                    {
                        "api_key_id": r.api_key_id,
                        "key": r.key,
                        "method": r.method,
                        "path": r.path[:300],
                        "request_hash": r.fingerprint,
                        "status_code": answer.status_code,
                        "response_body": json.dumps(answer.body, default=str),
                        "created_at": now,
                    }
                )
        if records:  # one INSERT for the batch (ORM objects cost more than the purchases)
            session.execute(insert(IdempotencyRecord), records)
        for i, r in enumerate(requests):  # copies within the batch
            if answers[i] is None and r.key is not None:
                original = first[(r.api_key_id, r.key)]
                ran = requests[original]
                answers[i] = (
                    Answer(answers[original].status_code, answers[original].body, replayed=True)  # type: ignore[union-attr]
                    if ran.fingerprint == r.fingerprint
                    else refusal(KeyReused(f"Idempotency-Key {r.key!r} was just used for another request; use a new key for a new request."))
                )
    return [a for a in answers if a is not None]


def _pairs_of(pairs: set[tuple[int, str]]) -> tuple[Any, Any]:
    """Conditions that narrow the answers to these (API key, Idempotency-Key) pairs through the
    unique index on both (the caller keeps only the exact pairs). On the key alone the database
    searched the index of created_at instead: every answer of the last 24 hours, each batch."""
    return col(IdempotencyRecord.api_key_id).in_({api_key for api_key, _ in pairs}), col(IdempotencyRecord.key).in_({key for _, key in pairs})


def _replayed_or_refused(record: IdempotencyRecord, fingerprint: str, refusal: Callable[[LoyaltyError], Answer]) -> Answer:
    try:
        return _replay(record, fingerprint)
    except KeyReused as error:
        return refusal(error)


def purge_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete answers older than :data:`KEPT_FOR`; returns how many."""
    now = now or utcnow()
    with write_transaction(session):
        gone = session.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) <= now - KEPT_FOR)).rowcount  # type: ignore[attr-defined]
    return int(gone or 0)
