"""Negative-news surge alerts, per topic and for the whole feed.

The rule (one per feed, in ``alert_rules``): the negative share over the last ``window_days`` (default 1) is compared
with its trailing baseline, the daily negative shares of the ``baseline_days`` before the window (default 14). An
alert fires when the window has at least ``min_articles`` scored articles (default 10) and either

- the share exceeds the baseline mean + ``k`` (default 3) baseline standard deviations (sample standard deviation,
  floored at ``MIN_STD`` = 2 percentage points so that a perfectly steady baseline does not turn tiny changes into
  alarms; it needs at least ``MIN_BASELINE_DAYS`` baseline days with articles), or
- ``abs_threshold`` is set and the share reaches it.

:func:`evaluate` walks the feed's whole history (every day is the end of a window), stores what fires with the window,
topic, magnitude ((share - mean) / std, the number of standard deviations), the rule and the most negative articles
that drove it, and keeps alerts the analyst has acknowledged. Counts are aggregated in SQL by day; only those small
daily series reach pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine import access, db
from engine.errors import UserError
from engine.i18n import _
from engine.monitor import stories
from engine.monitor.vocabulary import negative_label, run_labels

DEFAULTS = {"window_days": 1, "baseline_days": 14, "k": 3.0, "abs_threshold": None, "min_articles": 10}
MIN_STD = 0.02
MIN_BASELINE_DAYS = 3
DRIVERS = 20  # article ids kept per alert


def get_rule(conn, feed_id: int) -> dict:
    rows = list(conn.query("SELECT * FROM alert_rules WHERE feed_id = ?", [feed_id]))
    rule = dict(DEFAULTS)
    if rows:
        for key in DEFAULTS:
            if key in rows[0] and (rows[0][key] is not None or key == "abs_threshold"):
                rule[key] = rows[0][key]
    return rule


def check_rule(rule: dict) -> dict:
    out = dict(DEFAULTS)
    out.update({k: v for k, v in rule.items() if k in DEFAULTS})
    try:
        out["window_days"] = int(out["window_days"])
        out["baseline_days"] = int(out["baseline_days"])
        out["k"] = float(out["k"])
        out["min_articles"] = int(out["min_articles"])
        if out["abs_threshold"] in ("", None) or (isinstance(out["abs_threshold"], float) and np.isnan(out["abs_threshold"])):
            out["abs_threshold"] = None
        else:
            out["abs_threshold"] = float(out["abs_threshold"])
    except (TypeError, ValueError):
        raise UserError(_("Alert rule values must be numbers: window and baseline in days, k, threshold, minimum "
                          "articles.")) from None
    if not 1 <= out["window_days"] <= 90:
        raise UserError(_("The alert window must be between 1 and 90 days."))
    if not MIN_BASELINE_DAYS <= out["baseline_days"] <= 365:
        raise UserError(_("The baseline must be between {low} and 365 days.", low=MIN_BASELINE_DAYS))
    if not 0 < out["k"] <= 50:
        raise UserError(_("k (how many standard deviations above the baseline) must be above 0 and at most 50."))
    if out["abs_threshold"] is not None and not 0 < out["abs_threshold"] <= 1:
        raise UserError(_("The absolute threshold is a negative share between 0 and 1 (for example 0.6), or empty."))
    if out["min_articles"] < 1:
        raise UserError(_("The minimum article count must be at least 1."))
    return out


def set_rule(conn, feed_id: int, actor=None, **params) -> dict:
    """Change the feed's alert rule. An analyst changes the rules of feeds they created; an admin anyone's."""
    before = get_rule(conn, feed_id)
    rule = check_rule({**before, **params})
    feed = conn.execute("SELECT name, created_by FROM feeds WHERE id = ?", [feed_id]).fetchone()
    obj = f"feed:{feed[0] if feed else feed_id}:alert-rule"
    who = access.check(conn, actor, "alerts.rule", obj, owner=feed[1] if feed else None)
    with db.transaction(conn):
        conn["alert_rules"].upsert({"feed_id": feed_id, **rule, "updated_at": db.now()}, pk="feed_id")
        access.record(conn, who, "alerts.rule", obj, {k: v for k, v in rule.items() if before.get(k) != v})
    return rule


# ---------------------------------------------------------------------------------------------------------------


def detect(daily: pd.DataFrame, rule: dict) -> pd.DataFrame:
    """Windows that fire, from a daily frame (day, n, negative). Returns one row per firing window end."""
    columns = ["window_start", "window_end", "negative_share", "baseline_mean", "baseline_std", "magnitude",
               "n_articles", "reason"]
    if daily.empty:
        return pd.DataFrame(columns=columns)
    rule = check_rule(rule)
    w, b = rule["window_days"], rule["baseline_days"]
    days = pd.date_range(daily["day"].min(), daily["day"].max(), freq="D")
    frame = daily.assign(day=pd.to_datetime(daily["day"])).set_index("day").reindex(days, fill_value=0)
    n = frame["n"].astype(float)
    neg = frame["negative"].astype(float)
    n_w = n.rolling(w, min_periods=1).sum()
    share = neg.rolling(w, min_periods=1).sum() / n_w.where(n_w > 0)
    daily_share = neg / n.where(n > 0)
    past = daily_share.shift(w)
    mean = past.rolling(b, min_periods=MIN_BASELINE_DAYS).mean()
    std = past.rolling(b, min_periods=MIN_BASELINE_DAYS).std()
    floor = std.clip(lower=MIN_STD)
    magnitude = (share - mean) / floor
    enough = n_w >= rule["min_articles"]
    fire_k = enough & mean.notna() & (share > mean + rule["k"] * floor)
    fire_abs = enough & (share >= rule["abs_threshold"]) if rule["abs_threshold"] is not None else pd.Series(False, index=days)
    fired = fire_k | fire_abs
    out = pd.DataFrame(
        {
            "window_start": (days - pd.Timedelta(days=w - 1)).strftime("%Y-%m-%d"),
            "window_end": days.strftime("%Y-%m-%d"),
            "negative_share": share.to_numpy(),
            "baseline_mean": mean.to_numpy(),
            "baseline_std": std.to_numpy(),
            "magnitude": magnitude.to_numpy(),
            "n_articles": n_w.astype(int).to_numpy(),
            "reason": np.where(fire_k.to_numpy(), "k_std", "absolute"),
        },
        index=days,
    )
    return out.loc[fired.to_numpy(), columns].reset_index(drop=True)


def _daily(conn, feed_id: int, run_id: int, neg: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scored articles and negative ones per day, overall and per topic, from the rollups kept by engine.db."""
    overall = pd.DataFrame(
        conn.execute(
            "SELECT day, SUM(n), SUM(CASE WHEN label = ? THEN n ELSE 0 END) FROM day_counts "
            "WHERE feed_id = ? AND run_id = ? AND n > 0 GROUP BY day ORDER BY day",
            [neg, feed_id, run_id],
        ).fetchall(),
        columns=["day", "n", "negative"],
    )
    by_topic = pd.DataFrame(
        conn.execute(
            "SELECT topic, day, SUM(n), SUM(CASE WHEN label = ? THEN n ELSE 0 END) FROM topic_day_counts "
            "WHERE feed_id = ? AND run_id = ? AND n > 0 GROUP BY topic, day ORDER BY topic, day",
            [neg, feed_id, run_id],
        ).fetchall(),
        columns=["topic", "day", "n", "negative"],
    )
    return _minus_repeats(conn, feed_id, run_id, neg, overall, by_topic)


REPEAT = "a.story_id > 0 AND a.story_id <> a.id"  # an article that repeats an earlier story (monitor.stories)
NOVEL = "NOT (COALESCE(a.story_id, 0) > 0 AND a.story_id <> a.id)"  # the rest (never clustered: NULL, or waiting: 0)


def _minus_repeats(conn, feed_id: int, run_id: int, neg: str, overall: pd.DataFrame, by_topic: pd.DataFrame):
    """Take out articles that repeat a story already counted: alerts count novel stories (engine.monitor.stories)."""
    rep = pd.DataFrame(conn.execute(
        "SELECT a.day, COUNT(*), SUM(CASE WHEN s.label = ? THEN 1 ELSE 0 END) FROM articles a "
        f"JOIN scores s ON s.article_id = a.id AND s.run_id = ? WHERE a.feed_id = ? AND {REPEAT} GROUP BY a.day",
        [neg, run_id, feed_id]).fetchall(), columns=["day", "n", "negative"])
    if rep.empty:
        return overall, by_topic
    rep_topic = pd.DataFrame(conn.execute(
        "SELECT t.topic, a.day, COUNT(*), SUM(CASE WHEN s.label = ? THEN 1 ELSE 0 END) FROM articles a "
        "JOIN scores s ON s.article_id = a.id AND s.run_id = ? JOIN article_topics t ON t.article_id = a.id "
        f"WHERE a.feed_id = ? AND {REPEAT} GROUP BY t.topic, a.day", [neg, run_id, feed_id]).fetchall(),
        columns=["topic", "day", "n", "negative"])

    def minus(frame: pd.DataFrame, repeats: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        if repeats.empty or frame.empty:
            return frame
        merged = frame.merge(repeats, on=keys, how="left", suffixes=("", "_rep")).fillna({"n_rep": 0, "negative_rep": 0})
        merged["n"] = merged["n"] - merged["n_rep"]
        merged["negative"] = merged["negative"] - merged["negative_rep"]
        return merged.loc[merged["n"] > 0, frame.columns].reset_index(drop=True)

    return minus(overall, rep, ["day"]), minus(by_topic, rep_topic, ["topic", "day"])


def _drivers(conn, feed_id: int, run_id: int, neg: str, topic: str | None, start: str, end: str) -> list[int]:
    # From the window's days (index on feed and day) to each article's score and topic by key: the planner would
    # otherwise walk every article of the topic (70 ms an alert at a million articles, against under 1 ms).
    topic_clause, extra = (
        "AND EXISTS (SELECT 1 FROM article_topics t WHERE t.article_id = a.id AND t.topic = ?)", [topic]
    ) if topic else ("", [])
    return [r[0] for r in conn.execute(
        "SELECT a.id FROM articles a CROSS JOIN scores s ON s.article_id = a.id AND s.run_id = ? "
        f"WHERE a.feed_id = ? AND a.day >= ? AND a.day <= ? AND s.label = ? AND {NOVEL} {topic_clause} "
        "ORDER BY s.negative DESC, a.id LIMIT ?",
        [run_id, feed_id, start, end, neg] + extra + [DRIVERS],
    )]


def evaluate(conn, feed_id: int, run_id: int, rule: dict | None = None) -> list[dict]:
    """Evaluate the feed's rule over its whole history for run ``run_id``; store and return the alerts that fire."""
    rule = check_rule(rule or get_rule(conn, feed_id))
    neg = negative_label(run_labels(conn, run_id))
    if neg is None:
        raise UserError(_("The model of run {run_id} has no negative class, so negative-news alerts cannot be computed.",
                           run_id=run_id))
    overall, by_topic = _daily(conn, feed_id, run_id, neg)
    found: list[dict] = []
    for _i, row in detect(overall, rule).iterrows():
        found.append({"topic": None, **row.to_dict()})
    for topic, group in by_topic.groupby("topic", sort=True):
        for _i, row in detect(group[["day", "n", "negative"]], rule).iterrows():
            found.append({"topic": topic, **row.to_dict()})

    now = db.now()
    stored: list[dict] = []
    with db.transaction(conn):
        existing = {
            (r["topic"] or "", r["window_end"]): r
            for r in conn.query("SELECT * FROM alerts WHERE feed_id = ? AND run_id = ?", [feed_id, run_id])
        }
        keep = set()
        for alert in found:
            key = (alert["topic"] or "", alert["window_end"])
            keep.add(key)
            ids = _drivers(conn, feed_id, run_id, neg, alert["topic"], alert["window_start"], alert["window_end"])
            record = {
                "feed_id": feed_id,
                "run_id": run_id,
                "topic": alert["topic"],
                "window_start": alert["window_start"],
                "window_end": alert["window_end"],
                "negative_share": _num(alert["negative_share"]),
                "baseline_mean": _num(alert["baseline_mean"]),
                "baseline_std": _num(alert["baseline_std"]),
                "magnitude": _num(alert["magnitude"]),
                "n_articles": int(alert["n_articles"]),
                "rule_json": db.dumps({**rule, "reason": alert["reason"], "min_std": MIN_STD}),
                "article_ids_json": db.dumps(ids),
            }
            if key in existing:
                conn["alerts"].update(existing[key]["id"], record)
                record["id"] = existing[key]["id"]
            else:
                record["created_at"] = now
                record["id"] = conn["alerts"].insert(record).last_pk
            stored.append(record)
        for key, row in existing.items():
            if key not in keep and not row.get("acknowledged_at"):
                conn.execute("DELETE FROM alerts WHERE id = ?", [row["id"]])
    return stored


def _num(value):
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) or np.isinf(value) else value


def list_alerts(conn, feed_id: int, run_id: int | None = None, topic: str | None = None,
                include_acknowledged: bool = True, start: str | None = None, end: str | None = None) -> list[dict]:
    """The feed's alerts, newest first; ``start`` / ``end`` keep those whose window ends in that date range."""
    clauses, params = ["feed_id = ?"], [feed_id]
    if start:
        clauses.append("window_end >= ?")
        params.append(start)
    if end:
        clauses.append("window_end <= ?")
        params.append(end)
    if run_id:
        clauses.append("run_id = ?")
        params.append(run_id)
    if topic:
        clauses.append("(topic = ? OR topic IS NULL)")
        params.append(topic)
    if not include_acknowledged:
        clauses.append("acknowledged_at IS NULL")
    rows = list(conn.query(
        f"SELECT * FROM alerts WHERE {' AND '.join(clauses)} ORDER BY window_end DESC, magnitude DESC", params))
    for row in rows:
        row["rule"] = db.loads(row.get("rule_json"), {})
        row["article_ids"] = db.loads(row.get("article_ids_json"), [])
    return rows


def version(conn, feed_id: int) -> tuple:
    """Changes whenever the feed's alerts do (the open Monitor page polls it to refresh itself)."""
    return tuple(conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0), COUNT(acknowledged_at) FROM alerts "
                              "WHERE feed_id = ?", [feed_id]).fetchone())


def acknowledge(conn, alert_id: int, user=None) -> None:
    """Acknowledge an alert as ``user`` (an engine.access Actor, or None: the local administrator; a plain name is
    recorded as who, with the local administrator's rights, for scripts)."""
    actor = user if user is None or isinstance(user, access.Actor) else None
    row = conn.execute("SELECT acknowledged_at FROM alerts WHERE id = ?", [alert_id]).fetchone()
    if row is None:
        raise UserError(_("There is no alert {alert_id}.", alert_id=alert_id))
    who = access.check(conn, actor, "alerts.ack", f"alert:{alert_id}")
    if row[0]:
        return
    name = user if isinstance(user, str) else who.name
    with db.transaction(conn):
        conn.execute("UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                     [db.now(), name, alert_id])
        access.record(conn, who, "alerts.ack", f"alert:{alert_id}")


def alert_articles(conn, alert: dict) -> pd.DataFrame:
    """The articles that drove an alert, most negative first."""
    ids = alert.get("article_ids") or db.loads(alert.get("article_ids_json"), [])
    if not ids:
        return pd.DataFrame(columns=["id", "day", "title", "source", "label", "negative", "covered_by_sources"])
    marks = ",".join("?" * len(ids))
    frame = pd.DataFrame(conn.execute(
        "SELECT a.id, a.day, a.title, a.source, s.label, s.negative FROM articles a LEFT JOIN scores s "
        f"ON s.article_id = a.id AND s.run_id = ? WHERE a.id IN ({marks}) ORDER BY s.negative DESC",
        [alert["run_id"], *ids]).fetchall(), columns=["id", "day", "title", "source", "label", "negative"])
    covered = stories.coverage(conn, [int(i) for i in frame["id"]])
    frame["covered_by_sources"] = frame["id"].map(lambda i: covered.get(int(i), 1))
    return frame


def alerts_frame(alerts: list[dict]) -> pd.DataFrame:
    cols = ["id", "window_start", "window_end", "topic", "negative_share", "baseline_mean", "baseline_std", "magnitude",
            "n_articles", "run_id", "acknowledged_at", "acknowledged_by", "created_at"]
    frame = pd.DataFrame(alerts, columns=cols + ["rule"]) if alerts else pd.DataFrame(columns=cols + ["rule"])
    frame["topic"] = frame["topic"].fillna(_("(all articles)"))
    frame["rule"] = frame["rule"].map(lambda r: db.dumps(r) if isinstance(r, dict) else r)
    return frame
