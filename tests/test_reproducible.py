"""Reproducible runs (issue 18): the same seed, data and settings give the same model, from the dashboard's path and
the command line's alike; another seed gives another draw; "Run again" repeats a run on the same dataset version."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from engine import db
from tests.test_training import cli, insert_text_dataset, run_in_process, stop_supervisor

LABELS = ["negative", "neutral", "positive"]
TINY = {"max_length": 32, "batch_size": 8, "epochs": 1}
TIMING = {"train_runtime_s", "train_samples_per_second", "best_checkpoint"}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A tiny BERT encoder without a classification head (as the default model ships): training adds a new head."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from engine.models.catalog import default_model_path

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def head(model):
    return {k: v.detach().clone() for k, v in model.classifier.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def predictions(conn, run_id: int) -> list[tuple]:
    return [(r["row_id"], r["pred_label"], r["probs_json"]) for r in
            conn.query("SELECT row_id, pred_label, probs_json FROM predictions WHERE run_id = ? ORDER BY row_id", [run_id])]


def quality(job: dict) -> dict:
    return {k: v for k, v in job["metrics"].items() if k not in TIMING}


# ---- the head's initial weights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["tiny", "default"])
def test_the_heads_initial_weights_depend_on_the_seed_only(base, tiny_encoder):
    import numpy as np
    import torch

    from engine.training import finetune
    from engine.models import catalog

    source = str(tiny_encoder) if base == "tiny" else catalog.default_model_path()
    _, first = finetune.load_model(source, "text-classification", LABELS, seed=42)
    # whatever was drawn before (other code, another model) does not change the head
    torch.rand(1000)
    np.random.rand(100)
    random.random()
    _, again = finetune.load_model(source, "text-classification", LABELS, seed=42)
    _, other = finetune.load_model(source, "text-classification", LABELS, seed=1)
    assert same(head(first), head(again))
    assert not same(head(first), head(other))
    assert head(first)["weight"].shape == (3, first.config.hidden_size)


# ---- whole runs, tiny model ------------------------------------------------------------------------------------


def test_same_seed_same_predictions_and_metrics_another_seed_another_draw(store, shared, tiny_encoder):
    from engine.jobs import queue
    from engine.training import finetune, reproduce

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=24)
    ids = {}
    for label, seed in [("a", 42), ("b", 42), ("c", 7)]:
        ids[label] = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="quick",
                                     overrides={**TINY, "seed": seed})
        assert run_in_process(ids[label]) == 0
        assert queue.get(store, ids[label])["status"] == "succeeded", queue.get(store, ids[label])["error"]
    a, b, c = (queue.get(store, ids[k]) for k in "abc")
    assert predictions(store, a["id"]) == predictions(store, b["id"])  # labels and probabilities, bit for bit
    assert quality(a) == quality(b)
    same_seed = reproduce.compare_predictions(store, a["id"], b["id"])
    assert same_seed["identical"] and same_seed["max_prob_diff"] == 0.0 and same_seed["n_rows"] == 24
    other = reproduce.compare_predictions(store, a["id"], c["id"])
    assert other["max_prob_diff"] > 1e-4  # another seed: another model
    assert [p[2] for p in predictions(store, a["id"])] != [p[2] for p in predictions(store, c["id"])]
    # what a re-run must match is recorded with the run
    env = a["device"]["environment"]
    for key in ("python", "torch", "transformers", "peft", "torch_threads"):
        assert env[key]
    assert env["full_determinism"] is False and a["device"]["device"] == "cpu"


def test_full_determinism_is_an_advanced_option_recorded_with_the_run(store, shared, tiny_encoder, monkeypatch):
    from engine.jobs import queue
    from engine.training import finetune

    for name in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "ASCEND_LAUNCH_BLOCKING", "HCCL_DETERMINISTIC",
                 "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.delenv(name, raising=False)  # enable_full_determinism sets them in this process: undone after

    assert finetune.build_config("quick")["full_determinism"] is False
    assert finetune.build_config("quick", {"full_determinism": "yes"})["full_determinism"] is True
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=32, n_val=8, n_test=8)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="quick",
                             overrides={**TINY, "full_determinism": True})
    try:
        assert run_in_process(run_id) == 0
    finally:
        import torch

        torch.use_deterministic_algorithms(False)  # the option sets it for the (job) process: undo it here
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["config"]["full_determinism"] is True and job["device"]["environment"]["full_determinism"] is True


# ---- the dashboard's path and the command line's --------------------------------------------------------------


@pytest.mark.process
def test_dashboard_and_command_line_give_the_same_model_for_the_same_seed(home, shared, tiny_encoder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from engine.jobs import queue, supervisor
    from tests.conftest import ROOT

    conn = db.connect()
    insert_text_dataset(conn, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=24)
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)  # the CLI below starts the real one
    from engine.models import catalog

    catalog.allow_model(str(tiny_encoder))  # the Train page offers only base models an administrator allowed
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/train.py").run()
    at.text_input(key="train_base_model").set_value(str(tiny_encoder))
    at.radio(key="train_preset").set_value("quick").run()
    at.number_input(key="adv_max_length").set_value(32)
    at.number_input(key="adv_batch_size").set_value(8)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception, at.exception
    page_run = queue.list_jobs(conn)[0]["id"]
    # the command line queues the same choices and starts the worker, which runs both runs in turn
    try:
        done = cli("train", "--dataset", "fpb", "--preset", "quick", "--base-model", str(tiny_encoder),
                   "--max-length", "32", "--batch-size", "8", "--seed", "42", "--again",  # the same run on purpose
                   "--wait", timeout=300)
        deadline = time.monotonic() + 120
        while queue.get(conn, page_run)["status"] in queue.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop_supervisor(home)
    assert done.returncode == 0, done.stderr[-3000:]
    cli_run = int(done.stdout.strip().splitlines()[-1])
    a, b = queue.get(conn, page_run), queue.get(conn, cli_run)
    assert a["status"] == b["status"] == "succeeded", (a["error"], b["error"])
    assert a["config"] == b["config"]  # the same settings from both paths
    assert predictions(conn, page_run) == predictions(conn, cli_run)
    assert quality(a) == quality(b)


# ---- run again ----------------------------------------------------------------------------------------------


@pytest.mark.process
def test_rerun_copies_settings_and_the_exact_dataset_version(store, shared, tiny_encoder, home):
    from engine.errors import UserError
    from engine.jobs import queue
    from engine.training import finetune, reproduce

    csv = shared("fpb", "train.csv")
    v1 = insert_text_dataset(store, csv, n_train=32, n_val=8, n_test=8)
    source = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="balanced",
                             overrides={**TINY, "learning_rate": 7e-5, "seed": 11, "class_weighting": True})
    with pytest.raises(UserError, match="finished"):
        reproduce.rerun(store, source)  # still queued
    store.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [source])
    insert_text_dataset(store, csv, n_train=40, n_val=8, n_test=8, version=2)  # a newer version must not be picked
    again = reproduce.rerun(store, source, created_by="bo")
    first, second = queue.get(store, source), queue.get(store, again)
    assert second["status"] == "queued" and second["dataset_id"] == v1 and second["config"]["dataset"] == "fpb:1"
    assert second["config"]["rerun_of"] == source and second["created_by"] == "bo"
    assert {k: v for k, v in second["config"].items() if k != "rerun_of"} == first["config"]
    assert second["base_model"] == first["base_model"] and second["task"] == first["task"]
    # the command line: --seed replaces the seed, nothing else
    out = cli("runs", "rerun", str(source), "--seed", "5", "--no-worker")
    assert out.returncode == 0, out.stderr
    third = queue.get(store, int(out.stdout.strip().splitlines()[-1]))
    assert third["config"]["seed"] == 5 and third["config"]["rerun_of"] == source and third["dataset_id"] == v1
    assert {k: v for k, v in third["config"].items() if k not in ("rerun_of", "seed")} == {
        k: v for k, v in first["config"].items() if k != "seed"}
    assert "re-run of #" in third["name"]
    assert cli("runs", "rerun", "999").returncode == 2
    # 'auto' is repeated as the precision it chose for the source (an fp32 run from before auto picked bf16 on this
    # CPU stays fp32), so that a re-run does the same arithmetic
    store.execute("UPDATE jobs SET device_json = ? WHERE id = ?", [json.dumps({"device": "cpu", "precision": "fp32"}),
                                                                   source])
    assert queue.get(store, reproduce.rerun(store, source))["config"]["precision"] == "fp32"


@pytest.mark.process
def test_rerun_wait_trains_and_compares_with_the_source(store, shared, tiny_encoder, home):
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=8, n_test=16)
    source = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="quick", overrides=TINY)
    assert run_in_process(source) == 0
    try:
        done = cli("runs", "rerun", str(source), "--wait", timeout=300)
    finally:
        stop_supervisor(home)
    assert done.returncode == 0, done.stderr[-3000:]
    again = int(done.stdout.strip().splitlines()[-1])
    assert queue.get(store, again)["status"] == "succeeded"
    assert "Identical test predictions on all 16 rows" in done.stderr
    assert predictions(store, source) == predictions(store, again)  # in-process and worker process alike
    shown = json.loads(cli("runs", "show", str(again), "--format", "json").stdout)
    assert shown["rerun_of"] == source and shown["comparison"]["predictions"]["identical"] is True
    text = cli("runs", "show", str(again)).stdout
    assert "rerun of" in text and "Identical test predictions" in text


# ---- slow: the real default model ------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_default_model_same_seed_identical_other_seed_different(store, shared):
    from engine.jobs import queue
    from engine.training import finetune, reproduce

    # about 300 rows of fpb (240 train), max length 64, one epoch: a few minutes on 2 shared cores
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=240, n_val=30, n_test=60)
    settings = {"max_length": 64, "epochs": 1, "batch_size": 16}
    ids = []
    for seed in (42, 42, 1):
        ids.append(finetune.submit(store, "fpb", base_model="default", preset="quick", overrides={**settings, "seed": seed}))
        assert run_in_process(ids[-1]) == 0, queue.get(store, ids[-1])["error"]
    a, b, c = (queue.get(store, i) for i in ids)
    assert predictions(store, a["id"]) == predictions(store, b["id"])
    assert quality(a) == quality(b)
    other = reproduce.compare_predictions(store, a["id"], c["id"])
    assert not other["identical"] or other["max_prob_diff"] > 1e-4
    assert [p[2] for p in predictions(store, a["id"])] != [p[2] for p in predictions(store, c["id"])]


# ---- the Runs page ---------------------------------------------------------------------------------------------


def test_runs_page_run_again_queues_a_rerun_and_shows_the_comparison_when_it_ends(home, shared, tiny_encoder,
                                                                                    monkeypatch):
    from streamlit.testing.v1 import AppTest

    from engine.jobs import queue, supervisor
    from engine.training import finetune
    from tests.conftest import ROOT
    from tests.helpers import make_finished_run

    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    started = []
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: started.append(1) or 0)
    conn = db.connect()
    ds = insert_text_dataset(conn, shared("fpb", "train.csv"), n_train=16, n_val=4, n_test=4)
    preds = [{"row_id": 1020 + i, "text": f"t{i}", "true_label": "neutral", "pred_label": "neutral", "confidence": 0.5,
              "probs": {"negative": 0.25, "neutral": 0.5, "positive": 0.25}} for i in range(4)]
    source = make_finished_run(conn, tiny_encoder, preds, metrics={"macro_f1": 0.61, "accuracy": 0.7}, dataset_id=ds)
    config = {**finetune.build_config("quick", TINY), "dataset": "fpb:1"}
    conn.execute("UPDATE jobs SET base_model = ?, config_json = ? WHERE id = ?", [str(tiny_encoder), db.dumps(config), source])

    def open_runs(run_id: int) -> AppTest:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
        at.run()
        at.switch_page("views/runs.py")
        at.query_params["run"] = str(run_id)
        at.run()
        assert not at.exception, at.exception
        return at

    at = open_runs(source)
    assert at.number_input(key=f"rerun_seed_{source}").value == 42
    at.number_input(key=f"rerun_seed_{source}").set_value(7)
    next(b for b in at.button if b.label == "Run again").click().run()
    assert not at.exception, at.exception
    again = queue.list_jobs(conn)[0]
    assert again["id"] != source and again["status"] == "queued" and started
    assert again["config"]["rerun_of"] == source and again["config"]["seed"] == 7 and again["dataset_id"] == ds
    assert again["created_by"] == "ana"
    assert str(again["id"]) in str(at.query_params["run"])  # the page now follows the new run
    # it ends (here: as the engine would leave it, with the same predictions): the comparison opens
    conn.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?, metrics_json = ? WHERE id = ?",
                 [db.now(), db.dumps({"macro_f1": 0.61, "accuracy": 0.7}), again["id"]])
    for p in preds:
        conn["predictions"].insert({"run_id": again["id"], "split": "test", **{k: v for k, v in p.items() if k != "probs"},
                                    "probs_json": db.dumps(p["probs"])})
    at = open_runs(again["id"])
    shown = "\n".join(str(x.value) for x in [*at.subheader, *at.success, *at.caption, *at.info, *at.warning])
    assert f"Compared with run #{source}" in shown
    assert "Identical test predictions on all 4 rows" in shown
    table = at.dataframe[0].value
    assert list(table["metric"])[:2] == ["Test macro-F1", "Test accuracy"]
    links = [str(x.proto) for x in at.get("page_link")]
    assert any("reports" in link and f"compare={again['id']}" in link for link in links), links


def test_reports_opens_the_comparison_of_a_rerun_and_its_source_from_the_link(home, tiny_text_model, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT
    from tests.helpers import make_finished_run

    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    conn = db.connect()
    a = make_finished_run(conn, tiny_text_model, metrics={"accuracy": 0.6, "macro_f1": 0.58})
    b = make_finished_run(conn, tiny_text_model, metrics={"accuracy": 0.6, "macro_f1": 0.58})
    make_finished_run(conn, tiny_text_model, metrics={"accuracy": 0.1, "macro_f1": 0.1})
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/reports.py")
    at.query_params["run"] = str(a)
    at.query_params["compare"] = str(b)
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="compare-runs").value == [a, b]


def test_a_run_resumed_from_its_first_epoch_checkpoint_ends_as_an_uninterrupted_one(store, shared, tiny_encoder):
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=8, n_test=16)
    settings = {**TINY, "epochs": 2}
    whole = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="quick", overrides=settings)
    assert run_in_process(whole) == 0
    resumed = finetune.submit(store, "fpb", base_model=str(tiny_encoder), preset="quick", overrides=settings)
    assert run_in_process(resumed) == 0
    # as if it had stopped after the first epoch: resume from that checkpoint (48 rows / 8 = 6 steps an epoch)
    checkpoint = queue.get(store, resumed)["model_dir"].replace("/model", "/checkpoints/checkpoint-6")
    assert (Path(checkpoint) / "trainer_state.json").is_file()
    before = max(r["id"] for r in queue.progress_rows(store, resumed))
    store.execute("UPDATE jobs SET status = 'queued', resume_from = ? WHERE id = ?", [checkpoint, resumed])
    assert run_in_process(resumed) == 0
    again = [r["step"] for r in queue.progress_rows(store, resumed, "train") if r["id"] > before]
    assert again and min(again) > 6  # it did continue from step 6, not from the beginning
    assert predictions(store, whole) == predictions(store, resumed)
