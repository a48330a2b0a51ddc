"""Stories: the same news from several sources, or re-published under a new title, counted once.

After a source's import, :func:`assign` gives each new article a ``story_id``: the story of the most similar earlier
title of the feed published within ``WINDOW_H`` hours, when the TF-IDF cosine similarity of their character 3-5-grams
(scikit-learn) is at least ``THRESHOLD``; otherwise the article starts a story of its own (``story_id = id``).
An article is *novel* when it starts its story (or was never clustered: uploads keep ``story_id`` NULL). Alerts count
novel articles only (engine.monitor.alerts), and the drill-down says how many sources covered each story.
"""

from __future__ import annotations

from datetime import datetime, timedelta

WINDOW_H = 48
THRESHOLD = 0.72  # templated titles about different firms reach ~0.67; a reworded same story ~0.75+
MAX_CANDIDATES = 5000


def assign(conn, feed_id: int, import_id: int | None) -> int:
    """Cluster the articles of one import into the feed's stories; returns how many joined an earlier story."""
    if not import_id:
        return 0
    new = conn.execute("SELECT id, title, published_at FROM articles WHERE import_id = ? ORDER BY published_at, id",
                       [import_id]).fetchall()
    if not new:
        return 0
    times = [datetime.fromisoformat(r[2].replace("Z", "+00:00")) for r in new]
    lo = (min(times) - timedelta(hours=WINDOW_H)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hi = (max(times) + timedelta(hours=WINDOW_H)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = conn.execute(
        "SELECT id, title, published_at, COALESCE(story_id, id) FROM articles WHERE feed_id = ? AND published_at >= ? "
        "AND published_at <= ? AND (import_id IS NULL OR import_id <> ?) ORDER BY published_at DESC LIMIT ?",
        [feed_id, lo, hi, import_id, MAX_CANDIDATES]).fetchall()
    from sklearn.feature_extraction.text import TfidfVectorizer

    titles = [r[1] or "" for r in old] + [r[1] or "" for r in new]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=True).fit_transform(titles)
    sims = (matrix[len(old):] @ matrix.T).toarray()  # new x (old + new), rows L2-normalised: cosine similarity
    story = [r[3] for r in old] + [None] * len(new)
    stamp = [datetime.fromisoformat(r[2].replace("Z", "+00:00")) for r in old] + times
    window = timedelta(hours=WINDOW_H)
    joined = 0
    updates = []
    for i, row in enumerate(new):
        j_self = len(old) + i
        best, best_sim = None, THRESHOLD
        for j in range(len(old) + i):  # earlier titles only: the old ones and the new ones before this one
            if sims[i, j] >= best_sim and abs(stamp[j] - stamp[j_self]) <= window:
                best, best_sim = j, sims[i, j]
        story[j_self] = story[best] if best is not None else row[0]
        joined += best is not None
        updates.append((story[j_self], row[0]))
    conn.conn.executemany("UPDATE articles SET story_id = ? WHERE id = ?", updates)
    return joined


def coverage(conn, article_ids: list[int]) -> dict[int, int]:
    """For each article, how many distinct sources carried its story (1 when it stands alone)."""
    if not article_ids:
        return {}
    marks = ",".join("?" * len(article_ids))
    rows = conn.execute(
        f"SELECT a.id, (SELECT COUNT(DISTINCT COALESCE(b.source, '')) FROM articles b WHERE b.feed_id = a.feed_id "
        f"AND b.story_id = COALESCE(a.story_id, a.id)) FROM articles a WHERE a.id IN ({marks})", list(article_ids))
    return {r[0]: max(1, int(r[1] or 0)) for r in rows}
