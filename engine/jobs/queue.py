"""The job queue: training runs and scoring jobs wait in the ``jobs`` table and run in their own processes.

- :func:`enqueue` puts a job in the queue (status ``queued``); jobs of one device slot (``cuda`` or ``cpu``) start
  first-in first-out, ``concurrency(slot)`` at a time (``BELLWETHER_CONCURRENCY_CPU`` / ``_CUDA``, default 1).
- :func:`get`, :func:`list_jobs`, :func:`progress_rows`, :func:`log_tail` read jobs; :func:`cancel` asks a job to
  stop, :func:`resume` queues a failed or cancelled one again from its last checkpoint; :func:`follow` is the CLI's
  ``--wait``.
- Starting and watching jobs is the supervisor's (engine.jobs.supervisor); what runs inside a job's process is
  engine.jobs.process. This module imports neither.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from engine import access, db, paths, settings
from engine.errors import NotFound, UserError

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")

KINDS = ("train", "score")  # a score job's config may say {"purpose": "topics"} (engine.cli.job picks the runner)

VANISHED = "The engine stopped unexpectedly"


def heartbeat_interval() -> float:
    return settings.heartbeat_s()


def heartbeat_timeout() -> float:
    """A running job whose heartbeat is older than this (seconds) is considered dead."""
    return settings.heartbeat_timeout_s()


def cancel_grace() -> float:
    """Seconds a cancel waits for the trainer to stop on its own before SIGTERM (and as long again before SIGKILL)."""
    return settings.cancel_grace_s()


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
        raise UserError(f"Unknown job kind {kind!r}.")
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
    job_id = conn["jobs"].insert(row).last_pk
    log_path = paths.run_dir(job_id) / "log.txt"
    conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", [str(log_path), job_id])
    return int(job_id)


def get(conn, job_id: int) -> dict:
    """The job row, with ``config``, ``metrics`` and ``device`` decoded from their JSON columns."""
    rows = list(conn.query("SELECT * FROM jobs WHERE id = ?", [int(job_id)]))
    if not rows:
        raise NotFound(f"There is no run or job with id {job_id}. `python -m engine runs list` shows them.")
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
    sql += " ORDER BY id DESC"
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
    return conn.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND id < ?",
                        [int(job_id)]).fetchone()[0]


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
           failed_word: str = "Job", out=None, poll_s: float = 1.0) -> int:
    """Show job ``job_id``'s progress (rows of ``kind``, drawn by ``line``) until it finishes; 0 only if it
    succeeded. ``done(job)`` is the closing sentence of a success; a failure prints its reason. On a terminal the
    progress line is redrawn in place; into a file or pipe each change is its own line."""
    out = out or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    last = None
    while True:
        job = get(conn, job_id)
        p = last_progress(conn, job_id, kind=kind)
        text = line(p) if p and p.get("total_steps") else f"{job['status']}..."
        if text != last:
            print(("\r" if tty else "") + text, end="" if tty else "\n", file=out, flush=True)
            last = text
        if job["status"] in FINISHED:
            if tty:
                print(file=out)
            if job["status"] == "succeeded":
                print(done(job), file=out)
                return 0
            print(f"{failed_word} {job_id} {job['status']}: {job.get('error') or ''}", file=out)
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
                [db.now(), "Cancelled before it started.", job["id"]],
            )
            return "cancelled"
        if job["status"] == "running":
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [job["id"]])
            return "cancelling"
    raise UserError(f"Run {job_id} has already {'finished' if job['status'] != 'cancelled' else 'been cancelled'} "
                    f"(status: {job['status']}); there is nothing to cancel.")


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
        raise UserError(
            f"Run {job_id} is {job['status']}; only a failed or cancelled run can be resumed."
        )
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
