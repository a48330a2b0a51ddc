"""The Train and Runs pages through Streamlit's AppTest: empty store, queue a run, refuse bad options next to the
field, and show a finished run with its metrics and curves."""

from __future__ import annotations

import pytest

from engine import db
from engine.jobs import queue
from engine.jobs import supervisor
from tests.helpers import make_finished_run, open_page, texts
from tests.test_training import insert_text_dataset


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    started = []
    # the page starts a supervisor after queueing; here we only record that it asked for one
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: started.append(1) or 0)

    def app_page(name: str, **query):
        return open_page(name, **query)

    app_page.started = started
    return app_page


def test_both_pages_render_on_an_empty_store(app):
    train = app("train")
    assert "There is no dataset yet" in texts(train)
    runs = app("runs")
    assert "No training runs yet" in texts(runs)


def test_train_page_queues_a_run_and_refuses_bad_options_next_to_the_field(app, shared, tiny_text_model):
    conn = db.connect()
    insert_text_dataset(conn, shared("fpb", "train.csv"), n_train=40, n_val=10, n_test=10)
    at = app("train")
    shown = texts(at)
    assert "Quick" in shown and "Balanced" in shown and "Thorough" in shown
    assert shown.count("Estimated time on this machine") == 3
    from engine.models import catalog

    catalog.allow_model(str(tiny_text_model))  # the Train page offers only base models an administrator allowed
    at.text_input(key="train_base_model").set_value(str(tiny_text_model))
    at.radio(key="train_preset").set_value("quick").run()
    assert at.number_input(key="adv_epochs").value == 1  # the preset fills the advanced fields
    # a bad value: refused, with the reason under the field, and nothing queued
    at.number_input(key="adv_learning_rate").set_value(-0.5)
    at.button[0].click().run()
    assert not at.exception
    assert any("must be above 0" in e.value for e in at.error)
    assert conn["jobs"].count == 0 and not app.started
    # fixed: queued, and the page asks for a supervisor
    at.number_input(key="adv_learning_rate").set_value(5e-5)
    at.button[0].click().run()
    assert not at.exception
    assert conn["jobs"].count == 1 and app.started
    job = queue.list_jobs(conn)[0]
    assert job["status"] == "queued" and job["config"]["epochs"] == 1 and job["config"]["learning_rate"] == 5e-5
    assert job["created_by"] == "ana"
    assert f"Run {job['id']} is queued" in texts(at)


def test_runs_page_shows_a_finished_run_and_the_history(app, tiny_text_model):
    conn = db.connect()
    run_id = make_finished_run(conn, tiny_text_model, metrics={"macro_f1": 0.734, "accuracy": 0.8, "weighted_f1": 0.79,
                                                               "validation_macro_f1": 0.7})
    for step, loss in [(1, 1.1), (5, 0.8), (10, 0.5)]:
        conn["progress"].insert({"job_id": run_id, "kind": "train", "step": step, "total_steps": 10, "epoch": step / 10,
                                 "loss": loss, "created_at": db.now()})
    conn["progress"].insert({"job_id": run_id, "kind": "eval", "step": 10, "total_steps": 10, "epoch": 1.0,
                             "eval_loss": 0.6, "accuracy": 0.8, "macro_f1": 0.7, "created_at": db.now()})
    failed = conn["jobs"].insert({"kind": "train", "status": "failed", "task": "text-classification",
                                  "created_at": db.now(), "error": "The engine stopped unexpectedly: killed."}).last_pk
    at = app("runs", run=str(run_id))
    assert at.selectbox(key="runs_pick").value == run_id
    shown = texts(at)
    assert ":green-badge[:material/check_circle: Succeeded]" in shown
    assert any(m.value == "0.734" for m in at.metric)
    assert "Step 10 of 10" in str([p.proto for p in at.get("progress")])
    assert len(at.get("plotly_chart")) == 2
    assert "Device: CPU · fp32" in shown
    table = at.dataframe[0].value
    assert list(table["id"]) == [failed, run_id]  # newest first
    assert table.loc[table["id"] == run_id, "macro_f1"].iloc[0] == 0.734
    # the failed run: its reason and a Resume button that queues it again
    at.selectbox(key="runs_pick").set_value(failed).run()
    assert "The engine stopped unexpectedly" in texts(at)
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception
    assert queue.get(conn, failed)["status"] == "queued" and app.started


def test_train_page_counts_sentences_not_tags_for_an_entity_dataset(app):
    from engine.data import datasets
    from engine.training import finetune

    conn = db.connect()
    lines = []
    for i in range(40):
        lines += [f"Company{i} B-ORG", "rose O", "in O", "New B-LOC", "York I-LOC", f"on{i} O", ". O", ""]
    ds, _ = datasets.import_file(conn, "\n".join(lines).encode(), "ner.conll", "ner", created_by="test")
    sentences = finetune.split_counts(conn, ds["id"])["train"]
    at = app("train")
    assert f"for {sentences:,} training rows" in texts(at)
    assert sentences < 40 < sentences * 7  # sentences, not their 7 tags each
