"""The HTTP API the company's tills, web shop and app call as things happen (FastAPI).

``python -m loyalty api`` serves :func:`create_app` with uvicorn. Everything is under
``/v1``; ``/openapi.json`` and ``/docs`` describe it. Each write goes through the same domain
functions as the pages, the CLI and the import (and so the same bounds, audit and outbox),
acting as ``api:<key name>``; each POST may carry an ``Idempotency-Key``
(:mod:`loyalty.integrations.idempotency`). See docs/api.md.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations, which
# name dependencies made inside create_app().

import io
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import get_engine, new_session
from db.models import Member, Purchase, Redemption, Reward, Tier, stored_id
from loyalty.access.roles import Actor
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, LoyaltyError, NotFound, OutOfStock, PermissionDenied, RewardUnavailable
from loyalty.integrations.apikeys import ApiCaller, KeyUseNotes, active_key_ids, authenticate
from loyalty.integrations.batching import PurchaseBatcher, PurchaseWork
from loyalty.integrations.idempotency import Answer, Keyed, KeyReused, answer_now, answer_once, check_key, request_hash
from loyalty.ledger.entries import member_balance, return_purchase
from loyalty.ledger.imports import ImportRefused, import_csv
from loyalty.ledger.members import find_member
from loyalty.ledger.purchases import RecordedPurchase, record_purchases
from loyalty.ledger.redemptions import list_rewards, redeem_reward
from loyalty.ledger.referrals import member_referral

__all__ = ["ApiLimits", "create_app"]

API_VERSION = "1"
# No text may carry a NUL character: the database cannot store it (PostgreSQL refuses it).
NO_NUL = r"^[^\x00]*$"


@dataclass(frozen=True)
class ApiLimits:
    """Bounds of the service: the largest body, and each key's request rate (a token bucket)."""

    max_body_bytes: int = 64 * 1024
    requests_per_second: float = 200.0
    burst: int = 400
    # A key checked in the database is trusted this long by this process: a key revoked
    # elsewhere stops working within this many seconds (0: every request asks the database).
    key_cache_seconds: float = 5.0

    @classmethod
    def from_environment(cls) -> "ApiLimits":
        """``LOYALTY_API_RATE`` (requests per second per key) and ``LOYALTY_API_BURST`` override the defaults."""
        rate = float(os.environ.get("LOYALTY_API_RATE", cls.requests_per_second))
        return cls(requests_per_second=rate, burst=int(os.environ.get("LOYALTY_API_BURST", max(cls.burst, int(rate * 2)))))


class _Buckets:
    """One token bucket per key, in this process (each API worker counts its own requests)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.state: dict[int, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key_id: int) -> float:
        """0 when the request may go; otherwise the seconds until it may."""
        now = time.monotonic()
        with self.lock:
            tokens, then = self.state.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1:
                self.state[key_id] = (tokens - 1, now)
                return 0.0
            self.state[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


class _KeyCache:
    """Keys this process checked (a dict read per request instead of a query).

    Every ``seconds`` the keys it knows are checked again, all in one query: a key revoked
    elsewhere stops working within that time. (Each key asked on its own when its time ran
    out: 32 tills cost 32 queries every few seconds, each on a connection of its own.)"""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: dict[str, ApiCaller] = {}
        self.checked_at = -math.inf
        self.lock = threading.Lock()

    def fresh(self) -> bool:
        return time.monotonic() - self.checked_at <= self.seconds

    def get(self, key: str) -> ApiCaller | None:
        return self.entries.get(key) if self.fresh() else None

    def put(self, key: str, caller: ApiCaller) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            if len(self.entries) > 10_000:  # keys are few; a flood of random ones must not grow this
                self.entries.clear()
            if not self.entries:
                self.checked_at = time.monotonic()
            self.entries[key] = caller

    def recheck(self, active: Callable[[set[int]], set[int]]) -> None:
        """Keep the keys ``active`` (given their ids) says are still active; one caller at a time."""
        with self.lock:
            if self.fresh() or not self.entries:
                return
            still = active({caller.key_id for caller in self.entries.values()})
            self.entries = {key: caller for key, caller in self.entries.items() if caller.key_id in still}
            self.checked_at = time.monotonic()


# --- errors ----------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra


_STATUS_OF: tuple[tuple[type[LoyaltyError], int, str], ...] = (
    (KeyReused, 409, "idempotency_key_reused"),
    (AlreadyDone, 409, "already_done"),
    (NotFound, 404, "not_found"),
    (PermissionDenied, 403, "forbidden"),
    (InsufficientPoints, 409, "insufficient_points"),
    (OutOfStock, 409, "out_of_stock"),
    (RewardUnavailable, 409, "reward_unavailable"),
    (InvalidInput, 422, "invalid"),
)


def refusal_answer(error: LoyaltyError) -> Answer:
    """A refusal of the domain as the API answers it: status, a code and the message."""
    for kind, status, code in _STATUS_OF:
        if isinstance(error, kind):
            body: dict[str, Any] = {"error": {"code": code, "message": str(error)}}
            if isinstance(error, ImportRefused):
                body["error"]["problems"] = [{"field": p.column, "message": p.reason} for p in error.problems]
            return Answer(status, body)
    return Answer(422, {"error": {"code": "refused", "message": str(error)}})


def _error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# --- request and answer shapes -----------------------------------------------------------------------


class MemberIn(BaseModel):
    """The fields of the members import."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    member_id: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]
    name: Annotated[str, Field(pattern=NO_NUL, max_length=200)] = ""
    email: Annotated[str, Field(pattern=NO_NUL, max_length=200)] = ""
    joined_at: datetime
    acquisition_channel: Annotated[str, Field(pattern=NO_NUL, max_length=50)] = "unknown"
    birth_date: date | None = None
    city: Annotated[str, Field(pattern=NO_NUL, max_length=100)] = ""
    marketing_consent: bool = False
    phone: Annotated[str, Field(pattern=NO_NUL, max_length=50)] = ""
    referred_by: Annotated[str, Field(pattern=NO_NUL, max_length=16, description="The referral code of the member who brought this one.")] = ""


class MemberOut(BaseModel):
    member_id: str
    balance: int = Field(description="Points the member can spend now.")
    past_expiry_points: int = Field(description="Points in lots past their date, not spendable, not yet written off.")
    tier: str | None
    next_expiry: date | None = Field(description="The next day (UTC) on which points expire.")
    next_expiry_points: int
    joined_at: datetime
    marketing_consent: bool
    referral_code: str = Field(description="The code this member gives friends.")
    referred_by: str | None = Field(description="The member id of who referred this member.")


class MemberWritten(MemberOut):
    created: bool


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    purchase_id: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=80, description="The till's or shop's id of the purchase, unique.")]
    member_id: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]
    occurred_at: datetime
    amount: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    channel: Annotated[str, Field(pattern=NO_NUL, max_length=50)] = ""
    store: Annotated[str, Field(pattern=NO_NUL, max_length=100)] = ""
    category: Annotated[str, Field(pattern=NO_NUL, max_length=100)] = ""


class PurchaseOut(BaseModel):
    purchase_id: str
    member_id: str
    points_earned: int
    balance: int
    dry_run: bool


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    amount: Annotated[float | None, Field(gt=0, allow_inf_nan=False, description="The amount returned; omit it for all that is left.")] = None
    reason: Annotated[str, Field(pattern=NO_NUL, max_length=200)] = "return"


class ReturnOut(BaseModel):
    purchase_id: str
    amount_returned: float
    total_returned: float
    purchase_amount: float
    fully_returned: bool
    points_taken_back: int
    points_already_expired: int
    balance: int


class RewardOut(BaseModel):
    id: int
    name: str
    points_cost: int
    stock: int | None
    active: bool
    min_tier: str | None
    available_from: datetime | None
    available_until: datetime | None


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    member_id: Annotated[str, Field(pattern=NO_NUL, min_length=1, max_length=64)]
    reward_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    dry_run: bool = False


class RedemptionOut(BaseModel):
    redemption_id: int
    member_id: str
    reward_id: int
    reward: str
    points: int
    status: str
    requested_at: datetime
    balance: int


class RedemptionCheck(BaseModel):
    dry_run: Literal[True] = True
    would_succeed: bool
    reason: str | None
    member_id: str
    reward_id: int
    points: int | None
    balance: int


class ErrorOut(BaseModel):
    error: dict[str, Any]


# --- the application -----------------------------------------------------------------------------------


class _BodyLimit:
    """Refuses a body over the limit (413) before the endpoint reads it, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(_error_body("body_too_large", f"The request body is larger than {limit:,} bytes."), status_code=413)


def create_app(engine: Engine | None = None, *, limits: ApiLimits | None = None) -> FastAPI:
    """The API on ``engine`` (default: ``LOYALTY_DATABASE_URL``'s)."""
    limits = limits or ApiLimits.from_environment()
    buckets = _Buckets(limits.requests_per_second, limits.burst)
    known_keys = _KeyCache(limits.key_cache_seconds)
    key_use = KeyUseNotes(engine or get_engine())
    bearer = HTTPBearer(auto_error=False, description="An API key made with `python -m loyalty apikeys create`.")
    app = FastAPI(
        title="Loyalty Console API",
        version=API_VERSION,
        description="Members, purchases, returns, rewards and redemptions in real time. See docs/api.md.",
        responses={code: {"model": ErrorOut} for code in (401, 403, 413, 422, 429)},
    )
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)

    def db() -> Session:
        return new_session(engine or get_engine())

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(error.code, error.message, **error.extra), status_code=error.status, headers=error.headers)

    @app.exception_handler(LoyaltyError)
    async def _refused(request: Request, error: LoyaltyError) -> JSONResponse:
        answer = refusal_answer(error)
        return JSONResponse(answer.body, status_code=answer.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in p["loc"] if part not in ("body", "query", "path", "header")), "message": p["msg"]}
            for p in error.errors()
        ]
        fields = ", ".join(dict.fromkeys(p["field"] or "body" for p in problems))
        return JSONResponse(_error_body("invalid", f"Invalid request: {fields}.", problems=problems), status_code=422)

    def caller_with(scope: str | None) -> Callable[..., Awaitable[ApiCaller]]:
        def lookup(key: str) -> ApiCaller | None:
            with db() as session:
                return authenticate(session, key)

        def active(ids: set[int]) -> set[int]:
            with db() as session:
                return active_key_ids(session, ids)

        # Async: a key found in the cache costs no thread of the pool.
        async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiCaller:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise ApiError(401, "unauthenticated", "Send an API key: Authorization: Bearer KEY.", {"WWW-Authenticate": "Bearer"})
            caller = known_keys.get(credentials.credentials)
            if caller is None and known_keys.entries and not known_keys.fresh():
                await run_in_threadpool(known_keys.recheck, active)
                caller = known_keys.get(credentials.credentials)
            if caller is None:
                caller = await run_in_threadpool(lookup, credentials.credentials)
                if caller is not None:
                    known_keys.put(credentials.credentials, caller)
            if caller is None:
                raise ApiError(401, "unauthenticated", "This API key is unknown or revoked.", {"WWW-Authenticate": "Bearer"})
            key_use.saw(caller.key_id)
            if scope is not None and scope not in caller.scopes:
                raise ApiError(403, "forbidden", f"The key {caller.name!r} does not have the scope {scope!r}.")
            if wait := buckets.take(caller.key_id):
                raise ApiError(429, "rate_limited", "Too many requests for this key; slow down.", {"Retry-After": str(max(1, math.ceil(wait)))})
            return caller

        return check

    def answered(api_key_id: int, key: str | None, method: str, path: str, body: bytes, effect: Callable[[Session], Answer]) -> Answer:
        def encoded(session: Session) -> Answer:  # stored as sent: a replay is the same bytes
            answer = effect(session)
            return Answer(answer.status_code, jsonable_encoder(answer.body))

        with db() as session:
            if key is None:
                return answer_now(session, effect=encoded, refusal=refusal_or_dry_run)
            return answer_once(
                session, api_key_id=api_key_id, key=key, method=method, path=path, body=body, effect=encoded, refusal=refusal_or_dry_run
            )

    def write(request: Request, caller: ApiCaller, body: bytes, key: str | None, effect: Callable[[Session], Answer]) -> JSONResponse:
        return respond(answered(caller.key_id, key, request.method, _path_of(request), body, effect))

    def one_by_one(work: PurchaseWork) -> Answer:
        keyed = work.keyed
        return answered(keyed.api_key_id, keyed.key, keyed.method, keyed.path, work.body, _purchase_effect(work.row, work.actor, dry_run=False))

    batcher = PurchaseBatcher(
        engine or get_engine(), answer=lambda done: _purchase_answer(done, dry_run=False), refusal=refusal_or_dry_run, one_by_one=one_by_one
    )
    app.router.on_shutdown.append(batcher.stop)
    app.router.on_shutdown.append(key_use.stop)

    IdempotencyKey = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="A new random key per request; a retry with the same key and body gets the first answer again (24 hours).",
        ),
    ]

    # --- members ---

    @app.post("/v1/members", status_code=201, response_model=MemberWritten, responses={200: {"model": MemberWritten}, 409: {"model": ErrorOut}})
    def post_member(
        member: MemberIn,
        request: Request,
        caller: Annotated[ApiCaller, Depends(caller_with("members:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        """Create a member, or update one with this member_id (as the members import does)."""
        row = member.model_dump()
        row["joined_at"] = member.joined_at.isoformat()
        row["birth_date"] = member.birth_date.isoformat() if member.birth_date else ""
        row["marketing_consent"] = "true" if member.marketing_consent else "false"
        csv = _one_row_csv(row)

        def effect(session: Session) -> Answer:
            existed = session.exec(select(Member.id).where(Member.external_id == member.member_id)).first() is not None
            upload = io.BytesIO(csv)
            upload.name = "request"
            import_csv(session, "members", upload, actor=caller.actor)
            found = find_member(session, member.member_id)
            return Answer(200 if existed else 201, {**_member_out(session, found), "created": not existed})

        return write(request, caller, member.model_dump_json().encode(), idempotency_key, effect)

    @app.get("/v1/members/{member_id}", response_model=MemberOut, responses={404: {"model": ErrorOut}})
    def get_member(
        member_id: Annotated[str, Path(pattern=NO_NUL, max_length=64)], caller: Annotated[ApiCaller, Depends(caller_with("members:read"))]
    ) -> Any:
        """A member's spendable balance, tier and next expiry."""
        with db() as session:
            return _member_out(session, _member(session, member_id))

    # --- purchases ---

    @app.post(
        "/v1/purchases",
        status_code=201,
        response_model=PurchaseOut,
        responses={200: {"model": PurchaseOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    async def post_purchase(
        purchase: PurchaseIn,
        request: Request,
        caller: Annotated[ApiCaller, Depends(caller_with("purchases:write"))],
        dry_run: Annotated[bool, Query(description="Answer with the points it would earn; write nothing.")] = False,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        """Record a purchase and earn its points at once (campaigns and the tier's multiplier applied)."""
        body = purchase.model_dump_json().encode()
        if dry_run:
            effect = _purchase_effect(purchase.model_dump(), caller.actor, dry_run=True)
            return await run_in_threadpool(write, request, caller, body, idempotency_key, effect)
        path = _path_of(request)
        key = check_key(idempotency_key) if idempotency_key is not None else None
        keyed = Keyed(caller.key_id, key, request.method, path, request_hash(request.method, path, body))
        # Async: the request waits for its batch without holding a thread of the pool.
        return respond(await batcher.submit_async(PurchaseWork(row=purchase.model_dump(), actor=caller.actor, keyed=keyed, body=body)))

    @app.post(
        "/v1/purchases/{purchase_id}/returns",
        status_code=201,
        response_model=ReturnOut,
        responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    def post_return(
        purchase_id: Annotated[str, Path(pattern=NO_NUL, max_length=80)],
        returned: ReturnIn,
        request: Request,
        caller: Annotated[ApiCaller, Depends(caller_with("purchases:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        """Return part or all of a purchase: its share of the points is taken back, never more than it earned."""

        def effect(session: Session) -> Answer:
            found = session.exec(select(Purchase).where(Purchase.external_id == purchase_id)).first()
            if found is None:
                raise NotFound(f"No purchase with id {purchase_id}.")
            done = return_purchase(session=session, purchase_id=stored_id(found), actor=caller.actor, amount=returned.amount, reason=returned.reason)
            return Answer(
                201,
                {
                    "purchase_id": done.purchase,
                    "amount_returned": done.returned_cents / 100,
                    "total_returned": done.total_returned_cents / 100,
                    "purchase_amount": done.purchase_cents / 100,
                    "fully_returned": done.fully_returned,
                    "points_taken_back": done.points_reversed,
                    "points_already_expired": done.points_already_expired,
                    "balance": member_balance(session, found.member_id).points,
                },
            )

        return write(request, caller, returned.model_dump_json().encode(), idempotency_key, effect)

    # --- rewards and redemptions ---

    @app.get("/v1/rewards", response_model=list[RewardOut])
    def get_rewards(caller: Annotated[ApiCaller, Depends(caller_with(None))]) -> Any:
        """The rewards catalogue (active and inactive, not archived), cheapest first."""
        with db() as session:
            tiers = {t.id: t.name for t in session.exec(select(Tier))}
            return [
                {
                    "id": r["id"],
                    "name": r["name"],
                    "points_cost": r["points_cost"],
                    "stock": r["stock"],
                    "active": r["active"],
                    "min_tier": tiers.get(r["min_tier_id"]),
                    "available_from": r["available_from"],
                    "available_until": r["available_until"],
                }
                for r in list_rewards(session)
            ]

    @app.post(
        "/v1/redemptions",
        status_code=201,
        response_model=RedemptionOut,
        responses={200: {"model": RedemptionCheck}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    def post_redemption(
        redemption: RedemptionIn,
        request: Request,
        caller: Annotated[ApiCaller, Depends(caller_with("redemptions:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        """Redeem a reward for a member (201); with ``dry_run`` say whether it would succeed (200, nothing written)."""

        def effect(session: Session) -> Answer:
            member = _member(session, redemption.member_id)
            if redemption.dry_run:  # the redemption is made and rolled back with the rest of the dry run
                cost = _cost(session, redemption.reward_id)
                try:
                    made = redeem_reward(session=session, member_id=stored_id(member), reward_id=redemption.reward_id, actor=caller.actor)
                    check: dict[str, Any] = {"would_succeed": True, "reason": None, "balance": made.balance + (cost or 0)}
                except (InsufficientPoints, OutOfStock, RewardUnavailable) as refused:
                    check = {"would_succeed": False, "reason": str(refused), "balance": member_balance(session, stored_id(member)).points}
                raise _DryRun(
                    Answer(200, {"dry_run": True, **check, "member_id": member.external_id, "reward_id": redemption.reward_id, "points": cost})
                )
            made = redeem_reward(session=session, member_id=stored_id(member), reward_id=redemption.reward_id, actor=caller.actor)
            return Answer(201, {**_redemption_out(session, made.redemption_id), "balance": made.balance})

        return write(request, caller, redemption.model_dump_json().encode(), idempotency_key, effect)

    @app.get("/v1/redemptions/{redemption_id}", response_model=RedemptionOut, responses={404: {"model": ErrorOut}})
    def get_redemption(
        redemption_id: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: Annotated[ApiCaller, Depends(caller_with("redemptions:write"))]
    ) -> Any:
        """One redemption: its reward, points and status (requested, fulfilled or cancelled)."""
        with db() as session:
            found = _redemption_out(session, redemption_id)
            member = session.exec(select(Member).where(Member.external_id == found["member_id"])).one()
            return {**found, "balance": member_balance(session, stored_id(member)).points}

    return app


class _DryRun(LoyaltyError):
    """Rolls a dry run's writes back and carries its answer out (stored like any answer)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("dry run")
        self.answer = answer


def refusal_or_dry_run(error: LoyaltyError) -> Answer:
    answer = error.answer if isinstance(error, _DryRun) else refusal_answer(error)
    return Answer(answer.status_code, jsonable_encoder(answer.body))


def respond(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status_code, headers={"Idempotent-Replayed": "true"} if answer.replayed else {})


def _path_of(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _purchase_answer(done: RecordedPurchase, *, dry_run: bool) -> Answer:
    body = {"purchase_id": done.purchase, "member_id": done.member, "points_earned": done.points_earned, "balance": done.balance, "dry_run": dry_run}
    return Answer(200 if dry_run else 201, body)


def _purchase_effect(row: dict[str, Any], actor: Actor, *, dry_run: bool) -> Callable[[Session], Answer]:
    """One purchase through record_purchases, as a batch of one (a dry run, or a batch that failed)."""

    def effect(session: Session) -> Answer:
        (outcome,) = record_purchases(session, [row], actors=[actor])
        if isinstance(outcome, LoyaltyError):
            raise outcome
        if dry_run:
            raise _DryRun(_purchase_answer(outcome, dry_run=True))
        return _purchase_answer(outcome, dry_run=False)

    return effect


def _one_row_csv(row: dict[str, Any]) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue().encode()


def _member(session: Session, external_id: str) -> Member:
    member = find_member(session, external_id)
    if member.erased_at is not None:
        raise NotFound(f"Member {external_id} was erased.")
    return member


def _member_out(session: Session, member: Member) -> dict[str, Any]:
    points = member_balance(session, stored_id(member))
    tier = session.get(Tier, member.tier_id) if member.tier_id else None
    return {
        "member_id": member.external_id,
        "balance": points.points,
        "past_expiry_points": points.past_expiry,
        "tier": tier.name if tier else None,
        "next_expiry": points.next_expiry_on,
        "next_expiry_points": points.next_expiry_points,
        "joined_at": member.joined_at,
        "marketing_consent": member.marketing_consent,
        **{k: v for k, v in member_referral(session, stored_id(member)).items() if k != "referrals"},
    }


def _cost(session: Session, reward_id: int) -> int | None:
    reward = session.get(Reward, reward_id)
    return None if reward is None else reward.points_cost


def _redemption_out(session: Session, redemption_id: int) -> dict[str, Any]:
    found = session.exec(
        select(Redemption, Member.external_id, Reward.name)
        .join(Member, col(Member.id) == Redemption.member_id)
        .join(Reward, col(Reward.id) == Redemption.reward_id)
        .where(Redemption.id == redemption_id)
    ).first()
    if found is None:
        raise NotFound(f"No redemption with id {redemption_id}.")
    redemption, member, reward = found
    return {
        "redemption_id": redemption.id,
        "member_id": member,
        "reward_id": redemption.reward_id,
        "reward": reward,
        "points": redemption.points,
        "status": redemption.status,
        "requested_at": redemption.requested_at,
    }
