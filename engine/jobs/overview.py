"""Every job in one list: training runs, scoring and topic jobs, with why a queued one waits and how long each is
likely to take, as a range from the speed measured on this machine; and deleting finished ones.

- :func:`jobs` — the rows of the Jobs page and of ``python -m engine jobs``, newest first.
- :func:`waiting_reason` — "Behind run 4 (running), about 10-16 min." for a queued job.
- :func:`remaining` — (low, high) seconds a job still needs: from its own progress when it runs, else from the
  speed earlier jobs of its kind measured here (training rows/s of the same base model, scored articles/s); the range
  is the spread of those measurements, wider when there are fewer.
- :func:`delete` — a finished, failed or cancelled job and its files (log, checkpoints, model, predictions, progress);
  refused while it is in use: a feed's current model, the model of a queued or running job, or a run whose scores or
  topics a feed holds.
"""

from __future__ import annotations

import shutil

from engine import access, db, paths
from engine.errors import UserError
from engine.jobs import queue

GUESSED_TRAIN_SPEED = 40.0  # rows/s at max length 128 before anything was measured (the default model on 2 CPU cores)
GUESSED_SCORE_SPEED = 100.0  # articles/s before a scoring job was measured
RANGE = {0: (0.5, 2.5), 1: (0.8, 1.6)}  # (low, high) factors by how many measurements there are (more: their spread)
STARTUP_S = 15.0  # loading the model and the data before the first step


def has_status(conn, *statuses: str) -> bool:
    """Whether any job has one of these statuses."""
    marks = ", ".join("?" for _ in statuses)
    return conn.execute(f"SELECT 1 FROM jobs WHERE status IN ({marks}) LIMIT 1", list(statuses)).fetchone() is not None


def kind_of(job: dict) -> str:
    """'training', 'scoring' or 'topics'."""
    if job["kind"] == "train":
        return "training"
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {})
    return "topics" if (config or {}).get("purpose") == "topics" else "scoring"


def label(job: dict) -> str:
    """How a job is named in sentences: 'run 4', 'scoring job 5', 'topics job 6'."""
    kind = kind_of(job)
    return f"run {job['id']}" if kind == "training" else f"{kind} job {job['id']}"


def duration_words(low: float, high: float) -> str:
    """'about 2-4 min', 'under a minute', 'about 1-2 h'."""
    low, high = max(0.0, low), max(low, high)
    if high < 60:
        return "under a minute"
    if high < 90 * 60:
        a, b = max(1, round(low / 60)), max(1, round(high / 60))
        return f"about {a} min" if a == b else f"about {a}-{b} min"
    a, b = low / 3600, high / 3600
    return f"about {a:.1f} h" if round(a, 1) == round(b, 1) else f"about {a:.1f}-{b:.1f} h"


def _spread(speeds: list[float]) -> tuple[float, float]:
    """(slowest, fastest) speed to expect, from measured speeds (none: the caller's guess, widely)."""
    if len(speeds) >= 2:
        return min(speeds) * 0.85, max(speeds)
    return speeds[0] / RANGE[1][1], speeds[0] / RANGE[1][0]


def train_speeds(conn, base_model: str | None, slot: str | None) -> list[float]:
    speeds = []
    for row in conn.query(
            "SELECT metrics_json, config_json FROM jobs WHERE kind = 'train' AND status = 'succeeded' "
            "AND base_model IS ? AND device_slot IS ? ORDER BY id DESC LIMIT 5", [base_model, slot]):
        sps = (db.loads(row["metrics_json"], {}) or {}).get("train_samples_per_second")
        if sps:
            speeds.append(float(sps) * ((db.loads(row["config_json"], {}) or {}).get("max_length") or 128) / 128)
    return speeds


def _score_speeds(conn) -> list[float]:
    speeds = []
    for row in conn.query("SELECT metrics_json FROM jobs WHERE kind = 'score' AND status = 'succeeded' "
                          "ORDER BY id DESC LIMIT 5"):
        aps = (db.loads(row["metrics_json"], {}) or {}).get("articles_per_s")
        if aps:
            speeds.append(float(aps))
    return speeds


def _work(conn, job: dict) -> float:
    """Rows (x epochs) a training run goes through, or articles a scoring / topics job has left."""
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {}) or {}
    if job["kind"] == "train":
        n = conn.execute("SELECT COUNT(*) FROM dataset_rows WHERE dataset_id = ? AND split = 'train'",
                         [job.get("dataset_id")]).fetchone()[0]
        return float(n) * float(config.get("epochs") or 1)
    if (config or {}).get("purpose") == "topics":
        sql = ("SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS (SELECT 1 FROM article_topics t "
               "WHERE t.article_id = a.id AND t.origin = 'model' AND t.run_id = ?)")
    else:
        sql = ("SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS (SELECT 1 FROM scores s "
               "WHERE s.article_id = a.id AND s.run_id = ?)")
    return float(conn.execute(sql, [job.get("feed_id"), job.get("model_run_id")]).fetchone()[0])


def remaining(conn, job: dict) -> tuple[float, float] | None:
    """(low, high) seconds the job still needs; None once it has finished."""
    if job["status"] not in queue.ACTIVE:
        return None
    kind = "train" if job["kind"] == "train" else "score"
    last = queue.last_progress(conn, job["id"], kind=kind)
    if job["status"] == "running" and last and last.get("total_steps") and last.get("elapsed_s"):
        done = last.get("step") or 0
        if done > 0:  # its own measured speed: the surest guide
            left = last["elapsed_s"] / done * max(0, last["total_steps"] - done)
            return left * 0.9, left * 1.3 + 5
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {}) or {}
    work = _work(conn, job)
    if job["kind"] == "train":
        speeds = train_speeds(conn, job.get("base_model"), job.get("device_slot"))
        scale = 128 / max(16, int(config.get("max_length") or 128))
        speeds = [s * scale for s in speeds]
        guess = GUESSED_TRAIN_SPEED * scale
    else:
        speeds = _score_speeds(conn)
        guess = GUESSED_SCORE_SPEED
    if speeds:
        slow, fast = _spread(speeds)
        low, high = work / fast, work / slow
    else:
        low, high = work / guess * RANGE[0][0], work / guess * RANGE[0][1]
    if job["status"] == "running" and last and last.get("elapsed_s"):  # started, no step yet
        low, high = max(0.0, low - last["elapsed_s"]), max(0.0, high - last["elapsed_s"])
    return low + STARTUP_S, high + STARTUP_S


def waiting_reason(conn, job: dict, worker_alive: bool | None = None) -> str | None:
    """Why a queued job has not started, in a sentence; None when it is not queued."""
    if job["status"] != "queued":
        return None
    slot = job.get("device_slot")
    ahead = [queue._decoded(dict(r)) for r in conn.query(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND device_slot IS ? AND id < ? ORDER BY id",
        [slot, job["id"]])]
    running = [j for j in ahead if j["status"] == "running"]
    running += [queue._decoded(dict(r)) for r in conn.query(
        "SELECT * FROM jobs WHERE status = 'running' AND device_slot IS ? AND id > ?", [slot, job["id"]])]
    slots = queue.concurrency(slot or "cpu")
    if not ahead and len(running) < slots:
        if worker_alive is False:
            return ("No worker is running to start it. The dashboard starts one when you queue a job; on the "
                    "command line run: python -m engine worker")
        return "Next in line: it starts within seconds."
    low = high = 0.0
    for other in ahead:
        span = remaining(conn, other) or (0.0, 0.0)
        low, high = low + span[0], high + span[1]
    low, high = low / slots, high / slots
    first = ahead[0] if ahead else running[0]
    others = len(ahead) - 1
    where = f"on the {'GPU' if slot == 'cuda' else 'CPU'}" if slot else ""
    more = f" and {others} more job{'s' if others != 1 else ''} queued before it" if others > 0 else ""
    worker = ("" if worker_alive is not False else
              " No worker is running: start one with python -m engine worker.")
    return (f"Behind {label(first)} ({first['status']}{', ' + where if where else ''}){more}, "
            f"{duration_words(low, high)}.{worker}")


def jobs(conn, limit: int | None = 200, worker_alive: bool | None = None) -> list[dict]:
    """Every job, newest first, as the Jobs page and ``python -m engine jobs`` show it."""
    out = []
    names = {r[0]: f"{r[1]}:{r[2]}" for r in conn.execute("SELECT id, name, version FROM datasets")}
    feeds = {r[0]: r[1] for r in conn.execute("SELECT id, name FROM feeds")}
    for job in queue.list_jobs(conn, limit=limit):
        kind = kind_of(job)
        if kind == "training":
            what = f"train on {names.get(job.get('dataset_id'), 'a deleted dataset')}"
        else:
            verb = "tag topics of" if kind == "topics" else "score"
            what = f"{verb} feed {feeds.get(job.get('feed_id'), '(deleted)')} with run {job.get('model_run_id')}"
        span = remaining(conn, job)
        progress = queue.last_progress(conn, job["id"], kind="train" if job["kind"] == "train" else "score")
        out.append({
            "id": job["id"], "kind": kind, "label": label(job), "name": job.get("name") or "", "what": what,
            "status": job["status"], "created_by": job.get("created_by") or "", "created_at": job["created_at"],
            "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
            "step": (progress or {}).get("step"), "total_steps": (progress or {}).get("total_steps"),
            "remaining_s": list(span) if span else None,
            "estimate": ("left: " if job["status"] == "running" else "takes ") + duration_words(*span) if span else "",
            "waiting": waiting_reason(conn, job, worker_alive) or "",
            "error": job.get("error") or "",
        })
    return out


def in_use(conn, job: dict) -> list[str]:
    """Why a job cannot be deleted now, in plain sentences (none: it can)."""
    reasons = []
    if job["status"] in queue.ACTIVE:
        reasons.append(f"{label(job).capitalize()} is {job['status']}: cancel it first.")
    if job["kind"] != "train":
        return reasons
    for name, in conn.execute("SELECT name FROM feeds WHERE current_model = ?", [job["id"]]):
        reasons.append(f"It is the current model of feed '{name}': choose another model for that feed first.")
    users = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE model_run_id = ? AND status IN ('queued', "
                                        "'running') ORDER BY id", [job["id"]])]
    if users:
        reasons.append(f"Queued or running jobs use its model ({', '.join(f'#{i}' for i in users)}): wait for them or "
                       "cancel them first.")
    scored = [r[0] for r in conn.execute(
        "SELECT DISTINCT f.name FROM scores s JOIN articles a ON a.id = s.article_id JOIN feeds f ON f.id = a.feed_id "
        "WHERE s.run_id = ? UNION SELECT DISTINCT f.name FROM article_topics t JOIN articles a ON a.id = t.article_id "
        "JOIN feeds f ON f.id = a.feed_id WHERE t.origin = 'model' AND t.run_id = ?", [job["id"], job["id"]])]
    if scored:
        reasons.append(f"Feed {', '.join(repr(n) for n in sorted(scored))} holds its scores or topics, which the "
                       "Monitor shows: keep the run while you need them.")
    return reasons


def delete(conn, job_id: int, confirm: bool = False, actor=None) -> dict:
    """Delete a finished, failed or cancelled job with its files; refused while in use (:func:`in_use`). Needs
    ``confirm``. An analyst deletes only their own jobs; an admin anyone's."""
    job = queue.get(conn, job_id)
    who = access.check(conn, actor, "run.delete", f"job:{job['id']}", owner=job.get("created_by"))
    if not confirm:
        raise UserError(f"Deleting {label(job)} and its files cannot be undone. Confirm to delete it (on the "
                        "command line, add --yes).")
    with db.transaction(conn):
        job = queue.get(conn, job_id)  # again, inside the transaction: its state may have changed
        reasons = in_use(conn, job)
        if reasons:
            raise UserError(f"{label(job).capitalize()} cannot be deleted now. " + " ".join(reasons))
        for table, column in (("progress", "job_id"), ("predictions", "run_id"), ("evaluations", "run_id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", [job["id"]])
        conn.execute("DELETE FROM jobs WHERE id = ?", [job["id"]])
        access.record(conn, who, "run.delete", f"job:{job['id']}",
                      {"kind": job["kind"], "status": job["status"], "created_by": job.get("created_by")})
    folder = paths.runs_dir() / str(int(job["id"]))
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    return job


def speeds_note(conn) -> str:
    """Where the estimates come from, in a sentence."""
    if not conn.execute("SELECT 1 FROM jobs WHERE status = 'succeeded' LIMIT 1").fetchone():
        return ("Estimates are rough guesses until a job has finished on this machine; they narrow as jobs are "
                "measured.")
    return ("Estimates are ranges from the speed the last finished jobs of the same kind measured on this machine; "
            "a busy machine makes a job take longer.")
