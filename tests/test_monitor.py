"""Scoring jobs, trend numbers against a hand computation, surge alerts, and the feed/alerts commands."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from engine import db
from engine.jobs import runs
from engine.monitor import alerts
from engine.monitor import feeds
from engine.jobs import queue
from engine.jobs import supervisor
from engine.jobs import process
from engine.cli.job import run_job
from engine.monitor import scoring
from engine.monitor import feedjobs
from engine.monitor import trends
from engine.errors import UserError
from tests.conftest import ROOT
from tests.helpers import feed_csv as _csv
from tests.helpers import make_finished_run


class FakeContext:
    """What the job queue gives a runner, recorded for the test."""

    def __init__(self, cancel_after_checks: int | None = None):
        self.rows: list[dict] = []
        self.checks = 0
        self.cancel_after = cancel_after_checks
        self.log = logging.getLogger("test.scoring")

    def progress(self, **columns):
        self.rows.append(columns)

    def should_cancel(self) -> bool:
        self.checks += 1
        return self.cancel_after is not None and self.checks > self.cancel_after


@pytest.fixture
def run_id(store, tiny_text_model):
    return make_finished_run(store, tiny_text_model, metrics={"accuracy": 0.8, "macro_f1": 0.75})


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def test_score_runner_scores_each_article_once_with_label_probs_and_progress(store, run_id, shared):
    path = shared("news", "reuters_headlines.csv")
    result = feeds.import_file(store, path.read_bytes(), path.name, "news")
    job = {"id": None, "feed_id": result.feed_id, "model_run_id": run_id, "config_json": None}
    ctx = FakeContext()
    metrics = scoring.run(store, job, ctx)
    assert metrics["scored"] == 499
    rows = store.execute("SELECT label, confidence, negative, probs_json, run_id, scored_at FROM scores").fetchall()
    assert len(rows) == 499
    for label, confidence, negative, probs_json, rid, scored_at in rows[:20]:
        probs = json.loads(probs_json)
        assert set(probs) == {"negative", "neutral", "positive"}
        assert label == max(probs, key=probs.get)
        assert confidence == pytest.approx(probs[label], abs=1e-5)
        assert negative == pytest.approx(probs["negative"], abs=1e-5)
        assert rid == run_id and scored_at
    assert [r["kind"] for r in ctx.rows] == ["score"] * len(ctx.rows)
    assert ctx.rows[0]["total_steps"] == 499 and ctx.rows[-1]["step"] == 499
    # Only new articles are scored next time.
    again = scoring.run(store, job, FakeContext())
    assert again["scored"] == 0
    feeds.import_file(store, _csv([("2020-07-20", "A brand new headline")]), "n.csv", "news")
    assert scoring.run(store, job, FakeContext())["scored"] == 1
    # A second model keeps its own scores beside the first (history is kept).
    other = make_finished_run(store, runs.for_scoring(store, run_id)["model_dir"])
    scoring.run(store, {**job, "model_run_id": other}, FakeContext())
    assert store.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 1000


def test_scores_match_the_predictor_for_the_same_text(store, run_id):
    from engine.models import inference

    titles = ["Profit soars", "Shares plunge after a long and painful warning about the outlook", "Flat"]
    result = feeds.import_file(store, _csv([("2020-07-01", t) for t in titles]), "a.csv", "f")
    scoring.run(store, {"id": 7, "feed_id": result.feed_id, "model_run_id": run_id}, FakeContext())
    expected = inference.load(runs.for_scoring(store, run_id)["model_dir"]).predict(titles)
    got = store.execute("SELECT a.title, s.label, s.confidence, s.job_id FROM scores s JOIN articles a ON a.id = s.article_id").fetchall()
    by_title = {t: (label, conf, job) for t, label, conf, job in got}
    for title, pred in zip(titles, expected):
        assert by_title[title][0] == pred.label
        assert by_title[title][1] == pytest.approx(pred.confidence, abs=1e-5)
        assert by_title[title][2] == 7


def test_cancel_keeps_the_finished_chunks_and_a_rerun_scores_only_the_rest(store, run_id, monkeypatch):
    monkeypatch.setattr(feedjobs, "CHUNK", 5)
    result = feeds.import_file(store, _csv([("2020-07-01", f"Headline number {i}") for i in range(12)]), "a.csv", "f")
    job = {"id": 1, "feed_id": result.feed_id, "model_run_id": run_id}
    with pytest.raises(process.Cancelled):
        scoring.run(store, job, FakeContext(cancel_after_checks=1))
    assert store["scores"].count == 5
    assert scoring.run(store, job, FakeContext())["scored"] == 7
    assert store["scores"].count == 12


def test_an_unfinished_or_missing_run_is_refused_in_plain_words(store, tiny_text_model):
    feeds.import_file(store, _csv([("2020-07-01", "x")]), "a.csv", "f")
    with pytest.raises(UserError, match="no training run 999"):
        scoring.enqueue(store, "f", 999)
    running = make_finished_run(store, tiny_text_model)
    store.execute("UPDATE jobs SET status = 'running' WHERE id = ?", [running])
    with pytest.raises(UserError, match="not finished"):
        scoring.enqueue(store, "f", running)
    with pytest.raises(UserError, match="no feed called 'nope'"):
        scoring.enqueue(store, "nope", running)
    assert store.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score'").fetchone()[0] == 0


def test_score_job_through_the_queue_succeeds_with_progress_and_alerts(store, run_id):
    result = feeds.import_file(store, _csv([("2020-07-01", f"Headline {i}") for i in range(30)]), "a.csv", "f")
    job_id = scoring.enqueue(store, "f", run_id, created_by="ann")
    assert scoring.enqueue(store, "f", run_id) == job_id  # already queued: not queued twice
    assert run_job(job_id) == 0
    job = queue.get(store, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["scored"] == 30 and job["metrics"]["run_id"] == run_id
    progress = queue.progress_rows(store, job_id, kind="score")
    assert progress[-1]["step"] == 30 and progress[-1]["total_steps"] == 30
    assert store.execute("SELECT COUNT(*) FROM scores WHERE job_id = ?", [job_id]).fetchone()[0] == 30
    assert [r["run_id"] for r in trends.runs_for_feed(store, result.feed_id)] == [run_id]


def test_score_job_records_its_precision_and_times_and_fast_agrees_with_exact(store, run_id, monkeypatch):
    from engine.models import inference

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")  # as on a CPU with native bfloat16, whatever this one has
    monkeypatch.setattr(inference, "_CACHE", type(inference._CACHE)())  # the job loads its model, as in a new process
    titles = [f"Headline {i} about {w}" for i, w in enumerate(["profits", "losses", "a merger", "rates"] * 5)]
    feeds.import_file(store, _csv([("2020-07-01", t) for t in titles]), "a.csv", "f")
    fast = scoring.enqueue(store, "f", run_id)
    assert queue.get(store, fast)["config"]["precision"] == "fast"  # the default
    assert run_job(fast) == 0
    m = queue.get(store, fast)["metrics"]
    assert (m["precision"], m["dtype"], m["device"]) == ("fast", "bfloat16", "cpu")
    assert m["scored"] == 20 and m["load_s"] > 0 and m["score_s"] > 0
    assert m["seconds"] == pytest.approx(m["load_s"] + m["score_s"], abs=0.01)
    # articles/s counts the scoring (read, score, write), not the model load; score_s is rounded to the millisecond
    assert 20 / (m["score_s"] + 0.0006) <= m["articles_per_s"] <= 20 / max(m["score_s"] - 0.0006, 1e-9)
    # The same feed again in float32 under another run id: almost every label agrees.
    other = make_finished_run(store, runs.for_scoring(store, run_id)["model_dir"])
    exact = scoring.enqueue(store, "f", other, precision="exact")
    assert run_job(exact) == 0
    assert queue.get(store, exact)["metrics"]["dtype"] == "float32"
    pairs = store.execute("SELECT a.label, b.label, a.confidence, b.confidence FROM scores a JOIN scores b "
                          "ON a.article_id = b.article_id AND a.run_id = ? AND b.run_id = ?", [run_id, other]).fetchall()
    assert len(pairs) == 20
    assert all(abs(c1 - c2) < 0.02 for _, _, c1, c2 in pairs)
    with pytest.raises(UserError, match="Precision must be 'fast' or 'exact'"):
        scoring.enqueue(store, "f", run_id, precision="int4")


@pytest.mark.process
def test_cli_feed_score_wait_runs_the_job_through_the_supervisor(home, store, run_id):
    feeds.import_file(store, _csv([("2020-07-01", f"Headline {i}") for i in range(10)]), "a.csv", "f")
    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_DEVICE_SLOT": "cpu"}
    out = subprocess.run([sys.executable, "-m", "engine", "feed", "score", "--feed", "f", "--run", str(run_id), "--wait",
                          "--precision", "exact"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=240)
    try:
        assert out.returncode == 0, out.stderr
        job_id = int(out.stdout.strip().splitlines()[-1])
        assert "10 articles scored" in out.stderr
        assert queue.get(store, job_id)["status"] == "succeeded"
        assert queue.get(store, job_id)["metrics"]["dtype"] == "float32"
        assert store["scores"].count == 10
    finally:
        sup = supervisor.supervisor_alive(store)
        if sup:
            os.kill(sup["pid"], 15)


# ---------------------------------------------------------------------------------------------------------------
# Trends against a hand computation


def _score(store, run_id: int, labels_by_title: dict[str, str]) -> None:
    rows = store.execute("SELECT id, title FROM articles").fetchall()
    for article_id, title in rows:
        if title in labels_by_title:
            label = labels_by_title[title]
            store["scores"].insert({"article_id": article_id, "run_id": run_id, "label": label, "confidence": 0.9,
                                    "negative": 0.9 if label == "negative" else 0.05, "probs_json": "{}",
                                    "scored_at": db.now()})


SMALL = [
    # day, title, label (None: not scored)
    ("2020-07-06", "Bank profits rise", "positive"),
    ("2020-07-06", "Retail sales up", "positive"),
    ("2020-07-06", "Bank fined for fraud", "negative"),
    ("2020-07-06", "Markets flat", "neutral"),
    ("2020-07-07", "Bank shares crash", "negative"),
    ("2020-07-07", "Oil slumps", "negative"),
    ("2020-07-09", "Tech gains", "positive"),
    ("2020-07-09", "Bond yields steady", "neutral"),
    ("2020-07-09", "Bank holds rates", "neutral"),
    ("2020-07-09", "Unscored headline", None),
    ("2020-07-13", "Bank rebounds", "positive"),
    ("2020-07-13", "Factory orders drop", "negative"),
]


@pytest.fixture
def small_feed(store, run_id):
    result = feeds.import_file(store, _csv([(d, t) for d, t, _ in SMALL]), "small.csv", "small")
    feeds.set_topic_rule(store, "small", "Banks", "bank")
    _score(store, run_id, {t: label for _, t, label in SMALL if label})
    return trends.Filters(result.feed_id, run_id)


def test_daily_volume_and_net_sentiment_match_a_hand_computation(store, small_feed):
    wide = trends.volume_wide(store, small_feed, "D").set_index("period")
    assert wide.loc["2020-07-06", ["positive", "negative", "neutral"]].tolist() == [2, 1, 1]
    assert wide.loc["2020-07-09", ["positive", "neutral", "unscored"]].tolist() == [1, 2, 1]
    net = trends.net_sentiment(store, small_feed, "D", window=2).set_index("period")
    # Hand computation: 07-06 (2-1)/4 = 0.25; 07-07 (0-2)/2 = -1; 07-08 no articles; 07-09 (1-0)/3; 07-13 (1-1)/2 = 0.
    assert net.loc["2020-07-06", "net"] == pytest.approx(0.25)
    assert net.loc["2020-07-07", "net"] == pytest.approx(-1.0)
    assert math.isnan(net.loc["2020-07-08", "net"]) and net.loc["2020-07-08", "n"] == 0
    assert net.loc["2020-07-09", "net"] == pytest.approx(1 / 3)
    assert net.loc["2020-07-13", "net"] == pytest.approx(0.0)
    # Rolling mean over 2 days of the days that have articles.
    assert net.loc["2020-07-07", "rolling"] == pytest.approx((0.25 - 1.0) / 2)
    assert net.loc["2020-07-08", "rolling"] == pytest.approx(-1.0)
    assert net.loc["2020-07-09", "rolling"] == pytest.approx(1 / 3)
    assert len(net) == 8  # 6 July to 13 July, every day on the axis


def test_weekly_trends_topic_heatmap_filters_and_drilldown(store, small_feed):
    weekly = trends.net_sentiment(store, small_feed, "W").set_index("period")
    # Week of Monday 6 July: 9 scored, 3 positive, 3 negative -> 0; week of 13 July: 2 scored, 1 and 1 -> 0.
    assert weekly.loc["2020-07-06", ["n", "positive", "negative"]].tolist() == [9, 3, 3]
    assert weekly.loc["2020-07-13", "n"] == 2
    heat = trends.topic_week_negative(store, small_feed).set_index(["topic", "week"])
    # Banks: week 1 -> profits rise (+), fined (-), crash (-), holds (neu): 2/4; week 2 -> rebounds (+): 0/1.
    assert heat.loc[("Banks", "2020-07-06"), "share"] == pytest.approx(0.5)
    assert heat.loc[("Banks", "2020-07-13"), "share"] == pytest.approx(0.0)
    banks = trends.net_sentiment(store, trends.Filters(small_feed.feed_id, small_feed.run_id, topic="Banks"), "D")
    assert banks.set_index("period").loc["2020-07-07", "net"] == pytest.approx(-1.0)
    ranged = trends.Filters(small_feed.feed_id, small_feed.run_id, start="2020-07-07", end="2020-07-09")
    assert trends.count(store, ranged) == 6
    drill = trends.drilldown(store, small_feed, "2020-07-06")
    assert drill["title"].tolist()[0] == "Bank fined for fraud"  # most negative first
    assert drill["label"].tolist()[0] == "negative"
    drill_topic = trends.drilldown(store, small_feed, "2020-07-06", topic="Banks")
    assert sorted(drill_topic["title"]) == ["Bank fined for fraud", "Bank profits rise"]
    table = trends.trend_table(store, small_feed, "D")
    assert table.set_index("period").loc["2020-07-06", "total"] == 4
    assert set(table["model_run"]) == {small_feed.run_id}


@pytest.mark.process
def test_cli_trends_json_and_csv(home, store, small_feed):
    env = {**os.environ, "BELLWETHER_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "engine", "feed", "trends", "--feed", "small", "--freq", "W",
                          "--run", str(small_feed.run_id), "--format", "json"],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["model_run"] == small_feed.run_id
    assert [(r["period"], r["total"], r["net"]) for r in payload["rows"]] == [("2020-07-06", 10, 0.0), ("2020-07-13", 2, 0.0)]
    out = subprocess.run([sys.executable, "-m", "engine", "feed", "trends", "--feed", "small", "--topic", "Banks"],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(__import__("io").StringIO(out.stdout))
    assert frame["total"].sum() == 5


# ---------------------------------------------------------------------------------------------------------------
# Alerts


def _daily_feed(store, run_id, negatives_per_day: list[int], per_day: int = 20, bank_surge: bool = False):
    rows, labels = [], {}
    start = pd.Timestamp("2020-06-01")
    for d, n_neg in enumerate(negatives_per_day):
        day = (start + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
        for i in range(per_day):
            negative = i < n_neg
            title = f"{'Bank' if negative and bank_surge and d == len(negatives_per_day) - 1 else 'Firm'} story {d}-{i}"
            rows.append((day, title))
            labels[title] = "negative" if negative else ("positive" if i % 2 else "neutral")
    result = feeds.import_file(store, _csv(rows), "daily.csv", "daily")
    feeds.set_topic_rule(store, "daily", "Banks", "bank")
    _score(store, run_id, labels)
    return result.feed_id


def test_flat_feed_raises_no_alert(store, run_id):
    feed_id = _daily_feed(store, run_id, [4] * 21)
    assert alerts.evaluate(store, feed_id, run_id) == []
    assert store["alerts"].count == 0


def test_surge_fires_an_overall_and_a_topic_alert_with_the_articles_that_drove_it(store, run_id):
    feed_id = _daily_feed(store, run_id, [4] * 20 + [12], bank_surge=True)
    fired = alerts.evaluate(store, feed_id, run_id)
    overall = [a for a in fired if a["topic"] is None]
    assert len(overall) == 1
    alert = overall[0]
    assert (alert["window_start"], alert["window_end"]) == ("2020-06-21", "2020-06-21")
    assert alert["negative_share"] == pytest.approx(12 / 20)
    assert alert["baseline_mean"] == pytest.approx(0.2) and alert["baseline_std"] == pytest.approx(0.0)
    assert alert["magnitude"] == pytest.approx((0.6 - 0.2) / alerts.MIN_STD)
    assert alert["n_articles"] == 20
    rule = json.loads(alert["rule_json"])
    assert (rule["window_days"], rule["baseline_days"], rule["k"], rule["reason"]) == (1, 14, 3.0, "k_std")
    driver_titles = {r[0] for r in store.execute(
        f"SELECT title FROM articles WHERE id IN ({','.join('?' * len(json.loads(alert['article_ids_json'])))})",
        json.loads(alert["article_ids_json"]))}
    assert driver_titles == {f"Bank story 20-{i}" for i in range(12)}
    # The topic 'Banks' only has articles on the surge day: no baseline, so only an absolute threshold could fire it.
    assert [a for a in fired if a["topic"] == "Banks"] == []
    alerts.set_rule(store, feed_id, abs_threshold=0.9)
    fired = alerts.evaluate(store, feed_id, run_id)
    banks = [a for a in fired if a["topic"] == "Banks"]
    assert len(banks) == 1 and json.loads(banks[0]["rule_json"])["reason"] == "absolute"


def test_acknowledged_alerts_are_kept_and_rule_changes_are_stored(store, run_id):
    feed_id = _daily_feed(store, run_id, [4] * 20 + [12])
    alerts.evaluate(store, feed_id, run_id)
    [alert] = alerts.list_alerts(store, feed_id, run_id)
    alerts.acknowledge(store, alert["id"], "ann")
    # Stricter rule: the surge no longer fires, but the acknowledged alert stays as history.
    rule = alerts.set_rule(store, feed_id, k=25, min_articles=5)
    assert alerts.get_rule(store, feed_id) == {**alerts.DEFAULTS, "k": 25.0, "min_articles": 5}
    assert rule["k"] == 25.0
    assert alerts.evaluate(store, feed_id, run_id) == []
    kept = alerts.list_alerts(store, feed_id, run_id)
    assert [(a["id"], a["acknowledged_by"]) for a in kept] == [(alert["id"], "ann")]
    # A minimum article count above the day's volume silences it too.
    alerts.set_rule(store, feed_id, k=3, min_articles=50)
    assert alerts.evaluate(store, feed_id, run_id) == []
    with pytest.raises(UserError, match="k"):
        alerts.set_rule(store, feed_id, k=-1)
    with pytest.raises(UserError, match="threshold"):
        alerts.set_rule(store, feed_id, abs_threshold=3)


def test_detect_over_a_longer_window(store):
    daily = pd.DataFrame({"day": pd.date_range("2020-01-01", periods=30).strftime("%Y-%m-%d"),
                          "n": [10] * 30, "negative": [2, 3] * 13 + [2, 3, 9, 9]})
    fired = alerts.detect(daily, {"window_days": 2, "baseline_days": 14, "k": 3, "min_articles": 10})
    # The last two days (9 + 9 of 20) against daily shares alternating 0.2/0.3 (mean 0.25, sd ~0.052).
    # Window ending 29 Jan: (3 + 9) / 20 = 0.6 > 0.25 + 3 * 0.052; ending 30 Jan: 0.9. Earlier windows: 0.25.
    assert fired["window_end"].tolist() == ["2020-01-29", "2020-01-30"]
    assert fired.iloc[0]["negative_share"] == pytest.approx(0.6)
    assert fired.iloc[0]["baseline_mean"] == pytest.approx(0.25)
    assert fired.iloc[0]["baseline_std"] == pytest.approx(pd.Series([0.2, 0.3] * 7).std())
    last = fired.iloc[-1]
    assert last["window_start"] == "2020-01-29" and last["negative_share"] == pytest.approx(0.9)


@pytest.mark.process
def test_cli_alerts_json(home, store, run_id):
    _daily_feed(store, run_id, [4] * 20 + [12])
    env = {**os.environ, "BELLWETHER_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "engine", "alerts", "--feed", "daily", "--run", str(run_id),
                          "--format", "json"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert [a["window_end"] for a in payload["alerts"]] == ["2020-06-21"]
    assert payload["rule"]["baseline_days"] == 14
    out = subprocess.run([sys.executable, "-m", "engine", "alerts", "--feed", "nope"], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 2 and "no feed called 'nope'" in out.stderr


def test_cli_feed_score_with_a_run_without_a_negative_class_says_so(home, store, tmp_path, capsys):
    from engine.cli.main import main
    from tests.helpers import build_tiny_model

    feeds.import_file(store, _csv([("2020-07-01", "Quarterly results beat")]), "a.csv", "f")
    topic = make_finished_run(store, build_tiny_model(tmp_path / "topics", ["earnings", "macro"]))
    assert main(["feed", "score", "--feed", "f", "--run", str(topic), "--no-worker"]) == 0
    err = capsys.readouterr().err
    assert f"Note: run {topic}'s labels (earnings, macro) have no negative class" in err
    assert store.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score' AND status = 'queued'").fetchone()[0] == 1
