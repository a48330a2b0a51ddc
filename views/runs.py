"""Runs: one run live (status, progress, curves, device, log, Cancel / Resume) and the history of every run."""

from __future__ import annotations

import math
import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine import i18n
from engine.i18n import N_, _
from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import runs
from engine.jobs import supervisor
from engine.training import reproduce
from engine.training import verdict
from views._shared import can, chart_style, connect, current_user, md, plain_errors, require_sign_in, start_worker

REFRESH_S = 2.0
ROUGE_L, BLEU = "ROUGE-L", "BLEU"  # the scores' own names, the same in every language
RUN_COLUMNS = {"id": N_("id"), "name": N_("name"), "task": N_("task"), "purpose": N_("purpose"),
               "dataset": N_("dataset"), "base_model": N_("base model"), "created_at": N_("created at"),
               "finished_at": N_("finished at")}  # the table's headings, shown in the reader's language
BADGES = {
    "queued": ("gray", ":material/schedule:"),
    "running": ("blue", ":material/sync:"),
    "succeeded": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "cancelled": ("orange", ":material/cancel:"),
}

require_sign_in()
conn = connect()
st.title(_("Runs"))

supervisor.check_running(conn)  # a run whose process vanished is shown as failed, not as running forever
all_runs = queue.list_jobs(conn, kind="train")
if not all_runs:
    st.info(_("No training runs yet. Start one on the Train page."), icon=":material/info:")
    st.page_link(page="views/train.py", label=_("Go to Train"), icon=":material/model_training:")
    st.stop()
if any(r["status"] == "queued" for r in all_runs) and (why := start_worker()):  # queued runs need a worker
    found = re.search(r"started \((.*)\)\. Run", why)  # views._shared.start_worker says why in English: keep its detail
    st.warning(_("A queued run waits: no worker could be started ({detail}). Run `python -m engine worker` on the "
                 "server.", detail=found.group(1) if found else why.strip()), icon=":material/warning:")

ids = [r["id"] for r in all_runs]
by_id = {r["id"]: r for r in all_runs}
wanted = st.query_params.get("run")
if wanted and wanted.isdigit() and int(wanted) in by_id and st.session_state.get("runs_pick") != int(wanted):
    st.session_state["runs_pick"] = int(wanted)


def on_pick() -> None:
    st.query_params["run"] = str(st.session_state["runs_pick"])


st.selectbox(
    _("Run"),
    ids,
    key="runs_pick",
    format_func=lambda i: f"#{i} · {by_id[i].get('name') or ''} · {queue.status_words(by_id[i]['status'])}",
    on_change=on_pick,
)
run_id = int(st.session_state["runs_pick"])


def badge(status: str) -> None:
    color, icon = BADGES.get(status, ("gray", None))
    st.badge(queue.status_words(status).capitalize(), color=color, icon=icon)


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
            fig.add_scatter(x=[r["step"] for r in losses], y=[r["loss"] for r in losses], name=_("training loss"))
        if evals:
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["eval_loss"] for r in evals],
                            name=_("validation loss"), mode="lines+markers")
        fig.update_layout(title=_("Loss"), xaxis_title=_("step"), height=300, margin=dict(l=10, r=10, t=40, b=10))
        if not losses and not evals:
            empty_note(fig, _("No loss yet: the first is logged after the first few steps."))
        st.plotly_chart(chart_style(fig), width="stretch")
    if task == "generation":  # validation perplexity = e^(validation loss)
        with right:
            fig = go.Figure()
            points = [r for r in evals if r.get("eval_loss") is not None]
            fig.add_scatter(x=[r["step"] for r in points], y=[math.exp(min(r["eval_loss"], 50)) for r in points],
                            name=_("validation perplexity"), mode="lines+markers")
            fig.update_layout(title=_("Validation perplexity (lower is better)"), xaxis_title=_("step"),
                              yaxis_type="log",
                              height=300, margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(chart_style(fig), width="stretch")
        return
    with right:
        fig = go.Figure()
        if evals:
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["macro_f1"] for r in evals], name=_("macro-F1"),
                            mode="lines+markers")
            fig.add_scatter(x=[r["step"] for r in evals], y=[r["accuracy"] for r in evals], name=_("accuracy"),
                            mode="lines+markers")
        fig.update_layout(title=_("Validation"), xaxis_title=_("step"), yaxis_range=[0, 1], height=300,
                          margin=dict(l=10, r=10, t=40, b=10))
        last_step = max([r.get("step") or 0 for r in rows + evals] + [r.get("total_steps") or 0 for r in rows])
        if last_step:  # the whole run on the axis, not a narrow window around one point
            fig.update_xaxes(range=[0, last_step * 1.02])
        if not evals:
            empty_note(fig, _("No validation score yet: it is measured at the end of each epoch "
                              "(or every N steps when set), and the first appears then."))
        st.plotly_chart(chart_style(fig), width="stretch")


def eta_text(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 60:
        return _("about {minutes} min {seconds} s left", minutes=seconds // 60, seconds=seconds % 60)
    return _("about {seconds} s left", seconds=seconds)


def compared(comparison: dict, run_id: int) -> None:
    """A re-run beside the run it repeats: metrics side by side and whether the test predictions are identical."""
    source = comparison["source_id"]
    st.subheader(_("Compared with run #{source}", source=source))
    if comparison.get("source_missing"):
        st.caption(_("Run #{source}, which this run repeats, has been deleted.", source=source))
        return
    st.caption(_("Seed {source_seed} (run #{source}) and {seed} (this run); same settings and dataset version.",
                 source_seed=comparison["source_seed"], source=source, seed=comparison["seed"]))
    table = pd.DataFrame([{_("metric"): m["metric"], _("run #{source}", source=source): m["source"],
                           _("this run"): m["rerun"]} for m in comparison["metrics"]])
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
        st.caption(_("Recorded differences: {differences}", differences="; ".join(
            f"{k}: {a} → {b}" for k, (a, b) in comparison["environment_differs"].items())))
    if comparison["finished"]:
        st.page_link(page="views/reports.py", label=_("Compare #{source} and #{run_id} in Reports", source=source,
                                                 run_id=run_id),
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
            st.badge(_("Finished with a warning"), color="orange", icon=":material/warning:")
        else:
            badge(job["status"])
        said = _("{task} · base model {base_model} · created {created}", task=job.get("task"),
                 base_model=md(job.get("base_model")), created=job["created_at"])
        if (job.get("attempt") or 1) > 1:
            said += " · " + _("attempt {attempt}", attempt=job["attempt"])
        st.caption(said)
    mine = can("run.cancel", owner=job.get("created_by"))  # cancel and resume: the run's creator or an admin
    with actions, plain_errors():
        if job["status"] in queue.ACTIVE and mine:
            if job.get("cancel_requested"):
                st.caption(_("Cancel requested: stopping at the next step."))
            elif st.button(_("Cancel"), key=f"cancel_{run_id}", icon=":material/cancel:"):
                queue.cancel(conn, run_id, actor=current_user())
                st.rerun()
        if job["status"] in ("failed", "cancelled") and mine:
            if st.button(_("Resume"), key=f"resume_{run_id}", type="primary", icon=":material/play_arrow:"):
                queue.resume(conn, run_id, actor=current_user())
                start_worker()  # if none starts, the page says so at the top when it reruns
                st.rerun(scope="app")
        if job["status"] in queue.FINISHED and job["kind"] == "train" and can("train.submit"):
            seed = st.number_input(_("Seed"), value=int((job.get("config") or {}).get("seed", 42)), min_value=0,
                                   step=1, key=f"rerun_seed_{run_id}",
                                   help=_("The same seed repeats this run exactly (on the CPU); another seed is "
                                          "another draw of the same settings."))
            if st.button(_("Run again"), key=f"rerun_{run_id}", icon=":material/replay:",
                         help=_("Queue the same settings on the same dataset version, then compare the two.")):
                new_id = reproduce.rerun(conn, run_id, seed=int(seed), actor=current_user())
                start_worker()
                st.query_params["run"] = str(new_id)
                st.rerun(scope="app")
    if job.get("error"):
        (st.warning if job["status"] == "cancelled" else st.error)(md(i18n.shown(job["error"])))
    rows = queue.progress_rows(conn, run_id, "train")
    evals = queue.progress_rows(conn, run_id, "eval")
    last = rows[-1] if rows else None
    if job["status"] == "queued":
        why = overview.waiting_reason(conn, job, supervisor.supervisor_alive(conn) is not None)
        st.info(md(why), icon=":material/schedule:")
        st.page_link(page="views/jobs.py", label=_("See every job on the Jobs page"), icon=":material/pending_actions:")
    if last and last.get("total_steps"):
        frac = min(1.0, (last["step"] or 0) / last["total_steps"])
        text = _("Step {step} of {total} · epoch {epoch}", step=last["step"], total=last["total_steps"],
                 epoch=f"{last['epoch'] or 0:.2f}")
        if position := runs.soup_position(last):  # a model soup trains its runs one after another
            text += " · " + _("run {i} of {n}", i=position[0], n=position[1])
        if job["status"] == "running":
            text += f" · {eta_text(last.get('eta_s'))}"
            if last.get("samples_per_s"):
                text += " · " + _("{speed} samples/s", speed=f"{last['samples_per_s']:.1f}")
        st.progress(frac, text=text)
    device = job.get("device") or {}
    if device:
        words = f"{device.get('device', '?').upper()} · {device.get('precision', '?')}"
        if device.get("gpu_name"):
            words += f" · {device['gpu_name']} ({device.get('gpu_memory_gb')} GB)"
        if (device.get("world_size") or 1) > 1:
            words += " · " + _("{n} processes (data parallel)", n=device["world_size"])
        env = device.get("environment") or {}
        if env:
            words += (f" · torch {env.get('torch')}, transformers {env.get('transformers')}, peft {env.get('peft')},"
                      f" Python {env.get('python')} · " + _("{n} threads", n=env.get("torch_threads")) + " · "
                      + (_("full determinism on") if env.get("full_determinism") else _("full determinism off")))
        st.caption(_("Device: {words}", words=words))
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
        cols[0].metric(_("Validation perplexity"), f"{metrics.get('validation_perplexity') or 0:,.2f}",
                       help=_("How surprised the model is by held-out responses: lower is better."))
        cols[1].metric(_("Base model's"), f"{metrics.get('base_validation_perplexity') or 0:,.2f}")
        cols[2].metric(ROUGE_L, f"{metrics.get('rougeL') or 0:.3f}")
        cols[3].metric(BLEU, f"{metrics.get('bleu') or 0:.2f}")
        if can("settings.read"):  # server paths are for administrators
            st.caption(_("Model saved in `{path}`", path=job.get("model_dir")))
        st.page_link(page="views/playground.py", label=_("Open the report and playground"), icon=":material/chat:",
                     query_params={"run": str(run_id)})
    elif job["status"] == "succeeded" and metrics:
        split = metrics.get("metrics_split", "test")
        cols = st.columns(4)
        split_words = _("test") if split == "test" else _("validation") if split == "validation" else split
        cols[0].metric(_("Macro-F1 ({split})", split=split_words), f"{metrics.get('macro_f1', 0):.3f}")
        cols[1].metric(_("Accuracy ({split})", split=split_words), f"{metrics.get('accuracy', 0):.3f}")
        cols[2].metric(_("Weighted F1"), f"{metrics.get('weighted_f1') or 0:.3f}")
        cols[3].metric(_("Validation macro-F1"), f"{metrics.get('validation_macro_f1') or 0:.3f}")
        if soup := runs.soup_words(metrics):
            st.caption(soup)
        if can("settings.read"):  # a server path: administrators only
            st.caption(_("Model saved in `{path}`", path=job.get("model_dir")))
        st.page_link(page="views/reports.py", label=_("Open the evaluation report"), icon=":material/fact_check:",
                     query_params={"run": str(run_id)})
    comparison = reproduce.rerun_comparison(conn, run_id)
    if comparison:
        compared(comparison, run_id)
    tail = queue.log_tail(job, 15)
    if tail:
        with st.expander(_("Last log lines"), expanded=job["status"] == "failed"):
            st.code(tail, language=None)


active = by_id[run_id]["status"] in queue.ACTIVE
st.fragment(live_view, run_every=REFRESH_S if active else None)(run_id, active, by_id[run_id]["status"])

st.divider()
st.subheader(_("All runs"))
summaries = [runs.summary(conn, r) for r in all_runs]
columns = ["id", "name", "status", "task", "purpose", "dataset", "base_model", "macro_f1", "accuracy", "created_at",
           "finished_at"]
if any(r["task"] == "generation" for r in summaries):  # their figure is perplexity, not macro-F1 or accuracy
    columns.insert(columns.index("accuracy") + 1, runs.GENERATION_KEY_METRIC)
table = pd.DataFrame(summaries)[columns]
table["status"] = table["status"].map(queue.status_words)  # the word in the reader's language; ids and names as kept
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="runs_table",
    column_config={
        **{column: st.column_config.Column(_(heading)) for column, heading in RUN_COLUMNS.items()},
        "status": st.column_config.TextColumn(_("status")),
        "macro_f1": st.column_config.NumberColumn(_("macro-F1 (test)"), format="%.3f"),
        "accuracy": st.column_config.NumberColumn(_("accuracy (test)"), format="%.3f"),
        runs.GENERATION_KEY_METRIC: st.column_config.NumberColumn(
            _("perplexity (validation)"), format="%.2f", help=_("Generation runs: lower is better.")),
    },
)
picked = (event.selection.rows if event and hasattr(event, "selection") else []) or []
chosen = int(table.iloc[picked[0]]["id"]) if picked else None
if chosen != st.session_state.get("runs_table_last"):  # react to a new click only, not to a selection left standing
    st.session_state["runs_table_last"] = chosen
    if chosen is not None and chosen != run_id:
        st.query_params["run"] = str(chosen)
        st.rerun()
