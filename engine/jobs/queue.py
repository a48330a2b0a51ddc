"""The job queue: training runs and scoring jobs wait in the ``jobs`` table and run in their own processes.

- :func:`enqueue` puts a job in the queue (status ``queued``); jobs of one device slot (``cuda`` or ``cpu``) start
  first-in first-out, ``concurrency(slot)`` at a time (``BELLWETHER_CONCURRENCY_CPU`` / ``_CUDA``, default 1).
- The supervisor (``python -m engine worker``, :func:`worker`) records itself in the ``supervisor`` table with a
  heartbeat, starts each job as ``python -m engine _job ID`` in its own process group with its output in
  ``runs/<id>/log.txt``, watches exit codes and heartbeats, and enforces cancels (cooperative first, then SIGTERM to
  the process group, then SIGKILL).
- :func:`run_job` is what runs inside that child: it calls ``RUNNERS[kind]`` with a :class:`JobContext` and records
  the outcome in plain words.
- :func:`ensure_supervisor` starts a detached supervisor when none is alive (the dashboard calls it; it never trains).

A job whose process vanished (killed, machine rebooted) is marked failed with "the engine stopped unexpectedly"; it
can be resumed from its last checkpoint with :func:`resume`.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from engine import db, paths, settings
from engine.errors import NotFound, UserError

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")

# kind -> "module:function"; imported only when a job of that kind runs.
RUNNERS: dict[str, str] = {
    "train": "engine.training.finetune:run",
    "score": "engine.monitor.scoring:run",
}

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
    if kind not in RUNNERS:
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


def cancel(conn, job_id: int) -> str:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step. Returns the status."""
    job = get(conn, job_id)
    with db.transaction(conn):
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


def resume(conn, job_id: int) -> int:
    """Queue a failed or cancelled job again; it continues from its last checkpoint when there is one."""
    job = get(conn, job_id)
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
    return int(job["id"])


# --------------------------------------------------------------------------------------------------------------
# Inside the job process


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
                while not self._stop.wait(heartbeat_interval()):
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
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout) if settings.job_stdout_is_log() else logging.FileHandler(
            log_path, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    return logger


def load_runner(kind: str) -> Callable:
    target = RUNNERS.get(kind)
    if not target:
        raise UserError(f"No runner for jobs of kind {kind!r}.")
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)


def explain_failure(exc: BaseException, job: dict) -> str:
    """A failure in plain words."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() and ("cuda" in text.lower() or "OutOfMemory" in type(exc).__name__):
        return "The GPU ran out of memory: reduce the batch size or the max length, then start the run again."
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in text:
        return f"The disk is full: free some space where Bellwether keeps its files ({paths.home()}), then resume the run."
    tail = log_tail(job, 8)
    return f"The run crashed ({text[:300]}). Last log lines:\n{tail}" if tail else f"The run crashed ({text[:300]})."


def _finish(conn, job_id: int, status: str, error: str | None = None, metrics: dict | None = None) -> None:
    sets = ["status = ?", "finished_at = ?", "error = ?", "pid = NULL"]
    params: list[Any] = [status, db.now(), error]
    if metrics is not None:
        sets.append("metrics_json = ?")
        params.append(db.dumps(metrics))
    if status == "cancelled" or status == "failed":
        sets.append("resume_from = ?")
        params.append(last_checkpoint(job_id))
    conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*params, int(job_id)])


def run_job(job_id: int) -> int:
    """Run one job in this process (``python -m engine _job ID``). Returns the exit status."""
    conn = db.connect()
    job = get(conn, job_id)
    if job["status"] == "queued":  # started by hand, not by the supervisor
        conn.execute(
            "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ? AND status = 'queued'",
            [db.now(), db.now(), job["id"]],
        )
    elif job["status"] != "running":
        print(f"Job {job_id} is {job['status']}; nothing to run.", file=sys.stderr)
        return 2
    conn.execute("UPDATE jobs SET pid = ?, heartbeat_at = ? WHERE id = ?", [os.getpid(), db.now(), job["id"]])
    job = get(conn, job_id)
    job_dir = paths.run_dir(job["id"])
    log = job_logger(job["id"], Path(job.get("log_path") or job_dir / "log.txt"))
    ctx = JobContext(conn=conn, job=job, log=log, job_dir=job_dir)

    def on_term(signum, frame):  # noqa: ARG001
        raise _Terminated()

    signal.signal(signal.SIGTERM, on_term)
    ctx.start_heartbeat()
    log.info("job %s (%s) started, attempt %s, pid %s", job["id"], job["kind"], job.get("attempt"), os.getpid())
    try:
        runner = load_runner(job["kind"])
        metrics = runner(conn, job, ctx)
    except Cancelled:
        log.info("cancelled on request")
        _finish(conn, job["id"], "cancelled", "Cancelled on request.")
        return 1
    except _Terminated:
        cancelled = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job["id"]]).fetchone()[0]
        if cancelled:
            log.info("stopped by the supervisor after a cancel request")
            _finish(conn, job["id"], "cancelled", "Cancelled on request (stopped forcefully).")
        else:
            log.info("stopped by SIGTERM")
            _finish(conn, job["id"], "failed", f"{VANISHED}: the run was stopped by the system. Resume it to continue.")
        return 1
    except UserError as exc:
        log.info("failed: %s", exc)
        _finish(conn, job["id"], "failed", str(exc))
        return 1
    except BaseException as exc:  # noqa: BLE001 - any crash becomes a plain reason
        log.info("crashed:\n%s", traceback.format_exc())
        for h in log.handlers:
            h.flush()
        _finish(conn, job["id"], "failed", explain_failure(exc, job))
        return 1
    finally:
        ctx.stop_heartbeat()
    _finish(conn, job["id"], "succeeded", None, metrics or {})
    log.info("job %s succeeded", job["id"])
    return 0


# --------------------------------------------------------------------------------------------------------------
# The supervisor


def _pid_alive(pid: int | None, job_id: int | None = None) -> bool:
    """Is ``pid`` a live process (and, for a job, that job's process rather than a recycled pid)?"""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if job_id is not None:
            cmd = proc.cmdline()
            return "_job" in cmd and str(job_id) in cmd
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def supervisor_alive(conn) -> dict | None:
    """The live supervisor's row, or None."""
    for row in conn.query("SELECT * FROM supervisor ORDER BY id DESC"):
        if _age_s(row["heartbeat_at"]) < max(15.0, 3 * heartbeat_interval()) and _pid_alive(row["pid"]):
            if row.get("hostname") in (None, socket.gethostname()):
                return row
    return None


def mark_vanished(conn, job: dict, detail: str = "") -> None:
    reason = f"{VANISHED}{': ' + detail if detail else ''}. Resume the run to continue from its last checkpoint."
    conn.execute(
        "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, pid = NULL, resume_from = ? "
        "WHERE id = ? AND status = 'running'",
        [db.now(), reason, last_checkpoint(job["id"]), job["id"]],
    )


def check_running(conn, children: dict[int, subprocess.Popen] | None = None) -> None:
    """Mark running jobs whose process is gone (or silent for too long) as failed. Safe to call from anywhere."""
    children = children or {}
    for job in list(conn.query("SELECT * FROM jobs WHERE status = 'running'")):
        if job["id"] in children:
            continue  # the supervisor that started it watches its exit code
        if job["pid"] and _pid_alive(job["pid"], job["id"]):
            if _age_s(job["heartbeat_at"]) > heartbeat_timeout():
                mark_vanished(conn, job, "the run stopped answering")
                _kill_group(job["pid"], signal.SIGKILL)
            continue
        if not job["pid"] and _age_s(job["heartbeat_at"]) < heartbeat_timeout():
            continue  # being started right now
        # Give the job process a moment to write its own final status, then decide.
        time.sleep(0.2)
        status = conn.execute("SELECT status FROM jobs WHERE id = ?", [job["id"]]).fetchone()[0]
        if status == "running":
            mark_vanished(conn, job)
            _kill_group(job["pid"], signal.SIGKILL)  # leftovers of its process group, if any


def _kill_group(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(int(pid), sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    def __init__(self, conn, poll_s: float = 1.0):
        self.conn = conn
        self.poll_s = poll_s
        self.children: dict[int, subprocess.Popen] = {}
        self.cancel_seen: dict[int, float] = {}
        self.row_id: int | None = None

    def claim(self) -> bool:
        with db.transaction(self.conn):
            other = supervisor_alive(self.conn)
            if other and other["pid"] != os.getpid():
                return False
            self.conn.execute("DELETE FROM supervisor")
            self.row_id = self.conn["supervisor"].insert(
                {"pid": os.getpid(), "started_at": db.now(), "heartbeat_at": db.now(), "hostname": socket.gethostname()}
            ).last_pk
        return True

    def heartbeat(self) -> None:
        self.conn.execute("UPDATE supervisor SET heartbeat_at = ? WHERE id = ?", [db.now(), self.row_id])

    def release(self) -> None:
        self.conn.execute("DELETE FROM supervisor WHERE id = ? AND pid = ?", [self.row_id, os.getpid()])

    def reap(self) -> None:
        for job_id, proc in list(self.children.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.children[job_id]
            self.cancel_seen.pop(job_id, None)
            status = self.conn.execute("SELECT status, cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()
            if code != 0:
                _kill_group(proc.pid, signal.SIGKILL)  # its children (torchrun workers) must not outlive it
            if status and status[0] == "running":
                if status[1]:
                    _finish(self.conn, job_id, "cancelled", "Cancelled on request (stopped forcefully).")
                elif code < 0:
                    mark_vanished(self.conn, {"id": job_id}, f"the training process was killed (signal {-code})")
                else:
                    mark_vanished(self.conn, {"id": job_id}, f"the training process exited with status {code}")

    def enforce_cancels(self) -> None:
        for job in self.conn.query("SELECT id, pid FROM jobs WHERE status = 'running' AND cancel_requested = 1"):
            first = self.cancel_seen.setdefault(job["id"], time.monotonic())
            waited = time.monotonic() - first
            if waited > 2 * cancel_grace():
                _kill_group(job["pid"], signal.SIGKILL)
            elif waited > cancel_grace():
                _kill_group(job["pid"], signal.SIGTERM)

    def start_queued(self) -> None:
        slots = [r[0] for r in self.conn.execute("SELECT DISTINCT device_slot FROM jobs WHERE status = 'queued'")]
        for slot in slots:
            running = self.conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND device_slot IS ?", [slot]
            ).fetchone()[0]
            free = concurrency(slot or "cpu") - running
            for _ in range(max(0, free)):
                row = self.conn.execute(
                    "SELECT id FROM jobs WHERE status = 'queued' AND device_slot IS ? ORDER BY id LIMIT 1", [slot]
                ).fetchone()
                if not row:
                    break
                self.launch(row[0])

    def launch(self, job_id: int) -> None:
        with db.transaction(self.conn):
            claimed = self.conn.execute(
                "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), heartbeat_at = ?, "
                "cancel_requested = 0 WHERE id = ? AND status = 'queued'",
                [db.now(), db.now(), job_id],
            ).rowcount
        if not claimed:
            return
        job_dir = paths.run_dir(job_id)
        log_path = job_dir / "log.txt"
        try:
            with open(log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "engine", "_job", str(job_id)],
                    start_new_session=True,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=str(Path(__file__).resolve().parents[2]),
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
        except OSError as exc:
            _finish(self.conn, job_id, "failed", f"The job could not be started: {exc}")
            return
        self.children[job_id] = proc
        self.conn.execute("UPDATE jobs SET pid = ?, log_path = ? WHERE id = ?", [proc.pid, str(log_path), job_id])

    def tick(self) -> None:
        self.heartbeat()
        self.reap()
        check_running(self.conn, self.children)
        self.enforce_cancels()
        self.start_queued()

    def idle(self) -> bool:
        return not self.children and not self.conn.execute(
            "SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1"
        ).fetchone()


def worker(poll_s: float = 1.0, idle_exit_s: float | None = None, out=sys.stderr) -> int:
    """The supervisor loop. Returns 0 when it stops (idle for ``idle_exit_s``, or SIGTERM/SIGINT); 3 if another runs."""
    conn = db.connect()
    sup = Supervisor(conn, poll_s)
    if not sup.claim():
        print("Another supervisor is already running; this one exits.", file=out)
        return 3
    print(f"Supervisor {os.getpid()} watching the queue in {paths.home()}", file=out, flush=True)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            try:
                sup.tick()
            except Exception as exc:  # noqa: BLE001 - a busy store or a stray error must not stop the supervisor
                print(f"supervisor: {type(exc).__name__}: {exc}", file=out, flush=True)
            if sup.idle():
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
            else:
                idle_since = time.monotonic()
            stop.wait(poll_s)
    finally:
        sup.release()
        conn.close()
    # Running jobs are left alone: they are in their own sessions and a new supervisor adopts them.
    return 0


def ensure_supervisor(idle_exit_s: float | None = 600.0) -> int:
    """Start a detached ``python -m engine worker`` unless one is alive; return the supervisor's pid."""
    conn = db.connect()
    try:
        alive = supervisor_alive(conn)
        if alive:
            return int(alive["pid"])
    finally:
        conn.close()
    args = [sys.executable, "-m", "engine", "worker"]
    if idle_exit_s is not None:
        args += ["--idle-exit", str(idle_exit_s)]
    with open(paths.home() / "worker.log", "ab") as log_file:
        proc = subprocess.Popen(
            args,
            start_new_session=True,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    # Wait until it has claimed the supervisor row (or lost to another one), so callers see it at once.
    deadline = time.monotonic() + 20
    conn = db.connect()
    try:
        while time.monotonic() < deadline:
            alive = supervisor_alive(conn)
            if alive:
                return int(alive["pid"])
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        conn.close()
    return proc.pid
