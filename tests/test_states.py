"""States that stay true and errors in plain words (issue 14): the Monitor says when its model has not scored the
feed, the Runs charts say why they are empty, keyword rules match simple plurals."""

from __future__ import annotations

import pytest

from engine import db
from engine.jobs import queue, supervisor
from engine.monitor import feeds, scoring
from tests.helpers import feed_csv, make_finished_run, open_page


@pytest.fixture
def user(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    monkeypatch.setattr(supervisor, "check_running", lambda *a, **k: None)


def test_keyword_rules_match_simple_plurals_but_not_longer_words(store):
    feeds.import_file(store, feed_csv([("2020-07-01", "Banks rally"), ("2020-07-01", "Companies cut jobs"),
                                       ("2020-07-02", "One company fined"), ("2020-07-02", "Taxes rise"),
                                       ("2020-07-03", "Banker quits"), ("2020-07-03", "Bank holiday")]), "a.csv", "w")
    info = feeds.set_topic_rule(store, "w", "Watched", "bank, company, tax")
    assert info["matches"] == 5  # all but "Banker quits"


def test_monitor_says_when_the_chosen_model_has_not_scored_the_feed_and_offers_to(user, tiny_text_model):
    conn = db.connect()
    run = make_finished_run(conn, tiny_text_model)
    feeds.import_file(conn, feed_csv([("2020-07-01", "Bank profits beat forecasts"), ("2020-07-02", "Fed holds")]),
                      "a.csv", "wire")
    job = scoring.enqueue(conn, "wire", run)  # queued: the Monitor already offers run 1, which has scored nothing
    at = open_page("monitor")
    assert any(f"Run {run} has not scored this feed yet, so its sentiment charts and alerts are empty, not calm."
               in w.value for w in at.warning)
    queue.cancel(conn, job)
    next(b for b in at.button if b.label == f"Score the 2 articles with run {run}").click().run()
    assert not at.exception
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score' AND status = 'queued'").fetchone()[0] == 1
    conn.close()


def test_runs_page_validation_chart_says_why_it_is_empty(user):
    conn = db.connect()
    run = queue.enqueue(conn, "train", config={"epochs": 1}, device_slot="cpu", task="text-classification")
    conn.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", [db.now(), run])
    conn["progress"].insert({"job_id": run, "kind": "train", "step": 5, "total_steps": 100, "loss": 1.1,
                             "elapsed_s": 10.0, "created_at": db.now()})
    at = open_page("runs")
    specs = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "No validation score yet:" in specs
    conn.close()
