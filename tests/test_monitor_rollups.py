"""The Monitor's numbers come from rollup tables kept by triggers: prove they equal counting the articles directly.

Every check runs the original queries (joins over articles, scores and article_topics, kept here as the reference)
against what engine.trends and engine.alerts return, on a small feed, after each kind of write the rollups must
follow: import, scoring, a topic rule added / changed / deleted, re-scoring with a second run, a score replaced or
deleted, and a second import into the feed.
"""

from __future__ import annotations

import io
import random
from dataclasses import replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from engine import db
from engine.monitor import alerts
from engine.monitor import feeds
from engine.monitor import trends
from engine.monitor.vocabulary import negative_label, positive_label, run_labels

LABELS = ["negative", "neutral", "positive"]
COMPANIES = ["Barclays", "HSBC", "Shell", "BP", "Apple", "Tesla"]
SOURCES = ["Reuters", "CNBC", "", "FT"]  # '' : no source (stored as NULL)


# ---- the reference: the direct queries over articles (what trends/alerts computed before the rollups) ----------


def _where(f: trends.Filters):
    clauses, params = ["a.feed_id = ?"], [f.feed_id]
    if f.start:
        clauses.append("a.day >= ?")
        params.append(f.start)
    if f.end:
        clauses.append("a.day <= ?")
        params.append(f.end)
    if f.source:
        clauses.append("a.source = ?")
        params.append(f.source)
    if f.topic:
        clauses.append("a.id IN (SELECT article_id FROM article_topics WHERE topic = ?)")
        params.append(f.topic)
    return " AND ".join(clauses), params


def _frame(conn, sql, params, columns):
    return pd.DataFrame(conn.execute(sql, params).fetchall(), columns=columns)


def ref_volume(conn, f, freq):
    where, params = _where(f)
    p = trends.period_sql(freq)
    if f.run_id:
        sql = (f"SELECT {p} AS period, COALESCE(s.label, ?) AS label, COUNT(*) AS n FROM articles a LEFT JOIN scores s "
               f"ON s.article_id = a.id AND s.run_id = ? WHERE {where} GROUP BY period, label ORDER BY period, label")
        return _frame(conn, sql, [trends.UNSCORED, f.run_id] + params, ["period", "label", "n"])
    sql = f"SELECT {p} AS period, ? AS label, COUNT(*) AS n FROM articles a WHERE {where} GROUP BY period ORDER BY period"
    return _frame(conn, sql, [trends.UNSCORED] + params, ["period", "label", "n"])


def ref_net_counts(conn, f, freq):
    labels = run_labels(conn, f.run_id)
    pos, neg = positive_label(labels), negative_label(labels)
    where, params = _where(f)
    sql = (f"SELECT {trends.period_sql(freq)} AS period, COUNT(*) AS n, SUM(s.label = ?) AS positive, "
           f"SUM(s.label = ?) AS negative FROM articles a JOIN scores s ON s.article_id = a.id AND s.run_id = ? "
           f"WHERE {where} GROUP BY period ORDER BY period")
    return _frame(conn, sql, [pos or "", neg or "", f.run_id] + params, ["period", "n", "positive", "negative"])


def ref_heat(conn, f):
    neg = negative_label(run_labels(conn, f.run_id))
    where, params = _where(replace(f, topic=None))
    topic_clause, topic_params = ("AND t.topic = ?", [f.topic]) if f.topic else ("", [])
    sql = (f"SELECT t.topic, {trends.period_sql('W')} AS week, COUNT(*) AS n, SUM(s.label = ?) AS negative "
           "FROM article_topics t JOIN articles a ON a.id = t.article_id "
           f"JOIN scores s ON s.article_id = a.id AND s.run_id = ? WHERE {where} {topic_clause} "
           "GROUP BY t.topic, week ORDER BY t.topic, week")
    frame = _frame(conn, sql, [neg or "", f.run_id] + params + topic_params, ["topic", "week", "n", "negative"])
    frame["share"] = frame["negative"] / frame["n"]
    return frame


def ref_daily(conn, feed_id, run_id, neg):
    overall = _frame(conn, "SELECT a.day, COUNT(*), SUM(s.label = ?) FROM articles a JOIN scores s ON s.article_id = a.id "
                     "AND s.run_id = ? WHERE a.feed_id = ? GROUP BY a.day ORDER BY a.day", [neg, run_id, feed_id],
                     ["day", "n", "negative"])
    by_topic = _frame(conn, "SELECT t.topic, a.day, COUNT(*), SUM(s.label = ?) FROM article_topics t JOIN articles a "
                      "ON a.id = t.article_id JOIN scores s ON s.article_id = a.id AND s.run_id = ? WHERE a.feed_id = ? "
                      "GROUP BY t.topic, a.day ORDER BY t.topic, a.day", [neg, run_id, feed_id],
                      ["topic", "day", "n", "negative"])
    return overall, by_topic


def ref_topic_names(conn, feed_id):
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT t.topic FROM article_topics t WHERE EXISTS "
        "(SELECT 1 FROM articles a WHERE a.id = t.article_id AND a.feed_id = ?) ORDER BY t.topic", [feed_id])]


def ref_sources(conn, feed_id):
    return [r[0] for r in conn.execute(
        "SELECT source FROM articles WHERE feed_id = ? AND source IS NOT NULL GROUP BY source "
        "ORDER BY COUNT(*) DESC, source", [feed_id])]


# ---- the feed -------------------------------------------------------------------------------------------------


def _csv(n: int, seed: int, first_day: str = "2021-03-01", days: int = 40) -> bytes:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        day = pd.Timestamp(first_day) + pd.Timedelta(days=rng.randrange(days), hours=rng.randrange(24))
        company = rng.choice(COMPANIES)
        rows.append({"published": day.isoformat() + "+00:00",
                     "headline": f"{company} {rng.choice(['rises', 'falls', 'bank deal', 'oil spill'])} {seed}-{i}",
                     "source": rng.choice(SOURCES),
                     "ticker": rng.choice([company, "", f"{company};Markets"])})
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode()


def _run(conn, name: str) -> int:
    return conn["jobs"].insert({"kind": "train", "status": "succeeded", "task": "text-classification",
                                "created_at": db.now(), "name": name}).last_pk


def _score(conn, run_id: int, seed: int, share: float = 1.0) -> None:
    """Score a share of the feed's articles with random labels, the way the score job writes them (one chunk)."""
    rng = random.Random(seed)
    ids = [r[0] for r in conn.execute("SELECT id FROM articles ORDER BY id")]
    rows = [(i, run_id, rng.choice(LABELS), 0.9, rng.random(), "{}", None, db.now()) for i in ids if rng.random() < share]
    with db.transaction(conn):
        conn.conn.executemany(
            "INSERT INTO scores (article_id, run_id, label, confidence, negative, probs_json, job_id, scored_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (article_id, run_id) DO UPDATE SET label = excluded.label",
            rows)


def assert_same_as_direct(conn, feed_id: int, run_ids: list[int | None]) -> None:
    first, last = trends.date_range(conn, feed_id)
    mid = (pd.Timestamp(first) + (pd.Timestamp(last) - pd.Timestamp(first)) / 2).strftime("%Y-%m-%d")
    topics = trends.topic_names(conn, feed_id)
    assert topics == ref_topic_names(conn, feed_id)
    assert trends.sources(conn, feed_id) == ref_sources(conn, feed_id)
    for run_id in run_ids:
        variants = [trends.Filters(feed_id, run_id), trends.Filters(feed_id, run_id, mid, last),
                    trends.Filters(feed_id, run_id, first, mid, source="Reuters")]
        variants += [trends.Filters(feed_id, run_id, topic=t) for t in topics]
        variants += [trends.Filters(feed_id, run_id, mid, None, topic=topics[0], source="CNBC")] if topics else []
        for f in variants:
            where, params = _where(f)
            assert trends.count(conn, f) == conn.execute(f"SELECT COUNT(*) FROM articles a WHERE {where}", params).fetchone()[0]
            for freq in ("D", "W"):
                got, want = trends.volume(conn, f, freq), ref_volume(conn, f, freq)
                assert not want.empty or f.source or f.start
                assert_frame_equal(got, want, check_dtype=False)
                if run_id:
                    net = trends.net_sentiment(conn, f, freq)
                    want_net = ref_net_counts(conn, f, freq)
                    kept = net[net["period"].isin(want_net["period"])].reset_index(drop=True)
                    assert_frame_equal(kept[["period", "n", "positive", "negative"]], want_net, check_dtype=False)
                    assert (net.loc[~net["period"].isin(want_net["period"]), "n"] == 0).all()
            if run_id:
                assert_frame_equal(trends.topic_week_negative(conn, f), ref_heat(conn, f), check_dtype=False)
        if run_id:
            neg = negative_label(run_labels(conn, run_id))
            for got, want in zip(alerts._daily(conn, feed_id, run_id, neg), ref_daily(conn, feed_id, run_id, neg)):
                assert_frame_equal(got, want, check_dtype=False)


def _rollup_rows(conn):
    return {t: sorted(conn.execute(f"SELECT * FROM {t} WHERE n != 0").fetchall())
            for t in ("day_counts", "topic_day_counts")}


@pytest.fixture
def feed(store):
    result = feeds.import_file(store, _csv(400, seed=1), "day1.csv", "markets", tz="UTC")
    assert result.n_new > 350
    return result.feed_id


def test_rollups_equal_direct_counts_through_every_kind_of_write(store, feed):
    assert_same_as_direct(store, feed, [None])
    run_a = _run(store, "a")
    _score(store, run_a, seed=2, share=0.7)  # some articles stay unscored
    assert_same_as_direct(store, feed, [None, run_a])

    feeds.set_topic_rule(store, "markets", "Banks", "Barclays, HSBC, bank")
    feeds.set_topic_rule(store, "markets", "Energy", "Shell, BP, oil")
    assert "Banks" in trends.topic_names(store, feed)
    assert_same_as_direct(store, feed, [run_a])

    feeds.set_topic_rule(store, "markets", "Banks", "HSBC")  # the rule changes: its articles are re-tagged
    feeds.delete_topic_rule(store, "markets", "Energy")
    assert "Energy" not in trends.topic_names(store, feed)
    assert_same_as_direct(store, feed, [run_a])

    run_b = _run(store, "b")  # re-scoring with another model keeps run a's numbers and adds run b's
    _score(store, run_b, seed=3)
    _score(store, run_a, seed=4, share=0.5)  # run a re-labels half its articles (upsert: an UPDATE of label)
    assert_same_as_direct(store, feed, [run_a, run_b])

    # A replaced score (INSERT OR REPLACE: a delete then an insert), a deleted score, a NULL label.
    some = [r[0] for r in store.execute("SELECT article_id FROM scores WHERE run_id = ? LIMIT 30", [run_b])]
    for article_id in some[:10]:
        store.execute("INSERT OR REPLACE INTO scores (article_id, run_id, label, confidence, negative) "
                      "VALUES (?, ?, 'negative', 0.9, 0.9)", [article_id, run_b])
    store.execute(f"DELETE FROM scores WHERE run_id = ? AND article_id IN ({','.join('?' * 10)})", [run_b, *some[10:20]])
    store.execute("UPDATE scores SET label = NULL WHERE run_id = ? AND article_id = ?", [run_b, some[25]])
    assert_same_as_direct(store, feed, [run_a, run_b])

    # A second file into the same feed (new days, with the rule topics applied on import), then a second feed.
    feeds.import_file(store, _csv(200, seed=5, first_day="2021-04-05", days=10), "day2.csv", "markets", tz="UTC")
    other = feeds.import_file(store, _csv(100, seed=6), "other.csv", "other", tz="UTC").feed_id
    _score(store, run_a, seed=7)
    assert_same_as_direct(store, feed, [None, run_a, run_b])
    assert_same_as_direct(store, other, [None, run_a])

    # What the triggers kept equals a recount from scratch.
    kept = _rollup_rows(store)
    db.rebuild_rollups(store)
    assert _rollup_rows(store) == kept


def test_a_store_made_before_the_rollups_is_backfilled_by_the_migration(home):
    """Articles, scores and topics written before migration 3 are counted when the store is next opened."""
    import sqlite_utils

    from engine import paths

    path = paths.db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite_utils.Database(path)
    old = [m for m in db.MIGRATIONS if m[0] <= 2]
    for version, step in old:
        step(raw)
        raw.execute(f"PRAGMA user_version = {version}")
    raw["feeds"].insert({"id": 1, "name": "old", "tz": "UTC"})
    for i in range(1, 21):
        raw["articles"].insert({"id": i, "feed_id": 1, "day": f"2021-01-{1 + i % 7:02d}", "title": f"t{i}",
                                "source": None if i % 3 else "Reuters"})
        raw["article_topics"].insert({"article_id": i, "topic": "Banks" if i % 2 else "Oil", "origin": "rule"})
    raw["jobs"].insert({"id": 7, "kind": "train", "status": "succeeded", "created_at": db.now()})
    for i in range(1, 16):
        raw["scores"].insert({"article_id": i, "run_id": 7, "label": LABELS[i % 3]})
    raw.conn.close()

    conn = db.connect()
    assert db.schema_version(conn) >= 3
    assert trends.count(conn, trends.Filters(1)) == 20
    assert_same_as_direct(conn, 1, [None, 7])


def test_volume_of_an_unscored_feed_and_a_period_without_articles(store, feed):
    run_id = _run(store, "nothing scored yet")
    f = trends.Filters(feed, run_id)
    vol = trends.volume(store, f, "D")
    assert set(vol["label"]) == {trends.UNSCORED}
    assert vol["n"].sum() == trends.count(store, f) > 0
    assert trends.net_sentiment(store, f).empty and trends.topic_week_negative(store, f).empty
    empty = trends.Filters(feed, run_id, "1999-01-01", "1999-12-31")
    assert trends.volume(store, empty).empty and trends.count(store, empty) == 0


# ---- topic rules: the prefiltered matcher returns exactly what the rule's regex alone returns -------------------


def test_topic_rule_matching_equals_the_plain_regex_on_tricky_text():
    import numpy as np

    rules = [feeds.TopicRule("Banks", ["Barclays", "HSBC", "bank", "J.P. Morgan"]),
             feeds.TopicRule("Energy", ["Shell", "BP", "oil"]),
             feeds.TopicRule("IBM", ["IBM", "kelvin"]),
             feeds.TopicRule("中国", ["中国银行", "Bank of China"]),
             feeds.TopicRule("Mixed", ["Müller", "ibm"]),
             feeds.TopicRule("Empty", [])]
    texts = ["Barclays profits rise", "BARCLAYS\nshares", "embankment floods", "banks rally", "the bank said",
             "Shell-shocked markets", "Shellfish prices", "bp plc", "BP's results", "soil erosion", "oil, gas",
             "ſhell long-s text", "ıbm with dotless i", "KELVIN with a Kelvin sign", "ÌBM accented", "MÜLLER AG",
             "müller ag", "中国银行发布年报", "中国银行业", "bank of china", "J.P. Morgan cuts", "JP Morgan", "",
             "İBM dotted capital I", "naïve bank", "bank_account", "x" * 500 + " hsbc", "HSBC2", "2hsbc", "\u00a0bp\u00a0"]
    text = pd.Series(texts, dtype=object)
    ids = np.arange(100, 100 + len(texts), dtype=np.int64)
    want = [(int(i), r.name, "rule") for r in rules if r.keywords
            for i in ids[text.map(lambda t, p=r.pattern(): bool(p.search(t))).to_numpy(dtype=bool)]]
    got = feeds._rule_matches(rules, ids, text)
    assert got == want
    assert (texts.index("ſhell long-s text") + 100, "Energy", "rule") in got  # Python's case rules, kept
    assert (texts.index("embankment floods") + 100, "Banks", "rule") not in got


def test_a_large_import_counts_its_articles_in_bulk_and_puts_the_triggers_back(store, monkeypatch):
    """Above feeds.BULK_FTS_FROM new articles the per-row triggers are set aside and the range counted at once."""
    monkeypatch.setattr(feeds, "BULK_FTS_FROM", 50)
    feeds.import_file(store, _csv(60, seed=8), "small.csv", "bulk", tz="UTC")
    feeds.set_topic_rule(store, "bulk", "Banks", "Barclays, HSBC, bank")  # applied on the next import too
    run_id = _run(store, "a")
    _score(store, run_id, seed=9)
    # An orphan score for an id the next import will use: counted exactly as the per-row trigger would count it.
    next_id = store.execute("SELECT MAX(id) + 1 FROM articles").fetchone()[0]
    store.execute("INSERT INTO scores (article_id, run_id, label) VALUES (?, ?, 'negative')", [next_id, run_id])
    triggers = {r[0] for r in store.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    result = feeds.import_file(store, _csv(300, seed=10, first_day="2021-03-20"), "big.csv", "bulk", tz="UTC")
    assert result.n_new > 250
    assert {r[0] for r in store.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")} == triggers
    assert_same_as_direct(store, result.feed_id, [None, run_id])
    kept = _rollup_rows(store)
    db.rebuild_rollups(store)
    assert _rollup_rows(store) == kept
    # The triggers are back: a small import afterwards is counted row by row.
    monkeypatch.setattr(feeds, "BULK_FTS_FROM", 10_000)
    feeds.import_file(store, _csv(20, seed=11, first_day="2021-05-01", days=3), "late.csv", "bulk", tz="UTC")
    assert_same_as_direct(store, result.feed_id, [None, run_id])
