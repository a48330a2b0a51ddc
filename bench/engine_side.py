"""The engine's side of the benchmarks, through the product's own code paths.

Training: the fpb files are imported as a dataset (``engine.datasets.import_file``; train -> train, dev -> validation),
a run is queued with ``engine.training.submit`` (what pressing Train does) and the job process is started as the
supervisor starts it (``engine.jobs.run_job`` in a process of its own). Wall-clock runs from ``submit`` to the job
process's exit with the model saved in ``runs/<id>/model``; peak RSS is that process's own (``os.wait4``).

Scoring: the headlines are imported into a feed (``engine.feeds.import_file``), a score job is queued with
``engine.scoring.enqueue`` and run the same way; it reads the articles from SQLite and writes ``scores`` rows.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import data

ROOT = Path(__file__).resolve().parent.parent
JOB_CMD = "import sys; from engine.cli.job import run_job; sys.exit(run_job(int(sys.argv[1])))"


def run_job_process(job_id: int, log_path: Path) -> dict:
    """Run job ``job_id`` in a child process as the supervisor does; its exit status, wall time and peak RSS."""
    from bench import runner

    if runner.in_process():  # tests only: the job runs here, as `python -m engine _job` would run it
        from engine.cli.job import run_job

        start = time.perf_counter()
        status = run_job(job_id)
        return {"exit_status": status, "process_s": round(time.perf_counter() - start, 2),
                "peak_rss_mb": runner.peak_rss_mb()}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", JOB_CMD, str(job_id)], cwd=str(ROOT), env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"exit_status": proc.returncode, "process_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _job_error(conn, job_id: int) -> str:
    from engine.jobs import queue

    job = queue.get(conn, job_id)
    return f"job {job_id} ended {job['status']}: {job.get('error') or ''}\n{queue.log_tail(job, 15)}"


# ---------------------------------------------------------------------------------------------------------------
# Training


def import_fpb(conn, n_train: int | None, n_dev: int | None, name: str = "fpb-bench") -> str:
    import pandas as pd

    from engine.data import datasets

    rows = [{**r, "split": "train"} for r in data.fpb("train", n_train)]
    rows += [{**r, "split": "validation"} for r in data.fpb("dev", n_dev)]
    csv = pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(index=False).encode("utf-8")
    ds, _ = datasets.import_file(conn, csv, f"{name}.csv", name, created_by="bench",
                                 mapping={"text": "text", "label": "label", "split": "split"})
    return f"{ds['name']}:{ds['version']}"


def train_run(conn, dataset: str, base_model: str, preset: str, overrides: dict | None = None) -> dict:
    """Queue a run as the Train button does, run its job process, and read back what the analyst would see."""
    from engine import paths
    from engine.jobs import queue
    from engine.training import finetune

    pressed = time.perf_counter()
    job_id = finetune.submit(conn, dataset, base_model=base_model, preset=preset, overrides=overrides,
                             created_by="bench", name=f"bench {preset}")
    proc = run_job_process(job_id, paths.run_dir(job_id) / "bench-stdout.txt")
    wall = time.perf_counter() - pressed
    job = queue.get(conn, job_id)
    if job["status"] != "succeeded":
        from engine.errors import UserError

        raise UserError(f"The engine's training run failed: {_job_error(conn, job_id)}")
    m = job["metrics"]
    evals = [r for r in queue.progress_rows(conn, job_id, "eval")]
    n_train = int(m.get("n_train") or 0)
    epochs = float(job["config"].get("epochs") or 1)
    runtime = float(m.get("train_runtime_s") or 0) or None
    model_ok = bool(job.get("model_dir")) and (Path(job["model_dir"]) / "config.json").is_file()
    f1 = m.get("validation_macro_f1", m.get("macro_f1"))
    return {
        "run_id": job_id, "preset": preset, "config": {k: job["config"].get(k) for k in (
            "epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio", "weight_decay",
            "early_stopping_patience", "class_weighting", "r_drop", "average_last", "precision")},
        "n_train": n_train, "n_dev": m.get("n_validation"),
        "epochs_run": m.get("epochs"),
        # The Trainer's own figure: the whole train() loop, per-epoch evaluation, progress rows and checkpoints included.
        "samples_per_s": round(float(m["train_samples_per_second"]), 2) if m.get("train_samples_per_second") else None,
        "samples_per_s_wall": round(n_train * epochs / runtime, 2) if runtime else None,
        "train_runtime_s": round(runtime, 2) if runtime else None,
        "wall_s": round(wall, 2),  # from submit (pressing Train) to the job process's exit, model saved
        "accuracy": round(float(m.get("validation_accuracy", m.get("accuracy")) or 0), 4),
        "macro_f1": round(float(f1 or 0), 4),
        # elapsed_s: from queueing to that evaluation (the store's timestamps have whole seconds).
        "per_epoch": [{"epoch": round(r["epoch"] or 0, 2), "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                       "elapsed_s": _seconds_between(job["created_at"], r["created_at"])} for r in evals],
        "model_saved": model_ok,
        "time_to_usable_s": round(wall, 2) if model_ok and (f1 or 0) >= 0.80 else None,
        "model_dir": job.get("model_dir"),
        "peak_rss_mb": proc["peak_rss_mb"], "process_s": proc["process_s"],
    }


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def register_model(conn, model_dir: str) -> int:
    """A finished run whose model is ``model_dir`` (the scoring benchmark's model when no run is given)."""
    from engine import db

    return int(conn["jobs"].insert({
        "kind": "train", "status": "succeeded", "task": "text-classification", "base_model": "bench",
        "config_json": db.dumps({"bench": True}), "created_at": db.now(), "started_at": db.now(),
        "finished_at": db.now(), "model_dir": str(model_dir), "metrics_json": db.dumps({}),
        "device_json": db.dumps({"device": "cpu"}), "name": "bench scoring model",
    }).last_pk)


def _import_frame(conn, frame, feed: str, mapping: dict) -> int:
    """Import a frame of articles into ``feed`` through the product's own CSV import; returns the feed id."""
    from engine.monitor import feeds

    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return int(feeds.import_file(conn, buf.getvalue().encode("utf-8"), f"{feed}.csv", feed, created_by="bench",
                                 mapping=mapping).feed_id)


def import_headlines(conn, n: int | None, feed: str = "bench-news") -> int:
    """Import the three news files (subsampled to ``n`` when given) into one feed; returns the feed id."""
    import pandas as pd

    frames = []
    for name in data.NEWS_FILES:
        frame = pd.read_csv(data.shared_dir() / "news" / name, encoding="cp1252", dtype=str, keep_default_na=False)
        frames.append(frame[["Headlines", "Time"]])
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["Headlines"].str.strip() != ""]
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=data.SEED).sort_index()
    return _import_frame(conn, frame, feed, {"title": "Headlines", "time": "Time"})


def import_dev_feed(conn, n_dev: int | None, feed: str = "bench-dev") -> int:
    """fpb dev sentences as a feed (one day), so the scoring job reads and writes them through SQLite."""
    import pandas as pd

    rows = data.fpb("dev", n_dev)
    frame = pd.DataFrame({"title": [r["text"] for r in rows], "time": ["2020-07-17 12:00"] * len(rows)})
    return _import_frame(conn, frame, feed, {"title": "title", "time": "time"})


def article_titles(conn, feed_id: int) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT id, title FROM articles WHERE feed_id = ? ORDER BY id", [feed_id]).fetchall()]


def score_run(conn, feed_id: int, run_id: int, precision: str = "fast") -> dict:
    """Queue and run the score job as the Score button does; its figures and the stored labels by article id."""
    from engine import paths
    from engine.jobs import queue
    from engine.monitor import scoring
    from engine.errors import UserError

    pressed = time.perf_counter()
    job_id = scoring.enqueue(conn, feed_id, run_id, created_by="bench", precision=precision)
    proc = run_job_process(job_id, paths.run_dir(job_id) / "bench-stdout.txt")
    wall = time.perf_counter() - pressed
    job = queue.get(conn, job_id)
    if job["status"] != "succeeded":
        raise UserError(f"The engine's scoring job failed: {_job_error(conn, job_id)}")
    m = job["metrics"]
    labels = {r[0]: r[1] for r in conn.execute("SELECT article_id, label FROM scores WHERE run_id = ?", [run_id])}
    scored = int(m.get("scored") or len(labels))
    score_s = float(m.get("score_s") or 0) or None
    job_s = float(m.get("seconds") or 0) or None
    return {
        "job_id": job_id, "n_texts": scored, "precision": precision, "device": m.get("device"), "dtype": m.get("dtype"),
        # Reading the articles from SQLite, scoring them, writing the scores and progress rows: the job's counterpart
        # of the pipeline's call (neither counts loading the model).
        "score_s": round(score_s, 2) if score_s else None,
        "texts_per_s": round(scored / score_s, 1) if score_s else None,
        # The job's own run, loading the model included.
        "load_s": round(float(m.get("load_s") or 0), 2), "job_s": round(job_s, 2) if job_s else None,
        "texts_per_s_job": round(scored / job_s, 1) if job_s else None,
        # Everything from enqueue to the process's exit: starting Python, importing torch and loading the model.
        "wall_s": round(wall, 2), "texts_per_s_wall": round(scored / wall, 1) if wall else None,
        "peak_rss_mb": proc["peak_rss_mb"], "labels": labels,
    }


def _seconds_between(a: str | None, b: str | None) -> float | None:
    from datetime import datetime

    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
