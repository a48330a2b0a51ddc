"""Topics from a trained topic classifier: a finished text-classification run whose labels are topics tags a feed.

It is a score job (the same queue, progress bar, cancel and restart as sentiment scoring) whose config says
``{"purpose": "topics"}``; engine.cli.job hands such a job to :func:`run` here. The runner writes
``article_topics`` rows (article_id, topic = the predicted label, origin = 'model', run_id = the classifier run)
instead of scores, in committed chunks, for the feed's articles that have no 'model' topic from that run yet.

A feed has one topic classifier at a time: a job with another run first removes the feed's earlier origin='model'
rows (of any other run) in the same transaction as its first chunk, then tags every article. Topics from a mapped
column or from topic rules are never touched. When the predicted label equals a topic the article already has from a
column or a rule, that row stays as it is (one row per article and topic). The rollup triggers on article_topics
(engine.db, migration 3) keep the Monitor's topic counts in step.
"""

from __future__ import annotations

import time

from engine import access, db
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import runs
from engine.models import inference
from engine.monitor import feedjobs
from engine.monitor import feeds

PURPOSE = "topics"


def is_topics_job(job: dict) -> bool:
    return (db.loads(job.get("config_json"), {}) or {}).get("purpose") == PURPOSE


def count_untagged(conn, feed_id: int, run_id: int) -> int:
    """Articles of the feed that run ``run_id`` has not tagged yet."""
    return conn.execute(
        "SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS (SELECT 1 FROM article_topics t "
        "WHERE t.article_id = a.id AND t.origin = 'model' AND t.run_id = ?)",
        [feed_id, run_id],
    ).fetchone()[0]


def model_topic_runs(conn, feed_id: int) -> list[int]:
    """The runs whose model topics the feed holds now (one, or none; several only mid-replacement)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT t.run_id FROM article_topics t JOIN articles a ON a.id = t.article_id "
        "WHERE a.feed_id = ? AND t.origin = 'model' ORDER BY t.run_id", [feed_id])]


def enqueue(conn, feed: str | int, run_id: int, created_by: str | None = None, text: str = "title",
            actor=None) -> int:
    """Queue a job that tags ``feed``'s articles with the topics predicted by run ``run_id``; returns the job id.
    ``actor``: an analyst or admin (engine.access; None: the local administrator)."""

    return feedjobs.enqueue_feed_job(conn, feed, run_id, PURPOSE, created_by, text, actor=actor)


# The feed's articles that a topic run has not tagged yet, a chunk at a time (engine.monitor.feedjobs.pending_chunks).
UNTAGGED_CHUNK = (
    "SELECT a.id, a.title, a.body FROM articles a WHERE a.feed_id = ? AND a.id > ? AND NOT EXISTS "
    "(SELECT 1 FROM article_topics t WHERE t.article_id = a.id AND t.origin = 'model' AND t.run_id = ?) "
    "ORDER BY a.id LIMIT ?"
)


def run(conn, job: dict, ctx) -> dict:
    """Tag the feed's articles that run ``job['model_run_id']`` has not tagged yet with its predicted topic."""

    feed_id, run_id = job.get("feed_id"), job.get("model_run_id")
    if not feed_id or not run_id:
        raise UserError(_("This topics job has no feed or no model run; queue it again from the Feeds page."))
    if not conn.execute("SELECT 1 FROM feeds WHERE id = ?", [feed_id]).fetchone():
        raise UserError(_("Feed {feed_id} no longer exists.", feed_id=feed_id))
    config = db.loads(job.get("config_json"), {}) or {}
    text_mode = config.get("text", "title")
    batch_size = int(config.get("batch_size", feedjobs.BATCH))
    model = runs.for_topics(conn, run_id)
    stale = [r for r in model_topic_runs(conn, feed_id) if r != run_id]
    total = count_untagged(conn, feed_id, run_id)
    log = getattr(ctx, "log", None)
    if log:
        log.info("tagging topics of %d articles of feed %s with run %s (replacing runs %s)", total, feed_id, run_id, stale)
    ctx.progress(kind="score", step=0, total_steps=total, elapsed_s=0.0)
    started = time.perf_counter()
    done = replaced = 0
    counts: dict[str, int] = {}
    device = dtype = "none"
    if total:
        predictor = inference.load(model["model_dir"], precision=config.get("precision", "exact"))
        device = predictor.device
        for rows in feedjobs.pending_chunks(conn, ctx, UNTAGGED_CHUNK, feed_id, run_id, total, started):
            preds = predictor.predict([feedjobs.article_text(r[1], r[2], text_mode) for r in rows], batch_size=batch_size)
            with db.transaction(conn):
                if stale:  # another run's model topics give way to this run's (column and rule topics stay)
                    replaced = conn.execute(
                        "DELETE FROM article_topics WHERE origin = 'model' AND run_id <> ? AND article_id IN "
                        "(SELECT id FROM articles WHERE feed_id = ?)", [run_id, feed_id]).rowcount
                    stale = []
                db.executemany(
                    conn,
                    "INSERT OR IGNORE INTO article_topics (article_id, topic, origin, run_id) VALUES (?, ?, 'model', ?)",
                    [(r[0], p.label, run_id) for r, p in zip(rows, preds)],
                )
            for p in preds:
                counts[p.label] = counts.get(p.label, 0) + 1
            done += len(rows)
        dtype = predictor.dtype_name  # float32 after a fallback from reduced precision
    elapsed = time.perf_counter() - started
    if log:
        log.info("tagged %d articles in %.1fs: %s", done, elapsed, counts)
    metrics = {
        "purpose": PURPOSE,
        "feed_id": feed_id,
        "run_id": run_id,
        "tagged": done,
        "topics": counts,
        "replaced": replaced,
        "seconds": round(elapsed, 3),
        "articles_per_s": round(done / elapsed, 1) if elapsed > 0 and done else None,
        "device": device,
        "dtype": dtype,
    }
    if total and predictor.fallback:
        metrics["precision_note"] = predictor.fallback
    return metrics


def model_topic_counts(conn, feed_id: int) -> dict[str, int]:
    """Topic -> articles tagged by the feed's topic classifier (origin 'model')."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT t.topic, COUNT(*) FROM article_topics t JOIN articles a ON a.id = t.article_id "
        "WHERE a.feed_id = ? AND t.origin = 'model' GROUP BY t.topic ORDER BY t.topic", [feed_id])}


def remove_model_topics(conn, feed: str | int, actor=None) -> int:
    """Remove every topic a classifier run put on ``feed``'s articles (origin 'model'); topics from a column or a
    rule stay. Returns how many article topics were removed. Refused while a topics job for the feed is queued or
    running (it would put them back). ``actor``: the feed's creator or an administrator (engine.access)."""
    feed_row = feeds.get_feed(conn, feed)
    obj = f"feed:{feed_row['name']}:model-topics"
    who = access.check(conn, actor, "topics.delete", obj, owner=feed_row.get("created_by"))
    with db.transaction(conn):
        busy = [r[0] for r in conn.execute(
            "SELECT id FROM jobs WHERE kind = 'score' AND feed_id = ? AND status IN ('queued', 'running') "
            "AND json_extract(config_json, '$.purpose') = ?", [feed_row["id"], PURPOSE])]
        if busy:
            raise UserError(_(
                "A topics job ({jobs}) is tagging this feed now; removing its topics would be undone by it. Cancel "
                "it or wait for it to finish, then remove the model topics.", jobs=", ".join(f"#{j}" for j in busy)))
        removed = conn.execute(
            "DELETE FROM article_topics WHERE origin = 'model' AND article_id IN "
            "(SELECT id FROM articles WHERE feed_id = ?)", [feed_row["id"]]).rowcount
        access.record(conn, who, "topics.delete", obj, {"removed": removed})
    return removed
