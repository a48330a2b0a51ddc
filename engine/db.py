"""The SQLite store, through sqlite-utils, with WAL on and a schema that migrates itself.

Open a connection with :func:`connect` where you need one (a command, a job process, one dashboard script run);
there is no module-level connection. The schema version is SQLite's ``user_version``; each migration is a function
below, applied once, in order, inside one write transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils

from engine import paths
from engine.errors import UserError
from engine.i18n import _


def now() -> str:
    """The current UTC time as ISO 8601 with seconds, the form every *_at column uses."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


# --------------------------------------------------------------------------------------------------------------
# Migrations. Append new ones; never edit one that has shipped.


def _m001_core(db: sqlite_utils.Database) -> None:
    db["datasets"].create(
        {
            "id": int,
            "name": str,
            "version": int,
            "task": str,  # text-classification | token-classification
            "source_file": str,
            "source_sha256": str,
            "source_format": str,
            "encoding": str,
            "mapping_json": str,  # {"text": col, "label": col, "split": col|None, "sheet": ..}
            "labels_json": str,  # sorted list of labels (tags for token-classification)
            "counts_json": str,  # {"train": {"positive": 12, ...}, "validation": {...}, "test": {...}}
            "report_json": str,  # the validation report that was accepted
            "n_rows": int,
            "created_at": str,
            "created_by": str,
        },
        pk="id",
        not_null={"name", "version", "task", "created_at"},
    )
    db["datasets"].create_index(["name", "version"], unique=True)
    db["dataset_rows"].create(
        {
            "dataset_id": int,
            "row_id": int,  # stable id within the dataset version, carried through predictions
            "split": str,  # train | validation | test
            "text": str,  # for token-classification: the tokens joined by spaces
            "label": str,  # text-classification label; NULL for token-classification
            "tokens_json": str,  # token-classification: list of tokens
            "tags_json": str,  # token-classification: list of BIO tags
        },
        pk=("dataset_id", "row_id"),
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db["dataset_rows"].create_index(["dataset_id", "split"])

    # Jobs: training runs and scoring jobs share one queue. A run id is a job id of kind 'train'.
    db["jobs"].create(
        {
            "id": int,
            "kind": str,  # train | score
            "status": str,  # queued | running | succeeded | failed | cancelled
            "task": str,
            "dataset_id": int,
            "base_model": str,
            "config_json": str,
            "name": str,
            "device_slot": str,  # the queue it waits in: 'cuda' or 'cpu'
            "created_at": str,
            "created_by": str,
            "started_at": str,
            "finished_at": str,
            "heartbeat_at": str,
            "pid": int,
            "cancel_requested": int,
            "attempt": int,
            "resume_from": str,  # checkpoint directory to resume from
            "error": str,  # the reason, in plain words
            "device_json": str,  # {"device": "cuda", "precision": "bf16", "gpu_name": .., "gpu_memory_gb": .., "world_size": 1}
            "metrics_json": str,  # final metrics: test accuracy, macro_f1, ...
            "model_dir": str,
            "log_path": str,
            "feed_id": int,  # score jobs: the feed
            "model_run_id": int,  # score jobs: the finished training run used as model
        },
        pk="id",
        not_null={"kind", "status", "created_at"},
    )
    db["jobs"].create_index(["status", "device_slot", "id"])
    db["progress"].create(
        {
            "id": int,
            "job_id": int,
            "kind": str,  # train | eval | score
            "step": int,
            "total_steps": int,
            "epoch": float,
            "loss": float,
            "learning_rate": float,
            "samples_per_s": float,
            "elapsed_s": float,
            "eta_s": float,
            "eval_loss": float,
            "accuracy": float,
            "macro_f1": float,
            "extra_json": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["progress"].create_index(["job_id", "id"])
    db["predictions"].create(
        {
            "run_id": int,
            "split": str,  # 'test', or 'eval:<name>' for an uploaded evaluation file
            "row_id": int,
            "text": str,
            "true_label": str,
            "pred_label": str,
            "confidence": float,
            "probs_json": str,  # {label: probability}
            "tokens_json": str,
            "true_tags_json": str,
            "pred_tags_json": str,
        },
        pk=("run_id", "split", "row_id"),
    )
    db["supervisor"].create(
        {"id": int, "pid": int, "started_at": str, "heartbeat_at": str, "hostname": str}, pk="id"
    )


def _m002_feeds(db: sqlite_utils.Database) -> None:
    db["feeds"].create(
        {"id": int, "name": str, "tz": str, "mapping_json": str, "created_at": str, "created_by": str},
        pk="id",
        not_null={"name"},
    )
    db["feeds"].create_index(["name"], unique=True)
    db["feed_imports"].create(
        {
            "id": int,
            "feed_id": int,
            "file_name": str,
            "sha256": str,
            "n_new": int,
            "n_duplicate": int,
            "n_rejected": int,
            "report_json": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("feed_id", "feeds", "id")],
    )
    db["articles"].create(
        {
            "id": int,
            "feed_id": int,
            "published_at": str,  # ISO 8601 UTC
            "day": str,  # YYYY-MM-DD in the feed's time zone
            "title": str,
            "body": str,
            "source": str,
            "url": str,
            "topic": str,  # from a mapped column
            "norm_title": str,
            "import_id": int,
        },
        pk="id",
        foreign_keys=[("feed_id", "feeds", "id")],
    )
    db["articles"].create_index(["feed_id", "day"])
    db["articles"].create_index(["feed_id", "url"])
    db["articles"].create_index(["feed_id", "norm_title", "day"])
    db["articles"].enable_fts(["title", "body"], create_triggers=True, tokenize="unicode61")
    db["topic_rules"].create(
        {"id": int, "feed_id": int, "name": str, "keywords_json": str, "created_at": str},
        pk="id",
    )
    db["topic_rules"].create_index(["feed_id", "name"], unique=True)
    db["article_topics"].create(
        {"article_id": int, "topic": str, "origin": str},  # origin: column | rule | model
        pk=("article_id", "topic"),
    )
    db["article_topics"].create_index(["topic", "article_id"])
    db["scores"].create(
        {
            "article_id": int,
            "run_id": int,
            "label": str,
            "confidence": float,
            "negative": float,  # probability of the negative class (0 when the model has none)
            "probs_json": str,
            "job_id": int,
            "scored_at": str,
        },
        pk=("article_id", "run_id"),
    )
    db["scores"].create_index(["run_id", "article_id"])
    db["alert_rules"].create(
        {
            "feed_id": int,
            "window_days": int,
            "baseline_days": int,
            "k": float,
            "abs_threshold": float,
            "min_articles": int,
            "updated_at": str,
        },
        pk="feed_id",
    )
    db["alerts"].create(
        {
            "id": int,
            "feed_id": int,
            "run_id": int,
            "topic": str,  # NULL: overall
            "window_start": str,
            "window_end": str,
            "negative_share": float,
            "baseline_mean": float,
            "baseline_std": float,
            "magnitude": float,
            "n_articles": int,
            "rule_json": str,
            "article_ids_json": str,
            "created_at": str,
            "acknowledged_at": str,
            "acknowledged_by": str,
        },
        pk="id",
    )
    db["alerts"].create_index(["feed_id", "run_id", "window_end"])


def _m003_sentiment_rollups(db: sqlite_utils.Database) -> None:
    """Daily counts of articles and of their sentiment labels, kept by triggers, so the Monitor never scans articles.

    ``day_counts``: one row per (feed, run, day, source, label) with its article count ``n``; ``topic_day_counts``: the
    same per topic (an article counts once in each of its topics). ``run_id = 0`` with ``label = ''`` counts every
    article (scored or not); other rows count the scores of that run (a NULL label is stored as ''). A NULL source is
    ''. Triggers on ``articles``, ``scores`` and ``article_topics`` add and subtract in the same transaction as the
    write (inserts, deletes, updates of the columns used), so the counts always equal a GROUP BY over the joins. Rows
    may drop to n = 0: readers keep ``n > 0``.
    """
    db.execute(
        "CREATE TABLE day_counts (feed_id INTEGER NOT NULL, run_id INTEGER NOT NULL, day TEXT NOT NULL, "
        "source TEXT NOT NULL, label TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (feed_id, run_id, day, source, label)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE topic_day_counts (feed_id INTEGER NOT NULL, run_id INTEGER NOT NULL, topic TEXT NOT NULL, "
        "day TEXT NOT NULL, source TEXT NOT NULL, label TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (feed_id, run_id, topic, day, source, label)) WITHOUT ROWID"
    )
    day_up = ("INSERT INTO day_counts (feed_id, run_id, day, source, label, n) {} "
              "ON CONFLICT (feed_id, run_id, day, source, label) DO UPDATE SET n = n + excluded.n;")
    topic_up = ("INSERT INTO topic_day_counts (feed_id, run_id, topic, day, source, label, n) {} "
                "ON CONFLICT (feed_id, run_id, topic, day, source, label) DO UPDATE SET n = n + excluded.n;")

    def article(x: str, sign: int) -> str:  # x: NEW or OLD row of articles
        key = f"COALESCE({x}.feed_id, 0)"
        day, src = f"COALESCE({x}.day, '')", f"COALESCE({x}.source, '')"
        return "\n".join([
            day_up.format(f"VALUES ({key}, 0, {day}, {src}, '', {sign})"),
            day_up.format(f"SELECT {key}, sc.run_id, {day}, {src}, COALESCE(sc.label, ''), {sign} FROM scores sc "
                          f"WHERE sc.article_id = {x}.id"),
            topic_up.format(f"SELECT {key}, 0, COALESCE(t.topic, ''), {day}, {src}, '', {sign} FROM article_topics t "
                            f"WHERE t.article_id = {x}.id"),
            topic_up.format(f"SELECT {key}, sc.run_id, COALESCE(t.topic, ''), {day}, {src}, COALESCE(sc.label, ''), "
                            f"{sign} FROM article_topics t JOIN scores sc ON sc.article_id = t.article_id "
                            f"WHERE t.article_id = {x}.id"),
        ])

    def score(x: str, sign: int) -> str:  # x: NEW or OLD row of scores
        cols = "COALESCE(a.feed_id, 0), {}, COALESCE(a.day, ''), COALESCE(a.source, ''), COALESCE({}.label, ''), {}"
        return "\n".join([
            day_up.format(f"SELECT {cols.format(f'{x}.run_id', x, sign)} FROM articles a WHERE a.id = {x}.article_id"),
            topic_up.format(
                "SELECT COALESCE(a.feed_id, 0), {r}.run_id, COALESCE(t.topic, ''), COALESCE(a.day, ''), "
                "COALESCE(a.source, ''), COALESCE({r}.label, ''), {s} FROM articles a JOIN article_topics t "
                "ON t.article_id = a.id WHERE a.id = {r}.article_id".format(r=x, s=sign)),
        ])

    def topic(x: str, sign: int) -> str:  # x: NEW or OLD row of article_topics
        return "\n".join([
            topic_up.format(f"SELECT COALESCE(a.feed_id, 0), 0, COALESCE({x}.topic, ''), COALESCE(a.day, ''), "
                            f"COALESCE(a.source, ''), '', {sign} FROM articles a WHERE a.id = {x}.article_id"),
            topic_up.format(f"SELECT COALESCE(a.feed_id, 0), sc.run_id, COALESCE({x}.topic, ''), COALESCE(a.day, ''), "
                            f"COALESCE(a.source, ''), COALESCE(sc.label, ''), {sign} FROM articles a JOIN scores sc "
                            f"ON sc.article_id = a.id WHERE a.id = {x}.article_id"),
        ])

    for table, body, update_of in [("articles", article, "id, feed_id, day, source"),
                                   ("scores", score, "article_id, run_id, label"),
                                   ("article_topics", topic, "article_id, topic")]:
        db.execute(f"CREATE TRIGGER {table}_rollup_ai AFTER INSERT ON {table} BEGIN\n{body('NEW', 1)}\nEND")
        db.execute(f"CREATE TRIGGER {table}_rollup_ad AFTER DELETE ON {table} BEGIN\n{body('OLD', -1)}\nEND")
        db.execute(f"CREATE TRIGGER {table}_rollup_au AFTER UPDATE OF {update_of} ON {table} BEGIN\n"
                   f"{body('OLD', -1)}\n{body('NEW', 1)}\nEND")
    rebuild_rollups(db)


def rebuild_rollups(db: sqlite_utils.Database) -> None:
    """Recount ``day_counts`` and ``topic_day_counts`` from articles, scores and topics (the migration's backfill)."""
    db.execute("DELETE FROM day_counts")
    db.execute("DELETE FROM topic_day_counts")
    add_to_rollups(db)


def add_to_rollups(db: sqlite_utils.Database, first_id: int | None = None, end_id: int | None = None) -> None:
    """Add the counts of the articles with ``first_id <= id < end_id`` (all when not given) with their scores and topics.

    A large import sets the rollup triggers of ``articles`` and ``article_topics`` aside inside its transaction and
    calls this once for its new id range: the same counts, in one statement per table instead of one per row.
    """
    rng, params = ("a.id >= ? AND a.id < ?", [first_id, end_id]) if first_id is not None else ("1", [])
    a = "COALESCE(a.feed_id, 0), {run}, COALESCE(a.day, ''), COALESCE(a.source, ''), {label}"
    t = "COALESCE(a.feed_id, 0), {run}, COALESCE(t.topic, ''), COALESCE(a.day, ''), COALESCE(a.source, ''), {label}"
    label, empty = "COALESCE(s.label, '')", "''"
    day_up = "ON CONFLICT (feed_id, run_id, day, source, label) DO UPDATE SET n = n + excluded.n"
    topic_up = "ON CONFLICT (feed_id, run_id, topic, day, source, label) DO UPDATE SET n = n + excluded.n"
    for sql in [
        f"INSERT INTO day_counts SELECT {a.format(run='0', label=empty)}, COUNT(*) FROM articles a WHERE {rng} "
        f"GROUP BY 1, 2, 3, 4, 5 {day_up}",
        f"INSERT INTO day_counts SELECT {a.format(run='s.run_id', label=label)}, COUNT(*) FROM articles a "
        f"JOIN scores s ON s.article_id = a.id WHERE {rng} GROUP BY 1, 2, 3, 4, 5 {day_up}",
        f"INSERT INTO topic_day_counts SELECT {t.format(run='0', label=empty)}, COUNT(*) FROM articles a "
        f"JOIN article_topics t ON t.article_id = a.id WHERE {rng} GROUP BY 1, 2, 3, 4, 5, 6 {topic_up}",
        f"INSERT INTO topic_day_counts SELECT {t.format(run='s.run_id', label=label)}, COUNT(*) FROM articles a "
        f"JOIN article_topics t ON t.article_id = a.id JOIN scores s ON s.article_id = a.id WHERE {rng} "
        f"GROUP BY 1, 2, 3, 4, 5, 6 {topic_up}",
    ]:
        db.execute(sql, params)


def _m004_model_topics(db: sqlite_utils.Database) -> None:
    """``article_topics.run_id``: the topic classifier run behind an origin='model' row (NULL for column and rule)."""
    db.execute("ALTER TABLE article_topics ADD COLUMN run_id INTEGER")


def _m005_access(db: sqlite_utils.Database) -> None:
    """Accounts, browser sessions, the append-only audit log, and who saved each evaluation (engine.access)."""
    db["users"].create(
        {"name": str, "role": str, "password_hash": str, "sso": int, "disabled": int, "failures": int,
         "locked_until": str, "created_at": str, "created_by": str, "last_sign_in_at": str},
        pk="name", not_null={"role", "created_at"}, defaults={"sso": 0, "disabled": 0, "failures": 0},
    )
    db["sessions"].create({"token_sha256": str, "user": str, "created_at": str, "last_seen_at": str},
                          pk="token_sha256")
    db["sessions"].create_index(["user"])
    db["audit_log"].create(
        {"id": int, "at": str, "actor": str, "role": str, "action": str, "object": str, "detail_json": str},
        pk="id", not_null={"at", "actor", "action"},
    )
    db["audit_log"].create_index(["actor"])
    db["audit_log"].create_index(["action"])
    db.execute("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    db.execute("CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    db["evaluations"].create({"run_id": int, "split": str, "created_by": str, "created_at": str},
                             pk=("run_id", "split"))


def _m006_live_feeds(db: sqlite_utils.Database) -> None:
    """Sources polled by the worker, the feed's current model, story clusters, notification channels and deliveries.

    ``feeds.current_model``: the run that scores what sources bring in (NULL: the newest run that scored the feed).
    ``feed_sources``: an RSS/Atom URL or a server folder, each with its interval, conditional-request validators
    (etag, last_modified), schedule and last error. ``source_files``: a folder's files already imported (by content
    hash, recorded in the import's transaction). ``articles.story_id``: the first article of the same story (near-
    duplicate title within a window), NULL when never clustered. ``notify_channels`` / ``notify_deliveries``: where
    alerts are pushed and every attempt, one delivery per channel and event.
    """
    db.execute("ALTER TABLE feeds ADD COLUMN current_model INTEGER")
    db.execute("ALTER TABLE articles ADD COLUMN story_id INTEGER")
    db.execute("CREATE INDEX idx_articles_story ON articles (feed_id, story_id)")
    db["feed_sources"].create(
        {"id": int, "feed_id": int, "kind": str, "location": str, "interval_s": float, "enabled": int,
         "etag": str, "last_modified": str, "last_poll_at": str, "next_poll_at": str, "last_ok_at": str,
         "last_error": str, "error_count": int, "n_imported": int, "created_at": str, "created_by": str},
        pk="id", foreign_keys=[("feed_id", "feeds", "id")], not_null={"feed_id", "kind", "location"},
    )
    db["feed_sources"].create_index(["feed_id", "kind", "location"], unique=True)
    db["feed_sources"].create_index(["next_poll_at"])
    db["source_files"].create(
        {"source_id": int, "sha256": str, "name": str, "import_id": int, "seen_at": str},
        pk=("source_id", "sha256"),
    )
    db["notify_channels"].create(
        {"id": int, "name": str, "kind": str, "config_json": str, "style": str, "events": str, "enabled": int,
         "created_at": str, "created_by": str},
        pk="id", not_null={"name", "kind"},
    )
    db["notify_channels"].create_index(["name"], unique=True)
    db["notify_deliveries"].create(
        {"id": int, "channel_id": int, "event_key": str, "payload_json": str, "status": str, "attempts": int,
         "next_attempt_at": str, "last_error": str, "created_at": str, "sent_at": str},
        pk="id",
    )
    db["notify_deliveries"].create_index(["channel_id", "event_key"], unique=True)
    db["notify_deliveries"].create_index(["status", "next_attempt_at"])


def _m007_generation_outputs(db: sqlite_utils.Database) -> None:
    """Generation runs keep, per held-out prompt, the base model's output beside the fine-tuned one (pred_label) and
    the reference (true_label)."""
    db["predictions"].add_column("base_output", str)


def _m008_review(db: sqlite_utils.Database) -> None:
    """The review loop (engine.review): items to review, their answers, where corrected data went, who promoted what.

    ``review_items``: one row per item (a feed article scored by a run, a prediction of an evaluated file, or anything
    flagged). ``item_key`` makes an item unique (``article:<id>``, ``pred:<run>:<split>:<row>``, ``text:<sha>``), so an
    item reviewed once is not queued again. The model's suggestion (``suggested_label``, ``confidence``, ``margin``,
    ``probs_json``) and the reviewer's ``answer_label`` are separate columns. ``claimed_by`` / ``lease_until``: a
    reviewer holds an item until the lease ends (two reviewers never get the same item; a lost tab's claim lapses).
    ``datasets.origin_json``: for a version made from reviewed items, the version it extends and the item ids.
    ``feed_model_history``: every change of ``feeds.current_model`` made by a promotion (who, when, from what).
    """
    db["review_items"].create(
        {"id": int, "queue": str, "item_key": str, "kind": str, "feed_id": int, "article_id": int, "run_id": int,
         "split": str, "row_id": int, "text": str, "true_label": str, "suggested_label": str, "confidence": float,
         "margin": float, "entropy": float, "priority": float, "probs_json": str, "status": str,
         "claimed_by": str, "lease_until": str, "answer_label": str, "answered_by": str, "answered_at": str,
         "note": str, "dataset_id": int, "created_at": str, "created_by": str},
        pk="id", not_null={"queue", "item_key", "kind", "text", "status", "created_at"},
    )
    db["review_items"].create_index(["item_key"], unique=True)
    db["review_items"].create_index(["queue", "status", "priority", "id"])
    db.execute("ALTER TABLE datasets ADD COLUMN origin_json TEXT")
    db["feed_model_history"].create(
        {"id": int, "feed_id": int, "run_id": int, "previous_run_id": int, "promoted_by": str, "promoted_at": str,
         "rescore_job_id": int, "note": str},
        pk="id", not_null={"feed_id", "promoted_at"},
    )
    db["feed_model_history"].create_index(["feed_id", "id"])


def _m009_run_purpose(db: sqlite_utils.Database) -> None:
    """``jobs.purpose``: what a training run was trained for (sentiment | topics | other), asked when it is queued.
    NULL for runs trained before: engine.jobs.runs.purpose infers it from their labels."""
    db["jobs"].add_column("purpose", str)


def _m011_preferences(db: sqlite_utils.Database) -> None:
    """Each person's interface language (engine.i18n), by the name they act under: an account, or the local
    administrator of a dashboard without accounts."""
    db["user_preferences"].create({"name": str, "language": str, "updated_at": str}, pk="name")


def _m012_queue_order(db: sqlite_utils.Database) -> None:
    """``jobs.queue_order``: the order jobs were queued in. Training runs and the other kinds of job take their ids from
    ranges of their own (engine.jobs.queue: each kind numbered 1, 2, 3 ... as people see it), so the id no longer tells
    which was queued first; this does. Jobs queued before keep their ids as their place."""
    db["jobs"].add_column("queue_order", int)
    db.execute("UPDATE jobs SET queue_order = id")
    db["jobs"].create_index(["status", "device_slot", "queue_order"])


MIGRATIONS: list[tuple[int, Callable[[sqlite_utils.Database], None]]] = [
    (1, _m001_core),
    (2, _m002_feeds),
    (3, _m003_sentiment_rollups),
    (4, _m004_model_topics),
    (5, _m005_access),
    (6, _m006_live_feeds),
    (7, _m007_generation_outputs),
    (8, _m008_review),
    (9, _m009_run_purpose),
    (11, _m011_preferences),  # 10: the generation work, merged in beside these
    (12, _m012_queue_order),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema up to date. Safe when several processes start at once."""
    if schema_version(db) >= SCHEMA_VERSION:
        return schema_version(db)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(db)
        for version, step in MIGRATIONS:
            if version > current:
                step(db)
                conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return schema_version(db)


def _enable_wal(db: sqlite_utils.Database, wait_s: float = 30.0) -> None:
    """Switch a new store to WAL. Two processes opening a brand-new store at once can race here, and SQLite answers
    the loser's journal-mode change with "database is locked" at once, without its busy timeout (seen 1 time in 300
    in tests/test_hardening.py's two first imports): so wait and try again, as the busy timeout would have."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def connect(path: str | Path | None = None) -> sqlite_utils.Database:
    """Open the store (creating and migrating it when needed)."""
    path = Path(path) if path else paths.db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("PRAGMA busy_timeout = 30000")
    _enable_wal(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA recursive_triggers = ON")  # INSERT OR REPLACE then fires delete triggers (the rollups)
    migrate(db)
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction (BEGIN IMMEDIATE): all of it lands, or none of it does.

    The connection is in autocommit mode, so writes outside this block commit one statement at a time.
    """
    conn = db.conn
    if conn.in_transaction:  # nested: the outer block decides
        yield db
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "disk is full" in str(exc) or "disk I/O error" in str(exc):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise UserError(_(
                "The disk holding the data directory ({home}) is full, so this was not saved and nothing "
                "stored was changed. Free some space there (or ask your administrator to), then try again.",
                home=paths.home())) from exc
        raise


def table_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Row counts of every ordinary table: tests use it to prove a refused action changed nothing."""
    return {name: db[name].count for name in db.table_names() if not name.startswith("articles_fts")}


def executemany(store: sqlite_utils.Database, sql: str, rows) -> None:
    """Run one parameterised statement for many rows (inside the caller's transaction). The engine's ``conn``
    arguments are sqlite-utils ``Database`` objects; this is the one place that reaches for their sqlite3
    connection to do it."""
    store.conn.executemany(sql, rows)
