"""Training precision on the CPU: bf16 autocast where the processor computes bfloat16 natively, fp32 when it does
not or when the run asks for it, and fp32 with a note when a model cannot train in bf16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import db

from tests.helpers import without_bf16_kernel
from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 1}


def test_auto_picks_bf16_on_a_cpu_that_computes_it_for_the_measured_tasks_only(monkeypatch):
    from engine.models import precision
    from engine.training import finetune

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")  # a processor with AVX512-BF16 or AMX
    assert finetune.training_precision("cpu", "auto") == "bf16"
    assert finetune.training_precision("cpu", "auto", "token-classification") == "bf16"
    assert finetune.training_precision("cpu", "auto", "generation") == "bf16"
    assert finetune.training_precision("cpu", "fp32", "generation") == "fp32"  # asked for explicitly: honoured
    assert finetune.training_precision("cpu", "auto", "a task not measured yet") == "fp32"
    assert finetune.training_precision("cpu", "fp32") == "fp32"
    assert finetune.device_info(1, "cpu", precision="auto")["precision"] == "bf16"
    assert finetune.device_info(1, "cpu", precision="auto", task="generation")["precision"] == "bf16"
    assert precision.train_speedup("cpu", "bf16") == precision.CPU_BF16_TRAIN_SPEEDUP > 1
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")  # bfloat16 emulated: slower than fp32, so auto never picks it
    assert finetune.training_precision("cpu", "auto") == "fp32"
    assert finetune.training_precision("cpu", "bf16") == "bf16"
    assert precision.train_speedup("cpu", "bf16") == 1.0


def test_estimates_and_etas_count_bf16s_speed_on_a_cpu_that_computes_it(store, monkeypatch):
    from engine.jobs import overview
    from engine.models import precision
    from engine.training import finetune

    config = finetune.build_config("quick", {"freeze_embeddings": False})  # frozen's gain: tests/test_training.py
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")
    fp32 = finetune.estimate_seconds(store, 1000, config, "default", "cpu") - 15
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")
    bf16 = finetune.estimate_seconds(store, 1000, config, "default", "cpu") - 15
    assert abs(fp32 / bf16 - precision.CPU_BF16_TRAIN_SPEEDUP) < 0.01
    forced = finetune.estimate_seconds(store, 1000, {**config, "precision": "fp32"}, "default", "cpu") - 15
    assert abs(forced - fp32) < 0.01
    assert abs(finetune.estimate_seconds(store, 1000, config, "default", "cpu", task="generation") - 15 - bf16) < 0.01
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")
    assert abs(finetune.estimate_seconds(store, 1000, config, "default", "cpu", task="generation") - 15 - fp32) < 0.01
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")
    # A finished bf16 run's samples/s counts as its fp32 speed when it informs later estimates and ETAs.
    store["jobs"].insert({"kind": "train", "status": "succeeded", "base_model": "default", "device_slot": "cpu",
                          "created_at": db.now(), "config_json": db.dumps({"max_length": 128}),
                          "device_json": db.dumps({"device": "cpu", "precision": "bf16"}),
                          "metrics_json": db.dumps({"train_samples_per_second": 52.0})})
    assert [round(v, 6) for v in overview.train_speeds(store, "default", "cpu")] == [
        round(52.0 / precision.CPU_BF16_TRAIN_SPEEDUP, 6)]
    assert abs(finetune.estimate_seconds(store, 1000, config, "default", "cpu") - 15 - 1000 / 52.0) < 0.01


def test_precision_is_a_validated_option():
    from engine.training import finetune

    assert finetune.build_config("quick")["precision"] == "auto"
    assert finetune.build_config("quick", {"precision": " FP32 "})["precision"] == "fp32"
    with pytest.raises(finetune.ConfigError) as exc:
        finetune.build_config("quick", {"precision": "fp8"})
    assert "precision" in exc.value.errors and "auto, fp32, bf16" in str(exc.value)


def test_a_tiny_model_trains_in_bf16_and_saves_a_float32_model(store, shared, tiny_text_model, monkeypatch):
    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")  # auto: bf16
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick", overrides=SMALL)
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["device"]["precision"] == "bf16" and "precision_note" not in job["device"]
    saved = json.loads((Path(job["model_dir"]) / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype", "float32")) == "float32"
    assert len(inference.load(job["model_dir"]).predict(["Profit rose"])) == 1
    # The run's own test predictions (Reports' confusion matrix, the mistakes) are the saved float32 model's, exactly
    # what Reports gives when it evaluates the same texts later: not the bf16 autocast that trained it.
    stored = list(store.query("SELECT text, probs_json FROM predictions WHERE run_id = ? AND split = 'test'", [run_id]))
    again = inference.load(job["model_dir"], precision="exact").predict([r["text"] for r in stored])
    for row, prediction in zip(stored, again):
        for label, p in json.loads(row["probs_json"]).items():
            assert abs(p - prediction.probs[label]) < 1e-5, (row["text"], label, p, prediction.probs[label])

    forced = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={**SMALL, "precision": "fp32"})
    assert run_in_process(forced) == 0
    assert queue.get(store, forced)["device"]["precision"] == "fp32"


def test_a_model_that_fails_under_bf16_trains_in_fp32_with_a_note(store, shared, tiny_text_model, monkeypatch):
    from engine.jobs import queue
    from engine.training import finetune

    monkeypatch.setattr(finetune, "load_model", without_bf16_kernel(finetune.load_model, "classifier"))
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={**SMALL, "precision": "bf16"})
    run_in_process(run_id)
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", (job["error"], queue.log_tail(job, 30))
    assert job["device"]["precision"] == "fp32"
    assert "could not train in bf16" in job["device"]["precision_note"] and "BFloat16" in job["device"]["precision_note"]


def test_the_runs_page_shows_the_precision_and_the_fallback_note(home, store, tiny_text_model):
    from engine import db
    from tests.helpers import make_finished_run, open_page, texts

    run_id = make_finished_run(store, tiny_text_model, metrics={"macro_f1": 0.9, "accuracy": 0.9})
    note = "This model could not train in bf16 on this CPU (no kernel); it trained in fp32 instead."
    store.execute("UPDATE jobs SET device_json = ? WHERE id = ?",
                  [db.dumps({"device": "cpu", "precision": "fp32", "world_size": 1, "precision_note": note}), run_id])
    page = open_page("runs", run=str(run_id))
    assert "Device: CPU · fp32" in texts(page) and note in [i.value for i in page.info]
    store.execute("UPDATE jobs SET device_json = ? WHERE id = ?",
                  [db.dumps({"device": "cpu", "precision": "bf16", "world_size": 1}), run_id])
    page = open_page("runs", run=str(run_id))
    assert "Device: CPU · bf16" in texts(page) and not any("could not train" in i.value for i in page.info)
