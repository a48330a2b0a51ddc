"""Sign-in, roles and navigation in real Chromium against `streamlit run` (issue 12).

- Every page's URL opened first thing after a server start shows the app's own navigation (never Streamlit's list of
  the files in a folder, never a blank "shared" page).
- A visitor who has not signed in sees only the sign-in form: no navigation, no file upload, and Streamlit's upload
  endpoint refuses a file sent from that tab (server.py's gate, views/_gate.py).
- A deep link survives sign-in; a reload keeps the browser signed in (an HttpOnly cookie page scripts cannot read);
  signing out ends it.
- A viewer sees no Upload, no Train and no Delete; the Train page's link explains instead of "Page not found".
"""

from __future__ import annotations

import re

import pytest

from tests.browser import (SCREENSHOTS, Shots, assert_no_exception, chromium_page, session_cookie,
                           settle_after_sign_out, streamlit_server, wait_for_app_run)
from tests.helpers import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]

APP_NAV = ["Data", "Train", "Runs", "Jobs", "Reports", "Playground", "Review", "Feeds", "Monitor", "Admin"]


def nav_links(page) -> list[str]:
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for()
    return [link.inner_text().strip().split("\n")[-1] for link in nav.get_by_role("link").all()]  # after the icon


def prepare(home, monkeypatch, accounts: bool) -> None:
    """The store before the server starts: with accounts (an admin, an analyst, a viewer) and a dataset the analyst
    saved, or empty (local mode)."""
    from engine import db
    from engine.access import users
    from engine.data import datasets

    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    conn = db.connect()
    if accounts:
        for name, role in [("ada", "admin"), ("ann", "analyst"), ("vic", "viewer")]:
            users.add(conn, name, role, PASSWORD)
        rows = "\n".join(f"Shares {'rose' if i % 2 else 'fell'} {i},{'positive' if i % 2 else 'negative'}" for i in range(30))
        datasets.import_file(conn, ("text,label\n" + rows).encode(), "l.csv", "fpb", actor="ann")
    conn.close()


def upload_answer(page) -> str:
    """What the server answers when this tab sends a file to Streamlit's upload endpoint (as a script could)."""
    return page.evaluate("""async () => {
        const form = new FormData(); form.append('file', new Blob(['text,label\\nup,positive']), 'x.csv');
        const r = await fetch('/_stcore/upload_file/some-session/some-file', {method: 'PUT', body: form});
        return r.status + ' ' + await r.text(); }""")


REFUSED = "403 Sign in with an account that may upload files first."


def sign_in(page, name: str) -> None:
    page.get_by_label("Your name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_for_app_run(page)
    wait_for_app_run(page)


@pytest.mark.parametrize("path", ["", "data", "train", "runs", "reports", "feeds", "monitor", "admin", "shared"])
def test_every_page_url_opened_first_on_a_fresh_server_shows_the_apps_navigation(tmp_path, monkeypatch, path):
    prepare(tmp_path / "home", monkeypatch, accounts=False)  # local mode: signed in as the local administrator
    with streamlit_server(tmp_path / "home") as server, chromium_page(SCREENSHOTS / f"fresh-{path or 'root'}") as page:
        page.goto(f"{server.url}/{path}")
        wait_for_app_run(page)
        assert nav_links(page) == APP_NAV
        assert_no_exception(page)
        heading = page.get_by_role("heading", level=1).first.inner_text()
        expected = {"train": "Train a model", "runs": "Runs", "reports": "Reports", "feeds": "Feeds",
                    "monitor": "Monitor", "admin": "Admin"}.get(path, "Data")  # "shared" is no page: the default
        assert heading.startswith(expected), heading
        Shots(page, SCREENSHOTS / f"fresh-{path or 'root'}")("first page")


def test_sign_in_form_only_then_deep_link_reload_and_sign_out(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    prepare(tmp_path / "home", monkeypatch, accounts=True)
    folder = SCREENSHOTS / "sign-in"
    with streamlit_server(tmp_path / "home") as server, chromium_page(folder) as page:
        shots = Shots(page, folder)
        page.goto(f"{server.url}/runs?run=1")
        wait_for_app_run(page)
        # Before sign-in: the form and nothing else; no navigation, no way to upload.
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert page.get_by_test_id("stSidebarNav").count() == 0
        assert page.locator("input[type=file]").count() == 0
        assert page.get_by_role("heading", level=1).all_inner_texts() == ["Bellwether"]
        assert upload_answer(page) == REFUSED
        shots("sign-in form")
        # A wrong password: refused in plain words, still nothing else.
        page.get_by_label("Your name", exact=True).fill("ann")
        page.get_by_label("Password", exact=True).fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        wait_for_app_run(page)
        expect(page.get_by_text("That name and password do not match")).to_be_visible()
        assert page.get_by_test_id("stSidebarNav").count() == 0
        # The deep link survives sign-in: the Runs page, its query kept.
        sign_in(page, "ann")
        expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        assert re.search(r"/runs\?run=1$", page.url), page.url
        assert nav_links(page) == ["Data", "Train", "Runs", "Jobs", "Reports", "Playground", "Review", "Feeds", "Monitor"]  # no Admin for analysts
        shots("deep link after sign-in")
        # The session cookie is HttpOnly (page scripts cannot read it) and lets this tab upload.
        cookie = session_cookie(page)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        assert "bellwether_session" not in page.evaluate("document.cookie")
        assert upload_answer(page) != REFUSED  # past the gate: Streamlit's own checks answer now
        # A reload (or a bookmark) keeps the browser signed in.
        page.reload()
        wait_for_app_run(page)
        expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        expect(page.get_by_text("Signed in as ann (analyst)")).to_be_visible()
        page.goto(f"{server.url}/feeds")
        wait_for_app_run(page)
        expect(page.get_by_role("heading", name="Feeds", exact=True)).to_be_visible()
        # Signing out ends it, also for a reload.
        page.get_by_role("button", name="Sign out").click()
        wait_for_app_run(page)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        settle_after_sign_out(page, server)
        page.reload()
        wait_for_app_run(page)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert page.get_by_test_id("stSidebarNav").count() == 0
        assert "bellwether_session" not in {c["name"] for c in page.context.cookies()}
        assert upload_answer(page) == REFUSED
        shots("signed out")


def test_a_viewer_sees_no_upload_train_or_delete(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    prepare(tmp_path / "home", monkeypatch, accounts=True)
    folder = SCREENSHOTS / "viewer"
    with streamlit_server(tmp_path / "home") as server, chromium_page(folder) as page:
        shots = Shots(page, folder)
        page.goto(server.url)
        wait_for_app_run(page)
        sign_in(page, "vic")
        expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
        assert nav_links(page) == ["Data", "Runs", "Jobs", "Reports", "Playground", "Feeds", "Monitor"]  # no Train, no Review
        expect(page.get_by_text("Saved datasets")).to_be_visible()
        page.get_by_test_id("stDataFrame").first.wait_for()
        assert page.locator("input[type=file]").count() == 0
        assert page.get_by_role("button", name=re.compile("Delete")).count() == 0
        assert page.get_by_role("button", name=re.compile("Train")).count() == 0
        assert page.get_by_text("Upload labelled data").count() == 0
        shots("viewer data page")
        page.goto(f"{server.url}/feeds")
        wait_for_app_run(page)
        expect(page.get_by_role("heading", name="Feeds", exact=True)).to_be_visible()
        assert page.locator("input[type=file]").count() == 0
        assert upload_answer(page) == REFUSED  # a viewer's tab cannot upload either
        page.goto(f"{server.url}/train")  # not in a viewer's navigation; its link says why instead of "not found"
        wait_for_app_run(page)
        expect(page.get_by_text("Starting training runs needs an analyst's role (yours: viewer).")).to_be_visible()
        assert page.get_by_role("button", name="Train", exact=True).count() == 0
        assert page.get_by_text("Page not found").count() == 0
        assert nav_links(page) == ["Data", "Runs", "Jobs", "Reports", "Playground", "Feeds", "Monitor"]
        shots("viewer asked for train")
        page.goto(f"{server.url}/admin")
        wait_for_app_run(page)
        expect(page.get_by_text("Your role (viewer) cannot manage users: only an administrator can.")).to_be_visible()
        # The analyst who saved the dataset sees its Delete button
        page.get_by_role("button", name="Sign out").click()
        wait_for_app_run(page)
        settle_after_sign_out(page, server)
        page.goto(server.url)
        wait_for_app_run(page)
        sign_in(page, "ann")
        shots("analyst data page")
        expect(page.get_by_role("button", name=re.compile(r"Delete fpb:1"))).to_be_visible()
        expect(page.locator("input[type=file]")).to_have_count(1)
        # ...and can upload through the gate: the file is read and checked.
        (tmp_path / "up.csv").write_text("headline,sentiment\nShares rose,positive\nShares fell,negative\n")
        page.locator("input[type=file]").set_input_files(str(tmp_path / "up.csv"))
        wait_for_app_run(page)
        expect(page.get_by_text("up.csv")).to_be_visible()
        expect(page.get_by_text("2 labels have fewer than 5 examples")).to_be_visible()
        assert_no_exception(page)
