"""The web server's own door, in front of Streamlit (installed by server.py, which `make run` serves).

Streamlit cannot set a cookie or refuse a request by itself, so two things live here, at the HTTP level:

- **The session cookie, HttpOnly.** After the sign-in form accepts someone, the page sends the browser through
  ``/bellwether/session?ticket=...&next=...``: the one-time ticket (kept in this process for a minute) is exchanged
  for the session token in an HttpOnly, SameSite=Strict cookie (Secure behind https), and the browser goes on to the
  page it was on, query included. Page scripts never see the token. ``/bellwether/signout`` clears it.
- **Uploads only from someone allowed to upload.** Streamlit's upload endpoint (``/_stcore/upload_file/...``) accepts
  a file from any open browser tab, even one that shows only the sign-in form. The gate refuses it (403) unless the
  request's session cookie belongs to an account that may upload (analyst or admin), or the dashboard is in local mode
  (no accounts, no single sign-on, listening on this machine only).

Not a page (streamlit_app.py lists the pages by name). Imports no page code: views._shared imports this.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlsplit

from engine import access
from engine import db as store
from engine.access import users

SESSION_COOKIE = "bellwether_session"
SESSION_ROUTE = "/bellwether/session"
SIGNOUT_ROUTE = "/bellwether/signout"
UPLOAD_PREFIX = "/_stcore/upload_file/"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TICKET_S = 60.0

installed = False  # set by server.py: the routes below answer; without it the page keeps the token in the session

_tickets: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


def issue_ticket(token: str) -> str:
    """A one-time ticket that the session route exchanges for ``token`` within a minute."""
    ticket = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _lock:
        for old in [t for t, (_, expires) in _tickets.items() if expires < now]:
            del _tickets[old]
        _tickets[ticket] = (token, now + TICKET_S)
    return ticket


def redeem_ticket(ticket: str | None) -> str | None:
    with _lock:
        token, expires = _tickets.pop(ticket or "", (None, 0.0))
    return token if expires >= time.monotonic() else None


def safe_next(target: str | None) -> str:
    """Where to send the browser after the cookie is set: a path on this server only (never another host)."""
    target = (target or "/").strip()
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _secure(request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def local_mode(conn, server_address: str, sso: bool) -> bool:
    """No accounts, no single sign-on, listening on this machine only: the visitor is the local administrator."""
    return not users.count(conn) and not sso and (server_address or "") in LOOPBACK


def may_upload(cookie_token: str | None, server_address: str, sso: bool) -> bool:
    conn = store.connect()
    try:
        actor = users.session_actor(conn, cookie_token)
        if actor is not None:
            return access.can(actor, "dataset.import")
        return local_mode(conn, server_address, sso)
    finally:
        conn.close()


def _sso_configured() -> bool:
    from streamlit.runtime.secrets import secrets_singleton  # the [auth] section turns single sign-on on

    try:
        return "auth" in secrets_singleton
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


class UploadGate:
    """ASGI middleware: refuse Streamlit's upload endpoint to a browser that may not upload."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(UPLOAD_PREFIX) and scope["method"] != "OPTIONS":
            from starlette.concurrency import run_in_threadpool
            from starlette.requests import Request
            from starlette.responses import PlainTextResponse
            from streamlit import config

            request = Request(scope)
            allowed = await run_in_threadpool(
                may_upload, request.cookies.get(SESSION_COOKIE), config.get_option("server.address"),
                _sso_configured())
            if not allowed:
                response = PlainTextResponse("Sign in with an account that may upload files first.", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def session_route(request):
    """Exchange a one-time ticket for the HttpOnly session cookie, then go on to the page the browser was on."""
    from starlette.responses import RedirectResponse

    token = redeem_ticket(request.query_params.get("ticket"))
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if token:
        response.set_cookie(SESSION_COOKIE, token, max_age=int(users.SESSION_MAX_S), path="/", httponly=True,
                            samesite="strict", secure=_secure(request))
    return response


async def signout_route(request):
    from starlette.responses import RedirectResponse

    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


def routes() -> list:
    from starlette.routing import Route

    return [Route(SESSION_ROUTE, session_route, methods=["GET"]),
            Route(SIGNOUT_ROUTE, signout_route, methods=["GET"])]
