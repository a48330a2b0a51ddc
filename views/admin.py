"""Admin: accounts and roles, the audit log, and the server's settings. Only administrators see this page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine import paths, settings
from engine.access import audit, users
from engine.access.roles import ROLES
from views._shared import can, connect, plain_errors, require_sign_in

me = require_sign_in()
conn = connect()
st.title("Admin")
if not can("users.manage"):
    st.error(f"Your role ({me.role}) cannot manage users: only an administrator can.")
    st.stop()
if st.session_state.get("admin_flash"):
    st.success(st.session_state.pop("admin_flash"), icon=":material/check_circle:")

tab_users, tab_audit, tab_server = st.tabs(["Users", "Audit log", "Server"])

with tab_users:
    people = users.list_users(conn)
    if people:
        st.dataframe(pd.DataFrame([{
            "name": u["name"], "role": u["role"], "sign-in": "single sign-on" if u["sso"] else "password",
            "state": "disabled" if u["disabled"] else "locked" if u["locked"] else "active",
            "last sign-in": u["last_sign_in_at"] or "", "created by": u["created_by"] or ""} for u in people]),
            hide_index=True, width="stretch")
    else:
        st.info("No accounts yet: add the first administrator below. Until one exists the dashboard stays on this "
                "machine.")
    with st.form("add-user", clear_on_submit=True):
        st.markdown("#### Add a user")
        c1, c2, c3 = st.columns([2, 1, 2])
        name = c1.text_input("Name (or e-mail for single sign-on)")
        role = c2.selectbox("Role", ROLES, index=1)
        sso = c3.checkbox("Signs in with single sign-on (no password)")
        password = st.text_input("Password (at least 10 characters)", type="password")
        if st.form_submit_button("Add user", type="primary"):
            with plain_errors():
                users.add(conn, name, role, None if sso else password, actor=me, sso=sso)
                st.session_state["admin_flash"] = f"Added {name.strip()} ({role})."
                st.rerun()
    if people:
        st.markdown("#### Change a user")
        who = st.selectbox("User", [u["name"] for u in people], key="admin-user")
        row = next(u for u in people if u["name"] == who)
        c1, c2, c3 = st.columns(3)
        new_role = c1.selectbox("Role", ROLES, index=ROLES.index(row["role"]), key="admin-role")
        if c1.button("Set role", key="admin-set-role"):
            with plain_errors():
                users.set_role(conn, who, new_role, actor=me)
                st.session_state["admin_flash"] = f"{who} is now {new_role}."
                st.rerun()
        if c2.button("Enable" if row["disabled"] else "Disable", key="admin-disable"):
            with plain_errors():
                users.set_disabled(conn, who, not row["disabled"], actor=me)
                st.session_state["admin_flash"] = f"{who} is {'enabled' if row['disabled'] else 'disabled'}."
                st.rerun()
        if not row["sso"]:
            new_password = c3.text_input("New password", type="password", key="admin-new-password")
            if c3.button("Reset password", key="admin-reset"):
                with plain_errors():
                    users.reset_password(conn, who, new_password, actor=me)
                    st.session_state["admin_flash"] = f"New password set for {who}; their lock-out is cleared."
                    st.rerun()

with tab_audit:
    c1, c2, c3 = st.columns(3)
    actor = c1.text_input("Actor", key="audit-actor", placeholder="alice, cli:ops")
    action = c2.text_input("Action", key="audit-action", placeholder="dataset.delete, run, sign_in")
    since = c3.text_input("Since", key="audit-since", placeholder="2026-01-31")
    rows = audit.read(conn, limit=None, actor=actor.strip() or None, action=action.strip() or None,
                      since=since.strip() or None)
    st.caption(f"{len(rows):,} entries, newest first. The log is append-only.")
    st.dataframe(pd.DataFrame([{"at": r["at"], "actor": r["actor"], "role": r["role"] or "", "action": r["action"],
                                "object": r["object"], "detail": ", ".join(f"{k}: {v}" for k, v in r["detail"].items())}
                               for r in rows[:1000]], columns=["at", "actor", "role", "action", "object", "detail"]),
                 hide_index=True, width="stretch")
    st.download_button("Download CSV", audit.to_csv(rows), "bellwether-audit.csv", "text/csv", key="audit-csv")

with tab_server:
    st.markdown(f"Data directory: `{paths.home()}`")
    st.dataframe(pd.DataFrame([{"variable": s.name, "value": value, "sets": s.doc} for s, value in settings.shown()]),
                 hide_index=True, width="stretch")
