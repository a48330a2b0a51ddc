"""Stories: the same news from several sources, or re-published under a new title, counted once.

A source's import marks its new articles as waiting for a story (``story_id = 0``, in the import's transaction).
After each polling pass, :func:`assign_pending` gives them their ``story_id`` in one go per feed: the story of the
most similar earlier title of the feed published within ``WINDOW_H`` hours, when the TF-IDF cosine similarity of
their character 3-5-grams (scikit-learn) is at least ``THRESHOLD``; otherwise the article starts a story of its own
(``story_id = id``). An article still waiting after a crash is picked up by the next pass.

An article is *novel* when it starts its story, or was never clustered (uploads keep ``story_id`` NULL; waiting ones,
0, count as novel until assigned). Alerts count novel articles only (engine.monitor.alerts), and the drill-down says
how many sources covered each story.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

WINDOW_H = 48
THRESHOLD = 0.72  # templated titles about different firms reach ~0.67; a reworded same story ~0.75+
MAX_CANDIDATES = 5000
PENDING = 0


def mark_pending(conn, import_id: int | None) -> None:
    if import_id:
        conn.execute("UPDATE articles SET story_id = ? WHERE import_id = ?", [PENDING, import_id])


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assign_pending(conn, feed_id: int) -> int:
    """Cluster the feed's articles waiting for a story; returns how many joined an earlier story."""
    new = conn.execute("SELECT id, title, published_at FROM articles WHERE feed_id = ? AND story_id = ? "
                       "ORDER BY published_at, id", [feed_id, PENDING]).fetchall()
    if not new:
        return 0
    times = [_utc(r[2]) for r in new]
    lo = (min(times) - timedelta(hours=WINDOW_H)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hi = (max(times) + timedelta(hours=WINDOW_H)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = conn.execute(
        "SELECT id, title, published_at, COALESCE(NULLIF(story_id, 0), id) FROM articles WHERE feed_id = ? "
        "AND published_at >= ? AND published_at <= ? AND (story_id IS NULL OR story_id <> ?) "
        "ORDER BY published_at DESC LIMIT ?", [feed_id, lo, hi, PENDING, MAX_CANDIDATES]).fetchall()
    from sklearn.feature_extraction.text import TfidfVectorizer

    titles = [r[1] or "" for r in old] + [r[1] or "" for r in new]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=True).fit_transform(titles)
    sims = (matrix[len(old):] @ matrix.T).tocsr()  # new x (old + new); rows are L2-normalised: cosine similarity
    stamps = np.array([_utc(r[2]).timestamp() for r in old] + [t.timestamp() for t in times])
    story = [r[3] for r in old] + [None] * len(new)
    window = WINDOW_H * 3600.0
    joined = 0
    updates = []
    for i, row in enumerate(new):
        me = len(old) + i
        line = sims.getrow(i)
        best, best_sim = None, THRESHOLD
        for j, value in zip(line.indices, line.data):  # only titles sharing n-grams: a short list
            if j < me and value >= best_sim and abs(stamps[j] - stamps[me]) <= window:
                best, best_sim = j, value
        story[me] = story[best] if best is not None else row[0]
        joined += best is not None
        updates.append((story[me], row[0]))
    conn.conn.executemany("UPDATE articles SET story_id = ? WHERE id = ?", updates)
    return joined


def coverage(conn, article_ids: list[int]) -> dict[int, int]:
    """For each article, how many distinct sources carried its story (1 when it stands alone)."""
    if not article_ids:
        return {}
    marks = ",".join("?" * len(article_ids))
    rows = conn.execute(
        f"SELECT a.id, (SELECT COUNT(DISTINCT COALESCE(b.source, '')) FROM articles b WHERE b.feed_id = a.feed_id "
        f"AND b.story_id = COALESCE(NULLIF(a.story_id, 0), a.id)) FROM articles a WHERE a.id IN ({marks})",
        list(article_ids))
    return {r[0]: max(1, int(r[1] or 0)) for r in rows}
