"""Browser tests: `streamlit run app.py` on a demo database, driven by Playwright in Debian's Chromium.

Chromium comes from Debian (`apt-get install chromium`), never from `playwright
install` (no browser download works here). Without it the tests skip with a reason.
Screenshots go to $LOYALTY_SCREENSHOTS (default: a temporary folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PROJECT = Path(__file__).resolve().parents[2]
PASSWORDS = {role: f"{role}-e2e-password" for role in ("admin", "manager", "analyst", "operations", "executive")}
DEMO_MEMBERS = 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def e2e_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database with the demo program and one user per role (known passwords)."""
    from db.engine import dispose_engines, get_engine, new_session, upgrade_to_head
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.access.users import create_user
    from loyalty.demo.simulation import create_demo

    pg = os.environ.get("LOYALTY_TEST_DATABASE_URL")
    if pg:
        import uuid

        from sqlalchemy import create_engine, text

        schema = f"e2e_{uuid.uuid4().hex[:10]}"
        with create_engine(pg, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'loyalty.db'}"
    engine = get_engine(url)
    upgrade_to_head(engine)
    with new_session(engine) as session:
        for role, password in PASSWORDS.items():
            create_user(session=session, username=f"e2e-{role}", role=role, password=password, actor=SYSTEM_CLI)
        create_demo(session, members=DEMO_MEMBERS, months=18, seed=7, actor=SYSTEM_CLI)
    from loyalty.evaluation.jobs import run_all

    run_all(actor=SYSTEM_CLI, engine=engine)
    dispose_engines()
    return url


@pytest.fixture(scope="session")
def app_url(e2e_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("e2e-log") / "streamlit.log"
    # os.environ carries the tests' frozen clock (tests/clock: LOYALTY_TEST_NOW and PYTHONPATH):
    # the server reads the same date as the tests and the data they made.
    env = {**os.environ, "LOYALTY_DATABASE_URL": e2e_database, "LOYALTY_DEMO": "0", "LOYALTY_WORKER": "0"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless=true",
                f"--server.port={port}",
                "--server.address=127.0.0.1",
                "--browser.gatherUsageStats=false",
                "--server.fileWatcherType=none",
            ],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"streamlit did not start; log:\n{log.read_text()}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        report.sections.append(("what the page showed", _what_the_page_showed(page, item.name)))
    return report


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _what_the_page_showed(page, test_name: str) -> str:
    """After a failed browser test: a screenshot in the screenshots folder, and the page's
    address and visible text for the test's report, so a failure in CI can be read afterwards."""
    folder = _screenshots_folder()
    try:
        page.screenshot(path=str(folder / f"FAILED-{test_name}.png"), full_page=True, timeout=10_000)
        # The main area first: the sidebar's links alone can fill the report's length.
        main = page.locator('[data-testid="stMain"]')
        text = (main if main.count() else page.locator("body")).inner_text(timeout=10_000)
    except Exception as error:  # the page may be gone: say so, the failure itself is already reported
        text = f"(could not read the page: {error})"
    cookie = "yes" if session_cookie(page.context) else "no"
    return f"{page.url} (session cookie: {cookie}; screenshot FAILED-{test_name}.png)\n{text[:3000]}"


def _screenshots_folder() -> Path:
    folder = Path(os.environ.get("LOYALTY_SCREENSHOTS") or (Path(os.environ.get("TMPDIR", "/tmp")) / "loyalty-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def screenshots() -> Path:
    return _screenshots_folder()


SESSION_COOKIE = "loyalty_session"


def session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


def wait_for_cookie(page, timeout_s: float = 30) -> dict:
    """The session cookie, once the browser has it. The signed-in page hands it over with a
    fetch after it is drawn: going to another address before that fetch ends cancels it,
    and the next page would start signed out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cookie := session_cookie(page.context):
            return cookie
        page.wait_for_timeout(100)
    raise AssertionError(f"the browser did not receive its session cookie within {timeout_s:.0f} s")


def sign_in(page, app_url: str, role: str) -> None:
    page.goto(app_url)
    page.get_by_label("Username").fill(f"e2e-{role}")
    page.get_by_label("Password", exact=True).fill(PASSWORDS[role])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    wait_for_cookie(page)


def wait_for_page(page) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' indicator)."""
    page.wait_for_load_state("networkidle")
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)
    # Elements of the previous run stay on screen, marked stale, until the new run replaces them.
    page.wait_for_function('() => !document.querySelector(\'[data-testid="stElementContainer"][data-stale="true"]\')', timeout=60_000)
    page.wait_for_timeout(500)


def scroll_to(page, selector: str, attempts: int = 5) -> None:
    """Scroll the last element matching ``selector`` into view. A rerun can replace the element
    between finding and scrolling it ("not attached to the DOM"): wait for the page and try again."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(attempts):
        try:
            page.locator(selector).last.scroll_into_view_if_needed(timeout=10_000)
            return
        except PlaywrightError as error:
            if "not attached" not in str(error) or attempt == attempts - 1:
                raise
            wait_for_page(page)


def choose(page, label: str, option: str, attempts: int = 4) -> None:
    """Open the select box ``label`` and pick ``option`` (exact text). A click that lands while the
    page is redrawn can leave the list closed (CI saw it on a busy machine): close it and try again,
    as a person would click the box a second time."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        page.get_by_label(label, exact=True).click()
        wanted = page.get_by_role("option", name=option, exact=True)
        try:
            wanted.wait_for(timeout=5_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            wait_for_page(page)
            continue
        wanted.click()
        return
