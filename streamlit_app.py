"""Bellwether dashboard: sign-in, navigation over the pages, and the chrome every page shares.

st.navigation is called on every run, before the sign-in check, so a link into a page (/runs?run=7) keeps its page
and query while the sign-in form is shown (navigation hidden) and opens it right after. Each role sees only the pages
it can use (viewers have no Train page; only admins have Admin). A page a role cannot use is still there, hidden
from its navigation, so a link to it opens the page's own plain explanation instead of Streamlit's "Page not found".
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.access.roles import ADMIN, VIEWER
from engine.i18n import _
from views._shared import choose_interface_language, current_user, sidebar_chrome, sign_in

# The icon is a file of ours: a :material/...: page icon makes every browser fetch it from fonts.gstatic.com.
st.set_page_config(page_title="Bellwether", page_icon=str(Path(__file__).parent / "assets" / "favicon.png"),
                   layout="wide")


def pages(role: str | None) -> dict:
    train = [
        st.Page("views/data.py", title=_("Data"), icon=":material/table_view:", default=True),
        st.Page("views/train.py", title=_("Train"), icon=":material/model_training:",
                visibility="hidden" if role == VIEWER else "visible"),
        st.Page("views/runs.py", title=_("Runs"), icon=":material/monitoring:"),
        st.Page("views/jobs.py", title=_("Jobs"), icon=":material/pending_actions:"),
        st.Page("views/reports.py", title=_("Reports"), icon=":material/fact_check:"),
        st.Page("views/playground.py", title=_("Playground"), icon=":material/chat:"),
    ]
    found = {
        _("Train models"): train,
        _("Monitor news"): [
            st.Page("views/feeds.py", title=_("Feeds"), icon=":material/rss_feed:"),
            st.Page("views/monitor.py", title=_("Monitor"), icon=":material/trending_down:"),
        ],
    }
    found[_("Administration")] = [st.Page("views/admin.py", title=_("Admin"), icon=":material/admin_panel_settings:",
                                       visibility="visible" if role in (ADMIN, None) else "hidden")]
    return found


user = current_user()
choose_interface_language(user)
navigation = st.navigation(pages(user.role if user else None), position="sidebar" if user else "hidden")
if user is None:
    sign_in()
    st.stop()
sidebar_chrome()
navigation.run()
