"""A live feed in a real browser against `streamlit run`: add a source on the Feeds page, watch its articles arrive
and get scored without pressing anything, and see the alert appear on a Monitor page that stays open.

The RSS server is on 127.0.0.1 (allowed explicitly with BELLWETHER_ALLOW_PRIVATE_SOURCES=1). The model is a tiny
BERT whose head always says 'negative', so that the alert does not depend on chance. Screenshots go to
test-artifacts/screenshots/journey-live/.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.browser import (SCREENSHOTS, Shots, assert_no_exception, chromium_page, fresh, state_of, streamlit_server,
                           wait_for_app_run)
from tests.helpers import build_tiny_model, feed_csv, make_finished_run
from tests.livefeeds import FeedServer, rss

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]


def always_negative_model(path):
    import torch
    from transformers import BertForSequenceClassification

    build_tiny_model(path, ["negative", "neutral", "positive"])
    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([6.0, 0.0, 0.0]))
    model.save_pretrained(path)
    return path


def items(n, when, prefix):
    return [{"title": f"{prefix} headline {i}: lender {i} shares slide", "link": f"https://n.example/{prefix}/{i}",
             "published": when} for i in range(n)]


def test_a_source_added_in_the_browser_fills_scores_and_alerts_an_open_monitor(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    from engine import db
    from engine.monitor import alerts, feeds

    conn = db.connect()
    feeds.import_file(conn, feed_csv([("2020-01-02", "An old story")]), "old.csv", "wire")
    run = make_finished_run(conn, always_negative_model(tmp_path / "model"), metrics={"macro_f1": 0.7})
    alerts.set_rule(conn, feeds.get_feed(conn, "wire")["id"], abs_threshold=0.5, min_articles=10)
    conn.close()

    server = FeedServer()
    now = datetime.now(timezone.utc)
    server.routes["/markets.rss"] = rss(items(5, now - timedelta(days=2), "Early"))  # too few for an alert
    env = {"BELLWETHER_ALLOW_PRIVATE_SOURCES": "1", "BELLWETHER_MIN_POLL_INTERVAL_S": "1",
           "BELLWETHER_MONITOR_REFRESH_S": "2", "BELLWETHER_USER": "ana"}
    folder = SCREENSHOTS / "journey-live"
    try:
        with streamlit_server(home, env=env) as app, chromium_page(folder) as page:
            shots = Shots(page, folder)
            try:
                page.goto(f"{app.url}/feeds")
                wait_for_app_run(page)
                expect(page.get_by_role("heading", name="Sources")).to_be_visible()
                page.get_by_label("RSS/Atom URL or server folder").fill(server.url("/markets.rss"))
                page.get_by_label("Every (seconds)").fill("2")
                page.get_by_role("combobox", name="Current model: scores what arrives").click()
                page.keyboard.type(f"#{run} ")  # the option list filters as one types, as an analyst would
                page.get_by_role("option", name=re.compile(f"^#{run} ")).click()
                page.get_by_role("button", name="Add source").click()
                wait_for_app_run(page)
                assert_no_exception(page)
                expect(page.get_by_text("Source 1 added; it is polled every 2 s.")).to_be_visible()
                # Nothing pressed from here on: the worker polls, imports and scores; the page refreshes itself.
                expect(page.get_by_text("6 articles in the feed, 6 scored by its current model")).to_be_visible(
                    timeout=120_000)
                shots("source added articles arrived and scored")

                page.goto(f"{app.url}/monitor")
                wait_for_app_run(page)
                expect(page.get_by_text(re.compile("Live: new articles, scores and alerts"))).to_be_visible()
                expect(fresh(page, "stMetric").filter(has_text="Open alerts")).to_contain_text("0")
                shots("monitor open no alert")

                server.routes["/markets.rss"] = rss(items(5, now - timedelta(days=2), "Early")
                                                    + items(20, now, "Surge"))
                expect(fresh(page, "stMetric").filter(has_text="Open alerts")).to_contain_text(
                    "1", timeout=120_000)
                expect(page.get_by_role("combobox", name="Alert", exact=True)).to_match_aria_snapshot(
                    f'- combobox "Alert": /#\\d+ {now.date().isoformat()} · all articles · 100% negative/')
                assert_no_exception(page)
                shots("alert appeared on the open monitor")
            except Exception:
                shots("failure")
                print(state_of(home, app))  # shown by pytest under the failure
                raise
    finally:
        server.close()
