"""Jobs: every job in the queue and after (training runs, scoring, topics), why a queued one waits, how long each is
likely to take, Cancel for a running or queued one, and Delete for a finished one with its files."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.errors import UserError
from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import supervisor
from views._shared import can, connect, current_user, md, plain_errors, require_sign_in, start_worker

KIND_WORDS = {"training": "Training", "scoring": "Scoring", "topics": "Topics"}
STATUS_WORDS = {"queued": "Queued", "running": "Running", "succeeded": "Succeeded", "failed": "Failed",
                "cancelled": "Cancelled"}

require_sign_in()
conn = connect()
state = st.session_state
st.title("Jobs")
if state.get("jobs_flash"):
    st.success(state.pop("jobs_flash"), icon=":material/check_circle:")

supervisor.check_running(conn)  # a job whose process vanished is shown as failed, not as running forever
everything = queue.list_jobs(conn, limit=1)
if not everything:
    st.info("No jobs yet. Training runs, scoring and topic tagging all appear here once queued.",
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
    st.subheader("Waiting and running")
    if not rows:
        st.caption("Nothing is queued or running.")
        return
    for r in rows:
        with st.container(border=True):
            head, action = st.columns([4, 1])
            head.markdown(f"**{md(r['label'].capitalize())}** · {KIND_WORDS[r['kind']]} · "
                          f"{STATUS_WORDS[r['status']]} · {md(r['what'])}")
            if r["status"] == "running" and r["total_steps"]:
                st.progress(min(1.0, (r["step"] or 0) / r["total_steps"]),
                            text=f"{r['step'] or 0:,} of {r['total_steps']:,} · {r['estimate']}")
            elif r["status"] == "running":
                st.caption(f"Starting · {r['estimate']}")
            if r["waiting"]:
                st.info(md(r["waiting"]), icon=":material/schedule:")
            job = queue.get(fconn, r["id"])
            if can("run.cancel", owner=job.get("created_by")) and not job.get("cancel_requested"):
                if action.button("Cancel", key=f"jobs_cancel_{r['id']}", icon=":material/cancel:"):
                    with plain_errors():
                        queue.cancel(fconn, r["id"], actor=current_user())
                        st.rerun()
            elif job.get("cancel_requested"):
                action.caption("Cancel requested")


any_active = overview.has_status(conn, *queue.ACTIVE)
st.fragment(active_jobs, run_every=2.0 if any_active else None)()

st.subheader("All jobs")
rows = overview.jobs(conn, limit=500)
table = pd.DataFrame([{
    "Job": r["id"], "Kind": KIND_WORDS[r["kind"]], "What": r["what"], "Status": STATUS_WORDS[r["status"]],
    "Time": r["estimate"] or "", "By": r["created_by"], "Queued at": r["created_at"],
    "Finished at": r["finished_at"] or "", "Why it stopped": r["error"],
} for r in rows])
st.dataframe(table, hide_index=True, width="stretch", key="jobs_table")

# ---- delete ----------------------------------------------------------------------------------------------------

done = [r for r in rows if r["status"] in queue.FINISHED
        and can("run.delete", owner=r["created_by"] or None)]
if not done:
    st.stop()
st.subheader("Delete a finished job")
labels = {r["id"]: f"{r['label'].capitalize()} · {r['what']} · {STATUS_WORDS[r['status']]}" for r in done}
chosen = st.selectbox("Job", list(labels), format_func=labels.get, key="jobs_delete_pick")
job = queue.get(conn, chosen)
reasons = overview.in_use(conn, job)
if reasons:
    st.caption("It cannot be deleted now. " + md(" ".join(reasons)))
elif state.get("jobs_confirm_delete") == chosen:
    st.warning(f"Delete {md(overview.label(job))} with its log, checkpoints, model and predictions? This cannot be "
               "undone.", icon=":material/delete:")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary", key="jobs_delete_yes"):
        try:
            overview.delete(conn, chosen, confirm=True, actor=current_user())
        except UserError as exc:
            st.error(md(exc), icon=":material/error:")
        else:
            state.pop("jobs_confirm_delete", None)
            state["jobs_flash"] = f"Deleted {overview.label(job)} and its files."
            st.rerun()
    if no.button("Keep it", key="jobs_delete_no"):
        state.pop("jobs_confirm_delete", None)
        st.rerun()
elif st.button(f"Delete {overview.label(job)}…", key="jobs_delete"):
    state["jobs_confirm_delete"] = chosen
    st.rerun()
