"""Reports on a finished run: how good is the model, where does it fail, and can it be trusted.

Everything here is computed from the ``predictions`` table (split ``test``, or ``eval:<name>`` for an uploaded
labelled file) and the model's own label map (``config.json`` in the run's ``model_dir``), so a report never depends
on the order in which a trainer returned rows.

- Text classification: scikit-learn's ``classification_report`` (per class precision / recall / F1 / support, accuracy,
  macro and weighted averages), exactly as scikit-learn computes it.
- Entity tagging: seqeval's entity-level report (per type, micro / macro / weighted) and a token-level per-tag report
  (B-LOC, I-LOC, ..., O) computed by scikit-learn on the flattened tags, with micro / macro / weighted averages.
- Confusion matrix (counts and row-normalised), mistakes (most confident first), reliability diagram and the
  accuracy / coverage trade-off at a confidence threshold.
- Evaluate a run on a new labelled file, compare runs, and try a run on typed text.

No Streamlit here; pages and ``engine/cli_report.py`` call these functions.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from engine import access
from engine import db as store
from engine.jobs import runs
from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine.data.readers import read_table_guarded
from engine.models import inference
from engine.data import columns as vocabulary
from engine.data.conll import read_conll_guarded

TEXT = runs.TEXT
TOKENS = runs.TOKENS
TEST = "test"
EVAL_PREFIX = "eval:"
NONE = "O"  # the 'no entity' side of an entity mistake
AVERAGES = ("micro avg", "macro avg", "weighted avg")
REPORT_COLUMNS = ["class", "precision", "recall", "f1-score", "support"]


# --------------------------------------------------------------------------------------------------------------
# Runs


def _num(value: Any) -> Any:
    """numpy scalars to plain Python numbers (for JSON and for equality in tests)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, dict):
        return {k: _num(v) for k, v in value.items()}
    return value


def splits(conn, run_id: int) -> list[str]:
    """The prediction sets a run has: 'test' first, then each evaluated file ('eval:<name>')."""
    found = [r["split"] for r in conn.query("SELECT DISTINCT split FROM predictions WHERE run_id = ?", [int(run_id)])]
    return sorted(found, key=lambda s: (s != TEST, s))


def split_title(split: str) -> str:
    """A prediction set's name as a heading, in the current language ('Test split', 'Evaluation file: news')."""
    if split == TEST:
        return _("Test split")
    if split.startswith(EVAL_PREFIX):
        return _("Evaluation file: {name}", name=split[len(EVAL_PREFIX):])
    return split


def split_words(split: str) -> str:
    """A prediction set's name inside a sentence ('the test split', 'the evaluation file news')."""
    if split == TEST:
        return _("the test split")
    if split.startswith(EVAL_PREFIX):
        return _("the evaluation file {name}", name=split[len(EVAL_PREFIX):])
    return split


def load_predictions(conn, run_id: int, split: str = TEST) -> pd.DataFrame:
    """The stored predictions of a run, ordered by row id, with JSON columns decoded."""
    rows = list(
        conn.query(
            "SELECT * FROM predictions WHERE run_id = ? AND split = ? ORDER BY row_id", [int(run_id), split]
        )
    )
    frame = pd.DataFrame(
        {
            "row_id": [r["row_id"] for r in rows],
            "text": [r["text"] or "" for r in rows],
            "true_label": pd.Series([r["true_label"] for r in rows], dtype=object),
            "pred_label": pd.Series([r["pred_label"] for r in rows], dtype=object),
            "confidence": [r["confidence"] for r in rows],
            "probs": [store.loads(r["probs_json"], None) for r in rows],
            "tokens": [store.loads(r["tokens_json"], None) for r in rows],
            "true_tags": [store.loads(r["true_tags_json"], None) for r in rows],
            "pred_tags": [store.loads(r["pred_tags_json"], None) for r in rows],
        }
    )
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").astype(float)
    return frame


# --------------------------------------------------------------------------------------------------------------
# The reports themselves


def _ordered_labels(present: set[str], preferred: Sequence[str]) -> list[str]:
    """The labels present, in the model's order, unknown ones after (sorted)."""
    return [label for label in preferred if label in present] + sorted(present - set(preferred))


def text_report(y_true: Sequence[str], y_pred: Sequence[str], label_order: Sequence[str] = ()) -> dict:
    """scikit-learn's classification_report as a dict: per class, 'accuracy', 'macro avg', 'weighted avg'.

    The classes are those in y_true or y_pred (scikit-learn's own default, so the averages are the same), listed in
    ``label_order`` first.
    """
    from sklearn.metrics import classification_report

    if len(y_true) == 0:
        raise UserError(_("There are no labelled predictions to report on."))
    labels = _ordered_labels(set(y_true) | set(y_pred), label_order)
    report = classification_report(list(y_true), list(y_pred), labels=labels, output_dict=True, zero_division=0)
    return _num(report)


def tag_order(tags: set[str]) -> list[str]:
    """B-LOC, I-LOC, B-ORG, I-ORG, ..., then O: grouped by entity type, as CoNLL tables list them."""

    def key(tag: str):
        if tag == "O":
            return (1, "", 0)
        prefix, _dash, kind = tag.partition("-")
        if not kind:
            return (0, prefix, 9)
        return (0, kind, {"B": 0, "I": 1, "E": 2, "S": 3}.get(prefix, 4))

    return sorted(tags, key=key)


def entity_report(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """seqeval's entity-level report: per entity type, 'micro avg', 'macro avg', 'weighted avg'."""
    from seqeval.metrics import classification_report

    if len(true_tags) == 0:
        raise UserError(_("There are no labelled sentences to report on."))
    report = classification_report([list(t) for t in true_tags], [list(p) for p in pred_tags], output_dict=True,
                                   zero_division=0)
    return _num(report)


def token_report(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Token-level per-tag report (B-LOC, I-LOC, ..., O) on the flattened tags, with micro / macro / weighted.

    Per tag and the macro / weighted averages are scikit-learn's classification_report; the micro average is
    scikit-learn's micro precision / recall / F1 over every tag (equal to token accuracy, since every tag is counted).
    """
    from sklearn.metrics import classification_report, precision_recall_fscore_support

    flat_true = [t for sentence in true_tags for t in sentence]
    flat_pred = [p for sentence in pred_tags for p in sentence]
    if len(flat_true) != len(flat_pred):
        raise UserError(_("The gold and predicted tags have different lengths; the predictions are damaged."))
    if not flat_true:
        raise UserError(_("There are no labelled tokens to report on."))
    labels = tag_order(set(flat_true) | set(flat_pred))
    report = _num(classification_report(flat_true, flat_pred, labels=labels, output_dict=True, zero_division=0))
    p, r, f, _support = precision_recall_fscore_support(flat_true, flat_pred, labels=labels, average="micro", zero_division=0)
    out = {label: report[label] for label in labels}
    out["micro avg"] = {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": len(flat_true)}
    out["macro avg"] = report["macro avg"]
    out["weighted avg"] = report["weighted avg"]
    return out


def report_frame(report: dict) -> pd.DataFrame:
    """A report dict as a table: one row per class, then accuracy (if any) and the averages."""
    rows = []
    total = None
    for name, values in report.items():
        if name == "accuracy":
            continue
        if isinstance(values, dict):
            rows.append({"class": name, **{k: values.get(k) for k in REPORT_COLUMNS[1:]}})
            if name in ("macro avg", "weighted avg"):
                total = values.get("support")
    if "accuracy" in report:
        at = next((i for i, r in enumerate(rows) if r["class"] in AVERAGES), len(rows))
        rows.insert(at, {"class": "accuracy", "precision": None, "recall": None, "f1-score": report["accuracy"],
                         "support": total})
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    frame["support"] = frame["support"].astype("Int64")
    for column in ("precision", "recall", "f1-score"):
        frame[column] = frame[column].astype(float)
    return frame


def format_text(frame: pd.DataFrame, digits: int = 3) -> str:
    """A report table as aligned text, as scikit-learn prints it."""
    summary = {"accuracy": _("accuracy"), "macro avg": _("macro avg"), "weighted avg": _("weighted avg"),
               "micro avg": _("micro avg")}  # the summary rows' names in the reader's language; classes as they are
    names = [summary.get(str(c), str(c)) for c in frame["class"]]
    width = max([len(name) for name in names] + [12])
    heads = [_("precision"), _("recall"), _("f1-score"), _("support")]  # the headings in the reader's language
    lines = [f"{'':>{width}}  " + "  ".join(f"{h:>9}" for h in heads)]
    for name, row in zip(names, frame.itertuples(index=False)):
        cells = []
        for value in (row[1], row[2], row[3]):
            cells.append(f"{'':>9}" if value is None or (isinstance(value, float) and math.isnan(value))
                         else f"{value:>9.{digits}f}")
        support = "" if pd.isna(row[4]) else str(int(row[4]))
        if row[0] == "accuracy" or row[0] == "micro avg":
            lines.append("")
        lines.append(f"{name:>{width}}  {'  '.join(cells)}  {support:>9}")
    return "\n".join(lines)


@dataclass
class Report:
    """A run's report on one prediction set."""

    run_id: int
    task: str
    split: str
    labels: list[str]  # the model's labels, in its order
    n_rows: int  # every stored prediction
    n_scored: int  # those counted in the metrics
    unknown_labels: dict[str, int] = field(default_factory=dict)  # label the model does not know -> rows with it
    n_unknown_rows: int = 0  # rows left out because of such labels
    n_unlabelled: int = 0  # rows without a gold label
    report: dict = field(default_factory=dict)  # scikit-learn (text) or seqeval (entities) report dict
    token_report: dict | None = None  # entities: token-level per-tag report
    scored: pd.DataFrame | None = None  # the predictions counted in the metrics
    predictions: pd.DataFrame | None = None  # every stored prediction, those left out of the metrics too

    @property
    def frame(self) -> pd.DataFrame:
        return report_frame(self.report)

    @property
    def token_frame(self) -> pd.DataFrame | None:
        return report_frame(self.token_report) if self.token_report is not None else None

    def to_json(self) -> dict:
        out = {
            "run_id": self.run_id,
            "task": self.task,
            "split": self.split,
            "n_rows": self.n_rows,
            "n_scored": self.n_scored,
            "n_unlabelled": self.n_unlabelled,
            "unknown_labels": self.unknown_labels,
            "n_unknown_rows": self.n_unknown_rows,
            "report": self.report,
        }
        if self.token_report is not None:
            out["token_report"] = self.token_report
        return out

    def notes(self) -> list[str]:
        """Plain sentences about rows left out of the metrics."""
        notes = []
        if self.unknown_labels:
            listed = ", ".join(_("'{label}' (1 row)", label=k) if v == 1 else _("'{label}' ({n} rows)", label=k, n=v)
                               for k, v in self.unknown_labels.items())
            values = {"n": self.n_unknown_rows, "listed": listed, "known": ", ".join(self.labels)}
            if self.task == TOKENS:
                notes.append(_("{n} row(s) have tags the model does not know and are left out of the metrics: "
                               "{listed}. The model knows: {known}.", **values))
            else:
                notes.append(_("{n} row(s) have labels the model does not know and are left out of the metrics: "
                               "{listed}. The model knows: {known}.", **values))
        if self.n_unlabelled:
            notes.append(_("{n} row(s) have no gold label and are left out of the metrics.", n=self.n_unlabelled))
        return notes


def build_report(run_id: int, task: str, split: str, predictions: pd.DataFrame, labels: list[str]) -> Report:
    """The report on a set of predictions; rows whose gold label the model does not know are counted, not scored."""
    known = set(labels)
    unknown: dict[str, int] = {}
    unlabelled = 0
    n_unknown_rows = 0
    keep = []
    for row in predictions.itertuples(index=False):
        if task == TOKENS:
            gold = row.true_tags
            if not gold or row.pred_tags is None:
                unlabelled += 1
                keep.append(False)
                continue
            strange = {t for t in gold if t not in known}
            for t in strange:  # sentences holding the tag
                unknown[t] = unknown.get(t, 0) + 1
            n_unknown_rows += bool(strange)
            keep.append(not strange)
        else:
            gold = row.true_label
            if gold is None or (isinstance(gold, float) and math.isnan(gold)) or str(gold).strip() == "":
                unlabelled += 1
                keep.append(False)
            elif gold not in known:
                unknown[gold] = unknown.get(gold, 0) + 1
                n_unknown_rows += 1
                keep.append(False)
            else:
                keep.append(True)
    scored = predictions[np.array(keep, dtype=bool)] if len(predictions) else predictions
    result = Report(run_id=run_id, task=task, split=split, labels=labels, n_rows=len(predictions),
                    n_scored=len(scored), unknown_labels=dict(sorted(unknown.items())), n_unknown_rows=n_unknown_rows,
                    n_unlabelled=unlabelled,
                    scored=scored.reset_index(drop=True), predictions=predictions)
    if len(scored) == 0:
        if len(predictions) == 0:
            raise UserError(_("Run {run_id} has no predictions for {split} to report on.", run_id=run_id,
                              split=split_words(split)))
        raise UserError(_("None of the rows has a gold label the model knows, so there is nothing to score. The model "
                          "knows: {known}. {notes}", known=", ".join(labels), notes=" ".join(result.notes())))
    if task == TOKENS:
        result.report = entity_report(list(scored["true_tags"]), list(scored["pred_tags"]))
        result.token_report = token_report(list(scored["true_tags"]), list(scored["pred_tags"]))
    else:
        result.report = text_report(list(scored["true_label"]), list(scored["pred_label"]), labels)
    return result


def run_report(conn, run_id: Any, split: str = TEST) -> Report:
    """The report of a finished run on its test split (or an evaluated file's split)."""
    run = runs.finished(conn, run_id)
    labels = runs.labels(run)
    predictions = load_predictions(conn, run["id"], split)
    if predictions.empty:
        available = splits(conn, run["id"])
        if split == TEST or not available:
            raise UserError(_("Run {run_id} has no stored test predictions, so there is nothing to report. Runs record "
                              "them when training finishes; train the run again if they are missing.",
                              run_id=run["id"]))
        raise UserError(_("Run {run_id} has no predictions called '{split}'. It has: {available}.", run_id=run["id"],
                          split=split, available=", ".join(available)))
    return build_report(run["id"], runs.task(run), split, predictions, labels)


# --------------------------------------------------------------------------------------------------------------
# Confusion matrix, mistakes, confidence


def confusion(report: Report, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix (rows: true, columns: predicted); tags for entity tagging. Row-normalised on request."""
    scored = report.scored
    if report.task == TOKENS:
        y_true = [t for s in scored["true_tags"] for t in s]
        y_pred = [p for s in scored["pred_tags"] for p in s]
        labels = tag_order(set(y_true) | set(y_pred))
    else:
        y_true, y_pred = list(scored["true_label"]), list(scored["pred_label"])
        labels = _ordered_labels(set(y_true) | set(y_pred), report.labels)
    return confusion_frame(y_true, y_pred, labels, normalize)


def confusion_frame(y_true, y_pred, labels, normalize: bool = False) -> pd.DataFrame:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=labels).astype(float if normalize else int)
    if normalize:
        sums = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)
    frame = pd.DataFrame(matrix, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))
    return frame


def mistakes(report: Report, true: Sequence[str] | None = None, predicted: Sequence[str] | None = None) -> pd.DataFrame:
    """Misclassified examples, most confident first; filtered by true and/or predicted class when given.

    Text: row_id, text, true, predicted, confidence. Entities: one row per entity error (row_id, sentence, span,
    true, predicted, error, confidence=None), where 'O' on one side means missed or spurious.
    """
    if report.task == TOKENS:
        frame = entity_mistakes(report.scored)
    else:
        s = report.scored
        wrong = s[s["true_label"] != s["pred_label"]]
        frame = pd.DataFrame(
            {
                "row_id": wrong["row_id"].astype(int),
                "text": wrong["text"],
                "true": wrong["true_label"],
                "predicted": wrong["pred_label"],
                "confidence": wrong["confidence"].astype(float),
            }
        )
        frame = frame.sort_values(["confidence", "row_id"], ascending=[False, True], kind="stable")
    return filter_mistakes(frame, true, predicted)


MISTAKE_COLUMNS = {"row_id": N_("row_id"), "text": N_("text"), "sentence": N_("sentence"), "span": N_("span"),
                   "true": N_("true"), "predicted": N_("predicted"), "error": N_("error"),
                   "confidence": N_("confidence")}
MISTAKE_WORDS = {"wrong type": N_("wrong type"), "missed": N_("missed"), "spurious": N_("spurious")}
WRONG_BOUNDARY = N_("wrong boundary (predicted '{span}')")


def mistake_words(error: str) -> str:
    """An entity error ('missed', "wrong boundary (predicted 'x')") in the current language."""
    if error in MISTAKE_WORDS:
        return _(MISTAKE_WORDS[error])
    found = re.fullmatch(r"wrong boundary \(predicted '(.*)'\)", str(error), re.DOTALL)
    return _(WRONG_BOUNDARY, span=found.group(1)) if found else error


def mistakes_for_reading(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``mistakes`` frame as the page shows it: headings and error words in the current language; the texts and
    classes are the data's own."""
    out = frame.copy()
    if "error" in out.columns:
        out["error"] = out["error"].map(mistake_words)
    return out.rename(columns={key: _(name) for key, name in MISTAKE_COLUMNS.items()})


def filter_mistakes(frame: pd.DataFrame, true: Sequence[str] | None = None,
                    predicted: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of a ``mistakes`` frame with these true and/or predicted classes (all when not given)."""
    if true:
        frame = frame[frame["true"].isin(list(true))]
    if predicted:
        frame = frame[frame["predicted"].isin(list(predicted))]
    return frame.reset_index(drop=True)


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans (type, first token, last token inclusive) from BIO or IO tags, as seqeval reads them."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, int(start), int(end)) for kind, start, end in get_entities(list(tags))]


def described_spans(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """The entities of a tagged sentence: type, first and last token, and their text."""
    return [{"type": k, "start": s, "end": e, "text": " ".join(tokens[s:e + 1])} for k, s, e in spans(tags)]


def entity_mistakes(scored: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in scored.itertuples(index=False):
        tokens = list(row.tokens or [])
        gold = spans(row.true_tags)
        pred = spans(row.pred_tags)
        gold_set, pred_set = set(gold), set(pred)
        sentence = " ".join(tokens)

        def text_of(start, end):
            return " ".join(tokens[start:end + 1])

        matched_pred = set()
        for kind, start, end in gold:
            if (kind, start, end) in pred_set:
                continue
            same_bounds = [p for p in pred if p[1] == start and p[2] == end]
            overlap = [p for p in pred if p[1] <= end and p[2] >= start and p not in gold_set]
            if same_bounds:
                other = same_bounds[0]
                matched_pred.add(other)
                rows.append((row.row_id, sentence, text_of(start, end), kind, other[0], "wrong type"))
            elif overlap:
                other = overlap[0]
                matched_pred.add(other)
                rows.append((row.row_id, sentence, text_of(start, end), kind, other[0],
                             f"wrong boundary (predicted '{text_of(other[1], other[2])}')"))
            else:
                rows.append((row.row_id, sentence, text_of(start, end), kind, NONE, "missed"))
        for p in pred:
            if p in gold_set or p in matched_pred:
                continue
            rows.append((row.row_id, sentence, text_of(p[1], p[2]), NONE, p[0], "spurious"))
    frame = pd.DataFrame(rows, columns=["row_id", "sentence", "span", "true", "predicted", "error"])
    frame["confidence"] = np.nan
    return frame


def sentence_spans(conn, run_id: int, row_id: int, split: str = TEST) -> dict:
    """For one sentence: its tokens, gold spans and predicted spans (type, start, end inclusive, text)."""
    rows = list(conn.query("SELECT * FROM predictions WHERE run_id = ? AND split = ? AND row_id = ?",
                           [int(run_id), split, int(row_id)]))
    if not rows:
        raise NotFound(_("Run {run_id} has no sentence {row_id} in {split}.", run_id=run_id, row_id=row_id,
                         split=split_words(split)))
    row = rows[0]
    tokens = store.loads(row["tokens_json"], []) or []
    gold_tags = store.loads(row["true_tags_json"], []) or []
    pred_tags = store.loads(row["pred_tags_json"], []) or []
    return {"row_id": row["row_id"], "tokens": tokens, "gold": described_spans(tokens, gold_tags),
            "predicted": described_spans(tokens, pred_tags)}


def highlight_html(tokens: Sequence[str], entity_spans: Sequence[dict | tuple]) -> str:
    """The sentence as HTML with each entity in a <mark> tagged with its type. Every token and type is escaped:
    nothing from the data is ever emitted as markup."""
    starts: dict[int, tuple[str, int]] = {}
    for span in entity_spans:
        kind, start, end = (span["type"], span["start"], span["end"]) if isinstance(span, dict) else span
        starts[int(start)] = (str(kind), int(end))
    out = []
    i = 0
    while i < len(tokens):
        if i in starts:
            kind, end = starts[i]
            words = html.escape(" ".join(tokens[i:end + 1]))
            out.append(
                f'<mark style="background:{_colour(kind)};padding:0 .2em;border-radius:.2em">{words} '
                f'<small style="font-weight:600;opacity:.75">{html.escape(kind)}</small></mark>'
            )
            i = end + 1
        else:
            out.append(html.escape(str(tokens[i])))
            i += 1
    return " ".join(out)


_PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fbcfe8", "#c7d2fe", "#fed7aa"]


def _colour(kind: str) -> str:
    return _PALETTE[sum(map(ord, kind)) % len(_PALETTE)]


def correct_and_confidence(report: Report) -> tuple[np.ndarray, np.ndarray]:
    """Per scored row: its confidence and whether it was right (text classification only)."""
    if report.task == TOKENS:
        raise UserError(_("Entity tagging runs record no confidence per prediction, so there is no confidence view."))
    s = report.scored
    conf = s["confidence"].astype(float).to_numpy()
    correct = (s["true_label"] == s["pred_label"]).to_numpy()
    ok = ~np.isnan(conf)
    return conf[ok], correct[ok]


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Reliability diagram bins (equal width over [0, 1]) and the expected calibration error.

    Each bin: lower, upper, count, mean confidence, accuracy (NaN when empty). A value of exactly 1.0 falls in the
    last bin.
    """
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    ece = 0.0
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        mean_conf = float(conf[mask].mean()) if count else float("nan")
        accuracy = float(right[mask].mean()) if count else float("nan")
        if count:
            ece += count / len(conf) * abs(accuracy - mean_conf)
        rows.append({"bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}", "lower": float(edges[b]), "upper": float(edges[b + 1]),
                     "count": count, "mean_confidence": mean_conf, "accuracy": accuracy})
    return pd.DataFrame(rows), float(ece)


def tradeoff(confidence: Sequence[float], correct: Sequence[bool], threshold: float) -> dict:
    """If predictions below ``threshold`` are left for a person: the share the model decides (coverage) and the
    accuracy on that share."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    kept = conf >= threshold
    n_kept = int(kept.sum())
    return {
        "threshold": float(threshold),
        "n_total": int(len(conf)),
        "n_kept": n_kept,
        "n_deferred": int(len(conf) - n_kept),
        "coverage": n_kept / len(conf) if len(conf) else 0.0,
        "accuracy": float(right[kept].mean()) if n_kept else None,
    }


def tradeoff_curve(confidence: Sequence[float], correct: Sequence[bool], steps: int = 21) -> pd.DataFrame:
    return pd.DataFrame([tradeoff(confidence, correct, t) for t in np.linspace(0.0, 1.0, steps)])


# --------------------------------------------------------------------------------------------------------------
# Exports


def predictions_frame(report: Report) -> pd.DataFrame:
    """Every stored prediction (those left out of the metrics too) as a flat table for download."""
    s = report.predictions if report.predictions is not None else report.scored
    if report.task == TOKENS:
        return pd.DataFrame(
            {
                "row_id": s["row_id"],
                "tokens": [" ".join(t or []) for t in s["tokens"]],
                "true_tags": [" ".join(t or []) for t in s["true_tags"]],
                "pred_tags": [" ".join(t or []) for t in s["pred_tags"]],
            }
        )
    frame = pd.DataFrame(
        {"row_id": s["row_id"], "text": s["text"], "true": s["true_label"], "predicted": s["pred_label"],
         "confidence": s["confidence"]}
    )
    for label in report.labels:
        frame[f"p({label})"] = [(p or {}).get(label) for p in s["probs"]]
    return frame


def export_sheets(report: Report) -> dict[str, pd.DataFrame]:
    """The sheets of a report workbook: the report (and the token report), and the predictions."""
    sheets = {"entity report" if report.task == TOKENS else "report": report.frame}
    if report.token_report is not None:
        sheets["token report"] = report.token_frame
    sheets["predictions"] = predictions_frame(report)
    return sheets


# --------------------------------------------------------------------------------------------------------------
# Evaluate on a new labelled file


@dataclass
class Evaluation:
    report: Report
    name: str
    split: str
    file_name: str
    encoding: str | None
    text_column: str | None
    label_column: str | None
    renamed: dict[str, str]  # file label -> model label where only case / spaces differ
    tag_scheme: str | None = None  # CoNLL: BIO | IOB1 | IO | BIOES as written in the file (scored as BIO)
    n_tags_rewritten: int = 0  # CoNLL: tags converted to BIO, as a dataset import converts them


def _norm(label: str) -> str:
    """A label value as it is matched to the model's labels (case and spaces ignored); column names are compared by
    :func:`engine.data.columns.key`."""
    return re.sub(r"\s+", " ", str(label)).strip().casefold()


def guess_evaluation_columns(frame: pd.DataFrame, labels: Sequence[str]) -> tuple[str | None, str | None]:
    """The likely text and label columns of an uploaded table: the label column by its values (the model's labels),
    else by name; the text column by name, else the longest. Names as a dataset import guesses them."""
    columns = list(frame.columns)
    known = {_norm(label) for label in labels}
    label_col = None
    best = 0.0
    for column in columns:  # the column whose values are most often the model's labels
        values = frame[column].astype(str).map(_norm)
        share = float(values.isin(known).mean()) if len(values) else 0.0
        if share > best:
            label_col, best = column, share
    if label_col is None or best < 0.5:
        label_col = vocabulary.by_name(columns, vocabulary.LABEL_NAMES) or label_col
    text_col = vocabulary.by_name(columns, vocabulary.TEXT_NAMES, taken=[label_col])
    if text_col is None:
        lengths = {c: frame[c].astype(str).str.len().mean() for c in columns if c != label_col}
        text_col = max(lengths, key=lengths.get) if lengths else None
    return text_col, label_col


def _check_column(column: str | None, frame: pd.DataFrame, role: str, option: str, file_name: str) -> str:
    columns = ", ".join(map(str, frame.columns))
    if column is None and role == "text":
        raise UserError(_("Could not tell which column of {file} holds the text. Name it with {option} (the columns "
                          "are: {columns}).", file=file_name, option=option, columns=columns))
    if column is None:
        raise UserError(_("Could not tell which column of {file} holds the labels. Name it with {option} (the "
                          "columns are: {columns}).", file=file_name, option=option, columns=columns))
    if column not in frame.columns:
        raise UserError(_("{file} has no column called '{column}'. Its columns are: {columns}.", file=file_name,
                          column=column, columns=columns))
    return column


def eval_name(name: str | None, file_name: str) -> str:
    name = (name or Path(file_name).stem or "upload").strip()
    name = re.sub(r"\s+", " ", name)
    if not name or len(name) > 80:
        raise UserError(_("Give the evaluation a short name (1 to 80 characters)."))
    return name


PREVIEW_ROWS = 500  # rows read to guess an evaluation file's text and label columns


def evaluate_file(
    conn,
    run_id: Any,
    data: bytes,
    file_name: str,
    name: str | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    actor=None,
) -> Evaluation:
    """Run a finished model on an uploaded labelled file, store the predictions as split 'eval:<name>' (replacing an
    earlier evaluation of that name) and return the report.

    Labels are matched to the model's by name (ignoring case and surrounding spaces). Rows whose label the model does
    not know are predicted and stored, counted in the report's notes, and left out of the metrics.

    ``actor`` (engine.access): an analyst or admin (None: the local administrator); an analyst cannot replace an
    evaluation of that name saved by someone else.
    """
    run = runs.finished(conn, run_id)
    labels = runs.labels(run)
    task = runs.task(run)
    name = eval_name(name, file_name)
    split = EVAL_PREFIX + name
    earlier = conn.execute("SELECT created_by FROM evaluations WHERE run_id = ? AND split = ?",
                           [run["id"], split]).fetchone()
    who = access.check(conn, actor, "run.evaluate", f"run:{run['id']}:{split}", owner=earlier[0] if earlier else None)
    by_norm = {_norm(label): label for label in labels}
    renamed: dict[str, str] = {}

    def match(label: str) -> str:
        label = str(label)
        if label in labels:
            return label
        if not label.strip():
            return ""
        found = by_norm.get(_norm(label))
        if found is not None:
            renamed[label] = found
            return found
        return label.strip()

    predictor = inference.load(run["model_dir"])
    rows: list[dict] = []
    scheme, rewritten = None, 0
    if task == TOKENS:
        conll = read_conll_guarded(data, file_name, encoding)  # tags made BIO as the training import made them
        if conll.bad_rows:  # an evaluation that quietly left sentences out would score a different file
            number, line = conll.bad_rows[0]
            raise UserError(_("{file} line {number} ('{line}') has no tag such as O, B-ORG or I-PER in its last "
                              "column. Each line should be 'token tag', with a blank line between sentences.",
                              file=file_name, number=number, line=line[:60]))
        sentences, used = conll.sentences, conll.encoding
        scheme, rewritten = conll.tag_scheme, conll.n_tags_rewritten
        text_col = label_col = None
        tokens_list = [s[0] for s in sentences]
        predicted = predictor.predict_tokens(tokens_list, batch_size=max(1, batch_size // 2))
        for i, ((tokens, tags), pred) in enumerate(zip(sentences, predicted), start=1):
            rows.append({"row_id": i, "text": " ".join(tokens), "tokens_json": store.dumps(tokens),
                         "true_tags_json": store.dumps([match(t) for t in tags]), "pred_tags_json": store.dumps(pred)})
    else:
        # Read in a memory-capped child (no file can take the dashboard down): a preview to find the columns, then
        # only the two columns used.
        preview = read_table_guarded(data, file_name, head=PREVIEW_ROWS, encoding=encoding, sheet=sheet).frame
        guessed_text, guessed_label = guess_evaluation_columns(preview, labels)
        text_col = _check_column(text_col or guessed_text, preview, "text", "--text-col", file_name)
        label_col = _check_column(label_col or guessed_label, preview, "labels", "--label-col", file_name)
        if text_col == label_col:
            raise UserError(_("The text and label columns must differ (both are '{column}').", column=text_col))
        table = read_table_guarded(data, file_name, columns=[text_col, label_col], encoding=encoding, sheet=sheet)
        frame, used = table.frame, table.encoding
        texts = frame[text_col].astype(str).tolist()
        gold = [match(v) for v in frame[label_col].astype(str).tolist()]
        predicted = predictor.predict(texts, batch_size=batch_size, progress=progress)
        for i, (text, label, p) in enumerate(zip(texts, gold, predicted), start=1):
            rows.append({"row_id": i, "text": text, "true_label": label or None, "pred_label": p.label,
                         "confidence": p.confidence, "probs_json": store.dumps(p.probs)})
    with store.transaction(conn):  # a report that cannot be made (nothing to score) leaves nothing stored
        conn.execute("DELETE FROM predictions WHERE run_id = ? AND split = ?", [run["id"], split])
        conn["predictions"].insert_all([{"run_id": run["id"], "split": split, **r} for r in rows], batch_size=500)
        conn["evaluations"].upsert({"run_id": run["id"], "split": split, "created_by": who.name,
                                    "created_at": store.now()}, pk=("run_id", "split"))
        access.record(conn, who, "run.evaluate", f"run:{run['id']}:{split}",
                      {"file": file_name, "rows": len(rows), "replaced": bool(earlier)})
        report = build_report(run["id"], task, split, load_predictions(conn, run["id"], split), labels)
    return Evaluation(report=report, name=name, split=split, file_name=file_name, encoding=used, text_column=text_col,
                      label_column=label_col, renamed=renamed, tag_scheme=scheme, n_tags_rewritten=rewritten)


# --------------------------------------------------------------------------------------------------------------
# Compare runs


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {prefix[:-1]: json.dumps(value, ensure_ascii=False)}
    return {prefix[:-1]: value}


@dataclass
class Comparison:
    runs: list[dict]
    metrics: pd.DataFrame  # index: metric, one column per run
    config: pd.DataFrame  # index: setting, one column per run, plus 'differs'
    curves: pd.DataFrame  # run, kind ('train loss' | 'eval loss'), step, epoch, value

    @property
    def differences(self) -> pd.DataFrame:
        return self.config[self.config["differs"]].drop(columns="differs")


def compare_runs(conn, run_ids: Sequence[Any]) -> Comparison:
    """Two or more finished runs side by side: final metrics, configuration (with what differs), loss curves."""
    ids = list(dict.fromkeys(int(runs.finished(conn, r)["id"]) for r in run_ids))
    if len(ids) < 2:
        raise UserError(_("Pick at least two different runs to compare."))
    info = {r["id"]: r for r in runs.finished_runs(conn)}
    chosen = [info[i] for i in ids]
    titles = [runs.title(r) for r in chosen]
    metric_rows: dict[str, dict[str, Any]] = {}
    config_rows: dict[str, dict[str, Any]] = {}
    for run, title in zip(chosen, titles):
        for key, value in _flatten(store.loads(run["metrics_json"], {}) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metric_rows.setdefault(key, {})[title] = value
        settings = {"task": run.get("task"), "base_model": run.get("base_model"),
                    "dataset": f"{run['dataset_name']} v{run['dataset_version']}" if run.get("dataset_name")
                    else run.get("dataset_id")}
        settings.update(_flatten(store.loads(run["config_json"], {}) or {}))
        for key, value in settings.items():
            config_rows.setdefault(key, {})[title] = value
    metrics = pd.DataFrame.from_dict(metric_rows, orient="index", columns=titles)
    metrics.index.name = "metric"
    metrics = metrics.sort_index(key=lambda idx: [(not k.startswith(("accuracy", "macro_f1")), k) for k in idx])
    config = pd.DataFrame.from_dict(config_rows, orient="index", columns=titles).astype(object)
    config = config.where(pd.notna(config), None)
    config.index.name = "setting"
    config["differs"] = [len({json.dumps(v, sort_keys=True, default=str) for v in row}) > 1
                         for row in config[titles].itertuples(index=False)]
    for column in titles:  # one type per column, so that the table shows cleanly
        config[column] = config[column].map(lambda v: "" if v is None else str(v))
    placeholders = ",".join("?" for _id in ids)
    progress = list(
        conn.query(
            f"SELECT job_id, kind, step, epoch, loss, eval_loss FROM progress WHERE job_id IN ({placeholders}) "
            "AND kind IN ('train', 'eval') ORDER BY job_id, id",
            ids,
        )
    )
    by_id = dict(zip(ids, titles))
    curve_rows = []
    for p in progress:
        value, kind = (p["loss"], "train loss") if p["kind"] == "train" else (p["eval_loss"], "eval loss")
        if value is None:
            continue
        curve_rows.append({"run": by_id[p["job_id"]], "kind": kind, "step": p["step"], "epoch": p["epoch"],
                           "value": float(value)})
    curves = pd.DataFrame(curve_rows, columns=["run", "kind", "step", "epoch", "value"])
    return Comparison(runs=chosen, metrics=metrics, config=config, curves=curves)


# --------------------------------------------------------------------------------------------------------------
# Try it


def try_it(conn, run_id: Any, texts: Sequence[str]) -> list[dict]:
    """Predict with a finished run's model.

    Text: {text, label, confidence, probs (every class, in the model's order)}. Entities: {text, tokens, tags,
    entities: [{type, start, end, text}]}.
    """
    texts = [str(t) for t in texts]
    if not texts or not any(t.strip() for t in texts):
        raise UserError(_("Type some text to try the model on."))
    run = runs.finished(conn, run_id)
    runs.labels(run)  # a plain error when the model folder is gone
    predictor = inference.load(run["model_dir"])
    if runs.task(run) == TOKENS or predictor.task == TOKENS:
        token_lists = [inference.simple_tokens(t) for t in texts]
        tags_list = predictor.predict_tokens(token_lists) if any(token_lists) else [[] for _text in texts]
        out = []
        for text, tokens, tags in zip(texts, token_lists, tags_list):
            out.append({"text": text, "tokens": tokens, "tags": tags, "entities": described_spans(tokens, tags)})
        return out
    return [
        {"text": text, "label": p.label, "confidence": p.confidence,
         "probs": {label: p.probs.get(label, 0.0) for label in predictor.labels}}
        for text, p in zip(texts, predictor.predict(texts))
    ]
