"""Jobs that walk a feed's articles with a finished run's model: sentiment scores (engine.monitor.scoring) and
model topics (engine.monitor.topics) share this: queueing one (one active job per feed, run and purpose), the chunk
loop with its cancel check and progress rows, and the text of an article a model reads."""

from __future__ import annotations

import time

from engine import access, db, settings
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue, runs
from engine.jobs.process import Cancelled
from engine.models import inference
from engine.monitor import feeds
from engine.monitor.vocabulary import SENTIMENT


CHUNK = 2048  # articles read, scored and committed together


BATCH = 64  # inputs per forward pass




def pending_chunks(conn, ctx, chunk_sql: str, feed_id: int, run_id: int, total: int, started: float):
    """Yield the rows (id, title, body) that ``chunk_sql`` selects (parameters: feed id, last id seen, run id, chunk
    size), a chunk at a time, until none are left. Before each chunk a cancel request stops the job (raising
    process.Cancelled, with a progress row saying so); after the caller has handled a chunk, a progress row with the rate
    and ETA. Shared by the score job and the topics job (engine.topics)."""
    done = last_id = 0
    while True:
        if ctx.should_cancel():
            ctx.progress(kind="score", step=done, total_steps=total, elapsed_s=time.perf_counter() - started,
                         extra_json=db.dumps({"cancelled": True}))
            raise Cancelled(_("cancelled after {done} of {total} articles", done=done, total=total))
        if settings.test_step_delay_s():  # tests: a job slow enough to be killed mid-way
            time.sleep(settings.test_step_delay_s())
        rows = conn.execute(chunk_sql, [feed_id, last_id, run_id, CHUNK]).fetchall()
        if not rows:
            return
        yield rows
        done += len(rows)
        last_id = rows[-1][0]
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else None
        ctx.progress(kind="score", step=done, total_steps=total, elapsed_s=elapsed, samples_per_s=rate,
                     eta_s=(total - done) / rate if rate else None)


def article_text(title: str | None, body: str | None, text: str) -> str:
    if text == "title_body" and body:
        return f"{title or ''}. {body}"
    return title or body or ""


def recent_jobs(conn, feed_id: int, limit: int = 5) -> list[dict]:
    """The feed's latest score and topics jobs, newest first, each with its ``metrics`` decoded."""
    return [{**row, "metrics": db.loads(row.get("metrics_json"), {}) or {}} for row in conn.query(
        "SELECT * FROM jobs WHERE kind = 'score' AND feed_id = ? ORDER BY COALESCE(queue_order, id) DESC LIMIT ?", [int(feed_id), int(limit)])]


def enqueue_feed_job(conn, feed: str | int, run_id: int, purpose: str, created_by: str | None = None,
                     text: str = "title", precision: str = "fast", actor=None) -> int:
    """Queue a job that runs ``run_id``'s model over ``feed`` for ``purpose`` ('sentiment' scores or 'topics').

    ``precision`` is 'fast' (reduced precision where the hardware computes it natively; see engine.inference) or
    'exact' (float32, as the model was evaluated). One such job per feed, run and purpose is enough: an active one is
    returned instead of queueing another.
    """

    feed_row = feeds.get_feed(conn, feed)
    run = runs.for_scoring(conn, run_id)
    if text not in ("title", "title_body"):
        raise UserError(_("Use either the 'title' or 'title_body' (title and body together) of each article."))
    if precision not in inference.PRECISIONS:
        raise UserError(_("Precision must be 'fast' or 'exact', not '{precision}'.", precision=precision))
    active = list(
        conn.query(
            "SELECT id FROM jobs WHERE kind = 'score' AND feed_id = ? AND model_run_id = ? "
            "AND status IN ('queued', 'running') "
            "AND COALESCE(json_extract(config_json, '$.purpose'), ?) = ?",
            [feed_row["id"], run["id"], SENTIMENT, purpose],
        )
    )
    action = "feed.score" if purpose == SENTIMENT else "topics.classify"
    who = access.check(conn, actor, action, f"feed:{feed_row['name']}")
    if purpose != SENTIMENT:
        runs.for_topics(conn, run_id)  # a sentiment run's labels must never become topics
    if active:
        return active[0]["id"]
    config = {"text": text, "batch_size": BATCH, "precision": precision}
    if purpose != SENTIMENT:
        config["purpose"] = purpose
    with db.transaction(conn):
        job_id = queue.enqueue(
            conn,
            "score",
            feed_id=feed_row["id"],
            model_run_id=run["id"],
            task="text-classification",
            name=f"{'score' if purpose == SENTIMENT else purpose} {feed_row['name']} with run {run['id']}",
            config_json=db.dumps(config),
            created_by=created_by or who.name,
        )
        access.record(conn, who, action, f"feed:{feed_row['name']}", {"job": job_id, "run": run["id"]})
    return job_id
