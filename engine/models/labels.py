"""What a model's label names say: which is the negative (or positive) class, whether they look like sentiment, and
so what a run was probably trained for. Alerts, trends, scoring, the Train page and the run purpose of runs trained
before purposes were stored all ask here, in English or Chinese label names."""

from __future__ import annotations

from engine.errors import UserError
from engine.i18n import N_, _

SENTIMENT, TOPICS, OTHER = "sentiment", "topics", "other"
PURPOSES = (SENTIMENT, TOPICS, OTHER)
PURPOSE_WORDS = {SENTIMENT: N_("Sentiment (positive / neutral / negative)"),
                 TOPICS: N_("Topics (tags news by subject)"), OTHER: N_("Something else")}  # shown with _()

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


def looks_like_sentiment(labels) -> bool:
    """Whether labels include a negative or a positive class (by name, English or Chinese)."""
    return negative_label(labels) is not None or positive_label(labels) is not None


def guess_purpose(labels, task: str | None = "text-classification") -> str:
    """The purpose a classifier with ``labels`` was most likely trained for: sentiment when a class is named
    negative or positive, topics for any other text classifier, other for entity tagging and generation."""
    if task not in (None, "", "text-classification"):
        return OTHER
    return SENTIMENT if looks_like_sentiment(labels) else TOPICS


def check_purpose(purpose: str | None) -> str | None:
    """``purpose`` normalised; None when not given. A word that is not a purpose is refused in plain words."""
    if purpose in (None, "", "auto"):
        return None
    value = str(purpose).strip().lower()
    if value == "topic":
        value = TOPICS
    if value not in PURPOSES:
        raise UserError(_("'{purpose}' is not a purpose. Use sentiment, topics or other.", purpose=purpose))
    return value
