"""The sentiment vocabulary: which of a model's labels is the negative (or positive) class, and which runs look like
sentiment models. Alerts, trends, scoring and the Feeds page all ask here, in English or Chinese label names."""

from __future__ import annotations

from engine.models.catalog import config_labels
from engine.models.labels import (  # noqa: F401 (the names every caller already uses from here)
    NEGATIVE_NAMES, POSITIVE_NAMES, SENTIMENT, TOPICS, looks_like_sentiment, negative_label, positive_label)
from engine.jobs.runs import purpose as run_purpose


def run_labels(conn, run_id: int) -> list[str]:
    """The class labels of a run's model (from its config), in class order."""
    run = list(conn.query("SELECT model_dir FROM jobs WHERE id = ?", [int(run_id)]))
    if run and run[0]["model_dir"] and (labels := config_labels(run[0]["model_dir"])) is not None:
        return labels
    return [r[0] for r in conn.execute("SELECT DISTINCT label FROM scores WHERE run_id = ?", [int(run_id)])]


def runs_by_purpose(conn, runs: list[dict]) -> dict[str, list[dict]]:
    """``runs`` for each use: 'sentiment' puts the runs trained for sentiment first (then the others, which may still
    score), 'topics' holds only the runs trained for topics; each keeps the order given (newest first). A run's
    purpose is stored when it is queued, or guessed from its labels for older runs (engine.jobs.runs.purpose)."""
    purposes = {run["id"]: run_purpose(run) for run in runs}
    return {SENTIMENT: sorted(runs, key=lambda run: purposes[run["id"]] != SENTIMENT),  # sorted is stable
            TOPICS: [run for run in runs if purposes[run["id"]] == TOPICS]}


def no_negative_class(labels) -> str | None:
    """The plain warning for scoring sentiment with a model whose ``labels`` have no negative class, else None."""
    if negative_label(labels):
        return None
    return (f"labels ({', '.join(labels)}) have no negative class, so the Monitor's negative share and surge alerts "
            "would stay at zero")
