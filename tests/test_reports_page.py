"""The Reports page, driven through Streamlit's AppTest on finished runs made with make_finished_run and tiny models."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import classification_report
from streamlit.testing.v1 import AppTest

from engine import db
from tests.conftest import ROOT
from tests.helpers import add_user, make_finished_run, open_page
from tests.test_reports import KNOWN, LABELS, SENTENCES, text_predictions, tiny_tagger  # noqa: F401 - fixture


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    return lambda: open_page("reports")


def texts_of(elements) -> list[str]:
    return [str(e.value) for e in elements]


def frame(at: AppTest, *, columns=None, index=None, has_class=None, n=0) -> pd.DataFrame:
    """The n-th table on the screen with these columns / index name / 'class' value (AppTest drops table keys)."""
    found = []
    for element in at.dataframe:
        value = element.value
        if columns is not None and list(value.columns) != list(columns):
            continue
        if index is not None and value.index.name != index:
            continue
        if has_class is not None and ("Class" not in value.columns or has_class not in set(value["Class"])):
            continue
        found.append(value)
    assert len(found) > n, f"no table like that among {[list(e.value.columns) for e in at.dataframe]}"
    return found[n]


REPORT = ["Class", "Right when it says it (precision)", "Found (recall)", "F1", "Rows"]
MISTAKES = ["row_id", "text", "true", "predicted", "confidence"]


def test_without_finished_runs_the_page_says_what_to_do(app, store):
    at = app()
    assert any("No finished run yet" in text for text in texts_of(at.info))


def test_report_view_shows_the_verdict_the_table_confusion_and_mistakes(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.6})
    at = app()
    assert at.selectbox(key="report-run").value == run_id
    assert [t.label for t in at.tabs] == ["Report", "Confusion matrix", "Mistakes", "Confidence",
                                          "Evaluate on new data", "Compare runs", "Try it"]
    # plain sentences before the numbers, with the majority-class baseline
    said = [m.value for m in at.markdown]
    assert ("Right on 60% of the 10 texts checked. Always answering 'neutral' (the commonest class) would be right "
            "on 40%, with macro F1 0.19 against the model's 0.60. The model does clearly better than that guess."
            ) in said
    assert any("- positive: finds 67% of the positive texts (2 of 3); when it says positive it is right 50% of the "
               "time (2 of 4)." in m for m in said)
    table = frame(at, columns=REPORT)
    expected = classification_report([t for t, _, _ in KNOWN], [p for _, p, _ in KNOWN], output_dict=True,
                                     zero_division=0)
    names = {"macro avg": "Average over classes (macro)", "weighted avg": "Average weighted by rows"}
    assert list(table["Class"]) == LABELS + ["All classes: accuracy", *names.values()]
    by_class = table.set_index("Class")
    for label in LABELS + ["macro avg", "weighted avg"]:
        assert by_class.loc[names.get(label, label), "F1"] == f"{expected[label]['f1-score']:.3f}"
        assert by_class.loc[names.get(label, label), "Rows"] == str(int(expected[label]["support"]))
    assert by_class.loc["All classes: accuracy", "Found (recall)"] == ""  # a blank, never "None"
    metrics = {m.label: m for m in at.metric}
    assert metrics["Accuracy"].value == "0.600" and metrics["Guessing the commonest class"].value == "0.190"
    assert "always answering 'neutral'" in metrics["Guessing the commonest class"].help
    assert metrics["Macro F1"].help
    assert {"Report (CSV)", "Report and predictions (XLSX)", "Predictions (CSV)"} <= {
        b.label for b in at.get("download_button")}
    assert len(at.get("plotly_chart")) >= 2  # confusion matrix and reliability diagram

    mistakes = frame(at, columns=MISTAKES)
    assert list(mistakes["confidence"]) == [0.97, 0.91, 0.62, 0.55]
    at.multiselect(key="mistakes-true").set_value(["neutral"]).run()
    assert list(frame(at, columns=MISTAKES)["row_id"]) == [108, 103]

    at.radio(key="confusion-mode").set_value("Row-normalised").run()
    assert not at.exception
    at.slider(key="confidence-threshold").set_value(0.65).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Coverage (decided by the model)"] == "70.0%"
    assert metrics["Accuracy on what the model decides"] == "71.4%"


def test_compare_view_shows_metrics_curves_and_differences(app, store, tiny_text_model):
    a = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.58})
    b = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.7, "macro_f1": 0.66})
    store["jobs"].update(b, {"config_json": db.dumps({"epochs": 3})})
    for job in (a, b):
        for step, loss in ((10, 1.0), (20, 0.8)):
            store["progress"].insert({"job_id": job, "kind": "train", "step": step, "loss": loss,
                                      "created_at": db.now()})
    at = app()
    assert any("Pick two or more runs" in c.value for c in at.caption)
    at.multiselect(key="compare-runs").set_value([a, b]).run()
    assert not at.exception
    metrics = frame(at, index="Metric")
    assert metrics.loc["Accuracy"].tolist() == ["0.600", "0.700"]
    assert metrics.loc["Macro F1"].tolist() == ["0.580", "0.660"]
    differences = frame(at, index="setting")
    assert list(differences.index) == ["epochs"]
    assert differences.loc["epochs"].tolist() == ["1", "3"]
    assert any(chart.key == "compare-curves" for chart in at.get("plotly_chart")) or len(at.get("plotly_chart")) >= 3


def test_try_it_shows_the_label_and_every_class_probability(app, store, tiny_text_model):
    make_finished_run(store, tiny_text_model, text_predictions())
    at = app()
    at.text_area(key="try-text").input("Quarterly profit beat expectations")
    at.button(key="try-go").click().run()
    assert not at.exception
    label = {m.label: m.value for m in at.metric}["Predicted label"]
    probs = frame(at, columns=["class", "probability"])
    assert list(probs["class"]) == LABELS
    assert probs["probability"].sum() == pytest.approx(1.0, abs=1e-5)
    assert label == probs.loc[probs["probability"].idxmax(), "class"]

    at.text_area(key="try-text").input("   ")
    at.button(key="try-go").click().run()
    assert any("Type some text" in e.value for e in at.error)


def test_evaluate_upload_reports_unknown_labels_without_crashing(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model, text_predictions())
    at = app()
    data = "headline,sentiment\nProfit up,positive\nLoss widens,negative\nRally,bullish\n".encode("cp1252")
    at.file_uploader(key=f"eval-upload-{run_id}").set_value(("extra.csv", data, "text/csv"))
    at.run()
    assert at.selectbox(key="eval-text-col").value == "headline"
    assert at.selectbox(key="eval-label-col").value == "sentiment"
    at.button(key="eval-go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "bullish" in warnings and "does not know" in warnings
    table = frame(at, columns=REPORT, n=1)
    assert table.set_index("Class").loc["All classes: accuracy", "Rows"] == "2"
    at.run()  # the stored evaluation is now one of the run's prediction sets
    picker = at.selectbox(key=f"report-split-{run_id}")
    assert picker.options == ["Test split", "Evaluation file: extra"]
    picker.set_value("eval:extra").run()
    assert frame(at, columns=REPORT).set_index("Class").loc["All classes: accuracy", "Rows"] == "2"
    assert any("bullish" in w.value for w in at.warning)


def test_entity_run_shows_both_reports_and_highlights_spans_safely(app, store, tiny_tagger):  # noqa: F811
    run_id = make_finished_run(store, tiny_tagger, [], task="token-classification")
    for i, (tokens, gold, pred) in enumerate(SENTENCES):
        store["predictions"].insert({"run_id": run_id, "split": "test", "row_id": i + 1, "text": " ".join(tokens),
                                     "tokens_json": db.dumps(tokens), "true_tags_json": db.dumps(gold),
                                     "pred_tags_json": db.dumps(pred)})
    at = app()
    entity = frame(at, columns=REPORT, has_class="LOC")
    assert {"LOC", "ORG", "PER", "All entities together (micro)", "Average over classes (macro)",
            "Average weighted by rows"} <= set(entity["Class"])
    token = frame(at, columns=REPORT, has_class="B-LOC")
    assert list(token["Class"])[:7] == ["B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER", "O"]
    sentences = at.selectbox(key="mistakes-sentence")
    sentences.set_value(4).run()
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;" in html and "<script>" not in html
    at.text_area(key="try-text").input("Acme Corp opened in Paris")
    at.button(key="try-go").click().run()
    assert not at.exception


def test_opening_the_page_by_its_own_url_still_asks_to_sign_in(home, store, tiny_text_model, monkeypatch):
    make_finished_run(store, tiny_text_model, text_predictions())
    add_user(store, "maria", "analyst")
    at = AppTest.from_file(str(ROOT / "views" / "reports.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Your name", "Password"]
    assert not at.dataframe and not at.tabs


def _workbook(sheets: dict[str, list[tuple[str, str]]]) -> bytes:
    import io

    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        for name, rows in sheets.items():
            pd.DataFrame(rows, columns=["text", "label"]).to_excel(writer, sheet_name=name, index=False)
    return buf.getvalue()


def test_evaluate_reads_the_sheet_the_analyst_picks(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model, text_predictions())
    at = app()
    book = _workbook({"Notes": [("read me", "neutral")],
                      "Q3 labels": [("Profit up", "positive"), ("Loss widens", "negative"), ("Flat", "neutral")]})
    at.file_uploader(key=f"eval-upload-{run_id}").set_value(("q3.xlsx", book, "application/vnd.ms-excel"))
    at.run()
    sheet = at.selectbox(key="eval-sheet")
    assert sheet.options == ["Notes", "Q3 labels"] and sheet.value == "Q3 labels"  # the sheet with the most rows
    sheet.set_value("Notes").run()
    assert not at.exception, [e.message for e in at.exception]
    at.selectbox(key="eval-sheet").set_value("Q3 labels").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="eval-text-col-Q3 labels").value == "text"
    at.button(key="eval-go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert frame(at, columns=REPORT, n=1).set_index("Class").loc["All classes: accuracy", "Rows"] == "3"  # Q3's 3 rows
    # A CSV afterwards has no sheets: no sheet picker, and the columns are its own.
    at.file_uploader(key=f"eval-upload-{run_id}").set_value(("extra.csv", b"headline,sentiment\nUp,positive\n", "text/csv"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not [s for s in at.selectbox if s.key == "eval-sheet"]
    assert at.selectbox(key="eval-text-col").value == "headline"
