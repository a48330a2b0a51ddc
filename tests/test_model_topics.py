"""Topics from a trained topic classifier run: the score job with {"purpose": "topics"}, the rollups, the Monitor's
topic filter, `python -m engine topics classify --wait`, and the Feeds page's Tag topics button."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine import db
from engine.monitor import feeds
from engine.cli.job import runner_for
from engine.jobs import queue
from engine.jobs import supervisor
from engine.monitor import scoring
from engine.monitor import feedjobs
from engine.monitor import topics
from engine.monitor import trends
from engine.errors import NotFound, UserError
from tests.conftest import ROOT
from tests.helpers import build_tiny_model, make_finished_run
from tests.helpers import feed_csv as _csv
from tests.helpers import open_page
from tests.test_monitor import FakeContext

TOPICS = ["earnings", "M&A", "macro"]


@pytest.fixture(scope="module")
def topic_models(tmp_path_factory):
    """Two tiny topic classifiers with different random weights (so they disagree on some articles)."""
    return [build_tiny_model(tmp_path_factory.mktemp(f"topics-{seed}"), TOPICS, seed=seed) for seed in (0, 1)]


HEADLINES = [("2020-07-0%d" % (1 + i % 3), t) for i, t in enumerate([
    "Bank profits beat forecasts", "Acme agrees to buy Widget Corp", "Inflation rises faster than expected",
    "Bank shares slide on weak quarter", "Fed holds rates steady", "Oil major reports record earnings",
    "Merger talks between two lenders collapse", "Jobless claims fall", "Chipmaker misses revenue estimates",
    "Private equity firm takes retailer private", "GDP growth slows in second quarter", "Bank raises dividend"])]


def _feed(store):
    feeds.import_file(store, _csv(HEADLINES), "a.csv", "wire")
    feeds.set_topic_rule(store, "wire", "Banks", "bank")  # 3 articles: a rule topic that must survive
    return feeds.get_feed(store, "wire")["id"]


def _model_rows(store):
    return store.execute("SELECT article_id, topic, run_id FROM article_topics WHERE origin = 'model' "
                         "ORDER BY article_id").fetchall()


def _rollup_matches_direct(store, feed_id):
    """topic_day_counts (kept by triggers) equals a direct count of article_topics per topic and day."""
    rolled = dict(((t, d), n) for t, d, n in store.execute(
        "SELECT topic, day, SUM(n) FROM topic_day_counts WHERE feed_id = ? AND run_id = 0 GROUP BY 1, 2 "
        "HAVING SUM(n) > 0", [feed_id]))
    direct = dict(((t, d), n) for t, d, n in store.execute(
        "SELECT t.topic, a.day, COUNT(*) FROM article_topics t JOIN articles a ON a.id = t.article_id "
        "WHERE a.feed_id = ? GROUP BY 1, 2", [feed_id]))
    assert rolled == direct
    return direct


def test_topics_job_tags_untagged_articles_replaces_another_run_and_keeps_rule_topics(store, topic_models):
    feed_id = _feed(store)
    first = make_finished_run(store, topic_models[0])
    second = make_finished_run(store, topic_models[1])
    job_id = topics.enqueue(store, "wire", first)
    job = queue.get(store, job_id)
    assert (job["kind"], job["status"], job["config"]["purpose"]) == ("score", "queued", "topics")
    assert topics.enqueue(store, "wire", first) == job_id  # queued once per feed and run
    assert trends.runs_for_feed(store, feed_id) == []  # a topics job does not make its run a sentiment model
    sentiment_job = scoring.enqueue(store, "wire", first)
    assert sentiment_job != job_id  # a sentiment job with the same run is a different job
    store.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", [sentiment_job])

    ctx = FakeContext()
    metrics = runner_for(job)(store, job, ctx)  # a score job's runner: engine.monitor.topics for this purpose
    assert metrics["tagged"] == 12 and sum(metrics["topics"].values()) == 12
    assert ctx.rows[0]["total_steps"] == 12 and ctx.rows[-1]["step"] == 12
    rows = _model_rows(store)
    assert {t for _, t, _ in rows} <= set(TOPICS) and {r for _, _, r in rows} == {first}
    assert len({a for a, _, _ in rows}) == 12
    assert store["scores"].count == 0  # topics, not scores
    assert store.execute("SELECT COUNT(*) FROM article_topics WHERE origin = 'rule'").fetchone()[0] == 3
    counts = _rollup_matches_direct(store, feed_id)
    assert sum(n for (t, _), n in counts.items() if t in TOPICS) == 12

    # The Monitor's topic filter lists the model topics, and filtering by one counts its articles.
    predicted = sorted({t for _, t, _ in rows})
    assert set(trends.topic_names(store, feed_id)) == set(predicted) | {"Banks"}
    t0 = predicted[0]
    f = trends.Filters(feed_id, None, None, None, t0, None)
    assert trends.count(store, f) == sum(1 for _, t, _ in rows if t == t0)

    # A re-run with the same run tags only new articles.
    assert runner_for(job)(store, job, FakeContext())["tagged"] == 0
    feeds.import_file(store, _csv([("2020-07-04", "Takeover bid for brewer")]), "b.csv", "wire")
    assert topics.count_untagged(store, feed_id, first) == 1
    assert runner_for(job)(store, job, FakeContext())["tagged"] == 1

    # Another run replaces the feed's model topics; the rule topic stays.
    other = queue.get(store, topics.enqueue(store, "wire", second))
    metrics = runner_for(other)(store, other, FakeContext())
    assert metrics["tagged"] == 13 and metrics["replaced"] == 13
    rows = _model_rows(store)
    assert len(rows) == 13 and {r for _, _, r in rows} == {second}
    assert topics.model_topic_runs(store, feed_id) == [second]
    assert store.execute("SELECT COUNT(*) FROM article_topics WHERE origin = 'rule'").fetchone()[0] == 3
    _rollup_matches_direct(store, feed_id)


def test_topics_job_cancel_keeps_committed_chunks(store, topic_models, monkeypatch):
    feed_id = _feed(store)
    run_id = make_finished_run(store, topic_models[0])
    monkeypatch.setattr(feedjobs, "CHUNK", 5)
    job = queue.get(store, topics.enqueue(store, "wire", run_id))
    with pytest.raises(Exception, match="cancelled after 5 of 12"):
        runner_for(job)(store, job, FakeContext(cancel_after_checks=1))
    assert topics.count_untagged(store, feed_id, run_id) == 7
    assert runner_for(job)(store, job, FakeContext())["tagged"] == 7


def test_topics_enqueue_refuses_a_missing_or_unfinished_run_and_changes_nothing(store, topic_models):
    _feed(store)
    before = db.table_counts(store)
    with pytest.raises(NotFound, match="no training run 999"):
        topics.enqueue(store, "wire", 999)
    failed = make_finished_run(store, topic_models[0])
    store.execute("UPDATE jobs SET status = 'failed' WHERE id = ?", [failed])
    before = db.table_counts(store)
    with pytest.raises(UserError, match="not finished"):
        topics.enqueue(store, "wire", failed)
    with pytest.raises(UserError):
        topics.enqueue(store, "nope", failed)
    assert db.table_counts(store) == before


@pytest.mark.process
def test_cli_topics_classify_wait(home, store, topic_models):
    feed_id = _feed(store)
    run_id = make_finished_run(store, topic_models[0])
    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_DEVICE_SLOT": "cpu"}
    out = subprocess.run([sys.executable, "-m", "engine", "topics", "classify", "--feed", "wire", "--run", str(run_id),
                          "--wait"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=240)
    try:
        assert out.returncode == 0, out.stderr
        job_id = int(out.stdout.strip().splitlines()[-1])
        assert "12 articles tagged with topics" in out.stderr
        assert queue.get(store, job_id)["status"] == "succeeded"
        assert len(_model_rows(store)) == 12
        listed = subprocess.run([sys.executable, "-m", "engine", "topics", "list", "--feed", "wire"], cwd=ROOT,
                                capture_output=True, text=True, env=env, timeout=60)
        assert {line.split()[0] for line in listed.stdout.splitlines()} & set(TOPICS)
        assert set(trends.topic_names(store, feed_id)) - {"Banks"} <= set(TOPICS)
    finally:
        sup = supervisor.supervisor_alive(store)
        if sup:
            os.kill(sup["pid"], 15)
    bad = subprocess.run([sys.executable, "-m", "engine", "topics", "classify", "--feed", "wire", "--run", "999"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "no training run 999" in bad.stderr


def test_feeds_page_tag_topics_button_queues_a_topics_job(home, store, topic_models, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    started = []
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: started.append(1) or 0)
    _feed(store)
    run_id = make_finished_run(store, topic_models[0])
    at = open_page("feeds")  # renders without an exception
    page = "\n".join(str(c.value) for c in at.caption)
    assert "Labels: earnings, M&A, macro" in page
    assert f"12 articles not yet tagged by run {run_id}." in page
    next(b for b in at.button if b.label == "Tag topics").click().run()
    assert not at.exception, at.exception
    job = store.execute("SELECT id, status, model_run_id, json_extract(config_json, '$.purpose') FROM jobs "
                        "WHERE kind = 'score'").fetchone()
    assert job[1:] == ("queued", run_id, "topics")
    assert started == [1]
    assert job[0] == 2_000_001  # topics jobs are numbered on their own: the first is "topics job 1"
    assert "Topics job 1 queued" in "\n".join(str(s.value) for s in at.success)
    assert any(f"Topics job 1 · run {run_id} · **queued** · topics" in str(p.proto) for p in at.get("progress"))
