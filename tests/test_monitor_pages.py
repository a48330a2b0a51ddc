"""The Feeds and Monitor pages through Streamlit's AppTest: empty store, upload and import, topics, search, score
button, charts, drill-down, alerts with acknowledge, rule editing, exports."""

from __future__ import annotations

import pandas as pd
import pytest

from engine import db
from engine.monitor import alerts
from engine.monitor import feeds
from engine.jobs import supervisor
from tests.helpers import feed_csv as _csv
from tests.helpers import make_finished_run, open_page, texts


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    return open_page


def by_label(items, label):
    return next(i for i in items if i.label == label)


def _surge_feed(store, run_id):
    """21 days of 20 articles, 4 negative a day, then 12 negative on the last day ('Bank' stories)."""
    rows, labels = [], {}
    for d in range(21):
        day = (pd.Timestamp("2020-06-01") + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
        n_neg = 12 if d == 20 else 4
        for i in range(20):
            title = f"{'Bank' if d == 20 and i < n_neg else 'Firm'} story {d}-{i}"
            rows.append((day, title))
            labels[title] = "negative" if i < n_neg else ("positive" if i % 2 else "neutral")
    feeds.import_file(store, _csv(rows), "daily.csv", "daily")
    feeds.set_topic_rule(store, "daily", "Banks", "bank")
    for article_id, title in store.execute("SELECT id, title FROM articles").fetchall():
        label = labels[title]
        store["scores"].insert({"article_id": article_id, "run_id": run_id, "label": label, "confidence": 0.9,
                                "negative": 0.95 if label == "negative" else 0.02, "probs_json": "{}",
                                "scored_at": db.now()})
    feed_id = feeds.get_feed(store, "daily")["id"]
    alerts.evaluate(store, feed_id, run_id)
    return feed_id


# ---------------------------------------------------------------------------------------------------------------
# Feeds page


def test_feeds_page_on_an_empty_store_invites_an_upload(app):
    at = app("views/feeds.py")
    assert "No feeds yet" in texts(at)
    assert at.selectbox[0].options == ["+ New feed"]


def test_feeds_page_upload_maps_columns_and_imports_the_real_cnbc_file(app, store, shared):
    data = shared("news", "cnbc_headlines.csv").read_bytes()
    at = app("views/feeds.py")
    at.text_input(key="new_feed_name").set_value("markets").run()
    at.file_uploader[0].set_value(("cnbc_headlines.csv", data, "text/csv")).run()
    assert not at.exception and not at.error
    assert by_label(at.selectbox, "Published time").value == "Time"
    assert by_label(at.selectbox, "Title or headline").value == "Headlines"
    assert by_label(at.selectbox, "Body or description (optional)").value == "Description"
    assert by_label(at.selectbox, "URL (optional)").value == "(none)"
    by_label(at.button, "Import into feed").click().run()
    assert not at.exception
    assert "453 new articles in 'markets', 0 duplicates skipped, 0 rows rejected, 1983 blank rows ignored." in texts(at)
    assert store["articles"].count == 453
    assert at.selectbox(key="feed_choice").value == "markets"


def test_feeds_page_reports_rejected_rows_and_a_bad_file_plainly(app, store):
    at = app("views/feeds.py")
    at.text_input(key="new_feed_name").set_value("f").run()
    at.file_uploader[0].set_value(("x.csv", b"published,headline\n2020-07-01,Up\nsoon,Down\n", "text/csv")).run()
    by_label(at.button, "Import into feed").click().run()
    assert "1 new articles" in texts(at) and "1 without a readable time" in texts(at)
    shown = at.dataframe[0].value
    assert shown["value"].tolist() == ["soon"] and shown["row"].tolist() == [3]
    at.file_uploader[0].set_value(("e.csv", b"", "text/csv")).run()
    assert any("empty" in e.value for e in at.error)
    assert store["articles"].count == 1


def test_feeds_page_topic_rules_search_and_score_button(app, store, tiny_text_model, monkeypatch):
    started = []
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: started.append(1) or 0)
    feeds.import_file(store, _csv([("2020-07-01", "Bank profits rise"), ("2020-07-01", "Oil slumps"),
                                   ("2020-07-02", "银行板块下跌")]), "a.csv", "f")
    run_id = make_finished_run(store, tiny_text_model)
    at = app("views/feeds.py")
    assert "No finished sentiment run" not in texts(at)
    at.text_input(key=next(t.key for t in at.text_input if t.label == "Topic name")).set_value("Banks")
    next(t for t in at.text_input if t.label.startswith("Keywords")).set_value("bank, 银行")
    next(b for b in at.button if b.label == "Save topic").click().run()
    assert not at.exception
    assert "Topic 'Banks' saved: 2 articles tagged." in texts(at)
    topics = next(d.value for d in at.dataframe if "topic" in d.value.columns)
    assert topics.set_index("topic").loc["Banks", "articles"] == 2
    at.text_input(key="feed_search").set_value("oil").run()
    assert next(d.value for d in at.dataframe if "title" in d.value.columns)["title"].tolist() == ["Oil slumps"]
    assert "3 articles not yet scored by run" in texts(at)
    precision = by_label(at.selectbox, "Precision")
    assert precision.value == "fast" and precision.options == ["Fast (recommended)", "Exact (float32)"]
    precision.set_value("exact")
    by_label(at.button, "Score").click().run()
    assert not at.exception
    job = store.execute("SELECT id, kind, status, feed_id, model_run_id, json_extract(config_json, '$.precision') "
                        "FROM jobs WHERE kind = 'score'").fetchone()
    assert job[1:] == ("score", "queued", 1, run_id, "exact")
    assert started == [1]
    assert "Scoring job 1 queued." in texts(at)  # its own numbering, not its id (1000001)
    assert any(f"Scoring job 1 · run {run_id} · **queued**" in str(p.proto) for p in at.get("progress"))


# ---------------------------------------------------------------------------------------------------------------
# Monitor page


def test_monitor_page_on_an_empty_store(app):
    at = app("views/monitor.py")
    assert "No feeds yet" in texts(at)


def test_monitor_page_unscored_feed_shows_volume_only(app, store):
    feeds.import_file(store, _csv([("2020-07-01", "A"), ("2020-07-02", "B")]), "a.csv", "f")
    at = app("views/monitor.py")
    assert "has not been scored yet" in texts(at)
    assert at.metric[0].value == "2"
    assert len(at.get("plotly_chart")) == 1  # volume only


def test_monitor_page_with_a_scored_feed_charts_drilldown_alerts_acknowledge_and_rule(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model, metrics={"macro_f1": 0.812})
    feed_id = _surge_feed(store, run_id)
    at = app("views/monitor.py")
    assert not at.exception
    shown = texts(at)
    assert f"Model: run {run_id}" in shown and "macro-F1 0.812" in shown
    assert at.metric[0].value == "420"
    assert len(at.get("plotly_chart")) == 3  # volume, net index, topic heatmap
    assert [m.value for m in at.metric[1:]] == ["1", "1"]
    # Drill-down: the latest day first, most negative first.
    assert at.selectbox(key=f"drill_day_{feed_id}").value == "2020-06-21"
    drill = next(d.value for d in at.dataframe if "negative" in d.value.columns and "published_at" in d.value.columns)
    assert drill["label"].tolist()[:12] == ["negative"] * 12 and drill["title"].iloc[0].startswith("Bank story 20-")
    # The alert, its drivers, acknowledge.
    table = next(d.value for d in at.dataframe if "window_end" in d.value.columns)
    assert table["window_end"].tolist() == ["2020-06-21"] and table["topic"].tolist() == ["(all articles)"]
    drivers = next(d.value for d in at.dataframe
                   if list(d.value.columns) == ["day", "title", "source", "label", "negative", "covered_by_sources"])
    assert len(drivers) == 12 and set(drivers["covered_by_sources"]) == {1}  # an uploaded file: no story repeats
    by_label(at.button, "Acknowledge").click().run()
    assert not at.exception
    assert "acknowledged" in texts(at).lower()
    assert store.execute("SELECT acknowledged_by FROM alerts").fetchone()[0] == "ana"
    assert [m.value for m in at.metric[1:]] == ["1", "0"]
    # Edit the rule: an absolute threshold makes the Banks topic fire too.
    next(n for n in at.number_input if n.label.startswith("Absolute")).set_value(0.5)
    next(b for b in at.button if b.label == "Save rule and re-evaluate").click().run()
    assert not at.exception
    assert alerts.get_rule(store, feed_id)["abs_threshold"] == 0.5
    assert "Rule saved; 2 alerts" in texts(at)
    assert {a["topic"] for a in alerts.list_alerts(store, feed_id, run_id)} == {None, "Banks"}
    # Topic filter narrows the charts and the count.
    at.selectbox(key=f"mon_topic_{feed_id}").set_value("Banks").run()
    assert at.metric[0].value == "12"
    # Exports.
    next(b for b in at.button if b.label == "Prepare article export").click().run()
    assert not at.exception
    assert "12 filtered articles" in texts(at)


def test_monitor_weekly_view_renders(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    _surge_feed(store, run_id)
    at = app("views/monitor.py")
    at.radio(key="mon_freq").set_value("W").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3


def test_feeds_page_offers_sentiment_runs_for_scoring_and_topic_runs_for_topics(app, store, tiny_text_model, tmp_path):
    from tests.helpers import build_tiny_model

    feeds.import_file(store, _csv([("2020-07-01", "Bank profits rise")]), "a.csv", "f")
    sentiment = make_finished_run(store, tiny_text_model)
    topic_model = build_tiny_model(tmp_path / "topics", ["earnings", "m&a", "macro"])
    topic = make_finished_run(store, topic_model)  # newer, so it would come first by date alone
    at = app("views/feeds.py")
    assert at.selectbox(key="score_run").value == sentiment
    assert at.selectbox(key="score_run").options == [f"#{sentiment} · tiny", f"#{topic} · tiny"]  # runs.title
    assert at.selectbox(key="topic_run").value == topic
    assert "Labels: negative, neutral, positive" in texts(at)
    assert not any("no negative class" in w.value for w in at.warning)
    at.selectbox(key="score_run").set_value(topic).run()
    assert not at.exception
    assert any(f"Run {topic}'s labels (earnings, m&a, macro) have no negative class" in w.value for w in at.warning)


def test_feeds_page_says_plainly_when_no_worker_can_be_started(app, store, tiny_text_model, monkeypatch):
    def cannot_start(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(supervisor, "ensure_supervisor", cannot_start)
    feeds.import_file(store, _csv([("2020-07-01", "Bank profits rise")]), "a.csv", "f")
    run_id = make_finished_run(store, tiny_text_model)
    at = app("views/feeds.py")
    by_label(at.button, "Score").click().run()
    assert not at.exception
    job_id, status, model = store.execute("SELECT id, status, model_run_id FROM jobs WHERE kind = 'score'").fetchone()
    assert (status, model) == ("queued", run_id)
    shown = " ".join(w.value for w in at.warning)
    assert "Scoring job 1 queued. It waits: no worker could be started (No space left on device)" in shown
    assert "python -m engine worker" in shown
