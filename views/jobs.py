"""Jobs: every job in the queue and after (training runs, scoring, topics), why a queued one waits, how long each is
likely to take, Cancel for a running or queued one, and Delete for a finished one with its files."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine import i18n
from engine.errors import UserError
from engine.i18n import N_, _
from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import supervisor
from views._shared import can, connect, current_user, md, plain_errors, require_sign_in, start_worker

KIND_WORDS = {"training": N_("Training"), "scoring": N_("Scoring"), "topics": N_("Topics")}
STATUS_WORDS = {"queued": N_("Queued"), "running": N_("Running"), "succeeded": N_("Succeeded"), "failed": N_("Failed"),
                "cancelled": N_("Cancelled")}


def kind_word(kind: str) -> str:
    return _(KIND_WORDS[kind])


def status_word(status: str) -> str:
    return _(STATUS_WORDS[status])


require_sign_in()
conn = connect()
state = st.session_state
st.title(_("Jobs"))
if state.get("jobs_flash"):
    st.success(state.pop("jobs_flash"), icon=":material/check_circle:")

supervisor.check_running(conn)  # a job whose process vanished is shown as failed, not as running forever
everything = queue.list_jobs(conn, limit=1)
if not everything:
    st.info(_("No jobs yet. Training runs, scoring and topic tagging all appear here once queued."),
            icon=":material/info:")
    st.stop()
if overview.has_status(conn, "queued"):
    start_worker()  # queued jobs need a worker; if none starts, each queued job says so below
st.caption(overview.speeds_note(conn))


def active_jobs() -> None:
    fconn = connect()
    alive = supervisor.supervisor_alive(fconn) is not None
    rows = [r for r in overview.jobs(fconn, limit=200, worker_alive=alive) if r["status"] in queue.ACTIVE]
    if state.get("jobs_active_seen") and not rows:
        state.pop("jobs_active_seen", None)
        st.rerun()  # the last one just finished: redraw the page, so the table below is current
    state["jobs_active_seen"] = bool(rows)
    st.subheader(_("Waiting and running"))
    if not rows:
        st.caption(_("Nothing is queued or running."))
        return
    for r in rows:
        job = queue.get(fconn, r["id"])
        with st.container(border=True):
            head, action = st.columns([4, 1])
            head.markdown(f"**{md(overview.label(job, start=True))}** · {kind_word(r['kind'])} · "
                          f"{status_word(r['status'])} · {md(r['what'])}")
            if r["status"] == "running" and r["total_steps"]:
                st.progress(min(1.0, (r["step"] or 0) / r["total_steps"]),
                            text=_("{step} of {total} · {estimate}", step=i18n.number(r["step"] or 0),
                                   total=i18n.number(r["total_steps"]), estimate=r["estimate"]))
            elif r["status"] == "running":
                st.caption(_("Starting · {estimate}", estimate=r["estimate"]))
            if r["waiting"]:
                st.info(md(r["waiting"]), icon=":material/schedule:")
            if can("run.cancel", owner=job.get("created_by")) and not job.get("cancel_requested"):
                if action.button(_("Cancel"), key=f"jobs_cancel_{r['id']}", icon=":material/cancel:"):
                    with plain_errors():
                        queue.cancel(fconn, r["id"], actor=current_user())
                        st.rerun()
            elif job.get("cancel_requested"):
                action.caption(_("Cancel requested"))


any_active = overview.has_status(conn, *queue.ACTIVE)
st.fragment(active_jobs, run_every=2.0 if any_active else None)()

st.subheader(_("All jobs"))
rows = overview.jobs(conn, limit=500)
table = pd.DataFrame([{  # column headings in the reader's language; the values are the jobs' own
    _("Job"): r["label"], _("Kind"): kind_word(r["kind"]), _("What"): r["what"], _("Status"): status_word(r["status"]),
    _("Time"): r["estimate"] or "", _("By"): r["created_by"], _("Queued at"): r["created_at"],
    _("Finished at"): r["finished_at"] or "", _("Why it stopped"): r["error"],
} for r in rows])
st.dataframe(table, hide_index=True, width="stretch", key="jobs_table")

# ---- delete ----------------------------------------------------------------------------------------------------

done = [r for r in rows if r["status"] in queue.FINISHED
        and can("run.delete", owner=r["created_by"] or None)]
if not done:
    st.stop()
st.subheader(_("Delete a finished job"))
labels = {r["id"]: f"{r['label']} · {r['what']} · {status_word(r['status'])}" for r in done}
chosen = st.selectbox(_("Job"), list(labels), format_func=labels.get, key="jobs_delete_pick")
job = queue.get(conn, chosen)
reasons = overview.in_use(conn, job)
if reasons:
    st.caption(_("It cannot be deleted now. {reasons}", reasons=md(" ".join(reasons))))
elif state.get("jobs_confirm_delete") == chosen:
    st.warning(_("Delete {job} with its log, checkpoints, model and predictions? This cannot be undone.",
                 job=md(overview.label(job))), icon=":material/delete:")
    yes, no, _rest = st.columns([1, 1, 4])
    if yes.button(_("Yes, delete"), type="primary", key="jobs_delete_yes"):
        try:
            overview.delete(conn, chosen, confirm=True, actor=current_user())
        except UserError as exc:
            st.error(md(exc), icon=":material/error:")
        else:
            state.pop("jobs_confirm_delete", None)
            state["jobs_flash"] = _("Deleted {job} and its files.", job=overview.label(job))
            st.rerun()
    if no.button(_("Keep it"), key="jobs_delete_no"):
        state.pop("jobs_confirm_delete", None)
        st.rerun()
elif st.button(_("Delete {job}…", job=overview.label(job)), key="jobs_delete"):
    state["jobs_confirm_delete"] = chosen
    st.rerun()
