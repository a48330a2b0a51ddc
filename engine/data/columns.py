"""The one vocabulary of column names for labelled data, and the one rule for comparing them.

Used wherever Bellwether guesses which column of an uploaded table holds the text, the label or the split: a dataset
import (:func:`engine.data.validate.guess_columns`) and an evaluation on a labelled file
(:func:`engine.reports.reporting.guess_evaluation_columns`). A column name matches a synonym when both are equal once lower-cased
and stripped of spaces, underscores, hyphens and dots ("Sentiment ", "sentiment_label" -> "sentiment", "sentimentlabel");
failing that, when the name contains a synonym of three characters or more ("news_headline" holds "headline").
"""

from __future__ import annotations

import re
from typing import Iterable

# Synonyms in order of preference: the first that names a column wins.
TEXT_NAMES = ["text", "sentence", "headline", "title", "content", "body", "message", "post", "review", "tweet",
              "comment", "document", "phrase", "news", "summary", "文本", "内容", "句子", "标题", "评论"]
LABEL_NAMES = ["label", "sentiment", "category", "class", "target", "polarity", "tag", "labels", "y", "tone", "gold",
               "标签", "情感", "类别", "情绪"]
SPLIT_NAMES = ["split", "set", "subset", "partition", "fold", "dataset", "划分"]


def key(name) -> str:
    """A column name as it is compared: lower case, without spaces, underscores, hyphens or dots."""
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def by_name(columns: Iterable, names: list[str], taken: Iterable = ()) -> str | None:
    """The column (not among ``taken``) that one of ``names`` names: an exact match first, in order of preference,
    then a column whose name contains a name of three characters or more ("news_headline", "sentiment_label")."""
    taken = set(taken)
    free = [c for c in columns if c not in taken]
    for name in names:  # exact name, in order of preference
        for col in free:
            if key(col) == key(name):
                return col
    for name in names:  # a name inside the column name
        if len(name) < 3:
            continue
        for col in free:
            if key(name) in key(col):
                return col
    return None
