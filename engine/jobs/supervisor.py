"""The supervisor: starts queued jobs in processes of their own and watches them.

``python -m engine worker`` (:func:`worker`) records itself in the ``supervisor`` table with a heartbeat, starts each
job as ``python -m engine _job ID`` in its own process group with its output in ``runs/<id>/log.txt``, first in
first out per device slot, ``concurrency(slot)`` at a time. It watches exit codes and heartbeats (a job whose
process vanished is marked failed: "the engine stopped unexpectedly", and can be resumed from its last checkpoint)
and enforces cancels (cooperative first, then SIGTERM to the process group, then SIGKILL).
:func:`ensure_supervisor` starts a detached supervisor when none is alive (the dashboard calls it; it never trains).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine import db, paths, settings
from engine.i18n import _
from engine.jobs import queue


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
        if queue._age_s(row["heartbeat_at"]) < max(15.0, 3 * queue.heartbeat_interval()) and _pid_alive(row["pid"]):
            if row.get("hostname") in (None, socket.gethostname()):
                return row
    return None


def mark_vanished(conn, job: dict, reason: str = queue.VANISHED_RESUME) -> None:
    """Mark a running job whose process is gone as failed; ``reason`` (one of queue's reasons) is stored in English and
    translated where it is shown (engine.i18n.shown)."""
    conn.execute(
        "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, pid = NULL, resume_from = ? "
        "WHERE id = ? AND status = 'running'",
        [db.now(), reason, queue.last_checkpoint(job["id"]), job["id"]],
    )


def check_running(conn, children: dict[int, subprocess.Popen] | None = None) -> None:
    """Mark running jobs whose process is gone (or silent for too long) as failed. Safe to call from anywhere."""
    children = children or {}
    for job in list(conn.query("SELECT * FROM jobs WHERE status = 'running'")):
        if job["id"] in children:
            continue  # the supervisor that started it watches its exit code
        if job["pid"] and _pid_alive(job["pid"], job["id"]):
            if queue._age_s(job["heartbeat_at"]) > queue.heartbeat_timeout():
                mark_vanished(conn, job, queue.STOPPED_ANSWERING)
                _kill_group(job["pid"], signal.SIGKILL)
            continue
        if not job["pid"] and queue._age_s(job["heartbeat_at"]) < queue.heartbeat_timeout():
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
                    queue.finish(self.conn, job_id, "cancelled", queue.CANCELLED_FORCEFULLY)
                elif code < 0:
                    mark_vanished(self.conn, {"id": job_id}, queue.KILLED.format(signal=-code))
                else:
                    mark_vanished(self.conn, {"id": job_id}, queue.EXITED.format(code=code))

    def enforce_cancels(self) -> None:
        for job in self.conn.query("SELECT id, pid FROM jobs WHERE status = 'running' AND cancel_requested = 1"):
            first = self.cancel_seen.setdefault(job["id"], time.monotonic())
            waited = time.monotonic() - first
            if waited > 2 * queue.cancel_grace():
                _kill_group(job["pid"], signal.SIGKILL)
            elif waited > queue.cancel_grace():
                _kill_group(job["pid"], signal.SIGTERM)

    def start_queued(self) -> None:
        slots = [r[0] for r in self.conn.execute("SELECT DISTINCT device_slot FROM jobs WHERE status = 'queued'")]
        for slot in slots:
            running = self.conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND device_slot IS ?", [slot]
            ).fetchone()[0]
            free = queue.concurrency(slot or "cpu") - running
            for _turn in range(max(0, free)):
                row = self.conn.execute(
                    f"SELECT id FROM jobs WHERE status = 'queued' AND device_slot IS ? ORDER BY {queue.ORDER} LIMIT 1", [slot]
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
                    env={**settings.without_secrets(), "PYTHONUNBUFFERED": "1"},
                )
        except OSError as exc:
            queue.finish(self.conn, job_id, "failed", queue.NOT_STARTED.format(error=exc))
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


def _periodic_loop(periodic, stop: threading.Event, scheduled: threading.Event, poll_s: float, out) -> None:
    """Run ``periodic(conn)`` every ``poll_s`` seconds on a connection of its own until ``stop``; it returns whether
    it has scheduled work (which keeps the worker from stopping when idle)."""
    conn = db.connect()
    try:
        while not stop.is_set():
            try:
                if periodic(conn):
                    scheduled.set()
                else:
                    scheduled.clear()
            except Exception as exc:  # noqa: BLE001 - one bad pass must not stop polling
                print(f"periodic step: {type(exc).__name__}: {exc}", file=out, flush=True)
            stop.wait(poll_s)
    finally:
        conn.close()


def worker(poll_s: float = 1.0, idle_exit_s: float | None = None, out=sys.stderr, periodic=None) -> int:
    """The supervisor loop. Returns 0 when it stops (idle for ``idle_exit_s``, or SIGTERM/SIGINT); 3 if another runs.

    ``periodic(conn) -> bool``, when given, runs beside the loop in a thread of its own (engine.cli passes the feed
    sources' poller, engine.monitor.poller.step: the jobs layer does not know it); while it reports scheduled work
    the worker does not stop for being idle."""
    conn = db.connect()
    sup = Supervisor(conn, poll_s)
    if not sup.claim():
        print(_("Another supervisor is already running; this one exits."), file=out)
        return 3
    print(_("Supervisor {pid} watching the queue in {home}", pid=os.getpid(), home=paths.home()), file=out, flush=True)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    idle_since = time.monotonic()
    scheduled = threading.Event()
    thread = None
    if periodic is not None:
        thread = threading.Thread(target=_periodic_loop, args=(periodic, stop, scheduled, poll_s, out),
                                  name="periodic", daemon=True)
        thread.start()
    try:
        while not stop.is_set():
            try:
                sup.tick()
            except Exception as exc:  # noqa: BLE001 - a busy store or a stray error must not stop the supervisor
                print(f"supervisor: {type(exc).__name__}: {exc}", file=out, flush=True)
            if sup.idle() and not scheduled.is_set():
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
            else:
                idle_since = time.monotonic()
            stop.wait(poll_s)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=60)
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
            env=settings.without_secrets(),  # the dashboard's secrets stay with the dashboard
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
