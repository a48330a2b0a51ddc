"""What every page shares: the store connection, the signed-in analyst, the sidebar, plain-word errors, the worker.

Not a page itself (streamlit_app.py lists the pages by name).
"""

from __future__ import annotations

import hmac
import html
import re
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
        return f" It waits: no worker could be started ({exc}). Run `python -m engine worker` on the server."
    return ""


def queued(message: str) -> tuple[str, str]:
    """A flash for a job just queued, once a worker has been asked to run it: (message, 'success'), or the message
    with why the job waits and the level 'warning'."""
    why = start_worker()
    return message + why, "warning" if why else "success"
