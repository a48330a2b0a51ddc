"""A report in plain words: what a classifier gets right, per class, and whether it beats always guessing the
commonest class. Computed from the confusion matrix alone (rows: true class, columns: predicted class), so the same
sentences come out of the Reports page, ``python -m engine report`` and a test with a matrix written by hand.

- :func:`class_sentences`: per class, "finds 48% of the positive texts (24 of 50); when it says positive it is right
  71% of the time (24 of 34)".
- :func:`baseline`: the majority-class baseline (always answer the commonest true class): its accuracy and macro F1.
- :func:`verdict`: the headline, the model's and the baseline's figures, and the class sentences.
- :func:`table`: a classification report table with words for its names, blanks for missing values and whole
  numbers for counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.i18n import N_, _

CLEAR_MARGIN = 0.05  # macro F1 this much above the baseline's: clearly better


@dataclass
class Verdict:
    headline: str  # one or two sentences, before any number table
    classes: list[str] = field(default_factory=list)  # a sentence per class
    model: dict = field(default_factory=dict)  # accuracy, macro_f1, n
    baseline: dict = field(default_factory=dict)  # label, accuracy, macro_f1

    def lines(self) -> list[str]:
        return [self.headline, *self.classes]


def _matrix(matrix) -> tuple[list[str], np.ndarray]:
    if isinstance(matrix, pd.DataFrame):
        labels = [str(c) for c in matrix.columns]
        if [str(i) for i in matrix.index] != labels:
            raise ValueError("the confusion matrix must have the same classes, in the same order, on both sides")
        return labels, matrix.to_numpy(dtype=float)
    raise TypeError("a pandas DataFrame with true classes as rows and predicted classes as columns")


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}"  # the same in both languages (and exactly as before in English)


def _unit(unit: str) -> str:
    return _("texts") if unit == "texts" else unit


def class_sentences(matrix: pd.DataFrame, unit: str = "texts") -> list[str]:
    """A plain sentence per class: how many of its texts the model finds (recall), and how often it is right when it
    gives that class (precision), each with the counts behind it. In the current language; the class names are the
    data's own."""
    labels, m = _matrix(matrix)
    out = []
    for i, label in enumerate(labels):
        hit, truly, said = int(m[i, i]), int(m[i, :].sum()), int(m[:, i].sum())
        values = {"label": label, "unit": _unit(unit), "hit": f"{hit:,}", "truly": f"{truly:,}", "said": f"{said:,}"}
        if truly == 0 and said == 0:
            out.append(_("{label}: there are no {label} {unit} here to find; it never says {label}.", **values))
        elif truly == 0:
            out.append(_("{label}: there are no {label} {unit} here to find; when it says {label} it is right "
                         "{share} of the time ({hit} of {said}).", share=_pct(hit, said), **values))
        elif said == 0:
            out.append(_("{label}: finds {found} of the {label} {unit} ({hit} of {truly}); it never says {label}.",
                         found=_pct(hit, truly), **values))
        else:
            out.append(_("{label}: finds {found} of the {label} {unit} ({hit} of {truly}); when it says {label} it "
                         "is right {share} of the time ({hit} of {said}).",
                         found=_pct(hit, truly), share=_pct(hit, said), **values))
    return out


def _scores(m: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro F1) of a confusion matrix; a class never true nor predicted counts as F1 0 (scikit-learn's
    zero_division=0 over the labels given)."""
    total = m.sum()
    f1s = []
    for i in range(len(m)):
        tp, truly, said = m[i, i], m[i, :].sum(), m[:, i].sum()
        f1s.append(0.0 if truly + said == 0 else 2 * tp / (truly + said))
    return (float(np.trace(m) / total) if total else 0.0), float(np.mean(f1s)) if f1s else 0.0


def baseline(matrix: pd.DataFrame) -> dict:
    """Always answering the commonest true class: {'label', 'accuracy', 'macro_f1'} on the same texts."""
    labels, m = _matrix(matrix)
    truly = m.sum(axis=1)
    top = int(np.argmax(truly))  # ties: the first in the model's order
    always = np.zeros_like(m)
    always[:, top] = truly
    accuracy, macro_f1 = _scores(always)
    return {"label": labels[top], "accuracy": accuracy, "macro_f1": macro_f1}


def verdict(matrix: pd.DataFrame, unit: str = "texts") -> Verdict:
    """The headline (right how often, against the baseline), the figures, and the class sentences."""
    labels, m = _matrix(matrix)
    n = int(m.sum())
    accuracy, macro_f1 = _scores(m)
    base = baseline(matrix)
    compare = _("Always answering '{label}' (the commonest class) would be right on {accuracy}, with macro F1 "
                "{base_f1} against the model's {model_f1}.", label=base["label"], accuracy=f"{base['accuracy']:.0%}",
                base_f1=f"{base['macro_f1']:.2f}", model_f1=f"{macro_f1:.2f}")
    if macro_f1 >= base["macro_f1"] + CLEAR_MARGIN:
        judgement = _("The model does clearly better than that guess.")
    elif macro_f1 > base["macro_f1"]:
        judgement = _("The model does only a little better than that guess: do not rely on it yet.")
    else:
        judgement = _("The model does no better than that guess: do not rely on it.")
    headline = _("Right on {accuracy} of the {n} {unit} checked. {compare} {judgement}", accuracy=f"{accuracy:.0%}",
                 n=f"{n:,}", unit=_unit(unit), compare=compare, judgement=judgement)
    return Verdict(headline=headline, classes=class_sentences(matrix, unit),
                   model={"accuracy": accuracy, "macro_f1": macro_f1, "n": n}, baseline=base)


ROW_NAMES = {"accuracy": N_("All classes: accuracy"), "macro avg": N_("Average over classes (macro)"),
             "weighted avg": N_("Average weighted by rows"), "micro avg": N_("All entities together (micro)")}
COLUMN_NAMES = {"class": N_("Class"), "precision": N_("Right when it says it (precision)"),
                "recall": N_("Found (recall)"), "f1-score": N_("F1"), "support": N_("Rows")}


def column_names() -> dict[str, str]:
    """The report table's column headings in the current language (keyed as in COLUMN_NAMES)."""
    return {key: _(name) for key, name in COLUMN_NAMES.items()}


def table(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A classification report table (engine.reports.reporting.report_frame) for reading: words for the averages and
    the columns, scores to ``digits`` places, blanks where there is no value, rows as whole numbers."""
    out = pd.DataFrame()
    out["class"] = [_(ROW_NAMES[str(c)]) if str(c) in ROW_NAMES else str(c) for c in frame["class"]]
    for column in ("precision", "recall", "f1-score"):
        out[column] = [("" if v is None or pd.isna(v) else f"{float(v):.{digits}f}") for v in frame[column]]
    out["support"] = [("" if v is None or pd.isna(v) else f"{int(v):,}") for v in frame["support"]]
    return out.rename(columns=column_names())


METRIC_NAMES = {
    "accuracy": N_("Accuracy"), "macro_f1": N_("Macro F1"), "weighted_f1": N_("Weighted F1"),
    "entity_f1": N_("Entity F1"), "eval_loss": N_("Validation loss"), "train_loss": N_("Training loss"),
    "train_runtime": N_("Training time (s)"), "train_samples_per_second": N_("Training speed (rows/s)"),
    "train_steps_per_second": N_("Training speed (steps/s)"), "epoch": N_("Epochs"),
    "total_flos": N_("Computation (FLOPs)"), "best_macro_f1": N_("Best validation macro F1"),
    "n_test": N_("Test rows"), "n_train": N_("Training rows"), "perplexity": N_("Perplexity"),
}


def metric_name(key: str) -> str:
    """'macro_f1' -> 'Macro F1', 'test.support' -> 'Test support': a stored metric's key in words."""
    if key in METRIC_NAMES:
        return _(METRIC_NAMES[key])
    words = key.replace(".", " ").replace("_", " ").split()
    words = ["F1" if w.lower() == "f1" else w for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def metric_value(key: str, value) -> str:
    """A metric for reading: counts (keys ending in support, rows, steps, n_...) and whole values as integers, the
    rest to 3 places; blank when missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    number = float(value)
    countish = key.split(".")[-1] in ("support", "n", "rows", "steps", "step") or key.split(".")[-1].startswith("n_")
    score = any(word in key.lower() for word in ("f1", "accuracy", "precision", "recall", "loss", "perplexity"))
    if countish or (number.is_integer() and not score):
        return f"{int(round(number)):,}"
    return f"{number:.3f}"


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """engine.reports.reporting.compare_runs' metrics (a row per metric key, a column per run) for reading."""
    out = pd.DataFrame(
        {column: [metric_value(key, v) for key, v in zip(metrics.index, metrics[column])] for column in metrics.columns},
        index=[metric_name(k) for k in metrics.index])
    out.index.name = _("Metric")
    return out
