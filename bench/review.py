"""``python -m bench review``: review items per minute on the Review page in real Chromium, answered by keys only as
fast as the page allows (the next key is pressed the moment the next item's text is on screen).

It starts ``streamlit run`` on a free port with a data directory of its own (an analyst account, a finished run, and
``--items`` predictions to review), signs in, opens the Review page and presses 1, 2, 3, Enter and S in turn. Every
answer is checked in the store afterwards (stored, with the reviewer's name). The driver functions are shared with
tests/test_review_browser.py.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from bench.dashboard import dashboard

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
REVIEWER, PASSWORD = "rita", "correct horse battery"
KEYS = ["1", "2", "Enter", "3", "s"]
LABELS = ["negative", "neutral", "positive"]


def prepare(conn, n_items: int, reviewer: str = REVIEWER, password: str = PASSWORD) -> str:
    """An analyst account, a finished run (no model files needed: the items carry its probabilities) with ``n_items``
    doubtful predictions on an evaluated file, queued for review. Returns the queue's name."""
    from engine import db
    from engine.access import users
    from engine.review import items

    users.add(conn, reviewer, "analyst", password)
    run_id = conn["jobs"].insert({"kind": "train", "status": "succeeded", "task": "text-classification",
                                  "created_at": db.now(), "finished_at": db.now(), "name": "bench run",
                                  "config_json": "{}", "metrics_json": "{}"}).last_pk
    for i in range(n_items):
        p = {"negative": 0.3 + (i % 7) / 100, "neutral": 0.35, "positive": 0.35 - (i % 7) / 100}
        conn["predictions"].insert({
            "run_id": run_id, "split": "eval:bench", "row_id": i, "text": f"Item {i:03d}: operating loss widened",
            "true_label": "negative", "pred_label": max(p, key=p.get), "confidence": max(p.values()),
            "probs_json": db.dumps(p)})
    return items.queue_predictions(conn, run_id, "eval:bench", limit=n_items)["queue"]


@contextmanager
def browser():
    """A headless Chromium page (Debian's /usr/bin/chromium through Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


def wait_idle(page, timeout_ms: int = 30_000) -> None:
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(state="attached",
                                                                                           timeout=timeout_ms)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached",
                                                                                       timeout=timeout_ms)


def sign_in_and_open(page, url: str, name: str = REVIEWER, password: str = PASSWORD) -> None:
    page.goto(f"{url}/review")
    page.get_by_label("Your name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Review", exact=True).wait_for()
    wait_idle(page)


def answer_by_keys(page, n: int, keys=KEYS, timeout_s: float = 30.0) -> list[dict]:
    """Press a key for each of ``n`` items, each as soon as the item is on screen; returns what was shown, the key and
    the seconds until the next item (or the end) appeared."""
    done = []
    page.locator("h4").first.wait_for()
    for i in range(n):
        shown = _wait_for_item(page, None, timeout_s)
        if shown is None:
            break
        key = keys[i % len(keys)]
        wait_idle(page)  # as a person does: the key goes to a settled page, not to one whose script is rerunning
        started = time.perf_counter()
        page.keyboard.press(key)
        after = _wait_for_item(page, shown, timeout_s)
        done.append({"text": shown, "key": key, "seconds": time.perf_counter() - started, "next": after})
    return done


def _wait_for_item(page, previous: str | None, timeout_s: float) -> str | None:
    """Until an item other than ``previous`` is shown (or nothing is left); returns its text."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = _shown(page)
        if text != previous or (text is None and previous is None and page.get_by_text("Nothing left").count()):
            if text is not None or page.get_by_text("Nothing left").count():
                return text
        page.wait_for_timeout(10)
    raise TimeoutError(f"the page still shows {previous!r} after {timeout_s:g} s")


def _shown(page) -> str | None:
    found = page.evaluate("""() => {
        const nothing = Array.from(document.querySelectorAll('[data-testid="stAlert"]'))
            .some(a => a.innerText.includes('Nothing left to review'));
        if (nothing) return null;
        const h = Array.from(document.querySelectorAll('h4')).find(e => e.innerText.trim().length);
        return h ? h.innerText.trim() : '';
    }""")
    return found or None


def key_label(key: str, suggested: str | None) -> str | None:
    """What an answer by ``key`` stores as the label (None: skipped)."""
    if key == "Enter":
        return suggested
    if key.lower() == "s":
        return None
    return LABELS[int(key) - 1]


def bench_review(n_items: int = 40) -> dict:
    """Measure items per minute answered by keys on the Review page."""
    from engine import db, paths

    with paths.temporary_home("bellwether-bench-review-") as home:
        conn = db.connect()
        queue = prepare(conn, n_items)
        conn.close()
        with dashboard(home) as url, browser() as chromium:
            page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(30_000)
            sign_in_and_open(page, url)
            started = time.perf_counter()
            answers = answer_by_keys(page, n_items)
            elapsed = time.perf_counter() - started
        conn = db.connect()
        stored = conn.execute("SELECT COUNT(*) FROM review_items WHERE queue = ? AND status != 'open' AND "
                              "answered_by = ?", [queue, REVIEWER]).fetchone()[0]
        conn.close()
    seconds = [a["seconds"] for a in answers]
    return {
        "items": len(answers), "stored": stored, "elapsed_s": round(elapsed, 2),
        "items_per_minute": round(60 * len(answers) / elapsed, 1) if elapsed else None,
        "per_item_s": {"median": round(statistics.median(seconds), 3), "max": round(max(seconds), 3),
                       "p90": round(sorted(seconds)[int(0.9 * (len(seconds) - 1))], 3)} if seconds else None,
    }


def render(result: dict) -> list[str]:
    per = result.get("per_item_s") or {}
    return [f"{result['items']} items answered by keys in {result['elapsed_s']} s: "
            f"**{result['items_per_minute']} items/min** ({result['stored']} stored with the reviewer's name); "
            f"per item median {per.get('median')} s, p90 {per.get('p90')} s, max {per.get('max')} s"]
