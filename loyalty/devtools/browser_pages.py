"""Pages timed as a person meets them: `streamlit run app.py` on the bench's database, Debian's
Chromium driven by Playwright, an admin signed in, each page clicked from the sidebar.

A page has settled when its title is shown, Streamlit's "Running" indicator is gone, no element
of the previous run is still marked stale, and every Plotly chart has drawn its SVG. The time
runs from the click to that moment. Each page is opened twice: the first visit (cold caches of
this server process) and the second (what the next person sees within the cache's life).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loyalty.devtools.servers import free_port, stop, wait_until_up

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]
USERNAME = "bench-browser-admin"
PAGE_TIME_LIMIT_MS = 600_000  # a page that takes ten minutes is stuck, not slow

# Settled: the page's run is over (Streamlit marks its root with the script's run state), nothing of
# the previous run is left stale, no spinner, every chart drawn, every embedded document loaded.
# The caller first waits for what only the new run draws (the page's title, the Sign out button),
# so the old page is never taken for the new one. Counting the runs that start did not work: a run of a few tens of milliseconds can start
# and end within one React render, so the root is never seen 'running' and the page was waited for
# until the time limit (seen twice in a row at 1M members, on Approvals after Reports).
SETTLED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')) return false;
  if (document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  if (!charts.every(c => c.querySelector('.main-svg'))) return false;
  // An embedded document (the executive report) has loaded and run its scripts (its own charts).
  return [...document.querySelectorAll('iframe')].every(f => {
    try { return f.contentDocument === null || f.contentDocument.readyState === 'complete'; } catch (e) { return true; }
  });
}"""


def _admin_password() -> str:
    from sqlmodel import select

    from db.engine import new_session
    from db.models import User
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.access.users import create_user, reset_password

    password = "bench-browser-password"
    with new_session() as session:
        if session.exec(select(User).where(User.username == USERNAME)).first() is None:
            create_user(session=session, username=USERNAME, role="admin", actor=SYSTEM_CLI, password=password)
        else:
            reset_password(session=session, username=USERNAME, password=password, actor=SYSTEM_CLI)
    return password


def _start_app(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LOYALTY_DEMO": "0", "LOYALTY_WORKER": "0"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}"]
    command += ["--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{url}/_stcore/health", timeout_s=120, what=f"streamlit (log: {log})")
    return process, url


def _open(page: Any, title: str) -> float:
    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
    t0 = time.perf_counter()
    link.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=PAGE_TIME_LIMIT_MS)
    page.wait_for_function(SETTLED, timeout=PAGE_TIME_LIMIT_MS, polling=50)
    seconds = time.perf_counter() - t0
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"{title}: the page showed an exception: {page.locator('[data-testid=stException]').first.inner_text()[:500]}")
    return round(seconds, 3)


def time_pages(*, screenshots: Path | None = None) -> dict[str, Any]:
    """``{"first": {title: s}, "second": {title: s}, "sign_in": s}`` for every page an admin sees."""
    from playwright.sync_api import sync_playwright

    from loyalty.access.roles import PAGES

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to time pages in a browser.")
    password = _admin_password()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"loyalty-bench-streamlit-{os.getpid()}.log"
    process, url = _start_app(log)
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            t0 = time.perf_counter()
            page.goto(url)
            page.locator('[data-testid="stApp"]').wait_for()
            page.get_by_label("Username").fill(USERNAME)
            page.get_by_label("Password", exact=True).fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for(timeout=PAGE_TIME_LIMIT_MS)
            page.wait_for_function(SETTLED, timeout=PAGE_TIME_LIMIT_MS, polling=50)
            sign_in = round(time.perf_counter() - t0, 3)
            for visit in (first, second):
                for spec in PAGES:
                    visit[spec.title] = _open(page, spec.title)
                    if screenshots is not None and visit is first:
                        screenshots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(screenshots / f"bench-{Path(spec.path).stem}.png"), full_page=True)
            browser.close()
    finally:
        stop(process)
    return {"sign_in": sign_in, "first": first, "second": second}
