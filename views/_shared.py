"""What every page shares: the store connection, the signed-in analyst, the sidebar, plain-word errors, the worker.

Not a page itself (streamlit_app.py lists the pages by name).
"""

from __future__ import annotations

import html
import re
from contextlib import contextmanager
from typing import Iterator

import streamlit as st
import streamlit.components.v1 as components

from engine import access
from engine import db as store
from engine import i18n, paths, settings
from engine.i18n import _
from engine.access import users
from engine.access.roles import ADMIN, Actor
from engine.jobs import runs
from engine.errors import UserError
from views import _gate
from views._gate import LOOPBACK, SESSION_COOKIE


def connect():
    """A connection for this script run (SQLite connections are not shared across Streamlit's threads)."""
    return store.connect()


def sso_configured() -> bool:
    """Single sign-on is on when Streamlit's secrets have an [auth] section (st.login, OpenID Connect)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def access_mode(conn) -> str:
    """'accounts' (everyone signs in), 'local' (no accounts, no SSO, the server listens on this machine only: the
    visitor is the local administrator) or 'closed' (no way to sign anyone in safely: the page says what to do)."""
    users.ensure_first_admin(conn, settings.admin_user(), settings.admin_password())
    if users.count(conn) or sso_configured():
        return "accounts"
    if settings.password() or (st.get_option("server.address") or "") not in LOOPBACK:
        return "closed"
    return "local"


def current_user() -> Actor | None:
    """Who is signed in: the account behind this browser's session (kept in a cookie across reloads), a single
    sign-on identity mapped to an account, or in local mode the local administrator; None when nobody is."""
    conn = connect()
    mode = access_mode(conn)
    if mode == "local":
        return Actor(paths.default_user(), ADMIN, "local")
    if mode == "closed":
        return None
    token = st.session_state.get("session_token") or st.context.cookies.get(SESSION_COOKIE)
    actor = users.session_actor(conn, token)
    if actor is not None:
        st.session_state["session_token"] = token
        return actor
    st.session_state.pop("session_token", None)
    if (sso_configured() and getattr(st.user, "is_logged_in", False) and not st.session_state.get("sso_refused")
            and not st.session_state.get("signed_out")):  # signed out: until the browser reloads without SSO
        try:
            actor = users.sso_actor(conn, st.user.get("email"))
        except UserError as exc:
            st.session_state["sso_refused"] = str(exc)
            return None
        _start(conn, actor)
        return actor
    return None


def can(action: str, owner: str | None = None) -> bool:
    """Whether the signed-in person may do ``action`` (on an object owned by ``owner``): pages hide what they cannot
    do; the engine refuses it anyway."""
    user = current_user()
    return user is not None and access.can(user, action, owner)


def _start(conn, actor: Actor) -> None:
    token = users.start_session(conn, actor)
    st.session_state["session_token"] = token
    if _gate.installed:  # the next run sends the browser through the server's cookie route (views/_gate.py)
        st.session_state["go_through"] = f"{_gate.SESSION_ROUTE}?ticket={_gate.issue_ticket(token)}"


def _go_through() -> None:
    """Send the browser through the server's session route (which sets or clears the HttpOnly cookie) and back to
    the page it is on, query included. Streamlit cannot set a cookie itself, and a component's frame may not navigate
    the window, so the script is added to the page's own document."""
    target = st.session_state.pop("go_through", None)
    if not target:
        return
    components.html(
        "<script>var w = window.parent, s = w.document.createElement('script');"
        f"s.text = 'location.replace(' + JSON.stringify({target!r}"
        + ("" if "next=" in target else " + '&next=' + encodeURIComponent(w.location.pathname + w.location.search)")
        + ") + ')';"
        "w.document.body.appendChild(s);</script>", height=0)


def sign_in() -> None:
    """The sign-in form, and nothing else of the app."""
    st.title("Bellwether")
    _go_through()  # a sign-out clears the cookie here
    conn = connect()
    mode = access_mode(conn)
    if mode == "closed":
        if settings.password():
            st.error(_("Signing in with the shared BELLWETHER_PASSWORD has been replaced by personal accounts. An "
                       "administrator creates the first one on the server: `python -m engine users add NAME --role "
                       "admin` (then unset BELLWETHER_PASSWORD and start the dashboard again)."))
        else:
            st.error(_("This dashboard listens on the network but has no accounts yet, so nobody can sign in. On the "
                       "server, run `python -m engine users add NAME --role admin`, or start it with `make run`, which "
                       "listens on this machine only until an account exists."))
        return
    if st.session_state.get("sso_refused"):
        st.error(st.session_state["sso_refused"])
    if sso_configured():
        st.button(_("Sign in with single sign-on"), type="primary", on_click=st.login)
        if not users.count(conn):
            return
        st.caption(_("or with a Bellwether account:"))
    with st.form("sign-in"):
        name = st.text_input(_("Your name"), key="sign-in-name")
        password = st.text_input(_("Password"), type="password", key="sign-in-password")
        if st.form_submit_button(_("Sign in"), type="primary"):
            try:
                actor = users.sign_in(conn, name, password)
            except UserError as exc:
                st.error(str(exc))
            else:
                _start(conn, actor)
                st.rerun()


def sign_out() -> None:
    conn = connect()
    user = current_user()
    users.end_session(conn, st.session_state.pop("session_token", None) or st.context.cookies.get(SESSION_COOKIE), user)
    sso = sso_configured() and getattr(st.user, "is_logged_in", False)
    st.session_state["signed_out"] = True
    if _gate.installed:  # clear the cookie, then (single sign-on) Streamlit's own sign-out clears its cookie too
        st.session_state["go_through"] = f"{_gate.SIGNOUT_ROUTE}?next=" + ("/auth/logout" if sso else "/")
    elif sso:
        st.logout()


def require_sign_in() -> Actor:
    """Stop the page at the sign-in form unless someone is signed in.

    streamlit_app.py signs people in before navigation; every page calls this first as well, so a page run any other
    way (a test, a future entry point) still shows nothing before sign-in.
    """
    user = current_user()
    if user is None:
        sign_in()
        st.stop()
    return user


def sidebar_chrome() -> None:
    _go_through()
    user = current_user()
    with st.sidebar:
        st.caption(_("Signed in as **{name}** ({role})", name=md(user.name), role=_(user.role)))
        if user.via == "local":
            st.caption(_("Local mode: no accounts yet, so this dashboard listens on this machine only and you act as "
                         "its administrator."))
        else:
            st.button(_("Sign out"), key="sign-out", on_click=sign_out, icon=":material/logout:")
        codes = list(i18n.LANGUAGES)
        st.selectbox(_("Language"), codes, index=codes.index(i18n.language()), format_func=i18n.LANGUAGES.get,
                     key="language-choice", on_change=_choose_language, args=(user.name,))
        if user.role == ADMIN:
            st.caption(_("Data directory: `{path}`", path=paths.home()))
            if user.via != "local" and not _gate.installed and st.context.headers:  # not under AppTest
                st.warning(_("This server was started without server.py (`make run` uses it): sign-ins last for one "
                             "browser tab and uploads are not limited to signed-in accounts."))


def _choose_language(name: str) -> None:
    users.set_language(connect(), name, st.session_state["language-choice"])


def choose_interface_language(user: Actor | None) -> None:
    """Speak the signed-in person's language this run; before sign-in, the browser's (Chinese or English)."""
    chosen = users.language(connect(), user.name) if user else None
    if chosen is None and (st.context.locale or "").lower().startswith("zh"):
        chosen = "zh_CN"
    i18n.use(chosen)


# Markdown (CommonMark + GFM as Streamlit renders it) lets a backslash escape any ASCII punctuation. Escaped here:
# what can start a link or image ([ ] !), emphasis or code (* _ ` ~), HTML (< >), an entity (&#91; &amp;), math ($),
# a table (|), a heading (#), an email autolink (@), braces; a ':' that starts '://' or an :emoji: / :material/...:
# code; the '.' of 'www.' (an autolink); and a list or quote marker at the start. Plain prose stays readable.
_MARKDOWN_ALWAYS = re.compile(r"([\\`*_\[\]<>!#|~$@{}]|&(?=#|\w+;))")


def md(value) -> str:
    """Text from data (a dataset, run, feed, topic, source, label or file name; an article; a message quoting them)
    made safe to put into st.markdown / caption / subheader / info / success / warning / error: it shows as the plain
    text it is, never as a link, an image or formatting. Line breaks become spaces."""
    text = _MARKDOWN_ALWAYS.sub(r"\\\1", " ".join(str(value).splitlines()))
    text = re.sub(r":(?=//|[\w+/-]+:)", r"\\:", text)
    text = re.sub(r"(?i)\b(www)\.", r"\1\\.", text)
    return re.sub(r"^(\s*)(\d+(?=[.)])|)([-+=>.)])", r"\1\2\\\3", text)


def plot_text(value) -> str:
    """Text from data made safe for a Plotly label, legend, hover or tick (Plotly reads <a href>, <b>, <br> in them)."""
    return html.escape(str(value), quote=False)


def chart_style(fig):
    """The one layout every chart of the app goes through (returns ``fig``, for ``st.plotly_chart(chart_style(fig))``).

    Plotly's toolbar (the mode bar) floats at the top right of a chart, so nothing else goes there: the legend is a row
    under the plot, a colour bar lies flat under it too, and the top margin leaves the toolbar room above the data.
    No colour is fixed for text, grid or background, so Streamlit's light and dark themes both read it."""
    fig.update_layout(
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left",
                "title": {"text": ""}},
        margin={"t": 36, "b": 10, "l": 10, "r": 10, "autoexpand": True},
        paper_bgcolor="rgba(0,0,0,0)", hoverlabel={"namelength": -1},
        meta={"chart_style": 1},
    )
    fig.update_traces(colorbar={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0,
                                "xanchor": "left", "len": 0.5, "thickness": 12},
                      selector=lambda trace: "colorbar" in trace)
    return fig


def stream_plain(pieces) -> str:
    """Show text as it arrives (a model's answer), as plain text: never read as markdown, so an answer (or a prompt
    echoed in it) with links, images or HTML shows as the characters it is. The whole text."""
    shown, text = st.empty(), ""
    for piece in pieces:
        text += piece
        shown.text(text)
    return text


@contextmanager
def plain_errors() -> Iterator[None]:
    """Show an engine UserError as a plain message instead of a traceback (escaped: it may quote names from data)."""
    try:
        yield
    except UserError as exc:
        st.error(md(exc), icon=":material/error:")


def start_worker() -> str:
    """Make sure a worker runs the queue: '' when one does, else a sentence for the analyst saying what to do."""
    from engine.jobs import supervisor

    try:
        supervisor.ensure_supervisor()
    except Exception as exc:  # noqa: BLE001 - the job stays queued; the page says so
        return " " + _("It waits: no worker could be started ({problem}). Run `python -m engine worker` on the server.",
                       problem=exc)
    return ""


def queued(message: str) -> tuple[str, str]:
    """A flash for a job just queued, once a worker has been asked to run it: (message, 'success'), or the message
    with why the job waits and the level 'warning'."""
    why = start_worker()
    return message + why, "warning" if why else "success"


def run_picker(finished: list[dict], key: str) -> dict:
    """A picker of finished runs, opening on the run a link names (``?run=12``), else the newest; the chosen run."""
    by_id = {r["id"]: r for r in finished}
    ids = list(by_id)
    asked = st.query_params.get("run")
    start = ids.index(int(asked)) if asked and asked.isdigit() and int(asked) in by_id else 0
    return by_id[st.selectbox(_("Run"), ids, index=start, format_func=lambda i: runs.title(by_id[i]), key=key)]
