"""The score job: a finished training run's model labels a feed's articles with sentiment.

``run(conn, job, ctx)`` is the runner the job queue calls for kind 'score' (``job['feed_id']``,
``job['model_run_id']``). It scores only the articles that run has not scored yet, in chunks (each chunk's scores
committed together, so a cancel or a crash keeps what was done and a restart carries on), writes a progress row
(kind 'score') after each chunk, and stops cleanly when cancelled. Each score keeps the label, the class
probabilities, the confidence, the probability of the negative class, the run id, the job id and the time, so
scores from several models live side by side.

When it is done it evaluates the feed's alert rule for that run (engine.monitor.alerts). Queueing and the chunk loop
are shared with the topics job (engine.monitor.feedjobs).
"""

from __future__ import annotations

import time

from engine import db, i18n
from engine.data import language as languages
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import runs
from engine.models import coverage, inference
from engine.monitor import alerts, feedjobs, vocabulary


# The feed's articles that a run has not scored yet, a chunk at a time in id order (see pending_chunks).
UNSCORED_CHUNK = (
    "SELECT a.id, a.title, a.body FROM articles a WHERE a.feed_id = ? AND a.id > ? AND NOT EXISTS "
    "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.run_id = ?) ORDER BY a.id LIMIT ?"
)


def count_unscored(conn, feed_id: int, run_id: int) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.run_id = ?)",
        [feed_id, run_id],
    ).fetchone()[0]


def _titles(conn, feed_id: int) -> list[str]:
    """The titles of a feed's newest 2,000 articles."""
    return [r[0] for r in conn.execute("SELECT title FROM articles WHERE feed_id = ? ORDER BY id DESC LIMIT 2000",
                                       [int(feed_id)])]


def feed_language(conn, feed_id: int) -> dict | None:
    """The main language of a feed's articles, told from the titles of its newest 2,000 (None: no articles)."""
    titles = _titles(conn, feed_id)
    return languages.detect(titles) if titles else None


def language_warning(conn, feed_id: int, run_id: int) -> str | None:
    """A plain warning when a feed's main language differs from that of the texts run ``run_id`` was trained on, or
    else when the run's model has no token for many of the words of the feed's titles (engine.models.coverage, with
    the tokenizer saved with the run's model); None when neither. One message, never both."""
    titles = _titles(conn, feed_id)  # read once for both checks
    feed = languages.detect(titles) if titles else None
    try:
        run = runs.get(conn, run_id)
    except UserError:
        return None
    trained = runs.language(conn, run)
    codes = {(feed or {}).get("language"), (trained or {}).get("language")}
    if None in codes or languages.LATIN in codes or len(codes) == 1:
        return _vocabulary_warning(run, titles)
    return _("The feed's articles are mostly {feed_language} ({share} of the titles looked at), but run {run_id} was "
             "trained on {run_language} texts: its scores may be poor. Score with a run trained on {feed_language} "
             "texts.", feed_language=language_name(feed), share=i18n.percent(feed["share"]), run_id=run_id,
             run_language=language_name(trained))


def _vocabulary_warning(run: dict, titles: list[str]) -> str | None:
    model_dir = run.get("model_dir")
    if not model_dir:
        return None
    share = coverage.unknown_share(str(model_dir), titles)
    if not coverage.is_blind(share):
        return None
    return _("Run {run_id}'s model does not know {share} of the words in this feed's titles (its vocabulary has no "
             "token for them), so its scores may be poor. Score with a run whose base model's vocabulary covers the "
             "feed's language.", run_id=run["id"], share=i18n.percent(share))


def language_name(found: dict | None) -> str:
    """A detected language's name in the current language (Babel's names: 'Chinese', '中文'); '' when none."""
    from babel import Locale

    if not found or not found.get("language"):
        return ""
    if found["language"] == languages.LATIN:
        return _("a Latin-script language")
    try:
        return Locale.parse(i18n.language()).languages.get(found["language"]) or found["name"]
    except (ValueError, TypeError):
        return found["name"]


def describe_language(found: dict | None) -> str:
    """'Chinese (97% of 500 texts looked at)', in the current language: how a feed's language is shown."""
    if not found or not found.get("language"):
        return _("unknown (no text with letters)")
    return _("{language} ({share} of {n} texts looked at)", language=language_name(found),
             share=i18n.percent(found["share"]), n=i18n.number(found["n"]))


def enqueue(conn, feed: str | int, run_id: int, created_by: str | None = None, text: str = "title",
            precision: str = "fast", actor=None) -> int:
    """Queue a score job for ``feed`` with run ``run_id`` as the model; returns the job id. ``actor``: an analyst or
    admin (engine.access; None: the local administrator)."""
    return feedjobs.enqueue_feed_job(conn, feed, run_id, vocabulary.SENTIMENT, created_by, text, precision, actor)


def run(conn, job: dict, ctx) -> dict:
    """Score the feed's articles that run ``job['model_run_id']`` has not scored yet."""
    feed_id = job.get("feed_id")
    run_id = job.get("model_run_id")
    if not feed_id or not run_id:
        raise UserError(_("This score job has no feed or no model run; queue it again from the Feeds page."))
    if not conn.execute("SELECT 1 FROM feeds WHERE id = ?", [feed_id]).fetchone():
        raise UserError(_("Feed {feed_id} no longer exists.", feed_id=feed_id))
    config = db.loads(job.get("config_json"), {}) or {}
    text_mode = config.get("text", "title")
    batch_size = int(config.get("batch_size", feedjobs.BATCH))
    precision = config.get("precision", "exact")  # jobs queued before precisions existed ran in float32
    model = runs.for_scoring(conn, run_id)
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
        neg = vocabulary.negative_label(predictor.labels)
        for rows in feedjobs.pending_chunks(conn, ctx, UNSCORED_CHUNK, feed_id, run_id, total, started):
            texts = [feedjobs.article_text(r[1], r[2], text_mode) for r in rows]
            preds = predictor.predict(texts, batch_size=batch_size)
            now = db.now()
            records = [
                (r[0], run_id, p.label, p.confidence, float(p.probs.get(neg, 0.0)) if neg else 0.0,
                 db.dumps({k: round(v, 6) for k, v in p.probs.items()}), job.get("id"), now)
                for r, p in zip(rows, preds)
            ]
            with db.transaction(conn):
                db.executemany(
                    conn,
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
        fired = alerts.evaluate(conn, feed_id, run_id)
        metrics["alerts"] = len(fired)
    except UserError as exc:  # no alert can be computed (too little history): scoring still succeeded
        metrics["alerts_note"] = str(exc)
    if log:
        log.info("scored %d articles in %.1fs", done, elapsed)
    return metrics
