"""Users: an admin cannot disable themself or the last enabled admin; a disabled user can be enabled again."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from db.models import AuditLog, User
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.access.users import AuthenticationFailed, authenticate, create_user, disable_user, enable_user, set_role
from loyalty.cli import main
from loyalty.errors import AlreadyDone, InvalidInput, PermissionDenied

ADA = Actor("ada", "admin")


def add(session, username: str, role: str) -> None:
    create_user(session=session, username=username, role=role, password=f"{username}-password-1", actor=SYSTEM_CLI)


def is_enabled(session, username: str) -> bool:
    session.rollback()  # end the read transaction, so changes made by other connections are seen
    return session.exec(select(User.active).where(User.username == username)).one()


@pytest.fixture
def two_admins(session) -> None:
    add(session, "ada", "admin")
    add(session, "bob", "admin")


def test_an_admin_cannot_disable_themself_even_when_other_admins_remain(session, two_admins):
    with pytest.raises(InvalidInput, match="You cannot disable your own account"):
        disable_user(session=session, username="ada", actor=ADA)
    assert is_enabled(session, "ada")


def test_the_last_enabled_admin_cannot_be_disabled(session, two_admins):
    disable_user(session=session, username="bob", actor=ADA)
    with pytest.raises(InvalidInput, match="ada is the last enabled admin"):
        disable_user(session=session, username="ada", actor=SYSTEM_CLI)
    assert is_enabled(session, "ada")


def test_a_disabled_admin_does_not_count_as_an_enabled_one(session, two_admins):
    add(session, "cy", "admin")
    disable_user(session=session, username="cy", actor=ADA)
    disable_user(session=session, username="bob", actor=ADA)
    with pytest.raises(InvalidInput, match="last enabled admin"):
        set_role(session=session, username="ada", role="manager", actor=SYSTEM_CLI)


def test_a_disabled_user_can_be_enabled_again_and_signs_in_with_the_same_password(session):
    add(session, "ada", "admin")
    add(session, "olga", "operations")
    disable_user(session=session, username="olga", actor=ADA)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        authenticate(session, "olga", "olga-password-1")
    enable_user(session=session, username="olga", actor=ADA)
    assert is_enabled(session, "olga")
    assert authenticate(session, "olga", "olga-password-1") == Actor("olga", "operations")
    actions = session.exec(select(AuditLog.action).where(AuditLog.entity_id == "olga").order_by(AuditLog.id)).all()
    assert actions == ["user.create", "user.disable", "user.enable"]


def test_disabling_twice_or_enabling_an_enabled_user_says_so(session):
    add(session, "ada", "admin")
    add(session, "olga", "operations")
    with pytest.raises(AlreadyDone, match="olga is already enabled"):
        enable_user(session=session, username="olga", actor=ADA)
    disable_user(session=session, username="olga", actor=ADA)
    with pytest.raises(AlreadyDone, match="olga is already disabled"):
        disable_user(session=session, username="olga", actor=ADA)


def test_only_an_admin_enables_a_user(session):
    add(session, "olga", "operations")
    disable_user(session=session, username="olga", actor=SYSTEM_CLI)
    with pytest.raises(PermissionDenied):
        enable_user(session=session, username="olga", actor=Actor("mia", "manager"))
    assert not is_enabled(session, "olga")


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_cli_refuses_to_disable_the_last_enabled_admin_with_exit_code_2(session, capsys):
    add(session, "ada", "admin")
    code, answer = run_cli(capsys, "users", "disable", "ada", "--json")
    assert (code, answer["ok"]) == (2, False)
    assert "ada is the last enabled admin" in answer["error"]
    assert is_enabled(session, "ada")


def test_the_cli_disables_and_enables_a_user(session, capsys):
    add(session, "ada", "admin")
    add(session, "olga", "operations")
    assert run_cli(capsys, "users", "disable", "olga", "--json") == (0, {"ok": True, "username": "olga", "active": False})
    assert not is_enabled(session, "olga")
    assert run_cli(capsys, "users", "enable", "olga", "--json") == (0, {"ok": True, "username": "olga", "active": True})
    assert is_enabled(session, "olga")


# --- lock-out ------------------------------------------------------------------------------------


def test_forty_wrong_passwords_at_once_lock_the_account_at_the_fifth_and_count_all_forty(db_url: str):
    """On PostgreSQL 40 sign-ins run at once (on SQLite they take turns): every failure is counted, the lock is taken once."""
    import threading

    from db.engine import get_engine, new_session

    engine = get_engine(db_url)
    with new_session(engine) as session:
        create_user(session=session, username="target", role="analyst", password="right-password-123", actor=SYSTEM_CLI)
    answers: list[str] = []
    start = threading.Barrier(40)

    def attempt() -> None:
        with new_session(engine) as own:
            start.wait(timeout=30)
            try:
                authenticate(own, "target", "wrong-password")
            except AuthenticationFailed as refused:
                answers.append(str(refused))

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with new_session(engine) as session:
        user = session.exec(select(User).where(User.username == "target")).one()
        locks = session.exec(select(AuditLog).where(AuditLog.action == "user.locked", AuditLog.entity_id == "target")).all()
        assert len(answers) == 40
        assert user.failed_attempts == 40 and user.locked_until is not None
        assert len(locks) == 1 and json.loads(json.dumps(locks[0].after))["failed_attempts"] == 5
        with pytest.raises(AuthenticationFailed, match="locked"):
            authenticate(session, "target", "right-password-123")


def test_unknown_user_wrong_password_and_locked_account_take_the_same_time(session):
    import statistics
    import time

    create_user(session=session, username="timed", role="analyst", password="right-password-123", actor=SYSTEM_CLI)
    create_user(session=session, username="locked", role="analyst", password="right-password-123", actor=SYSTEM_CLI)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            authenticate(session, "locked", "nope")

    names = ("nobody", "timed", "locked")
    spent: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(7):  # the three in turn, so a burst of load on the machine falls on each alike
        for name in names:
            started = time.perf_counter()
            with pytest.raises(AuthenticationFailed):
                authenticate(session, name, "wrong-password")
            spent[name].append(time.perf_counter() - started)
    unknown, wrong, locked = (statistics.median(spent[name]) for name in names)
    # Each costs one argon2 check (tens of milliseconds); without it an unknown or locked answer
    # would take well under a millisecond (a ratio under 0.05), far below this bound.
    assert min(unknown, wrong, locked) > 0.3 * max(unknown, wrong, locked), (unknown, wrong, locked)
