"""The server's door (views/_gate.py, served by server.py): the session cookie handoff and the upload gate.

The browser side (HttpOnly cookie, uploads refused before sign-in and for viewers) is in test_access_browser.py;
these check the rules themselves through Starlette's test client, without a browser.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from engine import db
from engine.access import users
from engine.access.roles import Actor
from tests.helpers import PASSWORD
from views import _gate


@pytest.fixture
def client(home, monkeypatch):
    async def upload(request):
        return PlainTextResponse("stored")

    monkeypatch.setattr(_gate, "_sso_configured", lambda: False)
    app = Starlette(routes=[*_gate.routes(), Route("/_stcore/upload_file/{sid}/{fid}", upload, methods=["PUT"])],
                    middleware=[Middleware(_gate.UploadGate)])
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.mark.parametrize("target, expected", [
    ("/runs?run=7", "/runs?run=7"), ("/", "/"), (None, "/"), ("//evil.example/x", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("javascript:alert(1)", "/"), ("runs", "/")])
def test_after_sign_in_the_browser_goes_only_to_a_page_of_this_server(target, expected):
    assert _gate.safe_next(target) == expected


def test_a_ticket_sets_an_httponly_cookie_once_and_signout_clears_it(client):
    conn = db.connect()
    users.add(conn, "ann", "analyst", PASSWORD)
    token = users.start_session(conn, Actor("ann", "analyst"))
    ticket = _gate.issue_ticket(token)
    answer = client.get(f"/bellwether/session?ticket={ticket}&next=/runs%3Frun%3D7", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/runs?run=7"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"bellwether_session={token};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    again = client.get(f"/bellwether/session?ticket={ticket}&next=/", follow_redirects=False)
    assert "set-cookie" not in again.headers  # one use only
    behind_https = TestClient(client.app, base_url="http://127.0.0.1", headers={"x-forwarded-proto": "https"})
    answer = behind_https.get(f"/bellwether/session?ticket={_gate.issue_ticket(token)}", follow_redirects=False)
    assert "Secure" in answer.headers["set-cookie"]
    out = client.get("/bellwether/signout?next=/", follow_redirects=False)
    assert out.headers["set-cookie"].startswith('bellwether_session="";') and "Max-Age=0" in out.headers["set-cookie"]


def test_a_ticket_expires_after_a_minute(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_gate.time, "monotonic", lambda: now[0])
    ticket = _gate.issue_ticket("tok")
    now[0] += _gate.TICKET_S + 1
    assert _gate.redeem_ticket(ticket) is None
    assert _gate.redeem_ticket("never issued") is None


def test_uploads_need_an_account_that_may_upload_once_accounts_exist(client, monkeypatch):
    from streamlit import config

    monkeypatch.setattr(config, "get_option", lambda name: "127.0.0.1")
    put = lambda cookie=None: client.put("/_stcore/upload_file/s/f", content=b"x",  # noqa: E731
                                         cookies={"bellwether_session": cookie} if cookie else None)
    assert put().text == "stored"  # local mode: no accounts, this machine only
    monkeypatch.setattr(config, "get_option", lambda name: "0.0.0.0")
    assert put().status_code == 403  # no accounts but on the network: nobody
    monkeypatch.setattr(config, "get_option", lambda name: "127.0.0.1")
    conn = db.connect()
    users.add(conn, "ann", "analyst", PASSWORD)
    users.add(conn, "vic", "viewer", PASSWORD)
    refused = put()
    assert refused.status_code == 403 and refused.text == "Sign in with an account that may upload files first."
    assert put("not-a-session").status_code == 403
    assert put(users.start_session(conn, Actor("vic", "viewer"))).status_code == 403
    assert put(users.start_session(conn, Actor("ann", "analyst"))).text == "stored"
    client.cookies.clear()
    assert client.options("/_stcore/upload_file/s/f").status_code != 403  # CORS preflight is Streamlit's business
