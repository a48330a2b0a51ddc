"""Drive the real dashboard: `streamlit run` on a free port with its own data directory, and Debian's Chromium.

Waits are on what the page shows (Streamlit's own script-state attribute, element texts and test ids), never fixed
sleeps. Screenshots go to test-artifacts/screenshots/<test>/ (ignored by git); the journey's to
test-artifacts/journey/<language>/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fresh(page, test_id: str):
    """Elements of this kind from the newest redraw only: while a page redraws, Streamlit keeps the previous run's
    elements on screen, marked stale, so a metric can briefly be there twice."""
    return page.locator(f'[data-testid="stElementContainer"]:not([data-stale="true"]) [data-testid="{test_id}"]')


def state_of(home: Path, server: "Server | None" = None, lines: int = 40) -> str:
    """What a failed browser test needs to be diagnosed from CI's output alone: the jobs, the sources, the alerts,
    and the tails of the worker's, the jobs' and the dashboard's logs."""
    import sqlite3

    out = []
    try:
        conn = sqlite3.connect(f"file:{home / 'bellwether.db'}?mode=ro", uri=True, timeout=5)
        for sql in ("SELECT id, kind, status, created_at, started_at, finished_at, error, log_path FROM jobs",
                    "SELECT id, feed_id, last_poll_at, last_ok_at, last_error, error_count, next_poll_at "
                    "FROM feed_sources",
                    "SELECT id, feed_id, run_id, topic, window_end, n_articles, acknowledged_at FROM alerts"):
            try:
                out.append(sql.split(" FROM ")[1] + ": " + repr(conn.execute(sql).fetchall()))
            except sqlite3.Error as exc:
                out.append(f"{sql}: {exc}")
        logs = [row[0] for row in conn.execute("SELECT log_path FROM jobs WHERE log_path IS NOT NULL")]
        conn.close()
    except sqlite3.Error as exc:
        out.append(f"store: {exc}")
        logs = []
    for path in [home / "worker.log", *map(Path, logs)]:
        try:
            out.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        except OSError as exc:
            out.append(f"--- {path}: {exc}")
    if server is not None:
        out.append("--- dashboard\n" + server.log_tail(lines))
    return "\n".join(out)


def _stop_processes_of(home: Path) -> None:
    """Stop every process started for this data directory (the dashboard's worker and its jobs)."""
    import psutil

    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid():
                continue
            if proc.environ().get("BELLWETHER_HOME") == str(home):
                try:
                    os.killpg(proc.pid, signal.SIGKILL) if os.getpgid(proc.pid) == proc.pid else proc.kill()
                except ProcessLookupError:
                    pass
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


@contextmanager
def streamlit_server(home: Path, env: dict[str, str] | None = None, port: int | None = None,
                     args: list[str] | None = None) -> Iterator[Server]:
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"streamlit-{port}.log"
    full_env = {**os.environ, "BELLWETHER_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *(args or [])],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(url=f"http://127.0.0.1:{port}", home=home, process=process, log=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                    if response.read().decode() == "ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _stop_processes_of(home)


@contextmanager
def chromium_page(screenshot_dir: Path) -> Iterator["Page"]:  # noqa: F821
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed at /usr/bin/chromium: run `make test`, which installs it.")
    from playwright.sync_api import sync_playwright

    if screenshot_dir.exists():
        shutil.rmtree(screenshot_dir)
    screenshot_dir.mkdir(parents=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def wait_for_app_run(page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Until the websocket is up and the script has finished its run (Streamlit's own status attributes)."""
    page.wait_for_timeout(250)  # past Streamlit's widget debounce, so a rerun has begun
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached", timeout=timeout_ms)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached", timeout=timeout_ms)


def assert_no_exception(page) -> None:
    exceptions = page.locator("[data-testid='stException']")
    if exceptions.count():
        raise AssertionError(f"The page shows an exception: {exceptions.first.inner_text()[:2000]}")


class Shots:
    """Numbered screenshots of each step, for a person to look at. ``check(page, step_name)``, when given, is called
    after each (the journey's check that a Chinese screen has no English left)."""

    def __init__(self, page, folder: Path, check=None):
        self.page, self.folder, self.n, self.check = page, folder, 0, check
        self.last = ""

    def __call__(self, name: str) -> Path:
        self.n += 1
        self.last = f"{self.n:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
        path = self.folder / f"{self.last}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if self.check is not None:
            self.check(self.page, self.last)
        return path


def _cookies_when(page, done, timeout_ms: int) -> tuple[dict, bool]:
    """Poll the browser's cookies (name -> cookie) every 100 ms until ``done(cookies)``; returns them and whether it
    came true within ``timeout_ms``. Cookies are set and cleared by redirects the page follows after the screen shows."""
    waited = 0
    while True:
        cookies = {c["name"]: c for c in page.context.cookies()}
        if done(cookies) or waited >= timeout_ms:
            return cookies, done(cookies)
        page.wait_for_timeout(100)
        waited += 100


def session_cookie(page, timeout_ms: int = 15_000) -> dict:
    """Bellwether's session cookie once the browser has it. The sign-in route that sets it is fetched by the page after
    the signed-in screen shows, so the cookie can land a moment after the text: wait for it, fail if it never comes."""
    cookies, landed = _cookies_when(page, lambda c: "bellwether_session" in c, timeout_ms)
    assert landed, f"no bellwether_session cookie after {timeout_ms} ms: {sorted(cookies)}"
    return cookies["bellwether_session"]


def _signed_in_cookies(cookies: dict) -> list[str]:
    return [name for name in cookies if name == "bellwether_session" or name.startswith("_streamlit_user")]


def settle_after_sign_out(page, server: "Server", timeout_ms: int = 15_000) -> None:
    """Wait until signing out has finished in the browser: the sign-out routes (Bellwether's, then Streamlit's under
    single sign-on) have cleared their cookies and the redirect has landed back on the app, loaded. Reloading before
    that races the redirect: Chromium then either keeps a cookie or answers "Not attached to an active page"."""
    cookies, cleared = _cookies_when(page, lambda c: not _signed_in_cookies(c), timeout_ms)
    assert cleared, f"still set {timeout_ms} ms after signing out: {_signed_in_cookies(cookies)}"
    page.wait_for_url(lambda url: url.startswith(server.url) and "/bellwether/" not in url and "/auth/" not in url,
                      wait_until="load", timeout=timeout_ms)
