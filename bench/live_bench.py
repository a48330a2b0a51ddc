"""``python -m bench.live_bench``: live feeds end to end, articles/s from poll to scored and alert evaluated.

A loopback RSS server (127.0.0.1 only) serves ``--sources`` feeds (100) of ``--items`` items each (20), real
headlines from ``../shared/data/news`` when present. In a temporary data directory, one feed gets all the sources and
a current model, then the measured path runs exactly as the worker runs it:

1. ``poller.poll_due``: every source fetched (8 at a time), imported (dedup, topics), clustered into stories;
2. ``poller.ensure_scoring`` queues one score job, run as the supervisor runs it (``python -m engine _job ID``, a
   process of its own, model loaded there), which scores and then evaluates the alert rule.

Reported: seconds for each phase, articles/s for the whole path (poll start to job end), and a second round where
every source answers 304 (conditional requests, nothing imported). The model is ``--model DIR`` (a trained run's
model folder) or, by default, the packaged base model (all-MiniLM-L6-v2) with a fresh 3-label head: the same compute as
a run fine-tuned from it, meaningless labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.data import shared_dir
from bench.loopback import FeedServer, rss

ROOT = Path(__file__).resolve().parent.parent


def headlines(n: int) -> list[str]:
    found: list[str] = []
    folder = shared_dir() / "news" if shared_dir() else None
    for name in ("reuters_headlines.csv", "cnbc_headlines.csv", "guardian_headlines.csv"):
        path = folder / name if folder else None
        if path and path.exists():
            with open(path, encoding="utf-8", errors="replace", newline="") as handle:
                found += [r.get("Headlines", "").strip() for r in csv.DictReader(handle) if r.get("Headlines", "").strip()]
        if len(found) >= n:
            break
    found = list(dict.fromkeys(found))
    while len(found) < n:
        found.append(f"Synthetic headline {len(found)} about company {len(found) % 97}")
    return found[:n]


def stand_in_model(folder: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.models.catalog import default_model_path

    labels = ["negative", "neutral", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        default_model_path(), num_labels=3, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, trust_remote_code=False)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False).save_pretrained(folder)
    return folder


def run(n_sources: int = 100, n_items: int = 20, model: str | None = None) -> dict:
    keys = ("BELLWETHER_ALLOW_PRIVATE_SOURCES", "BELLWETHER_MIN_POLL_INTERVAL_S", "BELLWETHER_HOME")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        return _run(n_sources, n_items, model)
    finally:  # the environment as it was (tests call this in their own process)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(n_sources: int, n_items: int, model: str | None) -> dict:
    os.environ["BELLWETHER_ALLOW_PRIVATE_SOURCES"] = "1"
    os.environ["BELLWETHER_MIN_POLL_INTERVAL_S"] = "1"
    with tempfile.TemporaryDirectory(prefix="bellwether-live-bench-") as tmp:
        os.environ["BELLWETHER_HOME"] = str(Path(tmp) / "home")
        from engine import db
        from engine.monitor import feeds, poller, sources

        model_dir = Path(model) if model else stand_in_model(Path(tmp) / "model")
        conn = db.connect()
        run_id = conn["jobs"].insert({"kind": "train", "status": "succeeded", "task": "text-classification",
                                      "created_at": db.now(), "finished_at": db.now(), "model_dir": str(model_dir),
                                      "name": "live-bench", "metrics_json": "{}"}).last_pk
        feeds.import_file(conn, b"time,title\n2020-01-01,Seed\n", "seed.csv", "live")
        conn.execute("DELETE FROM articles")  # an empty feed with the remembered mapping
        titles = headlines(n_sources * n_items)
        now = datetime.now(timezone.utc)
        server = FeedServer()
        try:
            for s in range(n_sources):
                items = [{"title": titles[s * n_items + i], "link": f"https://n.example/{s}/{i}",
                          "published": now - timedelta(minutes=i)} for i in range(n_items)]
                server.routes[f"/s{s}.rss"] = rss(items, title=f"Wire {s}")
                sources.add_source(conn, "live", server.url(f"/s{s}.rss"), interval_s=1,
                                   run_id=run_id if s == 0 else None)
            started = time.perf_counter()
            results = poller.poll_due(conn)
            polled = time.perf_counter()
            [job_id] = poller.ensure_scoring(conn)
            queued = time.perf_counter()
            conn.execute("UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ?",
                         [db.now(), db.now(), job_id])
            proc = subprocess.run([sys.executable, "-m", "engine", "_job", str(job_id)], cwd=ROOT,
                                  env={**os.environ, "BELLWETHER_JOB_STDOUT_IS_LOG": "1"}, capture_output=True, text=True)
            done = time.perf_counter()
            job = dict(next(conn.query("SELECT status, error, metrics_json FROM jobs WHERE id = ?", [job_id])))
            metrics = db.loads(job["metrics_json"], {}) or {}
            n_articles = conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
            n_scored = conn.execute("SELECT COUNT(*) FROM scores WHERE run_id = ?", [run_id]).fetchone()[0]
            n_repeats = conn.execute("SELECT COUNT(*) FROM articles WHERE story_id <> id").fetchone()[0]
            poller_step_eval = time.perf_counter()
            from engine.monitor import alerts

            alerts.evaluate(conn, feeds.get_feed(conn, "live")["id"], run_id)
            eval_s = time.perf_counter() - poller_step_eval

            # Every source due again, nothing changed: each answers 304 and nothing is read or imported.
            conn.execute("UPDATE feed_sources SET next_poll_at = ?", [poller.iso(now - timedelta(days=1))])
            again = time.perf_counter()
            second = poller.poll_due(conn)
            again_s = time.perf_counter() - again
        finally:
            server.close()
        total = done - started
        return {
            "benchmark": "live", "sources": n_sources, "items_per_source": n_items, "model": str(model or
                                                                                               "default base model, fresh head"),
            "job_status": job["status"], "job_error": job["error"] or (proc.stderr[-500:] if proc.returncode else None),
            "articles_imported": n_articles, "articles_scored": n_scored, "story_repeats": n_repeats,
            "sources_failed": sum(r.status == "error" for r in results),
            "poll_and_import_s": round(polled - started, 3),
            "queue_s": round(queued - polled, 3),
            "score_job_s": round(done - queued, 3),
            "score_job_model_load_s": metrics.get("load_s"), "score_job_scoring_s": metrics.get("score_s"),
            "score_job_articles_per_s": metrics.get("articles_per_s"), "device": metrics.get("device"),
            "dtype": metrics.get("dtype"), "alert_evaluation_s": round(eval_s, 3),
            "end_to_end_s": round(total, 3),
            "end_to_end_articles_per_s": round(n_scored / total, 1) if total else None,
            "second_round_all_304_s": round(again_s, 3),
            "second_round_unchanged": sum(r.status == "unchanged" for r in second),
            "not_modified_answers": server.not_modified,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", type=int, default=100)
    p.add_argument("--items", type=int, default=20, help="items per source")
    p.add_argument("--model", help="a trained model folder (default: the base model with a fresh head)")
    args = p.parse_args(argv)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    result = run(args.sources, args.items, args.model)
    result["load_average_start"] = load
    result["cpu_cores"] = os.cpu_count()
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
