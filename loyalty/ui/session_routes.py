"""The two HTTP routes behind the session cookie, served beside the app by ``st.App``.

- ``POST /auth/session`` (body: the one-time grant of a sign-in) sets the session cookie,
  HttpOnly, SameSite=Strict, Secure when the page came over HTTPS.
- ``POST /auth/sign-out`` ends the session the cookie names and deletes the cookie.

Streamlit scripts can read cookies (``st.context.cookies``) but cannot set them; these
routes do, so the token never reaches JavaScript. See :mod:`loyalty.access.sessions`.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.engine import get_engine, new_session
from loyalty.access.sessions import SESSION_COOKIE, end_session, exchange_grant, resume_session
from loyalty.settings import get_settings

__all__ = ["ROUTES"]

_MAX_GRANT_BYTES = 200
logger = logging.getLogger(__name__)


def _exchange(grant: str) -> str | None:
    with new_session(get_engine()) as session:
        return exchange_grant(session=session, grant=grant)


def _sign_out(cookie: str) -> None:
    with new_session(get_engine()) as session:
        check = resume_session(session=session, cookie=cookie, idle_minutes=get_settings(session).idle_timeout_minutes)
        if check.session_id:
            end_session(session=session, session_id=check.session_id)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


async def session_cookie(request: Request) -> Response:
    body = await request.body()
    if len(body) > _MAX_GRANT_BYTES:
        return Response(status_code=400)
    try:
        cookie = await run_in_threadpool(_exchange, body.decode(errors="replace").strip())
    except SQLAlchemyError:
        logger.exception("could not hand out a session cookie")
        return Response("The database is not available; try again in a moment.", status_code=503)
    if cookie is None:
        return Response("This sign-in link has expired; sign in again.", status_code=403)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="strict", secure=_secure(request), path="/")
    return response


async def sign_out(request: Request) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        try:
            await run_in_threadpool(_sign_out, cookie)
        except SQLAlchemyError:  # the cookie is deleted all the same; the session ends at its idle limit
            logger.exception("could not end the session of a sign-out")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


ROUTES = [Route("/auth/session", session_cookie, methods=["POST"]), Route("/auth/sign-out", sign_out, methods=["POST"])]
