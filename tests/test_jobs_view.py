"""The Jobs view (issue 14): every job with why a queued one waits and a time range from measured speed, and deleting
finished jobs with their files, refused while in use."""

from __future__ import annotations

import pytest

from engine import db, paths
from engine.cli.main import main
from engine.errors import UserError
from engine.jobs import overview, queue, supervisor
from engine.monitor import feeds, scoring
from tests.helpers import feed_csv, make_finished_run, open_page, texts


def _dataset(conn) -> int:
    ds_id = conn["datasets"].insert({"name": "tiny", "version": 1, "task": "text-classification",
                                     "labels_json": db.dumps(["negative", "positive"]), "counts_json": "{}",
                                     "n_rows": 100, "created_at": db.now(), "created_by": "test"}).last_pk
    conn["dataset_rows"].insert_all({"dataset_id": ds_id, "row_id": i, "split": "train", "text": f"t {i}",
                                     "label": ("negative", "positive")[i % 2]} for i in range(100))
    return ds_id


@pytest.fixture
def busy(store, tiny_text_model):
    """Run A trains (10 of 100 steps in 60 s); B, a scoring job, and C, another run, wait behind it on the CPU."""
    ds_id = _dataset(store)
    a = queue.enqueue(store, "train", dataset_id=ds_id, base_model="default", config={"epochs": 1},
                      device_slot="cpu", created_by="ana")
    store.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", [db.now(), a])
    store["progress"].insert({"job_id": a, "kind": "train", "step": 10, "total_steps": 100, "elapsed_s": 60.0,
                              "created_at": db.now()})
    model = make_finished_run(store, tiny_text_model)
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts")]), "a.csv", "wire")
    b = scoring.enqueue(store, "wire", model)
    store.execute("UPDATE jobs SET device_slot = 'cpu' WHERE id = ?", [b])
    c = queue.enqueue(store, "train", dataset_id=ds_id, base_model="default", config={"epochs": 1},
                      device_slot="cpu", created_by="ana")
    return {"a": a, "b": b, "c": c, "model": model}


def test_a_waiting_job_says_what_it_waits_for_and_about_how_long(store, busy):
    a, b, c = busy["a"], busy["b"], busy["c"]
    # run A measured 6 s a step: 90 steps left are 540 s, given as a range
    low, high = overview.remaining(store, queue.get(store, a))
    assert low == pytest.approx(486) and high == pytest.approx(707)
    assert overview.waiting_reason(store, queue.get(store, b)) == (
        f"Behind run {a} (running, on the CPU), about 8-12 min.")
    reason_c = overview.waiting_reason(store, queue.get(store, c))
    assert reason_c.startswith(f"Behind run {a} (running, on the CPU) and 1 more job queued before it, about ")
    assert overview.waiting_reason(store, queue.get(store, a)) is None  # running: it waits for nothing
    rows = {r["id"]: r for r in overview.jobs(store)}
    assert rows[b]["kind"] == "scoring" and rows[b]["label"] == f"scoring job {b - queue.ID_BASE['scoring']}"
    assert rows[a]["estimate"] == "left: about 8-12 min" and rows[c]["estimate"] == "takes under a minute"
    # nothing ahead, and no worker: it says so and what to do
    store.execute("UPDATE jobs SET status = 'cancelled' WHERE id IN (?, ?)", [a, b])
    assert "No worker is running to start it" in overview.waiting_reason(store, queue.get(store, c),
                                                                          worker_alive=False)


def test_cli_jobs_lists_every_kind_with_the_reason(home, busy, capsys, monkeypatch):
    monkeypatch.setattr(supervisor, "check_running", lambda conn: None)  # the fixture's running job has no process
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "training" in out and "scoring" in out
    assert f"Behind run {busy['a']} (running, on the CPU), about 8-12 min." in out


def test_jobs_page_shows_the_reason_and_the_table(home, busy, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    monkeypatch.setattr(supervisor, "check_running", lambda conn: None)
    at = open_page("jobs")
    shown = texts(at)
    assert f"Behind run {busy['a']} (running, on the CPU), about 8-12 min." in shown
    table = next(d for d in at.dataframe if "Kind" in d.value.columns).value
    assert set(table["Kind"]) == {"Training", "Scoring"}


def test_delete_a_finished_job_with_its_files_refused_while_in_use(store, tiny_text_model):
    run = make_finished_run(store, tiny_text_model)
    folder = paths.run_dir(run)
    (folder / "log.txt").write_text("done")
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts")]), "a.csv", "wire")
    store.execute("UPDATE feeds SET current_model = ? WHERE name = 'wire'", [run])
    with pytest.raises(UserError, match="Deleting run .* cannot be undone"):
        overview.delete(store, run)
    with pytest.raises(UserError, match="It is the current model of feed 'wire'"):
        overview.delete(store, run, confirm=True)
    store.execute("UPDATE feeds SET current_model = NULL")
    job = scoring.enqueue(store, "wire", run)
    with pytest.raises(UserError, match=r"Queued or running jobs use its model \(scoring job 1\)"):
        overview.delete(store, run, confirm=True)
    with pytest.raises(UserError, match="Scoring job 1 is queued: cancel it first"):
        overview.delete(store, job, confirm=True)
    queue.cancel(store, job)
    overview.delete(store, job, confirm=True)  # a cancelled job can be deleted
    before = store["jobs"].count
    overview.delete(store, run, confirm=True)
    assert store["jobs"].count == before - 1 and not folder.exists()
    assert store.execute("SELECT COUNT(*) FROM predictions WHERE run_id = ?", [run]).fetchone()[0] == 0
    assert store.execute("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0] == "run.delete"


def test_train_estimates_are_a_range_that_narrows_with_measurements(store):
    from engine.training import finetune

    config = finetune.build_config("quick")
    guess = finetune.estimate_range(store, 1000, config, "default", "cpu")
    assert guess[1] / guess[0] == pytest.approx(5.0)  # nothing measured here yet: a wide range
    for sps in (20.0, 40.0):  # one run on a busy machine, one on a quiet one
        queue_id = queue.enqueue(store, "train", base_model="default", config={"max_length": 128}, device_slot="cpu")
        store.execute("UPDATE jobs SET status = 'succeeded', metrics_json = ? WHERE id = ?",
                      [db.dumps({"train_samples_per_second": sps}), queue_id])
    low, high = finetune.estimate_range(store, 1000, config, "default", "cpu")
    middle = finetune.estimate_seconds(store, 1000, config, "default", "cpu")
    assert low <= middle < high and high / low == pytest.approx(40 / (20 * 0.85))


def test_each_kind_is_numbered_on_its_own_and_the_cli_takes_either_name(home, store, tiny_text_model, capsys):
    """Train, score, train: the runs are 1 and 2 (not 1 and 3) and the scoring job is scoring job 1; commands accept
    'scoring-1', 'S1' and the raw id alike."""
    ds_id = _dataset(store)
    first = queue.enqueue(store, "train", dataset_id=ds_id, base_model="default", config={"epochs": 1},
                          device_slot="cpu")
    store.execute("UPDATE jobs SET status = 'succeeded', model_dir = ? WHERE id = ?", [str(tiny_text_model), first])
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts")]), "a.csv", "wire")
    scored = scoring.enqueue(store, "wire", first)
    second = queue.enqueue(store, "train", dataset_id=ds_id, base_model="default", config={"epochs": 1},
                           device_slot="cpu")
    assert (first, second) == (1, 2)
    job = queue.get(store, scored)
    assert overview.label(job) == "scoring job 1" and queue.reference(job) == "scoring-1"
    assert overview.label(queue.get(store, second)) == "run 2"
    for name in ("scoring-1", "S1", "scoring job 1", "#1000001", str(scored)):
        assert queue.resolve(store, name) == scored, name
    assert queue.resolve(store, "run-2") == queue.resolve(store, "2") == 2
    # the queue keeps the order they were queued in, whatever their ids: the scoring job waits before run 2
    assert overview.waiting_reason(store, queue.get(store, second)).startswith("Behind scoring job 1 (queued")
    assert [r["ref"] for r in overview.jobs(store)] == ["run-2", "scoring-1", "run-1"]
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "scoring-1" in out and "run-2" in out and "1000001" not in out
    assert main(["job", "log", "S1"]) == 2
    assert "Scoring job 1 has no log yet." in capsys.readouterr().err
    assert main(["jobs", "cancel", "S1"]) == 0
    assert capsys.readouterr().out.strip() == "Scoring job 1: cancelled."
    assert main(["jobs", "cancel", "scoring-1"]) == 2
    assert "Scoring job 1 has already been cancelled" in capsys.readouterr().err
    assert main(["jobs", "delete", "scoring-7", "--yes"]) == 2
    assert "There is no scoring job 7." in capsys.readouterr().err
    assert main(["jobs", "delete", "scoring-1", "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "Deleted scoring job 1 and its files."
    third = queue.enqueue(store, "train", dataset_id=ds_id, base_model="default", device_slot="cpu")
    assert third == 3  # runs stay contiguous; the scoring range does not push them on


def test_a_store_from_before_keeps_its_ids_and_new_jobs_do_not_collide(store):
    """Ids given before the ranges existed stay; new runs continue after the largest, and a new scoring job is numbered
    after the old ones, so no two scoring jobs share a number."""
    for kind, purpose in (("train", None), ("score", None), ("score", "topics"), ("train", None)):
        store["jobs"].insert({"kind": kind, "status": "succeeded", "created_at": db.now(),
                              "config_json": db.dumps({"purpose": purpose} if purpose else {})})
    assert [overview.label(queue.get(store, i)) for i in (1, 2, 3, 4)] == [
        "run 1", "scoring job 2", "topics job 3", "run 4"]
    assert queue.next_id(store, "training") == 5
    assert queue.next_id(store, "scoring") == queue.ID_BASE["scoring"] + 3
    assert queue.next_id(store, "topics") == queue.ID_BASE["topics"] + 4
    assert queue.resolve(store, "S2") == 2 and queue.resolve(store, "T3") == 3
    with pytest.raises(Exception, match="no scoring job 3"):
        queue.resolve(store, "S3")
