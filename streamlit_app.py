"""Bellwether dashboard: sign-in, navigation over pages/, and the chrome every page shares."""

from __future__ import annotations

import streamlit as st

from pages._shared import require_sign_in, sidebar_chrome

st.set_page_config(page_title="Bellwether", page_icon=":material/query_stats:", layout="wide")

PAGES = {
    "Train models": [
        st.Page("pages/data.py", title="Data", icon=":material/table_view:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:"),
        st.Page("pages/reports.py", title="Reports", icon=":material/fact_check:"),
        st.Page("pages/playground.py", title="Playground", icon=":material/chat:"),
    ],
    "Monitor news": [
        st.Page("pages/feeds.py", title="Feeds", icon=":material/rss_feed:"),
        st.Page("pages/monitor.py", title="Monitor", icon=":material/trending_down:"),
    ],
}

require_sign_in()

navigation = st.navigation(PAGES)
sidebar_chrome()
navigation.run()
