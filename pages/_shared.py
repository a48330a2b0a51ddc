"""What every page shares: the store connection, the signed-in analyst, the sidebar, plain-word errors, the worker.

Not a page itself (streamlit_app.py lists the pages by name).
"""

from __future__ import annotations

import hmac
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from engine import db as store
from engine import paths, settings
from engine.errors import UserError


def connect():
    """A connection for this script run (SQLite connections are not shared across Streamlit's threads)."""
    return store.connect()


def current_user() -> str | None:
    """The signed-in analyst. Without BELLWETHER_PASSWORD set, everyone is signed in as their OS user name."""
    if "user" in st.session_state:
        return st.session_state["user"]
    if not settings.password():
        st.session_state["user"] = paths.default_user()
        return st.session_state["user"]
    return None


def sign_in() -> None:
    st.title("Bellwether")
    with st.form("sign-in"):
        name = st.text_input("Your name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            expected = settings.password()
            if name.strip() and hmac.compare_digest(password.encode(), expected.encode()):
                st.session_state["user"] = name.strip()
                st.rerun()
            st.error("That name and password do not match. Ask your administrator for the dashboard password.")


def require_sign_in() -> str:
    """Stop the page at the sign-in form unless someone is signed in.

    streamlit_app.py signs people in before navigation, but Streamlit can also run a page file straight from its URL
    (the pages/ folder convention), so every page calls this first.
    """
    user = current_user()
    if user is None:
        sign_in()
        st.stop()
    return user


def sidebar_chrome() -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{current_user()}**")
        st.caption(f"Data directory: `{paths.home()}`")


@contextmanager
def plain_errors() -> Iterator[None]:
    """Show an engine UserError as a plain message instead of a traceback."""
    try:
        yield
    except UserError as exc:
        st.error(str(exc), icon=":material/error:")


def start_worker() -> str:
    """Make sure a worker runs the queue: '' when one does, else a sentence for the analyst saying what to do."""
    from engine.jobs import supervisor

    try:
        supervisor.ensure_supervisor()
    except Exception as exc:  # noqa: BLE001 - the job stays queued; the page says so
        return f" It waits: no worker could be started ({exc}). Run `python -m engine worker` on the server."
    return ""


def queued(message: str) -> tuple[str, str]:
    """A flash for a job just queued, once a worker has been asked to run it: (message, 'success'), or the message
    with why the job waits and the level 'warning'."""
    why = start_worker()
    return message + why, "warning" if why else "success"
