"""The worker polls sources and scores what arrives by itself; kill -9 during a poll and during scoring loses and
duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from engine.monitor import feeds, sources
from tests.conftest import ROOT, kill_job_processes
from tests.helpers import feed_csv, make_finished_run
from tests.livefeeds import FeedServer, rss

pytestmark = pytest.mark.process


@pytest.fixture
def server():
    srv = FeedServer()
    yield srv
    srv.close()


@pytest.fixture
def worker(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_ALLOW_PRIVATE_SOURCES", "1")
    monkeypatch.setenv("BELLWETHER_MIN_POLL_INTERVAL_S", "1")
    monkeypatch.setenv("BELLWETHER_SOURCE_TIMEOUT_S", "15")
    started: list[subprocess.Popen] = []

    def start(**env) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--poll", "0.2"], cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **env})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    kill_job_processes()


def _until(predicate, timeout=90, what="it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _kill9(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_kill_9_during_a_poll_and_during_scoring_loses_and_duplicates_nothing(store, server, worker,
                                                                              tiny_text_model):
    feeds.import_file(store, feed_csv([("2020-01-01", "Seed headline")]), "seed.csv", "wire")
    run = make_finished_run(store, tiny_text_model)
    now = datetime.now(timezone.utc)
    items = [{"title": f"Headline number {i} about firm {i}", "link": f"https://n.example/{i}", "published": now}
             for i in range(60)]
    server.routes["/rss"] = ("sleep", 30, rss(items))  # the worker will be killed while waiting for this
    source = sources.add_source(store, "wire", server.url("/rss"), interval_s=1, run_id=run)

    first = worker()
    _until(lambda: any(p == "/rss" for p, _ in server.requests), what="the worker's poll")
    _kill9(first)
    assert store["articles"].count == 1
    row = sources.get_source(store, source["id"])
    assert row["last_poll_at"] is None and row["n_imported"] == 0  # the poll left no trace

    # Restarted (its score jobs slowed down so that it can be killed mid-job): the items arrive once and a job
    # starts scoring them by itself.
    server.routes["/rss"] = rss(items)
    second = worker(BELLWETHER_TEST_STEP_DELAY_S="3")
    _until(lambda: store["articles"].count == 61, what="the poll's articles")
    job_id = _until(lambda: (store.execute("SELECT id FROM jobs WHERE kind = 'score' AND status = 'running' "
                                           "AND pid IS NOT NULL").fetchone() or [None])[0], what="a running score job")
    pid = store.execute("SELECT pid FROM jobs WHERE id = ?", [job_id]).fetchone()[0]
    _kill9(second)
    os.killpg(pid, signal.SIGKILL)  # the whole machine went down: the job process too
    assert store.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0

    third = worker()
    _until(lambda: store.execute("SELECT COUNT(*) FROM scores WHERE run_id = ?", [run]).fetchone()[0] == 61,
           what="every article scored")
    assert store.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()[0] == "failed"
    _until(lambda: store.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score' AND status = 'succeeded'"
                                 ).fetchone()[0] == 1, what="the new score job to finish")
    assert store.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score'").fetchone()[0] == 2
    # Later polls answer 304 and bring nothing twice.
    _until(lambda: server.not_modified >= 2, what="conditional polls")
    assert store["articles"].count == 61
    assert store.execute("SELECT COUNT(DISTINCT url) FROM articles WHERE url IS NOT NULL").fetchone()[0] == 60
    assert store.execute("SELECT COUNT(*) FROM (SELECT article_id FROM scores GROUP BY article_id, run_id "
                         "HAVING COUNT(*) > 1)").fetchone()[0] == 0
    assert sources.get_source(store, source["id"])["n_imported"] == 60
    _kill9(third)
