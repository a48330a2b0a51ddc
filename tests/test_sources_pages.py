"""The Feeds page's sources and notification channels, and the Monitor's live refresh and notification links,
through Streamlit's AppTest."""

from __future__ import annotations

import pytest

from engine.jobs import supervisor
from engine.monitor import alerts, feeds, notify, poller, sources
from tests.helpers import feed_csv, make_finished_run, open_page, texts
from tests.livefeeds import FeedServer
from tests.test_monitor_pages import _surge_feed

pytestmark = pytest.mark.process  # a loopback HTTP server


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setenv("BELLWETHER_ALLOW_PRIVATE_SOURCES", "1")
    monkeypatch.setenv("BELLWETHER_MIN_POLL_INTERVAL_S", "1")
    monkeypatch.setenv("BELLWETHER_SOURCE_TIMEOUT_S", "1")
    started = []
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: started.append(1) or 1)
    open_page.started = started
    return open_page


@pytest.fixture
def server():
    srv = FeedServer()
    yield srv
    srv.close()


def test_feeds_page_adds_a_source_shows_its_error_in_words_and_removes_it(app, store, server, tiny_text_model):
    feeds.import_file(store, feed_csv([("2024-01-02", "Seed")]), "seed.csv", "wire")
    run = make_finished_run(store, tiny_text_model)
    server.routes["/down"] = ("status", 500)
    at = app("views/feeds.py")
    assert "RSS/Atom addresses and server folders" in texts(at)
    at.text_input(key="source_location").set_value(server.url("/down"))
    at.number_input(key="source_interval").set_value(60.0)
    at.selectbox(key="source_model").set_value(run)
    at.button[[b.label for b in at.button].index("Add source")].click().run()
    assert not at.exception
    assert "Source 1 added; it is polled every 60 s." in texts(at) and app.started
    [row] = sources.list_sources(store, "wire")
    assert sources.current_model(store, row["feed_id"]) == run
    poller.poll_due(store)  # what the worker does
    at.run()
    assert "Source 1 (127.0.0.1): 127.0.0.1 answered HTTP 500 (Internal Server Error)." in texts(at)
    at.button(key="source_remove").click().run()
    assert "Source 1 removed; its articles stay in the feed." in texts(at)
    assert sources.list_sources(store, "wire") == []
    # A bad address is refused in words and nothing is added.
    at.text_input(key="source_location").set_value("ftp://example.com/x")
    at.button[[b.label for b in at.button].index("Add source")].click().run()
    assert "must be an http:// or https:// address" in texts(at) and store["feed_sources"].count == 0


def test_channels_are_added_tested_and_never_show_their_secret(app, store, server):
    feeds.import_file(store, feed_csv([("2024-01-02", "Seed")]), "seed.csv", "wire")
    server.routes["/hook/S3CRET"] = ("flaky", [])
    at = app("views/feeds.py")
    at.text_input(key="channel_name").set_value("desk")
    at.text_input(key="channel_url").set_value(server.url("/hook/S3CRET"))
    at.button[[b.label for b in at.button].index("Add channel")].click().run()
    assert "Channel 'desk' added: http://127.0.0.1/… (json)." in texts(at)
    at.button(key="channel_test").click().run()
    assert "Test message sent to 'desk'." in texts(at)
    assert server.json_posts("/hook") == [] and server.json_posts("/hook/S3CRET")[0]["event"] == "test"
    shown = texts(at) + str([df.value.to_dict() for df in at.dataframe])
    assert "S3CRET" not in shown and "/hook" not in shown
    assert notify.deliveries(store)[0]["status"] == "sent"
    # Changed in place: paused, then sending alerts and runs; the log stays
    at.toggle(key="channel_edit_on").set_value(False)
    at.button(key="channel_edit_save").click().run()
    assert "Channel 'desk' is paused: alerts." in texts(at)
    assert notify.list_channels(store)[0]["enabled"] is False and len(notify.deliveries(store)) == 1
    at.toggle(key="channel_edit_on").set_value(True)
    at.selectbox(key="channel_edit_events").set_value("alerts,runs")
    at.button(key="channel_edit_save").click().run()
    assert "Channel 'desk' sends: alerts and runs." in texts(at)
    assert notify.list_channels(store)[0]["events"] == "alerts,runs"


def test_monitor_opens_the_window_a_notification_links_to_and_says_it_refreshes(app, store, tiny_text_model):
    run = make_finished_run(store, tiny_text_model)
    feed_id = _surge_feed(store, run)
    alert = [a for a in alerts.list_alerts(store, feed_id) if a["topic"] is None][0]
    link = notify.monitor_link("daily", alert["window_start"], alert["window_end"], alert["id"])
    query = dict(p.split("=") for p in link.split("?")[1].split("&"))
    at = app("views/monitor.py", **query)
    assert at.selectbox(key="mon_feed").value == "daily"
    assert at.selectbox(key="alert_pick").value == alert["id"]
    assert str(at.date_input(key=f"mon_dates_{feed_id}").value[1]) == alert["window_end"]
    assert "Live: new articles, scores and alerts appear by themselves" in texts(at)
