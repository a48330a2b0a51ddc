"""Polling: the worker's periodic step that brings in what sources publish, gets it scored and pushes the alerts.

:func:`step` runs in the worker process (``python -m engine worker``, in a thread of its own beside the job
supervisor; never in the dashboard). Each pass:

1. :func:`poll_due` fetches every enabled source whose ``next_poll_at`` has come (URLs several at a time), and
   imports each answer with the same reading, dedup and topic rules as an upload (engine.monitor.feeds). The import,
   the folder files seen and the source's new state (validators, schedule, error) land in one transaction: a worker
   killed mid-poll leaves the source exactly as before, and the next poll imports the same items once. The new
   articles wait for their story; after the pass each feed's waiting articles are grouped into stories at once
   (engine.monitor.stories; a crash in between leaves them waiting for the next pass).
2. :func:`ensure_scoring` queues one score job per feed with unscored articles and a current model (an active one
   is reused, so it is a small steady job, not one per article); the job evaluates the alert rule when it ends.
3. engine.monitor.notify turns new alerts (and finished runs, where a channel asks) into deliveries and sends them.

A source that fails is retried after its interval times 2, 4, 8, ... (at most ``MAX_BACKOFF_S``), with the
reason kept in ``last_error``; other sources are not affected.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from engine import db, i18n
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue
from engine.monitor import feedjobs, feeds, notify, sources, stories, vocabulary

MAX_BACKOFF_S = 6 * 3600.0
FETCHERS = 8  # URLs fetched at once
FAILED_SCORE_PAUSE_S = 300.0  # after a score job of a feed fails, wait this long before queueing another


def iso(moment: datetime | None = None) -> str:
    """UTC ISO 8601 with microseconds: polling schedules need sub-second order."""
    return (moment or datetime.now(timezone.utc)).isoformat()


def backoff_s(interval_s: float, error_count: int) -> float:
    return min(float(interval_s) * 2 ** min(int(error_count), 20), max(float(interval_s), MAX_BACKOFF_S))


@dataclass
class PollResult:
    source_id: int
    feed_id: int
    status: str  # new | unchanged | error
    n_new: int = 0
    n_duplicate: int = 0
    error: str | None = None
    seconds: float = 0.0


def due_sources(conn, now: datetime | None = None) -> list[dict]:
    return list(conn.query(
        "SELECT s.*, f.name AS feed_name FROM feed_sources s JOIN feeds f ON f.id = s.feed_id "
        "WHERE s.enabled = 1 AND (s.next_poll_at IS NULL OR s.next_poll_at <= ?) ORDER BY s.next_poll_at, s.id",
        [iso(now)]))


def _fetch(source: dict):
    """What a source has now (runs in a fetcher thread for URLs: no store access). Exceptions are returned."""
    try:
        return sources.fetch_url(source["location"], source.get("etag"), source.get("last_modified"))
    except UserError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - any failure of one source is that source's error, in words
        return UserError(_("{host} could not be fetched ({error}).", host=sources.host_of(source["location"]),
                           error=type(exc).__name__))


def poll_due(conn, now: datetime | None = None) -> list[PollResult]:
    """Poll every due source; returns one result per source polled. What went wrong is kept in English (the store
    reads the same for everyone) and translated where it is shown (engine.i18n.shown)."""
    with i18n.using(i18n.DEFAULT):
        return _poll_due(conn, now)


def _poll_due(conn, now: datetime | None) -> list[PollResult]:
    due = due_sources(conn, now)
    if not due:
        return []
    results = []
    urls = [s for s in due if s["kind"] == "rss"]
    with ThreadPoolExecutor(max_workers=FETCHERS) as pool:
        futures = [(s, pool.submit(_fetch, s), time.perf_counter()) for s in urls]
        for source in (s for s in due if s["kind"] == "folder"):
            results.append(_poll_folder(conn, source))
        for source, future, started in futures:
            results.append(_store_fetch(conn, source, future.result(), started))
    for feed_id in sorted({r.feed_id for r in results if r.n_new}):
        with db.transaction(conn):
            stories.assign_pending(conn, feed_id)
    return results


def poll_source(conn, source_id: int) -> PollResult:
    """Poll one source now, whatever its schedule (tests, the CLI's ``poll-now --wait``). Its error, if any, in
    English, as the worker keeps it."""
    source = sources.get_source(conn, source_id)
    with i18n.using(i18n.DEFAULT):
        return _poll_one(conn, source)


def _poll_one(conn, source: dict) -> PollResult:
    if source["kind"] == "folder":
        result = _poll_folder(conn, source)
    else:
        result = _store_fetch(conn, source, _fetch(source), time.perf_counter())
    if result.n_new:
        with db.transaction(conn):
            stories.assign_pending(conn, source["feed_id"])
    return result


def _succeeded(conn, source: dict, n_new: int, **validators) -> None:
    now = datetime.now(timezone.utc)
    sets = {"last_poll_at": iso(now), "last_ok_at": iso(now), "last_error": None, "error_count": 0,
            "next_poll_at": iso(now + timedelta(seconds=float(source["interval_s"]))),
            "n_imported": int(source.get("n_imported") or 0) + n_new, **validators}
    conn["feed_sources"].update(source["id"], sets)


def _failed(conn, source: dict, error: str) -> PollResult:
    now = datetime.now(timezone.utc)
    count = int(source.get("error_count") or 0) + 1
    conn["feed_sources"].update(source["id"], {
        "last_poll_at": iso(now), "last_error": error, "error_count": count,
        "next_poll_at": iso(now + timedelta(seconds=backoff_s(source["interval_s"], count)))})
    return PollResult(source["id"], source["feed_id"], "error", error=error)


def _import(conn, source: dict, data: bytes, file_name: str, format: str) -> feeds.ImportResult:
    result = feeds.import_file(conn, data, file_name, source["feed_name"], format=format,
                               created_by=f"source {source['id']}", keep_empty=False,
                               remember_mapping=source["kind"] == "folder")
    if result.n_new:
        stories.mark_pending(conn, result.import_id)  # clustered after the pass, all of its new articles together
    return result


def _store_fetch(conn, source: dict, fetched, started: float) -> PollResult:
    if isinstance(fetched, UserError):
        return _failed(conn, source, str(fetched))
    if fetched.status == 304:
        _succeeded(conn, source, 0, etag=fetched.etag, last_modified=fetched.last_modified)
        return PollResult(source["id"], source["feed_id"], "unchanged", seconds=time.perf_counter() - started)
    try:
        with db.transaction(conn):
            result = _import(conn, source, fetched.body, fetched.file_name, "rss")
            _succeeded(conn, source, result.n_new, etag=fetched.etag, last_modified=fetched.last_modified)
    except feeds.NoEntries:  # a feed with nothing in it right now
        _succeeded(conn, source, 0, etag=fetched.etag, last_modified=fetched.last_modified)
        return PollResult(source["id"], source["feed_id"], "unchanged", seconds=time.perf_counter() - started)
    except UserError as exc:
        return _failed(conn, source, str(exc))
    return PollResult(source["id"], source["feed_id"], "new" if result.n_new else "unchanged", result.n_new,
                      result.n_duplicate, seconds=time.perf_counter() - started)


def _poll_folder(conn, source: dict) -> PollResult:
    started = time.perf_counter()
    n_new = n_dup = 0
    try:
        files = sources.new_folder_files(conn, source)
        for path, data, sha in files:  # each file with its own transaction: a bad file does not hold back the rest
            with db.transaction(conn):
                result = _import(conn, source, data, path.name, "auto")
                conn["source_files"].insert({"source_id": source["id"], "sha256": sha, "name": path.name,
                                             "import_id": result.import_id, "seen_at": iso()})
                source["n_imported"] = int(source.get("n_imported") or 0) + result.n_new
                conn.execute("UPDATE feed_sources SET n_imported = ? WHERE id = ?",
                             [source["n_imported"], source["id"]])
            n_new += result.n_new
            n_dup += result.n_duplicate
        _succeeded(conn, source, 0)
    except UserError as exc:
        return _failed(conn, source, str(exc))
    except OSError as exc:
        return _failed(conn, source, _("The folder could not be read ({error}).",
                                        error=exc.strerror or type(exc).__name__))
    return PollResult(source["id"], source["feed_id"], "new" if n_new else "unchanged", n_new, n_dup,
                      seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------------
# Scoring what arrived


def _unscored(conn, feed_id: int, run_id: int) -> int:
    """Articles of the feed the run has not scored, from the rollups (cheap at any size)."""
    counts = sources.article_counts(conn, feed_id, run_id)
    return counts["articles"] - counts["scored"]


def ensure_scoring(conn) -> list[int]:
    """Queue a score job for each feed with sources, a current model and unscored articles; returns the job ids."""
    queued = []
    for (feed_id,) in conn.execute("SELECT DISTINCT feed_id FROM feed_sources WHERE enabled = 1").fetchall():
        run_id = sources.current_model(conn, feed_id)
        if not run_id or _unscored(conn, feed_id, run_id) <= 0:
            continue
        last = conn.execute("SELECT status, finished_at, COALESCE(error, '') FROM jobs WHERE kind = 'score' "
                            "AND feed_id = ? AND model_run_id = ? ORDER BY id DESC LIMIT 1", [feed_id, run_id]).fetchone()
        # A job that failed by itself (a broken model) is not retried at once; one whose process died (a crash, a
        # kill) is: its scores so far are kept and the next job carries on.
        if last and last[0] == "failed" and not last[2].startswith(queue.VANISHED) and last[1] \
                and _age_s(last[1]) < FAILED_SCORE_PAUSE_S:
            continue
        try:
            queued.append(feedjobs.enqueue_feed_job(conn, feed_id, run_id, vocabulary.SENTIMENT,
                                                    created_by="feed sources"))
        except UserError:
            continue  # the model is gone or unusable: the Feeds page says so where the model is chosen
    return queued


def _age_s(stamp: str) -> float:
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return float("inf")
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


# ---------------------------------------------------------------------------------------------------------------


def has_scheduled_work(conn) -> bool:
    """Sources to poll or notifications to send: the worker stays up for them even with an empty queue."""
    return bool(conn.execute("SELECT 1 FROM feed_sources WHERE enabled = 1 LIMIT 1").fetchone()
                or conn.execute("SELECT 1 FROM notify_deliveries WHERE status = 'pending' LIMIT 1").fetchone())


def step(conn, out=None) -> bool:
    """One pass of the worker's periodic step (see the module's doc). Returns whether there is scheduled work."""
    for result in poll_due(conn):
        if out is not None and result.status != "unchanged":
            print(f"source {result.source_id}: {result.status}"
                  + (f", {result.n_new} new" if result.n_new else "")
                  + (f": {result.error}" if result.error else ""), file=out, flush=True)
    ensure_scoring(conn)
    notify.collect(conn)
    notify.deliver_due(conn)
    return has_scheduled_work(conn)
