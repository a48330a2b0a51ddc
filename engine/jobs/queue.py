"""The job queue: training runs and scoring jobs wait in the ``jobs`` table and run in their own processes.

- :func:`enqueue` puts a job in the queue (status ``queued``); jobs of one device slot (``cuda`` or ``cpu``) start
  first-in first-out, ``concurrency(slot)`` at a time (``BELLWETHER_CONCURRENCY_CPU`` / ``_CUDA``, default 1).
- :func:`get`, :func:`list_jobs`, :func:`progress_rows`, :func:`log_tail` read jobs; :func:`cancel` asks a job to
  stop, :func:`resume` queues a failed or cancelled one again from its last checkpoint; :func:`follow` is the CLI's
  ``--wait``.
- Numbering: a training run's id is its number among training runs (1, 2, 3 ...); scoring and topics jobs take
  their ids from ranges of their own (:data:`ID_BASE`: scoring job 2 is id 1_000_002), so people see each kind
  numbered on its own: "run 2", "scoring job 2", "topics job 1". :func:`next_id` allocates them (SQLite's own rowid
  would continue after the largest id); :func:`label` names a job in sentences, :func:`reference` in commands
  (``scoring-2``), :func:`resolve` reads either back (raw ids keep working). Stores from before keep their ids: their
  history may have gaps, new runs are contiguous. The order jobs were queued in is ``queue_order``.
- Starting and watching jobs is the supervisor's (engine.jobs.supervisor); what runs inside a job's process is
  engine.jobs.process. This module imports neither.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from engine import access, db, i18n, paths, settings
from engine.errors import NotFound, UserError
from engine.i18n import N_, _

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")

KINDS = ("train", "score")  # a score job's config may say {"purpose": "topics"} (engine.cli.job picks the runner)

VANISHED = "The engine stopped unexpectedly"

TRAINING, SCORING, TOPICS = "training", "scoring", "topics"  # the kinds of job as people see them
ID_BASE = {SCORING: 1_000_000, TOPICS: 2_000_000}  # training runs: ids 1 .. 999_999, their numbers
RANGE_SIZE = 1_000_000
ORDER = "COALESCE(queue_order, id)"  # SQL: a job's place in the queue (rows written before queue_order: their id)
_REFERENCE = re.compile(r"^\s*(?:(run|r|scoring|s|topics|t|运行|评分任务|主题任务)[\s_-]*(?:jobs?)?[\s_#-]*)?#?\s*(\d+)\s*$",
                        re.IGNORECASE)
_PREFIXES = {"run": TRAINING, "r": TRAINING, "运行": TRAINING, "scoring": SCORING, "s": SCORING, "评分任务": SCORING,
             "topics": TOPICS, "t": TOPICS, "主题任务": TOPICS}

# Why a job stopped, as stored in jobs.error (English, read by code too) and translated when shown (engine.i18n.shown,
# which knows every text of the catalogue: these, and a runner's UserError messages).
CANCELLED_BEFORE_START = N_("Cancelled before it started.")
CANCELLED_ON_REQUEST = N_("Cancelled on request.")
CANCELLED_FORCEFULLY = N_("Cancelled on request (stopped forcefully).")
STOPPED_BY_SYSTEM = N_("The engine stopped unexpectedly: the run was stopped by the system. Resume it to continue.")
VANISHED_RESUME = N_("The engine stopped unexpectedly. Resume the run to continue from its last checkpoint.")
STOPPED_ANSWERING = N_("The engine stopped unexpectedly: the run stopped answering. Resume the run to continue from its "
                       "last checkpoint.")
KILLED = N_("The engine stopped unexpectedly: the training process was killed (signal {signal}). Resume the run to "
            "continue from its last checkpoint.")
EXITED = N_("The engine stopped unexpectedly: the training process exited with status {code}. Resume the run to "
            "continue from its last checkpoint.")
GPU_MEMORY = N_("The GPU ran out of memory: reduce the batch size or the max length, then start the run again.")
DISK_FULL = N_("The disk is full: free some space where Bellwether keeps its files ({home}), then resume the run.")
CRASHED_WITH_LOG = N_("The run crashed ({error}). Last log lines:\n{tail}")
CRASHED = N_("The run crashed ({error}).")
NOT_STARTED = N_("The job could not be started: {error}")


def kind_of(job: dict) -> str:
    """'training', 'scoring' or 'topics'."""
    if job["kind"] == "train":
        return TRAINING
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {})
    return TOPICS if (config or {}).get("purpose") == "topics" else SCORING


def number(job: dict) -> int:
    """The job's number among jobs of its kind: a run's id; a scoring or topics job's id less its range's base (a job
    queued before the ranges existed keeps its id as its number)."""
    base = ID_BASE.get(kind_of(job))
    job_id = int(job["id"])
    return job_id - base if base and base <= job_id < base + RANGE_SIZE else job_id


def label(job: dict, start: bool = False) -> str:
    """How a job is named in sentences: 'run 4', 'scoring job 5', 'topics job 6' (``start``: to begin a sentence)."""
    kind, n = kind_of(job), number(job)
    if kind == TRAINING:
        return _("Run {n}", n=n) if start else _("run {n}", n=n)
    if kind == TOPICS:
        return _("Topics job {n}", n=n) if start else _("topics job {n}", n=n)
    return _("Scoring job {n}", n=n) if start else _("scoring job {n}", n=n)


def label_of(conn, job_id: int, start: bool = False) -> str:
    """:func:`label` of the stored job ``job_id`` (a scoring job just queued: 'scoring job 3', not its id)."""
    return label(get(conn, job_id), start=start)


def reference(job: dict) -> str:
    """How a command names the job: 'run-4', 'scoring-5', 'topics-6' (``python -m engine jobs cancel scoring-5``)."""
    kind = kind_of(job)
    return f"{'run' if kind == TRAINING else kind}-{number(job)}"


def next_id(conn, kind: str) -> int:
    """The id the next job of ``kind`` ('training', 'scoring', 'topics') gets: the next number of its kind."""
    first = min(ID_BASE.values())
    if kind == TRAINING:
        found = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs WHERE id < ?", [first]).fetchone()[0]) + 1
    else:
        base = ID_BASE[kind]
        in_range = conn.execute("SELECT MAX(id) FROM jobs WHERE kind = 'score' AND id >= ? AND id < ?",
                                [base, base + RANGE_SIZE]).fetchone()[0]
        topics = "COALESCE(json_extract(config_json, '$.purpose'), '') = 'topics'"
        older = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM jobs WHERE kind = 'score' AND id < ? AND "
                             f"{'' if kind == TOPICS else 'NOT '}{topics}", [first]).fetchone()[0]
        found = base + max(int(in_range) - base if in_range else 0, int(older)) + 1
    while conn.execute("SELECT 1 FROM jobs WHERE id = ?", [found]).fetchone():  # a row written around the ranges
        found += 1
    return found


def resolve(conn, ref: Any) -> int:
    """The id of the job ``ref`` names: an id (``7``, ``#7``), or a job as people see it: ``run-4``, ``scoring-2``,
    ``S2``, ``topics job 3``. NotFound in plain words when there is none."""
    if isinstance(ref, int):
        return ref
    found = _REFERENCE.match(str(ref or ""))
    if not found:
        raise NotFound(_("'{ref}' does not name a job. Name it as the Jobs page does (run 4, scoring job 2, "
                         "topics job 1: run-4, scoring-2, topics-1) or by its id; `python -m engine jobs` lists them.",
                         ref=ref))
    prefix, n = (found.group(1) or "").lower(), int(found.group(2))
    kind = _PREFIXES.get(prefix)
    if kind is None or kind == TRAINING:
        return n
    for candidate in (ID_BASE[kind] + n, n):
        rows = list(conn.query("SELECT id, kind, config_json FROM jobs WHERE id = ?", [candidate]))
        if rows and kind_of(rows[0]) == kind:
            return candidate
    what = _("scoring job {n}", n=n) if kind == SCORING else _("topics job {n}", n=n)
    raise NotFound(_("There is no {job}. `python -m engine jobs` lists every job.", job=what))


def heartbeat_interval() -> float:
    return settings.heartbeat_s()


def heartbeat_timeout() -> float:
    """A running job whose heartbeat is older than this (seconds) is considered dead."""
    return settings.heartbeat_timeout_s()


def cancel_grace() -> float:
    """Seconds a cancel waits for the trainer to stop on its own before SIGTERM (and as long again before SIGKILL)."""
    return settings.cancel_grace_s()


STATUS_WORDS = {"queued": N_("queued"), "running": N_("running"), "succeeded": N_("succeeded"),
                "failed": N_("failed"), "cancelled": N_("cancelled")}


def status_words(status: str) -> str:
    """A stored status ('running') in the current language."""
    return _(STATUS_WORDS[status]) if status in STATUS_WORDS else status


def concurrency(slot: str) -> int:
    return settings.concurrency(slot)


def default_slot() -> str:
    if forced := settings.device_slot():
        return forced
    try:
        import torch  # only here: the queue is read by the dashboard, which need not load torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        return "cpu"


def _age_s(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    then = datetime.fromisoformat(stamp)
    return (datetime.now(timezone.utc) - then).total_seconds()


# --------------------------------------------------------------------------------------------------------------
# The queue


def enqueue(conn, kind: str, **columns: Any) -> int:
    """Put a job in the queue and return its id. ``columns`` are ``jobs`` columns (``config`` may be a dict)."""
    if kind not in KINDS:
        raise UserError(_("Unknown job kind {kind}.", kind=repr(kind)))
    if "config" in columns:
        columns["config_json"] = db.dumps(columns.pop("config"))
    row = {
        "kind": kind,
        "status": "queued",
        "device_slot": columns.pop("device_slot", None) or default_slot(),
        "created_at": db.now(),
        "attempt": 1,
        "cancel_requested": 0,
        **columns,
    }
    with db.transaction(conn):  # the next number of its kind, and the next place in the queue, taken at once
        row["id"] = next_id(conn, kind_of({"kind": kind, "config_json": row.get("config_json")}))
        row["queue_order"] = int(conn.execute(f"SELECT COALESCE(MAX({ORDER}), 0) FROM jobs").fetchone()[0]) + 1
        job_id = conn["jobs"].insert(row).last_pk
        log_path = paths.run_dir(job_id) / "log.txt"
        conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", [str(log_path), job_id])
    return int(job_id)


def get(conn, job_id: int | str) -> dict:
    """The job row, with ``config``, ``metrics`` and ``device`` decoded from their JSON columns. ``job_id`` may be
    a reference as people see it (:func:`resolve`)."""
    job_id = resolve(conn, job_id)
    rows = list(conn.query("SELECT * FROM jobs WHERE id = ?", [int(job_id)]))
    if not rows:
        raise NotFound(_("There is no run or job with id {job_id}. `python -m engine jobs` lists them.",
                         job_id=job_id))
    return _decoded(rows[0])


def _decoded(job: dict) -> dict:
    job["config"] = db.loads(job.get("config_json"), {})
    job["metrics"] = db.loads(job.get("metrics_json"), {})
    job["device"] = db.loads(job.get("device_json"), {})
    return job


def list_jobs(conn, kind: str | None = None, limit: int | None = None) -> list[dict]:
    sql = "SELECT * FROM jobs"
    params: list[Any] = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += f" ORDER BY {ORDER} DESC"
    if limit:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_decoded(job) for job in conn.query(sql, params)]


def progress_rows(conn, job_id: int, kind: str | None = None) -> list[dict]:
    sql = "SELECT * FROM progress WHERE job_id = ?"
    params: list[Any] = [int(job_id)]
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    return list(conn.query(sql + " ORDER BY id", params))


def last_progress(conn, job_id: int, kind: str = "train") -> dict | None:
    rows = list(
        conn.query("SELECT * FROM progress WHERE job_id = ? AND kind = ? ORDER BY id DESC LIMIT 1", [int(job_id), kind])
    )
    return rows[0] if rows else None


def jobs_ahead(conn, job_id: int) -> int:
    """How many queued or running jobs were queued before ``job_id``."""
    job = get(conn, job_id)
    return conn.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND {ORDER} < ?",
                        [place(job)]).fetchone()[0]


def place(job: dict) -> int:
    """The job's place in the queue (smaller: queued earlier)."""
    return int(job.get("queue_order") or job["id"])


def log_tail(job: dict, lines: int = 20) -> str:
    path = Path(job.get("log_path") or paths.run_dir(job["id"]) / "log.txt")
    if not path.is_file():
        return ""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64_000))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def follow(conn, job_id: int, kind: str, line: Callable[[dict], str], done: Callable[[dict], str],
           failed_word: str | None = None, out=None, poll_s: float = 1.0) -> int:
    """Show job ``job_id``'s progress (rows of ``kind``, drawn by ``line``) until it finishes; 0 only if it
    succeeded. ``done(job)`` is the closing sentence of a success; a failure prints its reason (``failed_word`` is
    no longer used: the job is named as people see it). On a terminal the
    progress line is redrawn in place; into a file or pipe each change is its own line."""
    out = out or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    last = None
    while True:
        job = get(conn, job_id)
        p = last_progress(conn, job_id, kind=kind)
        text = line(p) if p and p.get("total_steps") else _("{status}...", status=status_words(job["status"]))
        if text != last:
            print(("\r" if tty else "") + text, end="" if tty else "\n", file=out, flush=True)
            last = text
        if job["status"] in FINISHED:
            if tty:
                print(file=out)
            if job["status"] == "succeeded":
                print(done(job), file=out)
                return 0
            print(_("{job} {status}: {reason}", job=label(job, start=True), status=status_words(job["status"]),
                    reason=i18n.shown(job.get("error"))), file=out)
            return 1
        time.sleep(poll_s)


def cancel(conn, job_id: int, actor=None) -> str:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step. Returns the status.
    An analyst cancels only their own jobs; an admin anyone's."""
    job = get(conn, job_id)
    who = access.check(conn, actor, "run.cancel", f"job:{job['id']}", owner=job.get("created_by"))
    with db.transaction(conn):
        if job["status"] in ("queued", "running"):
            access.record(conn, who, "run.cancel", f"job:{job['id']}", {"kind": job["kind"], "status": job["status"]})
        if job["status"] == "queued":
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ? AND status = 'queued'",
                [db.now(), CANCELLED_BEFORE_START, job["id"]],
            )
            return "cancelled"
        if job["status"] == "running":
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [job["id"]])
            return "cancelling"
    if job["status"] == "cancelled":
        raise UserError(_("{job} has already been cancelled; there is nothing to cancel.", job=label(job, start=True)))
    raise UserError(_("{job} has already finished (status: {status}); there is nothing to cancel.",
                      job=label(job, start=True), status=status_words(job["status"])))


def last_checkpoint(job_id: int) -> str | None:
    folder = paths.run_dir(job_id) / "checkpoints"
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith("checkpoint-") and child.name[11:].isdigit():
            if (child / "trainer_state.json").is_file():
                found.append((int(child.name[11:]), child))
    return str(max(found)[1]) if found else None


def resume(conn, job_id: int, actor=None) -> int:
    """Queue a failed or cancelled job again; it continues from its last checkpoint when there is one. An analyst
    resumes only their own jobs; an admin anyone's."""
    job = get(conn, job_id)
    who = access.check(conn, actor, "run.resume", f"job:{job['id']}", owner=job.get("created_by"))
    if job["status"] not in ("failed", "cancelled"):
        if job["kind"] == "train":
            raise UserError(_("{job} is {status}; only a failed or cancelled run can be resumed.",
                              job=label(job, start=True), status=status_words(job["status"])))
        raise UserError(_("{job} is {status}; only a failed or cancelled job can be resumed.",
                          job=label(job, start=True), status=status_words(job["status"])))
    checkpoint = last_checkpoint(job["id"]) if job["kind"] == "train" else None
    with db.transaction(conn):
        conn.execute(
            "UPDATE jobs SET status = 'queued', resume_from = ?, error = NULL, cancel_requested = 0, pid = NULL, "
            "finished_at = NULL, attempt = COALESCE(attempt, 1) + 1 WHERE id = ? AND status IN ('failed', 'cancelled')",
            [checkpoint, job["id"]],
        )
        access.record(conn, who, "run.resume", f"job:{job['id']}", {"kind": job["kind"], "from": checkpoint})
    return int(job["id"])


def finish(conn, job_id: int, status: str, error: str | None = None, metrics: dict | None = None) -> None:
    """Record how a job ended (a failed or cancelled train job keeps its last checkpoint to resume from)."""
    sets = ["status = ?", "finished_at = ?", "error = ?", "pid = NULL"]
    params: list[Any] = [status, db.now(), error]
    if metrics is not None:
        sets.append("metrics_json = ?")
        params.append(db.dumps(metrics))
    if status == "cancelled" or status == "failed":
        sets.append("resume_from = ?")
        params.append(last_checkpoint(job_id))
    conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*params, int(job_id)])
