"""The sentiment vocabulary: which of a model's labels is the negative (or positive) class, and which runs look like
sentiment models. Alerts, trends, scoring and the Feeds page all ask here, in English or Chinese label names."""

from __future__ import annotations

from engine.models.catalog import config_labels

SENTIMENT = "sentiment"  # a score job's purpose by default; engine.monitor.topics.PURPOSE is the other


NEGATIVE_NAMES = {"negative", "neg", "bearish", "负面", "消极", "利空"}


POSITIVE_NAMES = {"positive", "pos", "bullish", "正面", "积极", "利好"}


def negative_label(labels) -> str | None:
    for label in labels:
        if str(label).strip().lower() in NEGATIVE_NAMES or str(label).strip().lower().startswith("neg"):
            return label
    return None


def positive_label(labels) -> str | None:
    for label in labels:
        if str(label).strip().lower() in POSITIVE_NAMES or str(label).strip().lower().startswith("pos"):
            return label
    return None


def run_labels(conn, run_id: int) -> list[str]:
    """The class labels of a run's model (from its config), in class order."""
    run = list(conn.query("SELECT model_dir FROM jobs WHERE id = ?", [int(run_id)]))
    if run and run[0]["model_dir"] and (labels := config_labels(run[0]["model_dir"])) is not None:
        return labels
    return [r[0] for r in conn.execute("SELECT DISTINCT label FROM scores WHERE run_id = ?", [int(run_id)])]


def looks_like_sentiment(labels) -> bool:
    """Whether a model's labels include a negative or a positive class (by name, English or Chinese)."""
    return negative_label(labels) is not None or positive_label(labels) is not None


def runs_by_purpose(conn, runs: list[dict]) -> dict[str, list[dict]]:
    """``runs`` in two orders: 'sentiment' puts those whose labels have a negative or positive class first, 'topics'
    puts the others first; each group keeps the order given (newest first). The store has no purpose field, so the
    labels decide."""
    sentiment = {run["id"]: looks_like_sentiment(run_labels(conn, run["id"])) for run in runs}
    return {SENTIMENT: sorted(runs, key=lambda run: not sentiment[run["id"]]),  # sorted is stable
            "topics": sorted(runs, key=lambda run: sentiment[run["id"]])}


def no_negative_class(labels) -> str | None:
    """The plain warning for scoring sentiment with a model whose ``labels`` have no negative class, else None."""
    if negative_label(labels):
        return None
    return (f"labels ({', '.join(labels)}) have no negative class, so the Monitor's negative share and surge alerts "
            "would stay at zero")
