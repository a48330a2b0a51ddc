"""Inside a job's process: what a runner gets (:class:`JobContext`) and how the outcome is recorded.

:func:`run_job` is what ``python -m engine _job ID`` runs (started by the supervisor, engine.jobs.supervisor): it
marks the job running, gives the runner a :class:`JobContext` (progress rows, heartbeat, cooperative cancel, the
job's logger and folder), and records the outcome in plain words: succeeded with metrics, cancelled (the runner
raised :class:`Cancelled`, or SIGTERM after a cancel request), or failed with the reason (a UserError's message, the
GPU out of memory, the disk full, or a crash with the last log lines), in English whatever the worker's language
(shown in the reader's: engine.i18n.shown).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine import db, i18n, paths, settings
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue


class Cancelled(Exception):
    """Raised by a runner that stopped because a cancel was requested (after saving what it could)."""


class _Terminated(BaseException):
    """SIGTERM arrived (the supervisor's forceful cancel, or a shutdown)."""


@dataclass
class JobContext:
    conn: Any
    job: dict
    log: logging.Logger
    job_dir: Path
    _last_cancel_check: float = 0.0
    _cancel: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def job_id(self) -> int:
        return int(self.job["id"])

    def heartbeat(self) -> None:
        self.conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", [db.now(), self.job_id])

    def progress(self, **columns: Any) -> None:
        """A ``progress`` row (kind defaults to 'train') and a heartbeat."""
        extra = columns.pop("extra", None)
        row = {"job_id": self.job_id, "kind": columns.pop("kind", "train"), "created_at": db.now(), **columns}
        if extra is not None:
            row["extra_json"] = db.dumps(extra)
        self.conn["progress"].insert(row)
        self.heartbeat()

    def should_cancel(self) -> bool:
        """True once a cancel was requested. Reads the store at most twice a second."""
        if self._cancel:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= 0.5:
            self._last_cancel_check = now
            row = self.conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [self.job_id]).fetchone()
            self._cancel = bool(row and row[0])
        return self._cancel

    def set_device(self, device: dict) -> None:
        self.conn.execute("UPDATE jobs SET device_json = ? WHERE id = ?", [db.dumps(device), self.job_id])
        self.job["device"] = device

    def update(self, **columns: Any) -> None:
        """Set job columns (``model_dir``, ``resume_from`` ...)."""
        for key in columns:
            if key not in {"model_dir", "resume_from", "device_json", "metrics_json", "name"}:
                raise ValueError(f"a runner may not set jobs.{key}")
        sets = ", ".join(f"{key} = ?" for key in columns)  # keys are checked names above, never user input
        self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*columns.values(), self.job_id])

    def start_heartbeat(self) -> None:
        def beat():
            conn = db.connect()
            try:
                while not self._stop.wait(queue.heartbeat_interval()):
                    try:
                        conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", [db.now(), self.job_id])
                    except Exception:  # noqa: BLE001 - a busy store must not kill the job
                        pass
            finally:
                conn.close()

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def stop_heartbeat(self) -> None:
        self._stop.set()


def job_logger(job_id: int, log_path: Path) -> logging.Logger:
    logger = logging.getLogger(f"bellwether.job.{job_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    target = "<stdout>" if settings.job_stdout_is_log() else os.path.abspath(log_path)
    for old in list(logger.handlers):  # a job id met again in this process (another data directory): its own file
        if getattr(old, "baseFilename", "<stdout>") != target:
            logger.removeHandler(old)
            old.close()
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout) if settings.job_stdout_is_log() else logging.FileHandler(
            log_path, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    return logger


def explain_failure(exc: BaseException, job: dict) -> str:
    """A failure in plain words."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() and ("cuda" in text.lower() or "OutOfMemory" in type(exc).__name__):
        return queue.GPU_MEMORY
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in text:
        return queue.DISK_FULL.format(home=paths.home())
    tail = queue.log_tail(job, 8)
    return queue.CRASHED_WITH_LOG.format(error=text[:300], tail=tail) if tail else queue.CRASHED.format(error=text[:300])


def run_job(job_id: int, runner_for: Callable[[dict], Callable]) -> int:
    """Run one job in this process (``python -m engine _job ID``). Returns the exit status.

    ``runner_for(job)`` returns the function that does the work, ``runner(conn, job, ctx) -> metrics``; the caller
    (engine.cli.job) knows the runners, so this package imports neither training nor monitoring."""
    conn = db.connect()
    job = queue.get(conn, job_id)
    if job["status"] == "queued":  # started by hand, not by the supervisor
        conn.execute(
            "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ? AND status = 'queued'",
            [db.now(), db.now(), job["id"]],
        )
    elif job["status"] != "running":
        print(_("{job} is {status}; nothing to run.", job=queue.label(job, start=True),
                status=queue.status_words(job["status"])), file=sys.stderr)
        return 2
    conn.execute("UPDATE jobs SET pid = ?, heartbeat_at = ? WHERE id = ?", [os.getpid(), db.now(), job["id"]])
    job = queue.get(conn, job_id)
    job_dir = paths.run_dir(job["id"])
    log = job_logger(job["id"], Path(job.get("log_path") or job_dir / "log.txt"))
    ctx = JobContext(conn=conn, job=job, log=log, job_dir=job_dir)

    def on_term(signum, frame):  # noqa: ARG001
        raise _Terminated()

    signal.signal(signal.SIGTERM, on_term)
    ctx.start_heartbeat()
    log.info("job %s (%s) started, attempt %s, pid %s", job["id"], job["kind"], job.get("attempt"), os.getpid())
    try:
        # In English whatever the worker's language: what went wrong is kept in jobs.error and shown later in the
        # reader's language (engine.i18n.shown), as the feed poller keeps a source's last error.
        with i18n.using(i18n.DEFAULT):
            runner = runner_for(job)
            metrics = runner(conn, job, ctx)
    except Cancelled:
        log.info("cancelled on request")
        queue.finish(conn, job["id"], "cancelled", queue.CANCELLED_ON_REQUEST)
        return 1
    except _Terminated:
        cancelled = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job["id"]]).fetchone()[0]
        if cancelled:
            log.info("stopped by the supervisor after a cancel request")
            queue.finish(conn, job["id"], "cancelled", queue.CANCELLED_FORCEFULLY)
        else:
            log.info("stopped by SIGTERM")
            queue.finish(conn, job["id"], "failed", queue.STOPPED_BY_SYSTEM)
        return 1
    except UserError as exc:
        log.info("failed: %s", exc)
        queue.finish(conn, job["id"], "failed", str(exc))
        return 1
    except BaseException as exc:  # noqa: BLE001 - any crash becomes a plain reason
        log.info("crashed:\n%s", traceback.format_exc())
        for h in log.handlers:
            h.flush()
        queue.finish(conn, job["id"], "failed", explain_failure(exc, job))
        return 1
    finally:
        ctx.stop_heartbeat()
    queue.finish(conn, job["id"], "succeeded", None, metrics or {})
    log.info("job %s succeeded", job["id"])
    return 0
