"""The Review page in real Chromium: ten items labelled with keys only, stored with the reviewer's name; typing in a
field answers nothing; two reviewers never see the same item; a closed tab loses no answer given."""

from __future__ import annotations

import pytest

from bench import review as driver
from tests.browser import SCREENSHOTS, Shots, assert_no_exception, chromium_page, streamlit_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]


def stored(home_conn, queue):
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in home_conn.execute(
        "SELECT text, status, answer_label, answered_by, suggested_label FROM review_items WHERE queue = ?", [queue])}


def test_ten_items_labelled_with_keys_only_and_stored_with_the_reviewers_name(tmp_path, monkeypatch):
    from engine import db
    from engine.access import users

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    conn = db.connect()
    queue = driver.prepare(conn, 12)
    users.add(conn, "rob", "analyst", driver.PASSWORD)
    with streamlit_server(home) as server, chromium_page(SCREENSHOTS / "review") as page:
        shots = Shots(page, SCREENSHOTS / "review")
        driver.sign_in_and_open(page, server.url)
        shots("first item")
        # typing a digit in a field answers nothing
        page.get_by_text("Queue items to review").click()
        page.get_by_role("tab", name="A run's predictions").click()
        field = page.get_by_role("spinbutton", name="Also below confidence")
        field.click()
        field.press("1")
        page.wait_for_timeout(800)
        assert conn.execute("SELECT COUNT(*) FROM review_items WHERE status != 'open'").fetchone()[0] == 0
        page.get_by_text("Queue items to review").click()
        page.evaluate("document.activeElement && document.activeElement.blur()")  # out of the field
        keys = ["1", "2", "Enter", "3", "1", "2", "3", "Enter", "1", "2"]
        answers = driver.answer_by_keys(page, 10, keys=keys)
        shots("after ten")
        assert_no_exception(page)
        assert len(answers) == 10 and len({a["text"] for a in answers}) == 10
        got = stored(conn, queue)
        for a in answers:
            status, label, by, suggested = got[a["text"]]
            assert (status, label, by) == ("done", driver.key_label(a["key"], suggested), driver.REVIEWER), a
        assert sum(1 for v in got.values() if v[0] == "done") == 10
        assert page.get_by_text("10 done").count() or "**10** done" in page.inner_text("body") or \
            "10 done" in page.inner_text("body")


def test_two_reviewers_never_see_the_same_item_and_a_closed_tab_loses_no_answer(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    from engine import db
    from engine.access import users

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    conn = db.connect()
    queue = driver.prepare(conn, 6)
    users.add(conn, "rob", "analyst", driver.PASSWORD)
    with streamlit_server(home) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=driver.CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            rita_tab = browser.new_context().new_page()
            rob_tab = browser.new_context().new_page()
            driver.sign_in_and_open(rita_tab, server.url, driver.REVIEWER)
            driver.sign_in_and_open(rob_tab, server.url, "rob")
            rita_item, rob_item = driver._shown(rita_tab), driver._shown(rob_tab)
            assert rita_item and rob_item and rita_item != rob_item
            first = driver.answer_by_keys(rita_tab, 1, keys=["1"])[0]
            held = first["next"]  # shown to rita, now held for her
            assert held not in (None, rob_item)
            rita_tab.context.close()  # the tab is lost
            got = stored(conn, queue)
            assert got[rita_item][:3] == ("done", "negative", driver.REVIEWER)  # her answer is kept
            assert conn.execute("SELECT claimed_by FROM review_items WHERE text = ?", [held]).fetchone()[0] == \
                driver.REVIEWER
            # while her hold lasts rob never gets that item; once it lapses, it comes to him
            conn.execute("UPDATE review_items SET lease_until = '2000-01-01T00:00:00+00:00' WHERE text = ?", [held])
            seen = [a["next"] for a in driver.answer_by_keys(rob_tab, 4, keys=["2"])]
            assert held in seen
            assert stored(conn, queue)[held][2] == "rob"
        finally:
            browser.close()
