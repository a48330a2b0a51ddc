"""Plain-words reports (engine.reports.plain): sentences, the majority-class baseline and readable tables, from a
confusion matrix written by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from engine.reports import plain

LABELS = ["negative", "neutral", "positive"]
# rows: true class, columns: predicted class (400 texts; 240 neutral, the commonest)
MATRIX = pd.DataFrame([[40, 15, 5], [10, 215, 15], [10, 42, 48]], index=LABELS, columns=LABELS)


def _pairs(matrix: pd.DataFrame):
    true, pred = [], []
    for t in matrix.index:
        for p in matrix.columns:
            true += [t] * int(matrix.loc[t, p])
            pred += [p] * int(matrix.loc[t, p])
    return true, pred


def test_sentences_per_class_from_a_known_confusion_matrix():
    assert plain.class_sentences(MATRIX) == [
        "negative: finds 67% of the negative texts (40 of 60); when it says negative it is right 67% of the time "
        "(40 of 60).",
        "neutral: finds 90% of the neutral texts (215 of 240); when it says neutral it is right 79% of the time "
        "(215 of 272).",
        "positive: finds 48% of the positive texts (48 of 100); when it says positive it is right 71% of the time "
        "(48 of 68).",
    ]


def test_the_majority_baseline_and_the_headline_agree_with_scikit_learn():
    true, pred = _pairs(MATRIX)
    base = plain.baseline(MATRIX)
    always = ["neutral"] * len(true)
    assert base["label"] == "neutral"
    assert base["accuracy"] == pytest.approx(accuracy_score(true, always)) == pytest.approx(0.6)
    assert base["macro_f1"] == pytest.approx(f1_score(true, always, labels=LABELS, average="macro", zero_division=0))
    said = plain.verdict(MATRIX)
    assert said.model["macro_f1"] == pytest.approx(f1_score(true, pred, labels=LABELS, average="macro"))
    assert said.headline == (
        "Right on 76% of the 400 texts checked. Always answering 'neutral' (the commonest class) would be right on "
        "60%, with macro F1 0.25 against the model's 0.69. The model does clearly better than that guess.")


def test_a_model_that_always_says_the_commonest_class_is_called_no_better():
    lazy = pd.DataFrame([[0, 60, 0], [0, 240, 0], [0, 100, 0]], index=LABELS, columns=LABELS)
    said = plain.verdict(lazy)
    assert said.headline.endswith("The model does no better than that guess: do not rely on it.")
    assert said.classes[0] == "negative: finds 0% of the negative texts (0 of 60); it never says negative."


def test_tables_use_words_blanks_and_whole_numbers():
    frame = pd.DataFrame({"class": ["positive", "accuracy", "macro avg"], "precision": [0.71, None, 0.7],
                          "recall": [0.48, np.nan, 0.68], "f1-score": [0.57, 0.76, 0.69],
                          "support": pd.array([100, 400, 400], dtype="Int64")})
    table = plain.table(frame)
    assert list(table.columns) == ["Class", "Right when it says it (precision)", "Found (recall)", "F1", "Rows"]
    assert table.to_dict("records")[1] == {"Class": "All classes: accuracy", "Right when it says it (precision)": "",
                                           "Found (recall)": "", "F1": "0.760", "Rows": "400"}
    metrics = pd.DataFrame({"#1": [0.8, 715.0, 2.0], "#2": [0.75, 715.0, None]},
                           index=["macro_f1", "report.positive.support", "epoch"])
    shown = plain.metrics_table(metrics)
    assert list(shown.index) == ["Macro F1", "Report positive support", "Epochs"]
    assert shown.loc["Report positive support"].tolist() == ["715", "715"]
    assert shown.loc["Macro F1"].tolist() == ["0.800", "0.750"] and shown.loc["Epochs"].tolist() == ["2", ""]
