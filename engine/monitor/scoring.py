"""The score job: a finished training run's model labels a feed's articles with sentiment.

``run(conn, job, ctx)`` is the runner the job queue calls for kind 'score' (``job['feed_id']``,
``job['model_run_id']``). It scores only the articles that run has not scored yet, in chunks (each chunk's scores
committed together, so a cancel or a crash keeps what was done and a restart carries on), writes a progress row
(kind 'score') after each chunk, and stops cleanly when cancelled. Each score keeps the label, the class
probabilities, the confidence, the probability of the negative class, the run id, the job id and the time, so
scores from several models live side by side.

When it is done it evaluates the feed's alert rule for that run (engine.alerts).
"""

from __future__ import annotations

import time
from pathlib import Path

from engine import db
from engine.errors import NotFound, UserError

CHUNK = 2048  # articles read, scored and committed together
BATCH = 64  # inputs per forward pass
SENTIMENT = "sentiment"  # a score job's purpose by default; engine.topics.PURPOSE is the other
NEGATIVE_NAMES = {"negative", "neg", "bearish", "负面", "消极", "利空"}
POSITIVE_NAMES = {"positive", "pos", "bullish", "正面", "积极", "利好"}


# The feed's articles that a run has not scored yet, a chunk at a time in id order (see pending_chunks).
UNSCORED_CHUNK = (
    "SELECT a.id, a.title, a.body FROM articles a WHERE a.feed_id = ? AND a.id > ? AND NOT EXISTS "
    "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.run_id = ?) ORDER BY a.id LIMIT ?"
)


def negative_label(labels) -> str | None:
    for label in labels:
        if str(label).strip().lower() in NEGATIVE_NAMES or str(label).strip().lower().startswith("neg"):
            return label
    return None


def positive_label(labels) -> str | None:
    for label in labels:
        if str(label).strip().lower() in POSITIVE_NAMES or str(label).strip().lower().startswith("pos"):
            return label
    return None


def model_run(conn, run_id: int) -> dict:
    """The finished text-classification training run ``run_id`` (or a plain error saying why it cannot score)."""
    rows = list(conn.query("SELECT * FROM jobs WHERE id = ?", [int(run_id)]))
    if not rows or rows[0]["kind"] != "train":
        raise NotFound(f"There is no training run {run_id}. Choose a finished run from the Runs page.")
    run = rows[0]
    if run["status"] != "succeeded":
        raise UserError(f"Run {run_id} is {run['status']}, not finished: only a run that succeeded can score news.")
    if (run.get("task") or "text-classification") != "text-classification":
        raise UserError(f"Run {run_id} tags entities; choose a sentiment (text-classification) run to score news.")
    if not run.get("model_dir") or not (Path(run["model_dir"]) / "config.json").is_file():
        raise UserError(f"The model of run {run_id} is missing from disk ({run.get('model_dir')}). Train it again.")
    return run


def run_labels(conn, run_id: int) -> list[str]:
    """The class labels of a run's model (from its config), in class order."""
    from engine.models.catalog import config_labels

    run = list(conn.query("SELECT model_dir FROM jobs WHERE id = ?", [int(run_id)]))
    if run and run[0]["model_dir"] and (labels := config_labels(run[0]["model_dir"])) is not None:
        return labels
    return [r[0] for r in conn.execute("SELECT DISTINCT label FROM scores WHERE run_id = ?", [int(run_id)])]


def looks_like_sentiment(labels) -> bool:
    """Whether a model's labels include a negative or a positive class (by name, English or Chinese)."""
    return negative_label(labels) is not None or positive_label(labels) is not None


def runs_by_purpose(conn, runs: list[dict]) -> dict[str, list[dict]]:
    """``runs`` in two orders: 'sentiment' puts those whose labels have a negative or positive class first, 'topics'
    puts the others first; each group keeps the order given (newest first). The store has no purpose field, so the
    labels decide."""
    sentiment = {run["id"]: looks_like_sentiment(run_labels(conn, run["id"])) for run in runs}
    return {SENTIMENT: sorted(runs, key=lambda run: not sentiment[run["id"]]),  # sorted is stable
            "topics": sorted(runs, key=lambda run: sentiment[run["id"]])}


def no_negative_class(labels) -> str | None:
    """The plain warning for scoring sentiment with a model whose ``labels`` have no negative class, else None."""
    if negative_label(labels):
        return None
    return (f"labels ({', '.join(labels)}) have no negative class, so the Monitor's negative share and surge alerts "
            "would stay at zero")


def count_unscored(conn, feed_id: int, run_id: int) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.run_id = ?)",
        [feed_id, run_id],
    ).fetchone()[0]


def pending_chunks(conn, ctx, chunk_sql: str, feed_id: int, run_id: int, total: int, started: float):
    """Yield the rows (id, title, body) that ``chunk_sql`` selects (parameters: feed id, last id seen, run id, chunk
    size), a chunk at a time, until none are left. Before each chunk a cancel request stops the job (raising
    queue.Cancelled, with a progress row saying so); after the caller has handled a chunk, a progress row with the rate
    and ETA. Shared by the score job and the topics job (engine.topics)."""
    from engine.jobs.queue import Cancelled

    done = last_id = 0
    while True:
        if ctx.should_cancel():
            ctx.progress(kind="score", step=done, total_steps=total, elapsed_s=time.perf_counter() - started,
                         extra_json=db.dumps({"cancelled": True}))
            raise Cancelled(f"cancelled after {done} of {total} articles")
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
        "SELECT * FROM jobs WHERE kind = 'score' AND feed_id = ? ORDER BY id DESC LIMIT ?", [int(feed_id), int(limit)])]


def enqueue(conn, feed: str | int, run_id: int, created_by: str | None = None, text: str = "title",
            precision: str = "fast") -> int:
    """Queue a score job for ``feed`` with run ``run_id`` as the model; returns the job id."""
    return enqueue_feed_job(conn, feed, run_id, SENTIMENT, created_by, text, precision)


def enqueue_feed_job(conn, feed: str | int, run_id: int, purpose: str, created_by: str | None = None,
                     text: str = "title", precision: str = "fast") -> int:
    """Queue a job that runs ``run_id``'s model over ``feed`` for ``purpose`` ('sentiment' scores or 'topics').

    ``precision`` is 'fast' (reduced precision where the hardware computes it natively; see engine.inference) or
    'exact' (float32, as the model was evaluated). One such job per feed, run and purpose is enough: an active one is
    returned instead of queueing another.
    """
    from engine.monitor import feeds
    from engine.models import inference
    from engine.jobs import queue

    feed_row = feeds.get_feed(conn, feed)
    run = model_run(conn, run_id)
    if text not in ("title", "title_body"):
        raise UserError("Use either the 'title' or 'title_body' (title and body together) of each article.")
    if precision not in inference.PRECISIONS:
        raise UserError(f"Precision must be 'fast' or 'exact', not '{precision}'.")
    active = list(
        conn.query(
            "SELECT id FROM jobs WHERE kind = 'score' AND feed_id = ? AND model_run_id = ? "
            "AND status IN ('queued', 'running') "
            "AND COALESCE(json_extract(config_json, '$.purpose'), ?) = ?",
            [feed_row["id"], run["id"], SENTIMENT, purpose],
        )
    )
    if active:
        return active[0]["id"]
    config = {"text": text, "batch_size": BATCH, "precision": precision}
    if purpose != SENTIMENT:
        config["purpose"] = purpose
    return queue.enqueue(
        conn,
        "score",
        feed_id=feed_row["id"],
        model_run_id=run["id"],
        task="text-classification",
        name=f"{'score' if purpose == SENTIMENT else purpose} {feed_row['name']} with run {run['id']}",
        config_json=db.dumps(config),
        created_by=created_by,
    )


def run(conn, job: dict, ctx) -> dict:
    """Score the feed's articles that run ``job['model_run_id']`` has not scored yet."""
    from engine.models import inference
    from engine.monitor import topics

    if topics.is_topics_job(job):  # {"purpose": "topics"}: a topic classifier tags articles instead (engine.topics)
        return topics.run(conn, job, ctx)
    feed_id = job.get("feed_id")
    run_id = job.get("model_run_id")
    if not feed_id or not run_id:
        raise UserError("This score job has no feed or no model run; queue it again from the Feeds page.")
    if not conn.execute("SELECT 1 FROM feeds WHERE id = ?", [feed_id]).fetchone():
        raise UserError(f"Feed {feed_id} no longer exists.")
    config = db.loads(job.get("config_json"), {}) or {}
    text_mode = config.get("text", "title")
    batch_size = int(config.get("batch_size", BATCH))
    precision = config.get("precision", "exact")  # jobs queued before precisions existed ran in float32
    model = model_run(conn, run_id)
    total = count_unscored(conn, feed_id, run_id)
    log = getattr(ctx, "log", None)
    if log:
        log.info("scoring %d articles of feed %s with run %s", total, feed_id, run_id)
    ctx.progress(kind="score", step=0, total_steps=total, elapsed_s=0.0)
    started = time.perf_counter()
    done = 0
    device = dtype = "none"
    load_s = 0.0
    if total:
        predictor = inference.load(model["model_dir"], precision=precision)
        device, dtype = predictor.device, predictor.dtype_name
        load_s = time.perf_counter() - started
        if log:
            log.info("model loaded in %.1fs on %s in %s (precision '%s')", load_s, device, dtype, precision)
        neg = negative_label(predictor.labels)
        for rows in pending_chunks(conn, ctx, UNSCORED_CHUNK, feed_id, run_id, total, started):
            texts = [article_text(r[1], r[2], text_mode) for r in rows]
            preds = predictor.predict(texts, batch_size=batch_size)
            now = db.now()
            records = [
                (r[0], run_id, p.label, p.confidence, float(p.probs.get(neg, 0.0)) if neg else 0.0,
                 db.dumps({k: round(v, 6) for k, v in p.probs.items()}), job.get("id"), now)
                for r, p in zip(rows, preds)
            ]
            with db.transaction(conn):
                conn.conn.executemany(
                    "INSERT INTO scores (article_id, run_id, label, confidence, negative, probs_json, job_id, "
                    "scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (article_id, run_id) DO UPDATE SET "
                    "label = excluded.label, confidence = excluded.confidence, negative = excluded.negative, "
                    "probs_json = excluded.probs_json, job_id = excluded.job_id, scored_at = excluded.scored_at",
                    records,
                )
            done += len(rows)
        dtype = predictor.dtype_name  # float32 after a fallback from reduced precision
    elapsed = time.perf_counter() - started
    score_s = elapsed - load_s  # reading articles, scoring them, writing scores and progress rows
    metrics = {
        "feed_id": feed_id,
        "run_id": run_id,
        "scored": done,
        "seconds": round(elapsed, 3),
        "load_s": round(load_s, 3),
        "score_s": round(score_s, 3),
        "articles_per_s": round(done / score_s, 1) if score_s > 0 and done else None,
        "device": device,
        "precision": precision,
        "dtype": dtype,
    }
    if total and predictor.fallback:
        metrics["precision_note"] = predictor.fallback
    try:
        from engine.monitor import alerts

        fired = alerts.evaluate(conn, feed_id, run_id)
        metrics["alerts"] = len(fired)
    except UserError as exc:  # no alert can be computed (too little history): scoring still succeeded
        metrics["alerts_note"] = str(exc)
    if log:
        log.info("scored %d articles in %.1fs", done, elapsed)
    return metrics
