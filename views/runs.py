"""Runs: one run live (status, progress, curves, device, log, Cancel / Resume) and the history of every run."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import runs
from engine.jobs import supervisor
from engine.training import reproduce
from engine.training import verdict
from views._shared import can, connect, current_user, md, plain_errors, require_sign_in, start_worker

REFRESH_S = 2.0
BADGES = {
    "queued": ("gray", ":material/schedule:"),
    "running": ("blue", ":material/sync:"),
    "succeeded": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "cancelled": ("orange", ":material/cancel:"),
}

require_sign_in()
conn = connect()
st.title("Runs")

supervisor.check_running(conn)  # a run whose process vanished is shown as failed, not as running forever
all_runs = queue.list_jobs(conn, kind="train")
if not all_runs:
    st.info("No training runs yet. Start one on the Train page.", icon=":material/info:")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()
if any(r["status"] == "queued" for r in all_runs) and (why := start_worker()):  # queued runs need a worker
    st.warning("A queued run" + why.replace(" It waits", " waits"), icon=":material/warning:")

ids = [r["id"] for r in all_runs]
by_id = {r["id"]: r for r in all_runs}
wanted = st.query_params.get("run")
if wanted and wanted.isdigit() and int(wanted) in by_id and st.session_state.get("runs_pick") != int(wanted):
    st.session_state["runs_pick"] = int(wanted)


def on_pick() -> None:
    st.query_params["run"] = str(st.session_state["runs_pick"])


st.selectbox(
    "Run",
    ids,
    key="runs_pick",
    format_func=lambda i: f"#{i} · {by_id[i].get('name') or ''} · {by_id[i]['status']}",
    on_change=on_pick,
)
run_id = int(st.session_state["runs_pick"])


def badge(status: str) -> None:
    color, icon = BADGES.get(status, ("gray", None))
    st.badge(status.capitalize(), color=color, icon=icon)


def empty_note(fig: go.Figure, text: str) -> None:
    """Say in the chart why it is empty, instead of an empty frame."""
    fig.add_annotation(text=text.replace(": ", ":<br>", 1), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


def curves(rows: list[dict], evals: list[dict], task: str | None = None) -> None:
    left, right = st.columns(2)
    losses = [r for r in rows if r.get("loss") is not None]
    with left:
        fig = go.Figure()
        if losses:
            fig.add_scatter(x=[r["step"] for r in losses], y=[r["loss"] for r in losses], name="training loss")
        if evals:
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["eval_loss"] for r in evals], name="validation loss",
                            mode="lines+markers")
        fig.update_layout(title="Loss", xaxis_title="step", height=300, margin=dict(l=10, r=10, t=40, b=10))
        if not losses and not evals:
            empty_note(fig, "No loss yet: the first is logged after the first few steps.")
        st.plotly_chart(fig, width="stretch")
    if task == "generation":  # validation perplexity = e^(validation loss)
        with right:
            fig = go.Figure()
            points = [r for r in evals if r.get("eval_loss") is not None]
            fig.add_scatter(x=[r["step"] for r in points], y=[math.exp(min(r["eval_loss"], 50)) for r in points],
                            name="validation perplexity", mode="lines+markers")
            fig.update_layout(title="Validation perplexity (lower is better)", xaxis_title="step", yaxis_type="log",
                              height=300, margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(fig, width="stretch")
        return
    with right:
        fig = go.Figure()
        if evals:
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["macro_f1"] for r in evals], name="macro-F1",
                            mode="lines+markers")
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["accuracy"] for r in evals], name="accuracy",
                            mode="lines+markers")
        fig.update_layout(title="Validation", xaxis_title="step", yaxis_range=[0, 1], height=300,
                          margin=dict(l=10, r=10, t=40, b=10))
        last_step = max([r.get("step") or 0 for r in rows + evals] + [r.get("total_steps") or 0 for r in rows])
        if last_step:  # the whole run on the axis, not a narrow window around one point
            fig.update_xaxes(range=[0, last_step * 1.02])
        if not evals:
            empty_note(fig, "No validation score yet: it is measured at the end of each epoch "
                            "(or every N steps when set), and the first appears then.")
        st.plotly_chart(fig, width="stretch")


def eta_text(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"about {seconds // 60} min {seconds % 60} s left" if seconds >= 60 else f"about {seconds} s left"


def compared(comparison: dict, run_id: int) -> None:
    """A re-run beside the run it repeats: metrics side by side and whether the test predictions are identical."""
    source = comparison["source_id"]
    st.subheader(f"Compared with run #{source}")
    if comparison.get("source_missing"):
        st.caption(f"Run #{source}, which this run repeats, has been deleted.")
        return
    st.caption(f"Seed {comparison['source_seed']} (run #{source}) and {comparison['seed']} (this run); same settings "
               "and dataset version.")
    table = pd.DataFrame([{"metric": m["metric"], f"run #{source}": m["source"], "this run": m["rerun"]}
                          for m in comparison["metrics"]])
    st.dataframe(table, hide_index=True, key=f"rerun_metrics_{run_id}",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns[1:]})
    words = reproduce.comparison_words(comparison)
    preds = comparison.get("predictions")
    if preds and preds["identical"]:
        st.success(words, icon=":material/check_circle:")
    elif preds:
        (st.info if comparison["seed"] != comparison["source_seed"] else st.warning)(words, icon=":material/info:")
    else:
        st.caption(words)
    if comparison.get("environment_differs"):
        st.caption("Recorded differences: " + "; ".join(
            f"{k}: {a} → {b}" for k, (a, b) in comparison["environment_differs"].items()))
    if comparison["finished"]:
        st.page_link("views/reports.py", label=f"Compare #{source} and #{run_id} in Reports",
                     icon=":material/compare_arrows:", query_params={"run": str(source), "compare": str(run_id)})


def live_view(run_id: int, active: bool, seen: str | None = None) -> None:
    conn = connect()
    job = queue.get(conn, run_id)
    if active and job["status"] != seen:
        st.rerun()  # it started or finished: redraw the whole page, so the run picker and the table say so too
    head, actions = st.columns([3, 1])
    with head:
        st.subheader(f"#{job['id']} · {md(job.get('name') or '')}")
        warnings = verdict.for_run(conn, job)
        if warnings:  # finished, but not a model to trust: no green badge
            st.badge("Finished with a warning", color="orange", icon=":material/warning:")
        else:
            badge(job["status"])
        st.caption(f"{job.get('task')} · base model {md(job.get('base_model'))} · created {job['created_at']}"
                   f"{' · attempt ' + str(job['attempt']) if (job.get('attempt') or 1) > 1 else ''}")
    mine = can("run.cancel", owner=job.get("created_by"))  # cancel and resume: the run's creator or an admin
    with actions, plain_errors():
        if job["status"] in queue.ACTIVE and mine:
            if job.get("cancel_requested"):
                st.caption("Cancel requested: stopping at the next step.")
            elif st.button("Cancel", key=f"cancel_{run_id}", icon=":material/cancel:"):
                queue.cancel(conn, run_id, actor=current_user())
                st.rerun()
        if job["status"] in ("failed", "cancelled") and mine:
            if st.button("Resume", key=f"resume_{run_id}", type="primary", icon=":material/play_arrow:"):
                queue.resume(conn, run_id, actor=current_user())
                start_worker()  # if none starts, the page says so at the top when it reruns
                st.rerun(scope="app")
        if job["status"] in queue.FINISHED and job["kind"] == "train" and can("train.submit"):
            seed = st.number_input("Seed", value=int((job.get("config") or {}).get("seed", 42)), min_value=0, step=1,
                                   key=f"rerun_seed_{run_id}",
                                   help="The same seed repeats this run exactly (on the CPU); another seed is "
                                   "another draw of the same settings.")
            if st.button("Run again", key=f"rerun_{run_id}", icon=":material/replay:",
                         help="Queue the same settings on the same dataset version, then compare the two."):
                new_id = reproduce.rerun(conn, run_id, seed=int(seed), actor=current_user())
                start_worker()
                st.query_params["run"] = str(new_id)
                st.rerun(scope="app")
    if job.get("error"):
        (st.warning if job["status"] == "cancelled" else st.error)(md(job["error"]))
    rows = queue.progress_rows(conn, run_id, "train")
    evals = queue.progress_rows(conn, run_id, "eval")
    last = rows[-1] if rows else None
    if job["status"] == "queued":
        why = overview.waiting_reason(conn, job, supervisor.supervisor_alive(conn) is not None)
        st.info(md(why), icon=":material/schedule:")
        st.page_link("views/jobs.py", label="See every job on the Jobs page", icon=":material/pending_actions:")
    if last and last.get("total_steps"):
        frac = min(1.0, (last["step"] or 0) / last["total_steps"])
        text = f"Step {last['step']} of {last['total_steps']} · epoch {last['epoch'] or 0:.2f}"
        if job["status"] == "running":
            text += f" · {eta_text(last.get('eta_s'))}"
            if last.get("samples_per_s"):
                text += f" · {last['samples_per_s']:.1f} samples/s"
        st.progress(frac, text=text)
    device = job.get("device") or {}
    if device:
        words = f"{device.get('device', '?').upper()} · {device.get('precision', '?')}"
        if device.get("gpu_name"):
            words += f" · {device['gpu_name']} ({device.get('gpu_memory_gb')} GB)"
        if (device.get("world_size") or 1) > 1:
            words += f" · {device['world_size']} processes (data parallel)"
        env = device.get("environment") or {}
        if env:
            words += (f" · torch {env.get('torch')}, transformers {env.get('transformers')}, peft {env.get('peft')},"
                      f" Python {env.get('python')} · {env.get('torch_threads')} threads"
                      f" · full determinism {'on' if env.get('full_determinism') else 'off'}")
        st.caption(f"Device: {words}")
        if device.get("precision_note"):
            st.info(device["precision_note"], icon=":material/info:")
        if device.get("reproducibility_note"):
            st.info(device["reproducibility_note"], icon=":material/info:")
    if rows or evals:
        curves(rows, evals, job.get("task"))
    metrics = job.get("metrics") or {}
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")
    if job["status"] == "succeeded" and metrics and job.get("task") == "generation":
        cols = st.columns(4)
        cols[0].metric("Validation perplexity", f"{metrics.get('validation_perplexity') or 0:,.2f}",
                       help="How surprised the model is by held-out responses: lower is better.")
        cols[1].metric("Base model's", f"{metrics.get('base_validation_perplexity') or 0:,.2f}")
        cols[2].metric("ROUGE-L", f"{metrics.get('rougeL') or 0:.3f}")
        cols[3].metric("BLEU", f"{metrics.get('bleu') or 0:.2f}")
        if can("settings.read"):  # server paths are for administrators
            st.caption(f"Model saved in `{job.get('model_dir')}`")
        st.page_link("views/playground.py", label="Open the report and playground", icon=":material/chat:",
                     query_params={"run": str(run_id)})
    elif job["status"] == "succeeded" and metrics:
        split = metrics.get("metrics_split", "test")
        cols = st.columns(4)
        cols[0].metric(f"Macro-F1 ({split})", f"{metrics.get('macro_f1', 0):.3f}")
        cols[1].metric(f"Accuracy ({split})", f"{metrics.get('accuracy', 0):.3f}")
        cols[2].metric("Weighted F1", f"{metrics.get('weighted_f1') or 0:.3f}")
        cols[3].metric("Validation macro-F1", f"{metrics.get('validation_macro_f1') or 0:.3f}")
        if can("settings.read"):  # a server path: administrators only
            st.caption(f"Model saved in `{job.get('model_dir')}`")
        st.page_link("views/reports.py", label="Open the evaluation report", icon=":material/fact_check:",
                     query_params={"run": str(run_id)})
    comparison = reproduce.rerun_comparison(conn, run_id)
    if comparison:
        compared(comparison, run_id)
    tail = queue.log_tail(job, 15)
    if tail:
        with st.expander("Last log lines", expanded=job["status"] == "failed"):
            st.code(tail, language=None)


active = by_id[run_id]["status"] in queue.ACTIVE
st.fragment(live_view, run_every=REFRESH_S if active else None)(run_id, active, by_id[run_id]["status"])

st.divider()
st.subheader("All runs")
summaries = [runs.summary(conn, r) for r in all_runs]
columns = ["id", "name", "status", "task", "purpose", "dataset", "base_model", "macro_f1", "accuracy", "created_at",
           "finished_at"]
if any(r["task"] == "generation" for r in summaries):  # their figure is perplexity, not macro-F1 or accuracy
    columns.insert(columns.index("accuracy") + 1, runs.GENERATION_KEY_METRIC)
table = pd.DataFrame(summaries)[columns]
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="runs_table",
    column_config={
        "macro_f1": st.column_config.NumberColumn("macro-F1 (test)", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("accuracy (test)", format="%.3f"),
        runs.GENERATION_KEY_METRIC: st.column_config.NumberColumn(
            "perplexity (validation)", format="%.2f", help="Generation runs: lower is better."),
    },
)
picked = (event.selection.rows if event and hasattr(event, "selection") else []) or []
chosen = int(table.iloc[picked[0]]["id"]) if picked else None
if chosen != st.session_state.get("runs_table_last"):  # react to a new click only, not to a selection left standing
    st.session_state["runs_table_last"] = chosen
    if chosen is not None and chosen != run_id:
        st.query_params["run"] = str(chosen)
        st.rerun()
