"""Single sign-on end to end in real Chromium: Streamlit's st.login against an OpenID Connect provider running on
127.0.0.1 (tests/oidc.py), configured exactly as the README says (an ``[auth]`` section in secrets.toml).

An identity mapped to an account (`users add alice@bank.example --role analyst --sso`) gets in with that role and the
audit log says so; an identity without an account is refused in plain words and sees nothing else; signing out ends
both Bellwether's session and Streamlit's.
"""

from __future__ import annotations

import pytest

from tests.browser import (SCREENSHOTS, Shots, assert_no_exception, chromium_page, free_port, session_cookie,
                           settle_after_sign_out, streamlit_server, wait_for_app_run)
from tests.oidc import oidc_provider, secrets_toml

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]


def test_single_sign_on_maps_identities_to_roles_and_refuses_strangers(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    from engine import db
    from engine.access import audit, users

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    conn = db.connect()
    users.add(conn, "alice@bank.example", "analyst", sso=True)
    port = free_port()
    folder = SCREENSHOTS / "sso"
    with oidc_provider() as provider:
        (tmp_path / "secrets.toml").write_text(secrets_toml(provider, port))
        with streamlit_server(home, port=port, args=["--secrets.files", str(tmp_path / "secrets.toml")]) as server, \
                chromium_page(folder) as page:
            shots = Shots(page, folder)
            page.goto(server.url)
            wait_for_app_run(page)
            expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
            assert page.get_by_test_id("stSidebarNav").count() == 0
            shots("sign-in page")
            page.get_by_role("button", name="Sign in with single sign-on").click()
            expect(page.get_by_text("Signed in as alice@bank.example (analyst)")).to_be_visible(timeout=30_000)
            wait_for_app_run(page)
            assert_no_exception(page)
            assert provider.signed_in == ["alice@bank.example"]
            expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
            assert session_cookie(page)["httpOnly"]
            shots("signed in through the provider")
            page.reload()  # still signed in
            wait_for_app_run(page)
            expect(page.get_by_text("Signed in as alice@bank.example (analyst)")).to_be_visible()
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible(timeout=30_000)
            settle_after_sign_out(page, server)
            page.reload()
            wait_for_app_run(page)
            expect(page.get_by_role("button", name="Sign in with single sign-on")).to_be_visible()
            assert page.get_by_test_id("stSidebarNav").count() == 0
            shots("signed out")

            provider.email = "eve@elsewhere.example"  # an identity with no account
            page.get_by_role("button", name="Sign in with single sign-on").click()
            expect(page.get_by_text("You signed in as eve@elsewhere.example, but Bellwether has no active account"))\
                .to_be_visible(timeout=30_000)
            assert page.get_by_test_id("stSidebarNav").count() == 0
            assert page.locator("input[type=file]").count() == 0
            shots("stranger refused")
    entries = [(e["actor"], e["action"]) for e in audit.read(db.connect())]
    assert ("alice@bank.example", "sign_in") in entries and ("alice@bank.example", "sign_out") in entries
    assert ("eve@elsewhere.example", "sign_in.failed") in entries
