"""Purchases posted at the same moment, written together (group commit).

Tills post purchases one at a time, and each earns through the same vectorised path as the
import (:func:`loyalty.ledger.purchases.record_purchases`). Doing that once per request costs
tens of milliseconds of fixed work and one write transaction each; the database takes one
writer at a time. So the API hands each purchase to one writer thread per process, which
takes whatever has queued up meanwhile (up to :data:`MAX_BATCH`) and writes it in one
transaction, each purchase with its own checks, answer and idempotency record
(:func:`loyalty.integrations.idempotency.answer_many`). A lone purchase waits for nobody.

If a batch fails as a whole (a concurrent transaction took one of its keys first, say),
each of its purchases is answered on its own through ``one_by_one``, the path a single
request takes: nothing is lost and nothing written twice.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from db.engine import new_session
from loyalty.access.roles import Actor
from loyalty.errors import LoyaltyError
from loyalty.integrations.idempotency import Answer, Keyed, answer_many
from loyalty.ledger.purchases import RecordedPurchase, record_purchases

__all__ = ["MAX_BATCH", "PurchaseBatcher", "PurchaseWork"]

log = logging.getLogger(__name__)

MAX_BATCH = 128
WAIT_LIMIT_S = 60.0  # a request never waits longer for its batch (the writer is stuck: 503)


@dataclass
class PurchaseWork:
    row: dict[str, Any]
    actor: Actor
    keyed: Keyed
    body: bytes  # the request's body, for answering it on its own
    future: Future[Answer] = field(default_factory=Future)


class PurchaseBatcher:
    """One writer thread per process; :meth:`submit` blocks until the purchase's answer is known."""

    def __init__(
        self,
        engine: Engine,
        *,
        answer: Callable[[RecordedPurchase], Answer],
        refusal: Callable[[LoyaltyError], Answer],
        one_by_one: Callable[[PurchaseWork], Answer],
    ) -> None:
        self.engine, self.answer, self.refusal, self.one_by_one = engine, answer, refusal, one_by_one
        self.queue: queue.Queue[PurchaseWork] = queue.Queue()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.batches = 0
        self.purchases = 0

    def submit(self, work: PurchaseWork) -> Answer:
        self._start()
        self.queue.put(work)
        return work.future.result(timeout=WAIT_LIMIT_S)

    async def submit_async(self, work: PurchaseWork) -> Answer:
        """:meth:`submit` for an async endpoint: no thread of the pool waits for the batch."""
        self._start()
        self.queue.put(work)
        return await asyncio.wait_for(asyncio.wrap_future(work.future), WAIT_LIMIT_S)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _start(self) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="purchase-writer", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                batch = [self.queue.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[PurchaseWork]) -> None:
        try:
            with new_session(self.engine) as session:

                def effect(session: Any, indexes: list[int]) -> list[Answer]:
                    outcomes = record_purchases(session, [batch[i].row for i in indexes], actors=[batch[i].actor for i in indexes])
                    return [self.refusal(o) if isinstance(o, LoyaltyError) else self.answer(o) for o in outcomes]

                answers = answer_many(session, [w.keyed for w in batch], effect=effect, refusal=self.refusal)
            self.batches += 1
            self.purchases += len(batch)
            for work, answer in zip(batch, answers):
                work.future.set_result(answer)
        except Exception:
            log.info("a batch of %d purchases failed as a whole; answering them one by one", len(batch), exc_info=True)
            for work in batch:
                try:
                    work.future.set_result(self.one_by_one(work))
                except Exception as error:  # reported to that request alone
                    work.future.set_exception(error)
