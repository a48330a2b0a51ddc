"""Reports: is a finished run good enough to trust, and where does it fail?

Pick a finished run; the tabs show its classification report, confusion matrix, mistakes, confidence, an evaluation
on a new labelled file, a comparison with other runs, and a box to try it. Every number comes from engine.reports.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from engine import export
from engine.jobs import runs
from engine.reports import plain
from engine.reports import reporting
from engine.review import items as review_items
from engine.training import verdict
from engine.data.readers import read_table_guarded
from engine.errors import UserError
from engine.i18n import _
from views._shared import can, chart_style, connect, current_user, md, plain_errors, plot_text, require_sign_in, run_picker


def show_report_table(frame: pd.DataFrame, key: str) -> None:
    names = plain.column_names()  # the headings in the reader's language; the class names are the data's own
    st.dataframe(plain.table(frame), hide_index=True, key=key, column_config={
        names["precision"]: st.column_config.TextColumn(
            help=_("Of the texts the model gave this class, the share that truly have it.")),
        names["recall"]: st.column_config.TextColumn(
            help=_("Of the texts that truly have this class, the share the model found.")),
        names["f1-score"]: st.column_config.TextColumn(
            help=_("One figure balancing the two before it (their harmonic mean): 1 is perfect, 0 is useless.")),
        names["support"]: st.column_config.TextColumn(help=_("How many texts truly have this class.")),
    })


def show_verdict(report: reporting.Report) -> plain.Verdict:
    """Plain sentences before the numbers: right how often, against always guessing the commonest class, per class."""
    said = plain.verdict(reporting.confusion(report))
    st.markdown(md(said.headline))
    st.markdown("\n".join(f"- {md(line)}" for line in said.classes))
    return said


def downloads(report: reporting.Report, stem: str, key: str) -> None:
    # The files are built when a button is clicked, not on every rerun of the page.
    left, middle, right = st.columns(3)
    left.download_button(_("Report (CSV)"), lambda: export.to_csv_bytes(report.frame), f"{stem}-report.csv", "text/csv",
                         key=f"{key}-csv", on_click="ignore", icon=":material/download:")
    middle.download_button(_("Report and predictions (XLSX)"), lambda: export.to_xlsx_bytes(reporting.export_sheets(report)),
                           f"{stem}-report.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                           key=f"{key}-xlsx", on_click="ignore", icon=":material/download:")
    right.download_button(_("Predictions (CSV)"), lambda: export.to_csv_bytes(reporting.predictions_frame(report)),
                          f"{stem}-predictions.csv", "text/csv", key=f"{key}-pred", on_click="ignore",
                          icon=":material/download:")


def report_body(report: reporting.Report, stem: str, key: str) -> None:
    for note in report.notes():
        st.warning(md(note), icon=":material/warning:")
    if report.task == reporting.TOKENS:
        a, b, c = st.columns(3)
        micro = report.report.get("micro avg", {})
        a.metric(_("Entity F1 (all entities)"), f"{micro.get('f1-score', 0):.3f}",
                 help=_("F1 over every entity together: an entity counts as right only with its type and exact "
                        "span."))
        b.metric(_("Entity F1 (average over types)"), f"{report.report.get('macro avg', {}).get('f1-score', 0):.3f}",
                 help=_("F1 per entity type, averaged so that each type counts the same however rare."))
        c.metric(_("Sentences scored"), _("{scored} of {rows}", scored=f"{report.n_scored:,}",
                                          rows=f"{report.n_rows:,}"))
        st.subheader(_("Entity level"))
        st.caption(_("An entity counts as right only when its type and its exact span are right."))
        show_report_table(report.frame, f"{key}-entity")
        st.subheader(_("Token level, per tag"))
        show_report_table(report.token_frame, f"{key}-token")
    else:
        said = show_verdict(report)
        a, b, c, d = st.columns(4)
        a.metric(_("Accuracy"), f"{report.report['accuracy']:.3f}",
                 help=_("The share of texts whose predicted class is the true one."))
        b.metric(_("Macro F1"), f"{report.report['macro avg']['f1-score']:.3f}",
                 help=_("F1 (the balance of finding a class and being right when saying it) averaged over the "
                        "classes, each counting the same however rare: the figure runs are judged by."))
        c.metric(_("Guessing the commonest class"), f"{said.baseline['macro_f1']:.3f}",
                 help=_("The macro F1 of always answering '{label}', the commonest true class here (right on "
                        "{accuracy} of the texts). A model should beat it clearly.", label=said.baseline["label"],
                        accuracy=f"{said.baseline['accuracy']:.0%}"))
        d.metric(_("Rows scored"), _("{scored} of {rows}", scored=f"{report.n_scored:,}", rows=f"{report.n_rows:,}"),
                 help=_("Texts with a true label the model knows; the others are left out of the figures."))
        st.caption(_("Per class: how often the model is right when it gives the class, how much of the class it "
                     "finds, the balance of the two, and how many texts truly have it. Hover a column's name for "
                     "more."))
        show_report_table(report.frame, f"{key}-table")
    downloads(report, stem, key)


def confusion_tab(report: reporting.Report) -> None:
    mode = st.radio(_("Show"), [_("Counts"), _("Row-normalised")], horizontal=True, key="confusion-mode",
                    help=_("Row-normalised: each row is divided by how many examples truly have that label (recall "
                           "on the diagonal)."))
    normalised = mode == _("Row-normalised")
    matrix = reporting.confusion(report, normalize=normalised)
    matrix = matrix.rename(index=plot_text, columns=plot_text)  # class names are data: never Plotly markup
    figure = px.imshow(matrix, text_auto=".2f" if normalised else True, color_continuous_scale="Blues",
                       labels={"x": _("Predicted"), "y": _("True"), "color": _("Share") if normalised else _("Count")},
                       aspect="auto")
    figure.update_xaxes(side="top", type="category")
    figure.update_yaxes(type="category")
    if report.task == reporting.TOKENS:
        st.caption(_("Token tags, gold (rows) against predicted (columns)."))
    st.plotly_chart(chart_style(figure), key="confusion-chart")


def mistakes_tab(conn, report: reporting.Report) -> None:
    all_wrong = reporting.mistakes(report)
    if all_wrong.empty:
        st.success(_("No mistakes in these predictions."), icon=":material/check_circle:")
        return
    left, right = st.columns(2)
    true = left.multiselect(_("True class"), sorted(all_wrong["true"].unique()), key="mistakes-true")
    predicted = right.multiselect(_("Predicted class"), sorted(all_wrong["predicted"].unique()), key="mistakes-pred")
    wrong = reporting.filter_mistakes(all_wrong, true=true, predicted=predicted)
    if report.task == reporting.TOKENS:
        st.caption(_("{n} entity errors. 'O' on one side means the entity was missed or is spurious.", n=len(wrong)))
        st.dataframe(reporting.mistakes_for_reading(wrong.drop(columns="confidence")), hide_index=True,
                     key="mistakes-table")
        sentences = dict(zip(wrong["row_id"], wrong["sentence"]))  # first appearance order, one sentence per id
        if sentences:
            sentence_id = st.selectbox(_("Sentence"), list(sentences), key="mistakes-sentence",
                                       format_func=lambda i: f"{i}: {sentences[i][:90]}")
            shown = reporting.sentence_spans(conn, report.run_id, sentence_id, report.split)
            st.markdown("**" + _("Gold") + "**")
            st.html(reporting.highlight_html(shown["tokens"], shown["gold"]))
            st.markdown("**" + _("Predicted") + "**")
            st.html(reporting.highlight_html(shown["tokens"], shown["predicted"]))
    else:
        st.caption(_("{n} misclassified examples, most confident first.", n=len(wrong)))
        st.dataframe(reporting.mistakes_for_reading(wrong), hide_index=True, key="mistakes-table",
                     column_config={_("confidence"): st.column_config.ProgressColumn(format="%.2f", min_value=0.0,
                                                                                     max_value=1.0)})
    st.download_button(_("Mistakes (CSV)"), lambda: export.to_csv_bytes(wrong), "mistakes.csv", "text/csv", key="mistakes-csv",
                       on_click="ignore", icon=":material/download:")


def confidence_tab(report: reporting.Report) -> None:
    if report.task == reporting.TOKENS:
        st.info(_("Entity tagging runs record no confidence per prediction, so there is no confidence view."))
        return
    conf, correct = reporting.correct_and_confidence(report)
    if len(conf) == 0:
        st.info(_("These predictions carry no confidence."))
        return
    bins, ece = reporting.reliability(conf, correct)
    figure = go.Figure()
    filled = bins[bins["count"] > 0]
    figure.add_bar(x=(filled["lower"] + filled["upper"]) / 2, y=filled["accuracy"], width=0.09, name=_("Accuracy"),
                   customdata=filled[["count", "mean_confidence"]],
                   hovertemplate=_("accuracy {accuracy}<br>{count} predictions<br>mean confidence {confidence}",
                                   accuracy="%{y:.2f}", count="%{customdata[0]}", confidence="%{customdata[1]:.2f}")
                   + "<extra></extra>")
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name=_("Perfectly calibrated"), line={"dash": "dash"})
    figure.update_layout(xaxis_title=_("Confidence"), yaxis_title=_("Accuracy"), xaxis_range=[0, 1],
                         yaxis_range=[0, 1],
                         title=_("Is its confidence honest? (average gap between confidence and accuracy: {gap})",
                                 gap=f"{ece:.3f}"))
    st.plotly_chart(chart_style(figure), key="reliability-chart")
    threshold = st.slider(_("Leave predictions below this confidence for a person"), 0.0, 1.0, 0.5, 0.01,
                          key="confidence-threshold")
    at = reporting.tradeoff(conf, correct, threshold)
    a, b, c = st.columns(3)
    a.metric(_("Accuracy on what the model decides"), "—" if at["accuracy"] is None else f"{at['accuracy']:.1%}")
    b.metric(_("Coverage (decided by the model)"), f"{at['coverage']:.1%}")
    c.metric(_("Left for a person"), _("{scored} of {rows}", scored=at["n_deferred"], rows=at["n_total"]))
    curve = reporting.tradeoff_curve(conf, correct)
    figure = px.line(curve, x="coverage", y="accuracy", hover_data=["threshold"], markers=True,
                     labels={"coverage": _("coverage"), "accuracy": _("accuracy"), "threshold": _("threshold")},
                     title=_("Accuracy against coverage as the threshold rises"))
    st.plotly_chart(chart_style(figure), key="tradeoff-chart")


@st.cache_data(max_entries=4, show_spinner=False)
def preview_upload(data: bytes, file_name: str, encoding: str | None, sheet: str | None = None):
    """The first rows of an uploaded file, read in a memory-capped child process (no upload can take the dashboard
    down), once per file and choice rather than on every rerun."""
    return read_table_guarded(data, file_name, head=reporting.PREVIEW_ROWS, encoding=encoding, sheet=sheet)


def evaluate_tab(conn, run: dict) -> None:
    task = runs.task(run)
    st.caption(_("Upload another labelled file to score this run on it. Labels are matched to the model's by name; "
                 "rows with labels the model does not know are counted and left out of the metrics.")
               + (" " + _("For entity tagging, upload a CoNLL file (a token and its tag per line).")
                  if task == reporting.TOKENS else ""))
    kinds = ["conll", "txt"] if task == reporting.TOKENS else ["csv", "tsv", "txt", "xlsx", "jsonl"]
    if not can("run.evaluate"):
        st.info(_("Evaluating a file needs an analyst's role (yours: {role}).", role=_(current_user().role)))
        return
    upload = st.file_uploader(_("Labelled file"), type=kinds, key=f"eval-upload-{run['id']}")
    if upload is None:
        return
    data = upload.getvalue()
    encoding = st.selectbox(_("Encoding"), ["detect", "utf-8", "gb18030", "cp1252"], key="eval-encoding",
                            format_func=lambda e: _("detect") if e == "detect" else e)
    encoding = None if encoding == "detect" else encoding
    text_col = label_col = sheet = None
    if task != reporting.TOKENS:
        with plain_errors():
            with st.spinner(_("Reading the file…")):
                table = preview_upload(data, upload.name, encoding)
            wanted = st.session_state.get("eval-sheet")
            if wanted in (table.sheets or []) and wanted != table.sheet:  # a sheet chosen below, if this file has it
                table = preview_upload(data, upload.name, encoding, sheet=wanted)
            if len(table.sheets or []) > 1:
                st.selectbox(_("Sheet"), table.sheets, index=table.sheets.index(table.sheet), key="eval-sheet",
                             help=_("The sheet with the most rows is read first."))
            sheet = table.sheet
            columns = list(table.frame.columns)
            guessed_text, guessed_label = reporting.guess_evaluation_columns(table.frame, runs.labels(run))
            left, right = st.columns(2)
            suffix = f"-{sheet}" if sheet and len(table.sheets) > 1 else ""  # another sheet: guess its columns afresh
            text_col = left.selectbox(_("Text column"), columns, key=f"eval-text-col{suffix}",
                                      index=columns.index(guessed_text) if guessed_text in columns else 0)
            label_col = right.selectbox(_("Label column"), columns, key=f"eval-label-col{suffix}",
                                        index=columns.index(guessed_label) if guessed_label in columns else 0)
        if text_col is None:
            return
    name = st.text_input(_("Name this evaluation"), Path(upload.name).stem, key="eval-name")
    if st.button(_("Evaluate"), type="primary", key="eval-go"):
        with plain_errors():
            bar = st.progress(0.0, _("Predicting…"))
            evaluation = reporting.evaluate_file(conn, run["id"], data, upload.name, name=name, text_col=text_col,
                                               label_col=label_col, encoding=encoding, sheet=sheet,
                                               progress=lambda done, total: bar.progress(done / max(total, 1)),
                                               actor=current_user())
            bar.empty()
            st.session_state["last-evaluation"] = (run["id"], evaluation.split)
            if evaluation.renamed:
                st.info(md(_("Labels matched by name: {pairs}",
                             pairs=", ".join(f"'{a}' → '{b}'" for a, b in evaluation.renamed.items()))))
    last = st.session_state.get("last-evaluation")
    if last and last[0] == run["id"]:
        with plain_errors():
            report = reporting.run_report(conn, run["id"], last[1])
            st.subheader(md(reporting.split_title(report.split)))
            st.caption(_("Stored with the run: pick it under 'Predictions' above to see its confusion matrix, "
                         "mistakes and confidence."))
            report_body(report, f"run{run['id']}-{last[1][len(reporting.EVAL_PREFIX):]}", "eval-report")


def compare_tab(conn, finished: list[dict], preselect: list[int] | None = None) -> None:
    titles = {r["id"]: runs.title(r) for r in finished}
    if len(finished) < 2:
        st.info(_("Comparing needs at least two finished runs."))
        return
    default = [i for i in (preselect or []) if i in titles]
    chosen = st.multiselect(_("Runs to compare"), list(titles), default=default if len(default) >= 2 else [],
                            format_func=titles.get, key="compare-runs",
                            placeholder=_("Pick two or more runs"))
    if len(chosen) < 2:
        st.caption(_("Pick two or more runs to see their metrics, loss curves and settings side by side."))
        return
    with plain_errors():
        comparison = reporting.compare_runs(conn, chosen)
        st.subheader(_("Metrics"))
        if comparison.metrics.empty:
            st.caption(_("These runs recorded no metrics."))
        else:
            st.dataframe(plain.metrics_table(comparison.metrics), key="compare-metrics")
        st.subheader(_("Loss curves"))
        if comparison.curves.empty:
            st.caption(_("These runs recorded no loss values."))
        else:
            kinds = {"train loss": _("training loss"), "eval loss": _("validation loss")}
            curves = comparison.curves.assign(run=comparison.curves["run"].map(plot_text),
                                              kind=comparison.curves["kind"].map(lambda k: kinds.get(k, k)))
            figure = px.line(curves, x="step", y="value", color="run", line_dash="kind", markers=True,
                             labels={"value": _("loss"), "step": _("training step"), "run": _("run"),
                                     "kind": _("curve")})
            st.plotly_chart(chart_style(figure), key="compare-curves")
        st.subheader(_("Settings that differ"))
        differences = comparison.differences
        if differences.empty:
            st.caption(_("The runs have the same settings."))
        else:
            st.dataframe(differences.rename_axis(_("setting")), key="compare-differences")
        if st.checkbox(_("Show every setting"), key="compare-all"):
            st.dataframe(comparison.config.drop(columns="differs").rename_axis(_("setting")), key="compare-config")


def try_tab(conn, run: dict) -> None:
    text = st.text_area(_("Text"), key="try-text", placeholder=_("Type a headline or a sentence"))
    if st.button(_("Predict"), type="primary", key="try-go"):
        with plain_errors():
            [result] = reporting.try_it(conn, run["id"], [text])
            st.session_state["try-result"] = {"run": run["id"], "result": result}
    kept = st.session_state.get("try-result")
    if not kept or kept["run"] != run["id"]:
        return
    result = kept["result"]
    if "entities" in result:
        if result["entities"]:
            st.html(reporting.highlight_html(result["tokens"], result["entities"]))
            entities = pd.DataFrame(result["entities"])[["text", "type", "start", "end"]]
            st.dataframe(entities.rename(columns={"text": _("text"), "type": _("type"), "start": _("start"),
                                                  "end": _("end")}), hide_index=True, key="try-entities")
        else:
            st.info(_("No entities found in this text."))
        return
    st.metric(_("Predicted label"), result["label"], _("confidence {share}", share=f"{result['confidence']:.1%}"),
              delta_color="off")
    probs = pd.DataFrame({_("class"): list(result["probs"]), _("probability"): list(result["probs"].values())})
    st.dataframe(probs, hide_index=True, key="try-probs",
                 column_config={_("probability"): st.column_config.ProgressColumn(
                     format="%.3f", min_value=0.0, max_value=1.0)})
    if can("review.label") and st.button(_("Flag as wrong (send to Review)"), key="try-flag",
                                         icon=":material/flag:"):
        with plain_errors():
            item = review_items.flag(conn, text=result["text"], run_id=run["id"], suggested_label=result["label"],
                                     probs=result["probs"], actor=current_user())
            st.success(_("Sent to the Review page (queue 'flagged', item {item}).", item=item["id"]))


# ---- the screen --------------------------------------------------------------------------------------------------

require_sign_in()

st.title(_("Reports"))
conn = connect()
finished = [r for r in runs.finished_runs(conn) if r.get("task") != "generation"]  # generation: the Playground page
if not finished:
    st.info(_("No finished run yet. Train a model on the Train page; its report appears here when training "
              "finishes."), icon=":material/hourglass_empty:")
    st.stop()

run = run_picker(finished, "report-run")
run_id = run["id"]
for warning in verdict.for_run(conn, run):  # a run that went wrong says so before its report is read
    st.warning(warning, icon=":material/warning:")
available = reporting.splits(conn, run_id) or [reporting.TEST]
split = st.selectbox(_("Predictions"), available, format_func=reporting.split_title, key=f"report-split-{run_id}")

report = None
try:
    report = reporting.run_report(conn, run_id, split)
except UserError as exc:
    st.warning(str(exc), icon=":material/warning:")

tabs = st.tabs([_("Report"), _("Confusion matrix"), _("Mistakes"), _("Confidence"), _("Evaluate on new data"),
               _("Compare runs"), _("Try it")])
with tabs[0]:
    if report is not None:
        with plain_errors():
            report_body(report, f"run{run_id}-{split.replace(':', '-')}", "main-report")
with tabs[1]:
    if report is not None:
        with plain_errors():
            confusion_tab(report)
with tabs[2]:
    if report is not None:
        with plain_errors():
            mistakes_tab(conn, report)
with tabs[3]:
    if report is not None:
        with plain_errors():
            confidence_tab(report)
with tabs[4]:
    evaluate_tab(conn, run)
with tabs[5]:
    # /reports?run=A&compare=B (the Runs page's link from a re-run to its source) opens with A and B picked
    also = [int(x) for x in str(st.query_params.get("compare") or "").split(",") if x.strip().isdigit()]
    compare_tab(conn, finished, [run_id, *also] if also else None)
with tabs[6]:
    try_tab(conn, run)
