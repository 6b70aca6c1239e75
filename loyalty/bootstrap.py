"""Start-up shared by the app, the command line and the worker."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from db.engine import get_engine, new_session, upgrade_to_head
from db.models import Member

if TYPE_CHECKING:
    from loyalty.access.users import CreatedUser

__all__ = ["has_members", "prepare_database"]


def prepare_database(*, announce: bool = True) -> CreatedUser | None:
    """Bring the schema to head and create the first admin if there is no user yet.

    A generated admin password is printed once to the terminal (stderr).
    """
    from sqlalchemy import func

    from db.models import User

    engine = get_engine()
    upgrade_to_head(engine)
    with new_session(engine) as session:
        if session.exec(select(func.count()).select_from(User)).one() > 0:
            return None  # the usual case; password hashing (argon2) is not even imported
        from loyalty.access.users import ensure_admin

        created = ensure_admin(session)
    if created and announce:
        print(
            f"\n*** Loyalty Console: created admin user {created.username!r} with password {created.password}\n"
            "*** It is shown only this once; change it with `python -m loyalty users reset-password`.\n",
            file=sys.stderr,
            flush=True,
        )
    return created


def has_members(session: Session) -> bool:
    return session.exec(select(Member.id).limit(1)).first() is not None
