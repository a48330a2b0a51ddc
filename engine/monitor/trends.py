"""Sentiment over time for a feed, aggregated in SQL (never every article in pandas).

The aggregates (volume, net index, heatmap, counts, topic and source lists) read the daily rollups ``day_counts`` and
``topic_day_counts`` that triggers keep in step with articles, scores and topics (engine.db, migration 3): a few
thousand rows per feed and run instead of a million articles. Drill-down and export read the articles through their
(feed, day) index. tests/test_monitor_rollups.py holds the direct queries these replaced and proves they agree.

Every function takes a :class:`Filters` (feed, model run, date range, topic, source) and returns a small frame:
one row per period (and label or topic). Periods: ``D`` (the article's day in the feed's time zone) or ``W`` (weeks
starting on Monday, labelled by that Monday).

Definitions (also in the README):
- volume: articles per period and sentiment label (articles the run has not scored are 'unscored');
- net sentiment index: (positive - negative) / scored articles in the period; its rolling mean is the mean of the
  index over the last ``window`` periods that have scored articles;
- negative share: negative / scored articles.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from engine import db
from engine.i18n import _
from engine.monitor.feeds import SAFE_URL
from engine.monitor.vocabulary import negative_label, positive_label, run_labels

UNSCORED = "unscored"


@dataclass
class Filters:
    feed_id: int
    run_id: int | None = None
    start: str | None = None  # YYYY-MM-DD, inclusive
    end: str | None = None  # YYYY-MM-DD, inclusive
    topic: str | None = None
    source: str | None = None

    def describe(self) -> str:
        parts = [_("model run {run_id}", run_id=self.run_id) if self.run_id else _("no model")]
        if self.start or self.end:
            parts.append(_("{start} to {end}", start=self.start or "…", end=self.end or "…"))
        if self.topic:
            parts.append(_("topic {topic}", topic=self.topic))
        if self.source:
            parts.append(_("source {source}", source=self.source))
        return _(", ").join(parts)


def period_sql(freq: str) -> str:
    if freq == "D":
        return "a.day"
    if freq == "W":
        return "date(a.day, '-6 days', 'weekday 1')"  # the Monday on or before the day
    raise ValueError(f"freq must be D or W, not {freq!r}")


def _where(f: Filters) -> tuple[str, list[Any]]:
    clauses, params = ["a.feed_id = ?"], [f.feed_id]
    if f.start:
        clauses.append("a.day >= ?")
        params.append(str(f.start)[:10])
    if f.end:
        clauses.append("a.day <= ?")
        params.append(str(f.end)[:10])
    if f.source:
        clauses.append("a.source = ?")
        params.append(f.source)
    if f.topic:
        clauses.append("EXISTS (SELECT 1 FROM article_topics t WHERE t.article_id = a.id AND t.topic = ?)")
        params.append(f.topic)
    return " AND ".join(clauses), params


def _frame(conn, sql: str, params: list, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(conn.execute(sql, params).fetchall(), columns=columns)


def _polar_labels(conn, run_id: int | None) -> tuple[str | None, str | None]:
    if not run_id:
        return None, None
    labels = run_labels(conn, run_id)
    return positive_label(labels), negative_label(labels)


# ---------------------------------------------------------------------------------------------------------------


def _rollup(f: Filters, by_topic: bool = False) -> tuple[str, str, list[Any]]:
    """The rollup table to read for these filters, and its WHERE clause (``n > 0`` keeps groups that have articles).

    ``day_counts`` / ``topic_day_counts`` (engine.db, kept by triggers) hold the article and label counts per feed, run,
    (topic,) day and source, so every aggregate below reads a few thousand small rows instead of the articles.
    """
    table = "topic_day_counts" if (by_topic or f.topic) else "day_counts"
    clauses, params = ["feed_id = ?"], [f.feed_id]
    if f.topic:
        clauses.append("topic = ?")
        params.append(f.topic)
    if f.start:
        clauses.append("day >= ?")
        params.append(str(f.start)[:10])
    if f.end:
        clauses.append("day <= ?")
        params.append(str(f.end)[:10])
    if f.source:
        clauses.append("source = ?")
        params.append(f.source)
    clauses.append("n > 0")
    return table, " AND ".join(clauses), params


def _period(freq: str) -> str:
    return period_sql(freq).replace("a.day", "day")


def volume(conn, f: Filters, freq: str = "D") -> pd.DataFrame:
    """Long frame: period, label, n (from the rollups: the same numbers as counting the articles)."""
    table, where, params = _rollup(f)
    period = _period(freq)
    if f.run_id:
        # Scored articles per label, and the rest of the period's articles as 'unscored' (a NULL label is '' here).
        sql = (
            f"WITH base AS (SELECT {period} AS period, run_id, label, n FROM {table} "
            f"WHERE run_id IN (0, ?) AND {where}) "
            "SELECT period, label, n FROM ("
            " SELECT period, label, SUM(n) AS n FROM base WHERE run_id != 0 AND label != '' GROUP BY period, label"
            " UNION ALL"
            " SELECT period, ? AS label, SUM(CASE WHEN run_id = 0 THEN n WHEN label != '' THEN -n ELSE 0 END) AS n"
            " FROM base GROUP BY period HAVING SUM(CASE WHEN run_id = 0 THEN n WHEN label != '' THEN -n ELSE 0 END) > 0"
            ") ORDER BY period, label"
        )
        params = [f.run_id] + params + [UNSCORED]
    else:
        sql = (
            f"SELECT {period} AS period, ? AS label, SUM(n) AS n FROM {table} WHERE run_id = 0 AND {where} "
            "GROUP BY period ORDER BY period"
        )
        params = [UNSCORED] + params
    return _frame(conn, sql, params, ["period", "label", "n"])


def volume_wide(conn, f: Filters, freq: str = "D") -> pd.DataFrame:
    """One row per period, one column per label (counts)."""
    long = volume(conn, f, freq)
    if long.empty:
        return pd.DataFrame(columns=["period"])
    wide = long.pivot_table(index="period", columns="label", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reset_index()
    wide.columns.name = None
    return wide


def _full_periods(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Add the periods with no articles between the first and the last (zero counts), for honest time axes."""
    if frame.empty:
        return frame
    start, end = pd.Timestamp(frame["period"].min()), pd.Timestamp(frame["period"].max())
    rng = pd.date_range(start, end, freq="D" if freq == "D" else "7D").strftime("%Y-%m-%d")
    out = frame.set_index("period").reindex(rng)
    out.index.name = "period"
    return out.reset_index()


def net_sentiment(conn, f: Filters, freq: str = "D", window: int | None = None) -> pd.DataFrame:
    """period, n (scored), positive, negative, net = (pos - neg) / n, rolling (mean of net over ``window`` periods)."""
    window = window or (7 if freq == "D" else 4)
    columns = ["period", "n", "positive", "negative", "net", "rolling"]
    if not f.run_id:
        return pd.DataFrame(columns=columns)
    pos, neg = _polar_labels(conn, f.run_id)
    table, where, params = _rollup(f)
    sql = (
        f"SELECT {_period(freq)} AS period, SUM(n) AS n, SUM(CASE WHEN label = ? THEN n ELSE 0 END) AS positive, "
        f"SUM(CASE WHEN label = ? THEN n ELSE 0 END) AS negative FROM {table} WHERE run_id = ? AND {where} "
        "GROUP BY period ORDER BY period"
    )
    frame = _frame(conn, sql, [pos or "", neg or "", f.run_id] + params, ["period", "n", "positive", "negative"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = _full_periods(frame, freq)
    frame[["n", "positive", "negative"]] = frame[["n", "positive", "negative"]].fillna(0).astype(int)
    frame["net"] = (frame["positive"] - frame["negative"]) / frame["n"].where(frame["n"] > 0)
    frame["rolling"] = frame["net"].rolling(window, min_periods=1).mean()
    return frame[columns]


def topic_week_negative(conn, f: Filters) -> pd.DataFrame:
    """topic, week (Monday), n (scored), negative, share = negative / n."""
    columns = ["topic", "week", "n", "negative", "share"]
    if not f.run_id:
        return pd.DataFrame(columns=columns)
    neg = _polar_labels(conn, f.run_id)[1]
    table, where, params = _rollup(f, by_topic=True)
    # Days first (in the table's key order, no sort), then weeks: date() runs once per topic-day, not per row.
    sql = (
        "WITH d AS (SELECT topic, day, SUM(n) AS n, SUM(CASE WHEN label = ? THEN n ELSE 0 END) AS negative "
        f"FROM {table} WHERE run_id = ? AND {where} GROUP BY topic, day) "
        f"SELECT topic, {_period('W')} AS week, SUM(n) AS n, SUM(negative) AS negative FROM d "
        "GROUP BY topic, week ORDER BY topic, week"
    )
    frame = _frame(conn, sql, [neg or "", f.run_id] + params, ["topic", "week", "n", "negative"])
    frame["share"] = frame["negative"] / frame["n"]
    return frame[columns]


def drilldown(conn, f: Filters, day: str, topic: str | None = None, limit: int = 500) -> pd.DataFrame:
    """The articles behind one day of the charts, with sentiment and confidence, most negative first.

    Every filter of ``f`` holds (source, topic, date range: a day outside it has no articles here); ``topic`` narrows
    further to the articles that also have that topic, so a drill-down never shows what the charts left out."""
    day = str(day)[:10]
    g = replace(f, start=max(day, str(f.start)[:10]) if f.start else day, end=min(day, str(f.end)[:10]) if f.end else day)
    where, params = _where(g)
    if topic and topic != f.topic:
        where += " AND EXISTS (SELECT 1 FROM article_topics t2 WHERE t2.article_id = a.id AND t2.topic = ?)"
        params.append(topic)
    columns = ["id", "published_at", "title", "source", "url", "label", "confidence", "negative"]
    if g.run_id:
        sql = (
            f"SELECT a.id, a.published_at, a.title, a.source, {SAFE_URL}, s.label, s.confidence, s.negative FROM articles a "
            f"LEFT JOIN scores s ON s.article_id = a.id AND s.run_id = ? WHERE {where} "
            "ORDER BY s.negative IS NULL, s.negative DESC, a.published_at LIMIT ?"
        )
        params = [g.run_id] + params + [limit]
    else:
        sql = (
            f"SELECT a.id, a.published_at, a.title, a.source, {SAFE_URL}, NULL, NULL, NULL FROM articles a "
            f"WHERE {where} ORDER BY a.published_at LIMIT ?"
        )
        params = params + [limit]
    return _frame(conn, sql, params, columns)


def articles(conn, f: Filters, limit: int = 100_000) -> pd.DataFrame:
    """The filtered articles with their scores, newest first (for export), at most ``limit``."""
    where, params = _where(f)
    sql = (
        f"SELECT a.id, a.published_at, a.day, a.title, a.body, a.source, {SAFE_URL}, a.topic, s.label, s.confidence, "
        "s.negative, s.probs_json FROM articles a LEFT JOIN scores s ON s.article_id = a.id AND s.run_id = ? "
        f"WHERE {where} ORDER BY a.published_at DESC LIMIT ?"
    )
    frame = _frame(conn, sql, [f.run_id or -1] + params + [limit],
                   ["id", "published_at", "day", "title", "body", "source", "url", "topic", "label", "confidence",
                    "negative", "probs"])
    frame.insert(len(frame.columns), "model_run", f.run_id)
    return frame


def count(conn, f: Filters) -> int:
    table, where, params = _rollup(f)
    return conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table} WHERE run_id = 0 AND {where}", params).fetchone()[0]


def trend_table(conn, f: Filters, freq: str = "D", window: int | None = None) -> pd.DataFrame:
    """Volume by label, net sentiment index and its rolling mean, one row per period (the CLI's output)."""
    wide = volume_wide(conn, f, freq)
    net = net_sentiment(conn, f, freq, window)
    if wide.empty:
        return wide
    wide = _full_periods(wide, freq).fillna(0)
    labels = [c for c in wide.columns if c != "period"]
    wide[labels] = wide[labels].astype(int)
    wide.insert(1, "total", wide[labels].sum(axis=1))
    if not net.empty:
        wide = wide.merge(net[["period", "net", "rolling"]], on="period", how="left")
    wide.insert(len(wide.columns), "model_run", f.run_id)
    return wide


# ---------------------------------------------------------------------------------------------------------------
# What the filters offer


def date_range(conn, feed_id: int) -> tuple[str | None, str | None]:
    row = conn.execute("SELECT MIN(day), MAX(day) FROM articles WHERE feed_id = ?", [feed_id]).fetchone()
    return row[0], row[1]


def sources(conn, feed_id: int, limit: int = 500) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT source FROM day_counts WHERE feed_id = ? AND run_id = 0 AND source != '' AND n > 0 GROUP BY source "
        "ORDER BY SUM(n) DESC, source LIMIT ?", [feed_id, limit])]


def topic_names(conn, feed_id: int) -> list[str]:
    """Topics that have articles in the feed (rule topics first come from the rules themselves)."""
    names = [r[0] for r in conn.execute(
        "SELECT DISTINCT topic FROM topic_day_counts WHERE feed_id = ? AND run_id = 0 AND n > 0 ORDER BY topic",
        [feed_id])]
    return names


def runs_for_feed(conn, feed_id: int) -> list[dict]:
    """Model runs that have scored (or are queued to score) this feed, newest first."""
    return list(conn.query(
        "SELECT j.id AS run_id, j.name, j.base_model, j.finished_at FROM jobs j WHERE j.kind = 'train' AND ("
        " j.id IN (SELECT model_run_id FROM jobs WHERE kind = 'score' AND feed_id = ?"
        " AND COALESCE(json_extract(config_json, '$.purpose'), 'sentiment') <> 'topics')"
        " OR EXISTS (SELECT 1 FROM scores s JOIN articles a ON a.id = s.article_id WHERE s.run_id = j.id"
        " AND a.feed_id = ?)) ORDER BY j.id DESC", [feed_id, feed_id]))


def model_caption(conn, run_id: int | None) -> str:
    if not run_id:
        return _("No model: volumes only.")
    rows = list(conn.query("SELECT id, name, base_model, metrics_json FROM jobs WHERE id = ?", [run_id]))
    if not rows:
        return _("Model: run {run_id}", run_id=run_id)
    row = rows[0]
    metrics = db.loads(row.get("metrics_json"), {}) or {}
    f1 = metrics.get("macro_f1")
    if row.get("name") and f1 is not None:
        return _("Model: run {run_id} ({name}), test macro-F1 {f1}", run_id=row["id"], name=row["name"], f1=f"{f1:.3f}")
    if row.get("name"):
        return _("Model: run {run_id} ({name})", run_id=row["id"], name=row["name"])
    if f1 is not None:
        return _("Model: run {run_id}, test macro-F1 {f1}", run_id=row["id"], f1=f"{f1:.3f}")
    return _("Model: run {run_id}", run_id=row["id"])


def last_scored(conn, feed_id: int, run_id: int | None) -> str | None:
    """When run ``run_id``'s newest scoring job for the feed finished (UTC, ISO), or None."""
    if not run_id:
        return None
    row = conn.execute("SELECT MAX(finished_at) FROM jobs WHERE kind = 'score' AND feed_id = ? AND model_run_id = ? "
                       "AND status = 'succeeded' AND COALESCE(json_extract(config_json, '$.purpose'), 'sentiment') "
                       "<> 'topics'", [feed_id, run_id]).fetchone()
    return row[0] if row else None


def data_version(conn, feed_id: int) -> tuple:
    """Cheap: the newest article of the feed, the newest score and topic rows (rowids only grow), the topic rules.
    The Monitor caches its aggregates under this key, so they are recomputed only when the data changed."""
    return tuple(conn.execute(
        "SELECT (SELECT MAX(id) FROM articles WHERE feed_id = ?), (SELECT MAX(rowid) FROM scores), "
        "(SELECT MAX(rowid) FROM article_topics), (SELECT COUNT(*) || MAX(created_at) FROM topic_rules)",
        [feed_id]).fetchone())
