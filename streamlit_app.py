"""Bellwether dashboard: sign-in, navigation over the pages, and the chrome every page shares.

st.navigation is called on every run, before the sign-in check, so a link into a page (/runs?run=7) keeps its page
and query while the sign-in form is shown (navigation hidden) and opens it right after. Each role sees only the pages
it can use (viewers have no Train page; only admins have Admin).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.access.roles import ADMIN, VIEWER
from views._shared import current_user, sidebar_chrome, sign_in

# The icon is a file of ours: a :material/...: page icon makes every browser fetch it from fonts.gstatic.com.
st.set_page_config(page_title="Bellwether", page_icon=str(Path(__file__).parent / "assets" / "favicon.png"),
                   layout="wide")


def pages(role: str | None) -> dict:
    train = [
        st.Page("views/data.py", title="Data", icon=":material/table_view:", default=True),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
        st.Page("views/runs.py", title="Runs", icon=":material/monitoring:"),
        st.Page("views/reports.py", title="Reports", icon=":material/fact_check:"),
        st.Page("views/playground.py", title="Playground", icon=":material/chat:"),
        st.Page("views/review.py", title="Review", icon=":material/rate_review:"),
    ]
    if role == VIEWER:  # viewers neither train nor review
        train = [p for p in train if p.title not in ("Train", "Review")]
    found = {
        "Train models": train,
        "Monitor news": [
            st.Page("views/feeds.py", title="Feeds", icon=":material/rss_feed:"),
            st.Page("views/monitor.py", title="Monitor", icon=":material/trending_down:"),
        ],
    }
    if role in (ADMIN, None):  # None: before sign-in every page resolves, so a deep link survives
        found["Administration"] = [st.Page("views/admin.py", title="Admin", icon=":material/admin_panel_settings:")]
    return found


user = current_user()
navigation = st.navigation(pages(user.role if user else None), position="sidebar" if user else "hidden")
if user is None:
    sign_in()
    st.stop()
sidebar_chrome()
navigation.run()
