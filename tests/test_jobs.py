"""The queue and its supervisor: FIFO per device, cancel then resume, kill -9, a supervisor restart, vanished jobs,
and the `train` / `runs` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine import db
from tests.test_training import cli, insert_text_dataset


def wait_for(conn, run_id, predicate, timeout=120, what="the run"):
    from engine.jobs import queue

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = queue.get(conn, run_id)
        if predicate(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {queue.get(conn, run_id)}\n{queue.log_tail(job, 30)}")


def last_step(conn, run_id) -> int:
    row = conn.execute("SELECT MAX(step) FROM progress WHERE job_id = ? AND kind = 'train'", [run_id]).fetchone()
    return row[0] or 0


def submit_tiny(conn, model, **overrides):
    from engine.training import finetune

    options = {"max_length": 32, "batch_size": 8, **overrides}
    return finetune.submit(conn, "fpb", base_model=str(model), preset="quick", overrides=options)


@pytest.fixture
def fpb(store, shared):
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=16)
    return store


@pytest.mark.process
def test_fifo_one_at_a_time_cancel_with_checkpoint_then_resume(fpb, tiny_text_model, workers):
    from engine.jobs import queue

    conn = fpb
    long_run = submit_tiny(conn, tiny_text_model, epochs=3)  # 24 steps
    short_run = submit_tiny(conn, tiny_text_model, epochs=1)
    workers()
    wait_for(conn, long_run, lambda j: last_step(conn, long_run) >= 4, what="steps of the first run")
    assert queue.get(conn, short_run)["status"] == "queued"  # one at a time on this device, first in first out
    assert queue.cancel(conn, long_run) == "cancelling"
    job = wait_for(conn, long_run, lambda j: j["status"] != "running", what="the cancel")
    assert job["status"] == "cancelled" and job["error"] == "Cancelled on request."
    assert job["resume_from"] and Path(job["resume_from"], "trainer_state.json").is_file()
    stopped_at = int(Path(job["resume_from"]).name.split("-")[1])
    assert 4 <= stopped_at < 24  # the checkpoint is where it stopped, mid-run

    n_before = len(queue.progress_rows(conn, long_run, "train"))
    short = wait_for(conn, short_run, lambda j: j["status"] in queue.FINISHED, what="the second run")
    assert short["status"] == "succeeded" and short["started_at"] >= job["finished_at"]

    queue.resume(conn, long_run)
    done = wait_for(conn, long_run, lambda j: j["status"] in queue.FINISHED and j["attempt"] == 2, what="the resumed run")
    assert done["status"] == "succeeded", done["error"]
    resumed = [r["step"] for r in queue.progress_rows(conn, long_run, "train")][n_before:]
    assert resumed and min(resumed) > stopped_at  # continued from the checkpoint, not from step 0
    assert max(resumed) == 24
    assert Path(done["model_dir"], "config.json").is_file()


@pytest.mark.process
def test_kill_9_of_the_training_process_fails_it_and_damages_nothing_else(fpb, tiny_text_model, workers):
    from engine.jobs import queue
    from tests.helpers import make_finished_run

    conn = fpb
    other = make_finished_run(conn, tiny_text_model, predictions=[
        {"row_id": 1, "text": "x", "true_label": "neutral", "pred_label": "neutral", "confidence": 0.9, "probs": {"neutral": 0.9}}])
    before = {t: list(conn.query(f"SELECT * FROM [{t}]")) for t in ("datasets", "dataset_rows", "predictions")}
    before_other = queue.get(conn, other)
    run_id = submit_tiny(conn, tiny_text_model, epochs=5)
    workers()
    job = wait_for(conn, run_id, lambda j: j["pid"] and last_step(conn, run_id) >= 3, what="training steps")
    os.kill(job["pid"], signal.SIGKILL)
    job = wait_for(conn, run_id, lambda j: j["status"] != "running", timeout=30, what="the supervisor to notice")
    assert job["status"] == "failed"
    assert "engine stopped unexpectedly" in job["error"] and "signal 9" in job["error"]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert {t: list(conn.query(f"SELECT * FROM [{t}]")) for t in before} == before
    assert queue.get(conn, other) == before_other
    queue.resume(conn, run_id)  # it can be resumed
    assert queue.get(conn, run_id)["status"] in ("queued", "running")
    queue.cancel(conn, run_id)


@pytest.mark.process
def test_a_supervisor_restart_leaves_the_running_job_alone(fpb, tiny_text_model, workers):
    from engine.jobs import queue
    from engine.jobs import supervisor

    conn = fpb
    run_id = submit_tiny(conn, tiny_text_model, epochs=4)
    first = workers()
    job = wait_for(conn, run_id, lambda j: j["pid"] and last_step(conn, run_id) >= 2, what="training steps")
    first.send_signal(signal.SIGTERM)
    first.wait(10)
    assert supervisor.supervisor_alive(conn) is None
    assert queue.get(conn, run_id)["status"] == "running"  # the job process lives on without its supervisor
    pid = supervisor.ensure_supervisor()  # as the dashboard does
    assert pid != first.pid and supervisor.ensure_supervisor() == pid  # a second call finds the live one
    done = wait_for(conn, run_id, lambda j: j["status"] in queue.FINISHED, what="the adopted run")
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 1 and job["pid"] not in (first.pid, pid)


def test_a_vanished_job_is_marked_failed_and_can_be_resumed(store):
    from engine.jobs import queue
    from engine.jobs import supervisor

    dead = subprocess.Popen(["true"])
    dead.wait()
    run_id = store["jobs"].insert({"kind": "train", "status": "running", "created_at": db.now(), "pid": dead.pid,
                                   "heartbeat_at": "2020-01-01T00:00:00+00:00", "attempt": 1}).last_pk
    supervisor.check_running(store)
    job = queue.get(store, run_id)
    assert job["status"] == "failed" and job["error"].startswith("The engine stopped unexpectedly")
    queue.resume(store, run_id)
    assert queue.get(store, run_id)["status"] == "queued" and queue.get(store, run_id)["attempt"] == 2


def test_cancel_and_resume_refuse_what_they_cannot_do(store, tiny_text_model):
    from engine.jobs import queue
    from engine.errors import NotFound, UserError
    from tests.helpers import make_finished_run

    queued = queue.enqueue(store, "train", task="text-classification", config={})
    assert queue.cancel(store, queued) == "cancelled"
    assert queue.get(store, queued)["status"] == "cancelled"
    finished = make_finished_run(store, tiny_text_model)
    with pytest.raises(UserError, match="only a failed or cancelled run can be resumed"):
        queue.resume(store, finished)
    with pytest.raises(UserError, match="nothing to cancel"):
        queue.cancel(store, finished)
    with pytest.raises(NotFound):
        queue.get(store, 999)


@pytest.mark.process
def test_cli_refuses_invalid_configurations_with_status_2_and_queues_nothing(fpb, tiny_text_model, home):
    before = db.table_counts(fpb)
    for args, needle in [
        (["--lr", "-1"], "Learning rate"),
        (["--batch-size", "0"], "Batch size"),
        (["--base-model", str(home / "missing")], "does not exist"),
        (["--preset", "fastest"], "invalid choice"),
    ]:
        done = cli("train", "--dataset", "fpb", "--base-model", str(tiny_text_model), *args, "--no-worker")
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr
    assert db.table_counts(fpb) == before
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


@pytest.mark.process
def test_cli_train_prints_the_id_and_runs_list_show_as_json(fpb, tiny_text_model, home):
    from tests.helpers import make_finished_run

    finished = make_finished_run(fpb, tiny_text_model, metrics={"macro_f1": 0.61, "accuracy": 0.7},
                                 dataset_id=fpb.execute("SELECT id FROM datasets").fetchone()[0])
    done = cli("train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--preset", "quick", "--no-worker")
    assert done.returncode == 0, done.stderr
    new_id = int(done.stdout.strip().splitlines()[-1])
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    assert [r["id"] for r in listed] == [new_id, finished]  # newest first
    assert listed[0]["status"] == "queued" and listed[0]["dataset"] == "fpb:1"
    assert listed[1]["macro_f1"] == 0.61 and {"id", "status", "task", "dataset", "created_at"} <= set(listed[1])
    shown = json.loads(cli("runs", "show", str(new_id), "--format", "json").stdout)
    assert shown["config"]["epochs"] == 1 and shown["config"]["preset"] == "quick" and shown["status"] == "queued"
    assert cli("runs", "cancel", str(new_id)).returncode == 0
    assert json.loads(cli("runs", "show", str(new_id), "--format", "json").stdout)["status"] == "cancelled"
    missing = cli("runs", "show", "999")
    assert missing.returncode == 2 and "no run" in missing.stderr


@pytest.mark.process
def test_a_job_that_ignores_a_cancel_is_stopped_by_force_after_the_grace_period(store, monkeypatch):
    """Cooperative first; then SIGTERM to its process group; then SIGKILL. The run ends cancelled, saying so."""
    import subprocess as sp
    import sys as _sys
    import time as _time

    from engine import db as _db
    from engine.jobs import queue
    from engine.jobs import supervisor as _supervisor

    monkeypatch.setenv("BELLWETHER_CANCEL_GRACE_S", "0.3")
    stubborn = sp.Popen(
        [_sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
        start_new_session=True,
    )
    job_id = store["jobs"].insert({"kind": "train", "status": "running", "created_at": _db.now(), "pid": stubborn.pid,
                                   "cancel_requested": 1, "device_slot": "cpu"}).last_pk
    supervisor = _supervisor.Supervisor(store, poll_s=0.05)
    supervisor.children[job_id] = stubborn
    deadline = _time.monotonic() + 10
    while stubborn.poll() is None and _time.monotonic() < deadline:
        supervisor.enforce_cancels()
        _time.sleep(0.05)
    assert stubborn.returncode == -9  # SIGTERM was ignored, so SIGKILL ended it
    supervisor.reap()
    job = queue.get(store, job_id)
    assert job["status"] == "cancelled"
    assert "forcefully" in job["error"]
