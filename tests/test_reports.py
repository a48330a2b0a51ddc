"""Reports on finished runs: the numbers against scikit-learn and seqeval, exports, evaluation files, compare, try-it
and the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import openpyxl
import pandas as pd
import pytest
from seqeval.metrics import classification_report as seqeval_report
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from engine import db, export
from engine.reports import reporting
from engine.cli.main import main
from engine.errors import NotFound, UserError
from tests.conftest import ROOT
from tests.helpers import build_tiny_model, make_finished_run

LABELS = ["negative", "neutral", "positive"]
# (true, predicted, confidence): 10 rows with known mistakes; no row predicts or holds a 4th label.
KNOWN = [
    ("positive", "positive", 0.95),
    ("positive", "neutral", 0.91),
    ("neutral", "neutral", 0.80),
    ("neutral", "negative", 0.55),
    ("negative", "negative", 0.99),
    ("negative", "positive", 0.62),
    ("neutral", "neutral", 0.70),
    ("positive", "positive", 0.66),
    ("neutral", "positive", 0.97),
    ("negative", "negative", 0.45),
]


def _probs(pred, conf):
    rest = (1 - conf) / 2
    return {label: (conf if label == pred else rest) for label in LABELS}


def text_predictions(rows=KNOWN, texts=None):
    return [
        {"row_id": 100 + i, "text": (texts[i] if texts else f"sentence {i}"), "true_label": t, "pred_label": p,
         "confidence": c, "probs": _probs(p, c)}
        for i, (t, p, c) in enumerate(rows)
    ]


@pytest.fixture
def text_run(store, tiny_text_model):
    return make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.6})


TAGS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]
SENTENCES = [
    (["Acme", "Corp", "opened", "in", "New", "York"], ["B-ORG", "I-ORG", "O", "O", "B-LOC", "I-LOC"],
     ["B-ORG", "I-ORG", "O", "O", "B-LOC", "O"]),
    (["John", "Smith", "joined", "Acme"], ["B-PER", "I-PER", "O", "B-ORG"], ["B-PER", "I-PER", "O", "B-LOC"]),
    (["Shares", "fell", "in", "Paris"], ["O", "O", "O", "B-LOC"], ["O", "O", "O", "B-LOC"]),
    (["<script>alert(1)</script>", "rose"], ["O", "O"], ["B-PER", "O"]),
    (["Mary", "sold"], ["B-PER", "O"], ["O", "O"]),
]


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-tagger"), TAGS, task="token-classification")


@pytest.fixture
def entity_run(store, tiny_tagger):
    run_id = make_finished_run(store, tiny_tagger, [], {"accuracy": 0.5}, task="token-classification")
    for i, (tokens, gold, pred) in enumerate(SENTENCES):
        store["predictions"].insert({"run_id": run_id, "split": "test", "row_id": i + 1, "text": " ".join(tokens),
                                     "tokens_json": db.dumps(tokens), "true_tags_json": db.dumps(gold),
                                     "pred_tags_json": db.dumps(pred)})
    return run_id


# ---- the numbers -----------------------------------------------------------------------------------------------


def test_text_report_is_scikit_learns_classification_report(store, text_run):
    report = reporting.run_report(store, text_run)
    y_true = [t for t, _, _ in KNOWN]
    y_pred = [p for _, p, _ in KNOWN]
    expected = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert set(report.report) == set(expected)
    for key, values in expected.items():
        if key == "accuracy":
            assert report.report[key] == pytest.approx(values) == 0.6
        else:
            for metric, value in values.items():
                assert report.report[key][metric] == pytest.approx(value), (key, metric)
    # known by hand: positive precision = 2 right of 4 predicted positive, recall 2 of 3
    assert report.report["positive"]["precision"] == pytest.approx(0.5)
    assert report.report["positive"]["recall"] == pytest.approx(2 / 3)
    frame = report.frame
    assert list(frame["class"]) == ["negative", "neutral", "positive", "accuracy", "macro avg", "weighted avg"]
    assert list(frame.columns) == ["class", "precision", "recall", "f1-score", "support"]
    assert frame.set_index("class").loc["accuracy", "support"] == 10


def test_a_label_the_model_knows_but_the_test_split_lacks_does_not_change_the_averages(store, tmp_path):
    model = build_tiny_model(tmp_path / "m4", LABELS + ["mixed"])
    run_id = make_finished_run(store, model, text_predictions())
    report = reporting.run_report(store, run_id)
    expected = classification_report([t for t, _, _ in KNOWN], [p for _, p, _ in KNOWN], output_dict=True,
                                     zero_division=0)
    assert "mixed" not in report.report
    assert report.report["macro avg"]["f1-score"] == pytest.approx(expected["macro avg"]["f1-score"])


def test_entity_reports_are_seqeval_and_scikit_learn_per_tag(store, entity_run):
    report = reporting.run_report(store, entity_run)
    gold = [g for _, g, _ in SENTENCES]
    pred = [p for _, _, p in SENTENCES]
    expected = seqeval_report(gold, pred, output_dict=True, zero_division=0)
    assert set(report.report) == set(expected) >= {"LOC", "ORG", "PER", "micro avg", "macro avg", "weighted avg"}
    for key, values in expected.items():
        for metric, value in values.items():
            assert report.report[key][metric] == pytest.approx(value), (key, metric)

    flat_true = [t for s in gold for t in s]
    flat_pred = [p for s in pred for p in s]
    tags = report.token_report
    assert list(tags)[:6] == ["B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert list(tags)[6:] == ["O", "micro avg", "macro avg", "weighted avg"]
    per_tag = classification_report(flat_true, flat_pred, output_dict=True, zero_division=0)
    for tag in ["B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER", "O", "macro avg", "weighted avg"]:
        for metric in ["precision", "recall", "f1-score", "support"]:
            assert tags[tag][metric] == pytest.approx(per_tag[tag][metric]), (tag, metric)
    micro = precision_recall_fscore_support(flat_true, flat_pred, average="micro", zero_division=0)
    assert tags["micro avg"]["f1-score"] == pytest.approx(micro[2]) == pytest.approx(per_tag["accuracy"])
    assert tags["micro avg"]["support"] == len(flat_true) == 18


def test_confusion_matrix_counts_and_row_normalised(store, text_run):
    report = reporting.run_report(store, text_run)
    counts = reporting.confusion(report)
    expected = confusion_matrix([t for t, _, _ in KNOWN], [p for _, p, _ in KNOWN], labels=LABELS)
    assert list(counts.index) == LABELS and list(counts.columns) == LABELS
    assert (counts.to_numpy() == expected).all()
    share = reporting.confusion(report, normalize=True)
    assert np.allclose(share.sum(axis=1), 1.0)
    assert share.loc["neutral", "neutral"] == pytest.approx(2 / 4)


def test_mistakes_most_confident_first_and_filterable(store, text_run):
    report = reporting.run_report(store, text_run)
    wrong = reporting.mistakes(report)
    assert len(wrong) == 4
    assert list(wrong["confidence"]) == [0.97, 0.91, 0.62, 0.55]
    assert list(wrong.columns) == ["row_id", "text", "true", "predicted", "confidence"]
    assert wrong.iloc[0].to_dict() | {} == {"row_id": 108, "text": "sentence 8", "true": "neutral",
                                            "predicted": "positive", "confidence": 0.97}
    only = reporting.mistakes(report, true=["neutral"], predicted=["positive"])
    assert list(only["row_id"]) == [108]
    assert reporting.mistakes(report, true=["positive"], predicted=["negative"]).empty


def test_entity_mistakes_and_spans_of_a_sentence(store, entity_run):
    report = reporting.run_report(store, entity_run)
    wrong = reporting.mistakes(report)
    kinds = {(r.span, r.true, r.predicted, r.error.split(" (")[0]) for r in wrong.itertuples()}
    assert kinds == {
        ("New York", "LOC", "LOC", "wrong boundary"),
        ("Acme", "ORG", "LOC", "wrong type"),
        ("<script>alert(1)</script>", "O", "PER", "spurious"),
        ("Mary", "PER", "O", "missed"),
    }
    assert list(reporting.mistakes(report, true=["PER"])["span"]) == ["Mary"]
    spans = reporting.sentence_spans(store, entity_run, 1)
    assert spans["gold"] == [{"type": "ORG", "start": 0, "end": 1, "text": "Acme Corp"},
                             {"type": "LOC", "start": 4, "end": 5, "text": "New York"}]
    assert spans["predicted"][1] == {"type": "LOC", "start": 4, "end": 4, "text": "New"}


def test_highlighted_sentence_escapes_the_data():
    tokens, _, pred = SENTENCES[3]
    out = reporting.highlight_html(tokens, reporting.spans(pred))
    assert "<script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert out.count("<mark") == 1 and "PER" in out
    tricky = reporting.highlight_html(["a", "b"], [("<img src=x onerror=alert(1)>", 0, 1)])
    assert "<img" not in tricky and "&lt;img" in tricky


def test_reliability_bins_and_threshold_tradeoff(store, text_run):
    report = reporting.run_report(store, text_run)
    conf, correct = reporting.correct_and_confidence(report)
    bins, ece = reporting.reliability(conf, correct, n_bins=10)
    assert bins["count"].sum() == 10
    top = bins[bins["bin"] == "0.9–1.0"].iloc[0]  # 0.95 ok, 0.91 wrong, 0.99 ok, 0.97 wrong
    assert top["count"] == 4 and top["accuracy"] == pytest.approx(0.5)
    assert top["mean_confidence"] == pytest.approx((0.95 + 0.91 + 0.99 + 0.97) / 4)
    expected_ece = sum(
        (m.sum() / 10) * abs(np.mean(correct[m]) - np.mean(conf[m]))
        for m in [(conf >= lo) & (conf < lo + 0.1 if lo < 0.9 else conf <= 1.0) for lo in np.arange(0, 1, 0.1)]
        if m.sum()
    )
    assert ece == pytest.approx(expected_ece)
    at = reporting.tradeoff(conf, correct, 0.65)  # keeps 0.95 .91 .80 .99 .70 .66 .97 -> 5 right of 7
    assert at["n_kept"] == 7 and at["n_deferred"] == 3
    assert at["coverage"] == pytest.approx(0.7) and at["accuracy"] == pytest.approx(5 / 7)
    assert reporting.tradeoff(conf, correct, 0.0)["accuracy"] == pytest.approx(0.6)
    assert reporting.tradeoff(conf, correct, 1.0)["accuracy"] is None


# ---- exports ---------------------------------------------------------------------------------------------------

DANGEROUS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def test_exports_escape_formula_cells_in_csv_and_xlsx(store, tiny_text_model):
    rows = KNOWN[: len(DANGEROUS)]
    run_id = make_finished_run(store, tiny_text_model, text_predictions(rows, texts=DANGEROUS))
    report = reporting.run_report(store, run_id)
    sheets = reporting.export_sheets(report)
    preds = sheets["predictions"]
    assert sorted(preds["text"]) == sorted(DANGEROUS)  # the table itself keeps the data as it is

    csv_text = export.to_csv_bytes(preds).decode("utf-8-sig")
    read_back = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    assert sorted(read_back["text"]) == sorted("'" + d for d in DANGEROUS)
    assert len(read_back) == len(DANGEROUS)  # a carriage return inside a cell does not split its row

    book = openpyxl.load_workbook(io.BytesIO(export.to_xlsx_bytes(sheets)))
    assert book.sheetnames == ["report", "predictions"]
    sheet = book["predictions"]
    header = [c.value for c in sheet[1]]
    texts = [row[header.index("text")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    # (XML reads a carriage return back as a line feed; what matters is the quote in front)
    assert sorted(t.replace("\r", "\n") for t in texts) == sorted("'" + d.replace("\r", "\n") for d in DANGEROUS)
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    report_sheet = book["report"]
    assert [c.value for c in report_sheet[1]] == ["class", "precision", "recall", "f1-score", "support"]
    numbers = {row[0]: row for row in report_sheet.iter_rows(min_row=2, values_only=True)}
    assert numbers["accuracy"][3] == pytest.approx(report.report["accuracy"])


# ---- evaluating a new file -------------------------------------------------------------------------------------


def test_evaluating_a_file_with_unknown_labels_reports_them_and_scores_the_rest(store, text_run):
    frame = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4", "5", "6", "7"],
            "sentence": ["Profit rose sharply", "Sales fell", "The board met", "Stock soared", "Guidance cut",
                         "Margins flat", "No label here"],
            "sentiment": ["Positive", "negative", " neutral ", "bullish", "bearish", "neutral", ""],
        }
    )
    result = reporting.evaluate_file(store, text_run, frame.to_csv(index=False).encode(), "q3 news.csv")
    report = result.report
    assert result.split == "eval:q3 news" and result.text_column == "sentence" and result.label_column == "sentiment"
    assert result.renamed == {"Positive": "positive", " neutral ": "neutral"}
    assert report.unknown_labels == {"bearish": 1, "bullish": 1} and report.n_unknown_rows == 2
    assert report.n_unlabelled == 1 and report.n_rows == 7 and report.n_scored == 4
    assert any("bullish" in n and "the model does not know" in n for n in report.notes())
    stored = reporting.load_predictions(store, text_run, "eval:q3 news")
    assert len(stored) == 7  # every row predicted and kept, the unknown ones only left out of the metrics
    scored = stored[stored["true_label"].isin(LABELS)]
    expected = classification_report(list(scored["true_label"]), list(scored["pred_label"]), output_dict=True,
                                      zero_division=0)
    assert report.report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report.report["macro avg"]["f1-score"] == pytest.approx(expected["macro avg"]["f1-score"])
    # the stored evaluation can be reported on again, and re-running it replaces rather than duplicates
    assert reporting.splits(store, text_run) == ["test", "eval:q3 news"]
    again = reporting.run_report(store, text_run, "eval:q3 news")
    assert again.report == report.report and again.unknown_labels == report.unknown_labels
    reporting.evaluate_file(store, text_run, frame.to_csv(index=False).encode(), "q3 news.csv")
    assert len(reporting.load_predictions(store, text_run, "eval:q3 news")) == 7


def test_a_file_with_no_known_label_is_refused_and_changes_nothing(store, text_run):
    before = db.table_counts(store)
    data = "text,label\nGood,bullish\nBad,bearish\n".encode()
    with pytest.raises(UserError, match="None of the rows has a gold label the model knows"):
        reporting.evaluate_file(store, text_run, data, "odd.csv")
    assert db.table_counts(store) == before
    with pytest.raises(UserError, match="no column called 'nope'"):
        reporting.evaluate_file(store, text_run, data, "odd.csv", text_col="nope")


@pytest.mark.parametrize(
    "encoding,texts",
    [
        ("cp1252", ["Café chain’s profit up 5 €", "Naïve investors flee – shares slump"]),
        ("gb18030", ["公司利润大幅增长", "股价下跌，投资者担忧"]),
    ],
)
def test_evaluating_a_file_in_another_encoding(store, text_run, encoding, texts):
    data = ("headline;label\n" + "".join(f"{t};{lab}\n" for t, lab in zip(texts, ["positive", "negative"]))).encode(
        encoding)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    result = reporting.evaluate_file(store, text_run, data, "other.csv")
    assert result.encoding == encoding
    assert result.text_column == "headline"
    stored = reporting.load_predictions(store, text_run, "eval:other")
    assert list(stored["text"]) == texts
    assert list(stored["true_label"]) == ["positive", "negative"]
    assert result.report.n_scored == 2


def test_evaluation_guesses_columns_with_the_same_names_as_a_dataset_import():
    from engine.data import validate

    # Names that hold a known word ("News_Headline", "Sentiment-Label") are found as a dataset import finds them,
    # rather than falling back to the longest column; before, evaluation only knew exact lower-case names.
    frame = pd.DataFrame({
        "News_Headline": ["Profits rose", "Shares fell"],
        "Analyst Notes": ["a much longer note that is not the text to score", "another long note about the day"],
        "Sentiment-Label": ["up", "down"],  # not the model's labels: found by name
    })
    assert reporting.guess_evaluation_columns(frame, LABELS) == ("News_Headline", "Sentiment-Label")
    guessed = validate.guess_columns(list(frame.columns))
    assert (guessed["text"], guessed["label"]) == ("News_Headline", "Sentiment-Label")
    # values that are the model's labels still decide first; a 'gold' column is a label column for both
    frame = pd.DataFrame({"Headline ": ["a", "b"], "gold": ["x", "y"], "pred": ["Positive", " negative"]})
    assert reporting.guess_evaluation_columns(frame, LABELS) == ("Headline ", "pred")
    assert reporting.guess_evaluation_columns(frame.drop(columns="pred"), LABELS) == ("Headline ", "gold")
    assert validate.guess_columns(list(frame.columns))["label"] == "gold"


def test_evaluating_a_conll_file_for_a_tagging_run(store, entity_run):
    data = ("-DOCSTART- -X- O O\n\nAcme NNP B-ORG\nrose VBD O\n\nParis NNP B-LOC\nfell VBD O\nBoom NN B-MISC\n"
            "Bust NN I-MISC\n").encode()
    result = reporting.evaluate_file(store, entity_run, data, "extra.conll")
    report = result.report
    assert report.n_rows == 2 and report.n_scored == 1 and report.n_unknown_rows == 1
    assert report.unknown_labels == {"B-MISC": 1, "I-MISC": 1}
    assert report.notes()[0].startswith("1 row(s) have tags the model does not know")
    stored = reporting.load_predictions(store, entity_run, "eval:extra")
    assert stored.iloc[0]["tokens"] == ["Acme", "rose"] and stored.iloc[0]["true_tags"] == ["B-ORG", "O"]
    expected = seqeval_report([["B-ORG", "O"]], [stored.iloc[0]["pred_tags"]], output_dict=True, zero_division=0)
    assert report.report["micro avg"]["f1-score"] == pytest.approx(expected["micro avg"]["f1-score"])
    assert report.token_report["micro avg"]["support"] == 2


# IOB1 as CoNLL-2003 writes it: an entity opens with I-, B- only where it directly follows one of the same type.
IOB1_SENTENCES = [
    (["Acme", "Corp", "opened", "in", "New", "York"], ["I-ORG", "I-ORG", "O", "O", "I-LOC", "I-LOC"],
     ["B-ORG", "I-ORG", "O", "O", "B-LOC", "O"]),
    (["John", "Smith", "joined", "Acme"], ["I-PER", "I-PER", "O", "I-ORG"], ["B-PER", "I-PER", "O", "B-LOC"]),
    (["Paris", "London", "rose"], ["I-LOC", "B-LOC", "O"], ["B-LOC", "I-LOC", "O"]),
    (["Mary", "sold", "Acme", "Corp"], ["I-PER", "O", "I-ORG", "I-ORG"], ["O", "O", "B-ORG", "B-ORG"]),
]


def conll_bytes(sentences) -> bytes:
    """A CoNLL-2003-style file: -DOCSTART- lines, four columns, the tag last."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for tokens, tags, *_ in sentences:
        lines += [f"{token} NNP I-NP {tag}" for token, tag in zip(tokens, tags)] + [""]
        lines += ["-DOCSTART- -X- -X- O", ""]
    return "\n".join(lines).encode()


class FixedTagger:
    """A predictor whose tags are given: the same predictions for an evaluated file as for the run's test split."""

    task = "token-classification"

    def __init__(self, predictions):
        self.by_tokens = {tuple(tokens): pred for tokens, pred in predictions}

    def predict_tokens(self, sentences, batch_size=32):
        return [list(self.by_tokens[tuple(tokens)]) for tokens in sentences]


def tagger_run(store, model_dir, sentences) -> int:
    """A finished tagging run whose test split holds ``sentences`` as (tokens, BIO gold, predicted)."""
    run_id = make_finished_run(store, model_dir, [], {"accuracy": 0.5}, task="token-classification")
    for i, (tokens, gold, pred) in enumerate(sentences):
        store["predictions"].insert({"run_id": run_id, "split": "test", "row_id": i + 1, "text": " ".join(tokens),
                                     "tokens_json": db.dumps(tokens), "true_tags_json": db.dumps(gold),
                                     "pred_tags_json": db.dumps(pred)})
    return run_id


def test_evaluating_an_iob1_file_scores_it_as_the_runs_own_test_split(store, tiny_tagger, monkeypatch):
    from engine.data import ingest
    from engine.models import inference

    data = conll_bytes(IOB1_SENTENCES)
    imported = ingest.read_file(data, "conll2003.iob1")  # what training on this file would have learned from
    assert imported.tag_scheme == "IOB1" and len(imported.sentences) == len(IOB1_SENTENCES)
    trained = [(tokens, bio, pred) for (tokens, bio), (_, _, pred) in zip(imported.sentences, IOB1_SENTENCES)]
    assert trained[0][1] == ["B-ORG", "I-ORG", "O", "O", "B-LOC", "I-LOC"]
    assert trained[2][1] == ["B-LOC", "B-LOC", "O"]
    run_id = tagger_run(store, tiny_tagger, trained)
    monkeypatch.setattr(inference, "load", lambda *a, **k: FixedTagger([(t, p) for t, _, p in IOB1_SENTENCES]))

    result = reporting.evaluate_file(store, run_id, data, "conll2003.iob1")
    own = reporting.run_report(store, run_id)
    assert result.tag_scheme == "IOB1" and result.n_tags_rewritten > 0
    assert result.report.n_rows == result.report.n_scored == len(IOB1_SENTENCES)
    assert result.report.unknown_labels == {}
    assert result.report.token_report == own.token_report
    assert result.report.report == own.report
    assert reporting.report_frame(result.report.token_report).equals(own.token_frame)
    stored = reporting.load_predictions(store, run_id, "eval:conll2003")
    assert list(stored["true_tags"]) == [bio for _, bio, _ in trained]


def test_an_io_tagged_file_evaluates_without_phantom_errors(store, shared, tmp_path, monkeypatch):
    from engine.data.conll import to_bio
    from engine.models import inference

    # The first sentences of FiNER's FIN5 (IO tags: every entity token is I-X) and a model that tags them perfectly.
    text = shared("finer", "FIN5.txt").read_text(encoding="utf-8")
    head = "\n\n".join(text.split("\n\n")[:40]) + "\n"
    sentences = [block.split("\n") for block in head.split("\n\n")]
    tagged = [[line.split() for line in s if line.strip() and not line.startswith("-DOCSTART-")] for s in sentences]
    tagged = [s for s in tagged if s]
    io_tags = [tag for s in tagged for tag in (parts[-1] for parts in s)]
    assert any(t.startswith("I-") for t in io_tags) and not any(t.startswith("B-") for t in io_tags)
    perfect = [([p[0] for p in s], to_bio([p[-1] for p in s])) for s in tagged]
    kinds = sorted({t[2:] for t in io_tags if t != "O"})
    model = build_tiny_model(tmp_path / "fin-tagger", [f"{p}-{k}" for k in kinds for p in "BI"] + ["O"],
                             task="token-classification")
    run_id = make_finished_run(store, model, [], {}, task="token-classification")
    monkeypatch.setattr(inference, "load", lambda *a, **k: FixedTagger(perfect))

    result = reporting.evaluate_file(store, run_id, head.encode(), "FIN5.txt")
    report = result.report
    assert result.tag_scheme == "IO"
    assert report.unknown_labels == {} and report.n_scored == len(perfect)
    assert report.token_report["micro avg"]["f1-score"] == pytest.approx(1.0)
    assert report.report["micro avg"]["f1-score"] == pytest.approx(1.0)
    assert reporting.mistakes(report).empty
    flat = [t for _, tags in perfect for t in tags]
    assert report.token_report["micro avg"]["support"] == len(flat)
    for tag in {t for t in flat}:  # every tag: as many tokens as the file has, none wrong
        assert report.token_report[tag]["support"] == flat.count(tag)
        assert report.token_report[tag]["f1-score"] == pytest.approx(1.0), tag


def test_evaluating_a_conll_file_with_an_untagged_line_is_refused_with_its_line(store, entity_run):
    with pytest.raises(UserError, match="line 3"):
        reporting.evaluate_file(store, entity_run, b"Acme B-ORG\nrose O\nParis\n", "broken.conll")
    assert reporting.splits(store, entity_run) == ["test"]


# ---- runs, compare, try it -------------------------------------------------------------------------------------


def test_unknown_and_unfinished_runs_get_plain_errors(store, tiny_text_model):
    with pytest.raises(NotFound, match="no training run 999"):
        reporting.run_report(store, 999)
    running = store["jobs"].insert({"kind": "train", "status": "running", "created_at": db.now()}).last_pk
    with pytest.raises(UserError, match="has not finished"):
        reporting.run_report(store, running)
    empty = make_finished_run(store, tiny_text_model, [])
    with pytest.raises(UserError, match="no stored test predictions"):
        reporting.run_report(store, empty)


def test_compare_runs_side_by_side(store, tiny_text_model):
    a = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.58})
    b = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.7, "macro_f1": 0.66})
    store["jobs"].update(b, {"config_json": db.dumps({"epochs": 3, "learning_rate": 2e-5})})
    for job, losses in ((a, [1.1, 0.9]), (b, [1.0, 0.7, 0.5])):
        for step, loss in enumerate(losses, start=1):
            store["progress"].insert({"job_id": job, "kind": "train", "step": step * 10, "loss": loss,
                                      "created_at": db.now()})
        store["progress"].insert({"job_id": job, "kind": "eval", "step": 20, "eval_loss": 0.8, "accuracy": 0.6,
                                  "created_at": db.now()})
    comparison = reporting.compare_runs(store, [a, b])
    titles = list(comparison.metrics.columns)
    assert titles == [f"#{a} · tiny", f"#{b} · tiny"]
    assert comparison.metrics.loc["accuracy"].tolist() == [0.6, 0.7]
    diffs = comparison.differences
    assert set(diffs.index) == {"epochs", "learning_rate"}
    assert diffs.loc["epochs"].tolist() == ["1", "3"]
    assert not comparison.config.loc["base_model", "differs"]
    curves = comparison.curves
    assert len(curves[curves["kind"] == "train loss"]) == 5 and len(curves[curves["kind"] == "eval loss"]) == 2
    with pytest.raises(UserError, match="at least two"):
        reporting.compare_runs(store, [a, a])


def test_try_it_gives_every_class_probability(store, text_run):
    [result] = reporting.try_it(store, text_run, ["Profit rose sharply"])
    assert list(result["probs"]) == LABELS
    assert sum(result["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] == max(result["probs"], key=result["probs"].get)
    with pytest.raises(UserError, match="Type some text"):
        reporting.try_it(store, text_run, ["  "])


def test_try_it_on_a_tagging_run_gives_tags_and_entities(store, entity_run):
    [result] = reporting.try_it(store, entity_run, ["Acme Corp opened in New York."])
    assert result["tokens"] == ["Acme", "Corp", "opened", "in", "New", "York", "."]
    assert len(result["tags"]) == 7 and set(result["tags"]) <= set(TAGS)
    assert result["entities"] == [{"type": k, "start": s, "end": e, "text": " ".join(result["tokens"][s:e + 1])}
                                  for k, s, e in reporting.spans(result["tags"])]


# ---- command line ----------------------------------------------------------------------------------------------


def test_cli_report_json_text_and_csv(store, text_run, capsys):
    assert main(["report", str(text_run), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = classification_report([t for t, _, _ in KNOWN], [p for _, p, _ in KNOWN], output_dict=True,
                                     zero_division=0)
    for label in LABELS:
        assert set(out["report"][label]) == {"precision", "recall", "f1-score", "support"}
        assert out["report"][label]["f1-score"] == pytest.approx(expected[label]["f1-score"])
    assert out["report"]["accuracy"] == pytest.approx(0.6)
    assert out["report"]["macro avg"]["recall"] == pytest.approx(expected["macro avg"]["recall"])
    assert out["report"]["weighted avg"]["support"] == 10

    assert main(["report", str(text_run)]) == 0
    text = capsys.readouterr().out
    assert "weighted avg" in text and "precision" in text and "0.600" in text

    assert main(["report", str(text_run), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["class", "precision", "recall", "f1-score", "support"]
    assert table.set_index("class").loc["positive", "recall"] == pytest.approx(2 / 3)


def test_cli_evaluate_with_columns_and_encoding_and_predict(store, text_run, tmp_path, capsys):
    path = tmp_path / "extra.csv"
    path.write_bytes("titre,étiquette\nBénéfice en hausse,positive\nPerte sèche,negative\nBof,Mixed\n".encode("cp1252"))
    code = main(["evaluate", str(text_run), str(path), "--text-col", "titre", "--label-col", "étiquette",
                 "--encoding", "cp1252", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "eval:extra" and out["encoding"] == "cp1252"
    assert out["unknown_labels"] == {"Mixed": 1} and out["n_scored"] == 2 and out["n_rows"] == 3
    assert main(["evaluate", str(text_run), str(path), "--text-col", "nope"]) == 2
    assert "no column called 'nope'" in capsys.readouterr().err

    assert main(["predict", str(text_run), "Profit up", "Loss widens", "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in results] == ["Profit up", "Loss widens"]
    assert all(set(r["probs"]) == set(LABELS) for r in results)


@pytest.mark.process
def test_cli_unknown_run_exits_2_with_a_plain_message(home):
    result = subprocess.run([sys.executable, "-m", "engine", "report", "4242"], cwd=ROOT, capture_output=True,
                            text=True, env={**__import__("os").environ, "BELLWETHER_HOME": str(home)})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: There is no training run 4242. Check the number on the Runs page."
    assert "Traceback" not in result.stderr


# ---- a run the training engine really leaves ------------------------------------------------------------------


def test_report_and_compare_on_runs_the_training_engine_left(store, shared, tiny_text_model):
    from engine.training import finetune
    from tests.test_training import insert_text_dataset, run_in_process

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=15)
    ids = []
    for epochs in (1, 2):
        run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                                 overrides={"max_length": 32, "batch_size": 8, "epochs": epochs})
        assert run_in_process(run_id) == 0
        ids.append(run_id)
    job = store["jobs"].get(ids[1])
    metrics = json.loads(job["metrics_json"])
    report = reporting.run_report(store, ids[1])
    assert report.n_scored == report.n_rows == 15
    assert report.report["accuracy"] == pytest.approx(metrics["accuracy"])
    assert report.report["macro avg"]["f1-score"] == pytest.approx(metrics["macro_f1"])
    comparison = reporting.compare_runs(store, ids)
    assert "epochs" in comparison.differences.index
    assert set(comparison.curves["kind"]) == {"train loss", "eval loss"}
    assert list(comparison.metrics.loc["accuracy"]) == [
        pytest.approx(json.loads(store["jobs"].get(i)["metrics_json"])["accuracy"]) for i in ids]
