"""Admin: accounts and roles, the audit log, and the server's settings. Only administrators see this page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine import i18n, paths, settings
from engine.access import audit, users
from engine.access.roles import ROLES
from engine.i18n import _
from views._shared import can, connect, plain_errors, require_sign_in

me = require_sign_in()
conn = connect()
st.title(_("Admin"))
if not can("users.manage"):
    st.error(_("Your role ({role}) cannot manage users: only an administrator can.", role=_(me.role)))
    st.stop()
if st.session_state.get("admin_flash"):
    st.success(st.session_state.pop("admin_flash"), icon=":material/check_circle:")

tab_users, tab_audit, tab_server = st.tabs([_("Users"), _("Audit log"), _("Server")])

with tab_users:
    people = users.list_users(conn)
    if people:
        st.dataframe(pd.DataFrame([{
            _("name"): u["name"], _("role"): _(u["role"]),
            _("sign-in"): _("single sign-on") if u["sso"] else _("password"),
            _("state"): _("disabled") if u["disabled"] else _("locked") if u["locked"] else _("active"),
            _("last sign-in"): u["last_sign_in_at"] or "", _("created by"): u["created_by"] or ""} for u in people]),
            hide_index=True, width="stretch")
    else:
        st.info(_("No accounts yet: add the first administrator below. Until one exists the dashboard stays on this "
                  "machine."))
    with st.form("add-user", clear_on_submit=True):
        st.markdown("#### " + _("Add a user"))
        c1, c2, c3 = st.columns([2, 1, 2])
        name = c1.text_input(_("Name (or e-mail for single sign-on)"))
        role = c2.selectbox(_("Role"), ROLES, index=1, format_func=_)
        sso = c3.checkbox(_("Signs in with single sign-on (no password)"))
        password = st.text_input(_("Password (at least 10 characters)"), type="password")
        if st.form_submit_button(_("Add user"), type="primary"):
            with plain_errors():
                users.add(conn, name, role, None if sso else password, actor=me, sso=sso)
                st.session_state["admin_flash"] = _("Added {name} ({role}).", name=name.strip(), role=_(role))
                st.rerun()
    if people:
        st.markdown("#### " + _("Change a user"))
        who = st.selectbox(_("User"), [u["name"] for u in people], key="admin-user")
        row = next(u for u in people if u["name"] == who)
        c1, c2, c3 = st.columns(3)
        new_role = c1.selectbox(_("Role"), ROLES, index=ROLES.index(row["role"]), key="admin-role", format_func=_)
        if c1.button(_("Set role"), key="admin-set-role"):
            with plain_errors():
                users.set_role(conn, who, new_role, actor=me)
                st.session_state["admin_flash"] = _("{name} is now {role}.", name=who, role=_(new_role))
                st.rerun()
        if c2.button(_("Enable") if row["disabled"] else _("Disable"), key="admin-disable"):
            with plain_errors():
                users.set_disabled(conn, who, not row["disabled"], actor=me)
                st.session_state["admin_flash"] = (_("{name} is enabled.", name=who) if row["disabled"]
                                                   else _("{name} is disabled.", name=who))
                st.rerun()
        if not row["sso"]:
            new_password = c3.text_input(_("New password"), type="password", key="admin-new-password")
            if c3.button(_("Reset password"), key="admin-reset"):
                with plain_errors():
                    users.reset_password(conn, who, new_password, actor=me)
                    st.session_state["admin_flash"] = _("New password set for {name}; their lock-out is cleared.", name=who)
                    st.rerun()

with tab_audit:
    c1, c2, c3 = st.columns(3)
    actor = c1.text_input(_("Actor"), key="audit-actor", placeholder=_("alice, cli:ops"))
    action = c2.text_input(_("Action"), key="audit-action", placeholder=_("dataset.delete, run, sign_in"))
    since = c3.text_input(_("Since"), key="audit-since", placeholder="2026-01-31")
    rows = audit.read(conn, limit=None, actor=actor.strip() or None, action=action.strip() or None,
                      since=since.strip() or None)
    st.caption(_("{n} entries, newest first. The log is append-only.", n=i18n.number(len(rows))))
    columns = [_("at"), _("actor"), _("role"), _("action"), _("object"), _("detail")]
    st.dataframe(pd.DataFrame([dict(zip(columns, [r["at"], r["actor"], r["role"] or "", r["action"], r["object"],
                                                  ", ".join(f"{k}: {v}" for k, v in r["detail"].items())]))
                               for r in rows[:1000]], columns=columns),
                 hide_index=True, width="stretch")
    st.download_button(_("Download CSV"), audit.to_csv(rows), "bellwether-audit.csv", "text/csv", key="audit-csv")

with tab_server:
    st.markdown(_("Data directory: `{path}`", path=paths.home()))
    st.dataframe(pd.DataFrame([{_("variable"): s.name, _("value"): value, _("sets"): s.doc} for s, value in settings.shown()]),
                 hide_index=True, width="stretch")
