"""Characters that must not reach a name or a label: control characters (NUL, ESC ...), bidirectional overrides and
isolates, zero-width characters and other invisible format characters.

They make two names look identical (``fpb`` and ``fp\\u200bb``), reorder what a reader sees (U+202E), or drive a
terminal (ESC). Names and labels are cleaned when they are imported or saved (datasets, feeds, topics, runs, labels,
article titles, sources and topics), so what is stored is what is shown.

Also :func:`evenly`, the sample of a long list of texts that the language and vocabulary checks look at.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls except tab and newlines, soft hyphen, Arabic letter mark, Mongolian vowel separator, zero-width
# space/joiners, left-to-right/right-to-left marks and embeddings/overrides/isolates, word joiner and invisible
# operators, the byte-order mark, interlinear annotation marks.
INVISIBLE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
_INVISIBLE_RE = re.compile(INVISIBLE)


def clean_name(value) -> str:
    """A name or label as stored: NFC, without control or invisible format characters, runs of whitespace made one
    space, trimmed."""
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf") or ch in "\t\n\r")
    return " ".join(text.split())


def strip_invisible(value: str) -> str:
    """Longer text (an article, a text to classify): the invisible characters removed, everything else kept."""
    return _INVISIBLE_RE.sub("", value)


def evenly(items: list, n: int) -> list:
    """At most ``n`` of ``items``, spread evenly over the whole list (not just its start): the sample the language and
    vocabulary checks look at."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
