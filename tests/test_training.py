"""The fine-tuning runner: configuration checks, text and entity training, LoRA, class weighting, data parallel,
and (slow) a real fine-tune of the default model through the queue and the command line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from engine import db

ROOT = Path(__file__).resolve().parent.parent


# ---- helpers shared by the training tests (test_jobs.py and test_train_pages.py import them) ---------------------


def insert_text_dataset(conn, csv_path: Path, n_train=120, n_val=30, n_test=30, name="fpb", version=1) -> int:
    """A dataset of balanced fpb slices, inserted as engine/datasets.py stores one."""
    by_label = defaultdict(list)
    with open(csv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_label[row["label"]].append(row["text"])
    labels = sorted(by_label)
    picked, i = [], 0
    while len(picked) < n_train + n_val + n_test:
        for label in labels:
            if i < len(by_label[label]) and len(picked) < n_train + n_val + n_test:
                picked.append((by_label[label][i], label))
        i += 1
    rows, counts = [], defaultdict(lambda: defaultdict(int))
    for k, (text, label) in enumerate(picked):
        split = "train" if k < n_train else "validation" if k < n_train + n_val else "test"
        counts[split][label] += 1
        rows.append({"row_id": 1000 + k, "split": split, "text": text, "label": label})
    ds_id = conn["datasets"].insert({
        "name": name, "version": version, "task": "text-classification", "labels_json": db.dumps(labels),
        "counts_json": db.dumps(counts), "n_rows": len(rows), "created_at": db.now(), "created_by": "test",
    }).last_pk
    conn["dataset_rows"].insert_all({"dataset_id": ds_id, **r} for r in rows)
    return ds_id


def read_conll(path: Path, n: int) -> list[tuple[list[str], list[str]]]:
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            if len(sentences) >= n:
                break
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    return sentences[:n]


def insert_conll_dataset(conn, path: Path, n=90, name="finer") -> int:
    sentences = read_conll(path, n)
    labels = sorted({t for _, tags in sentences for t in tags})
    ds_id = conn["datasets"].insert({
        "name": name, "version": 1, "task": "token-classification", "labels_json": db.dumps(labels),
        "n_rows": len(sentences), "created_at": db.now(), "created_by": "test",
    }).last_pk
    rows = []
    for k, (tokens, tags) in enumerate(sentences):
        split = "train" if k < n * 0.7 else "validation" if k < n * 0.85 else "test"
        rows.append({"dataset_id": ds_id, "row_id": 500 + k, "split": split, "text": " ".join(tokens),
                     "tokens_json": db.dumps(tokens), "tags_json": db.dumps(tags)})
    conn["dataset_rows"].insert_all(rows)
    return ds_id


def run_in_process(job_id: int) -> int:
    """Run one job here (as `python -m engine _job ID` does), restoring the SIGTERM handler afterwards."""
    from engine.cli.job import run_job

    old = signal.getsignal(signal.SIGTERM)
    try:
        return run_job(job_id)
    finally:
        signal.signal(signal.SIGTERM, old)


def cli(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def stop_supervisor(home: Path) -> None:
    """Stop any supervisor ensure_supervisor() started for this data directory."""

    conn = db.connect()
    for row in conn.query("SELECT pid FROM supervisor"):
        try:
            os.kill(row["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    conn.close()


# ---- configuration ----------------------------------------------------------------------------------------------


def test_presets_and_validation_name_each_bad_field():
    from engine.training import finetune

    quick = finetune.build_config("Quick")
    assert quick["epochs"] == 1 and quick["preset"] == "quick"
    with pytest.raises(finetune.ConfigError) as err:
        finetune.build_config("balanced", {"learning_rate": -1, "batch_size": 0, "epochs": "many", "lora_dropout": 2})
    assert set(err.value.errors) == {"learning_rate", "batch_size", "epochs", "lora_dropout"}
    assert "Learning rate" in str(err.value) and "Batch size" in str(err.value)
    with pytest.raises(finetune.ConfigError) as err:
        finetune.build_config("fastest")
    assert "preset" in err.value.errors
    # the base model's maximum length caps the max length
    capped = finetune.build_config("balanced", {"max_length": 1024}, max_length_limit=128)
    assert capped["max_length"] == 128 and capped["max_length_requested"] == 1024


def test_refused_choices_queue_nothing(store, shared, tiny_text_model):
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"))
    before = db.table_counts(store)
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, "fpb", base_model="/nowhere/model", preset="quick")
    assert "base_model" in err.value.errors and "does not exist" in err.value.errors["base_model"]
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, "fpb", base_model="someone/not-a-model-xyz", preset="quick")
    assert "offline" in err.value.errors["base_model"] and "misspelt" in err.value.errors["base_model"]
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, "nosuch", base_model=str(tiny_text_model))
    assert "dataset" in err.value.errors
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, "fpb", task="token-classification", base_model=str(tiny_text_model))
    assert "text-classification" in err.value.errors["task"]
    assert db.table_counts(store) == before


def test_estimate_before_any_run_scales_the_default_models_speed_by_model_size(store, tmp_path, monkeypatch):
    from transformers import BertConfig

    from engine.training import finetune

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")  # fp32 speeds (bf16's gain: tests/test_precision.py)

    trained = {"freeze_embeddings": False}  # the word embeddings trained, as the 40 samples/s were measured
    config = finetune.build_config("quick", trained)
    default = finetune.estimate_seconds(store, 1000, config, "default", "cpu")
    assert abs(default - (1000 * config["epochs"] / 40 + 15)) < 1  # 40 samples/s: measured on 2 cores
    balanced = finetune.build_config("balanced", trained)  # R-Drop: each batch twice, 1.7x the time (measured)
    assert abs(finetune.estimate_seconds(store, 1000, balanced, "default", "cpu")
               - (1000 * balanced["epochs"] * 1.7 / 40 + 15)) < 1
    thorough = finetune.build_config("thorough", trained)  # a model soup: three Balanced runs one after another
    assert abs(finetune.estimate_seconds(store, 1000, thorough, "default", "cpu")
               - 3 * (1000 * balanced["epochs"] * 1.7 / 40 + 15)) < 1
    base = tmp_path / "bert-base-like"
    BertConfig(hidden_size=768, num_hidden_layers=12, intermediate_size=3072).save_pretrained(base)
    bigger = finetune.estimate_seconds(store, 1000, config, str(base), "cpu")
    assert 7.5 < (bigger - 15) / (default - 15) < 8.5  # 8x the encoder work per token
    # A hub name whose config is not on this machine: the cautious constant.
    assert finetune.guessed_speed("ProsusAI/finbert", "cpu") == finetune.DEFAULT_SPEED["cpu"]


def test_estimate_uses_speed_measured_on_this_machine(store, monkeypatch):
    from engine.training import finetune

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")  # fp32 speeds (bf16's gain: tests/test_precision.py)

    config = finetune.build_config("quick", {"freeze_embeddings": False, "epochs": 3})  # frozen's gain: test below
    guess = finetune.estimate_seconds(store, 1000, config, "default", "cpu")
    store["jobs"].insert({"kind": "train", "status": "succeeded", "base_model": "default", "device_slot": "cpu",
                          "created_at": db.now(), "config_json": db.dumps({"max_length": 128}),
                          "metrics_json": db.dumps({"train_samples_per_second": 10.0})})
    assert finetune.estimate_seconds(store, 1000, config, "default", "cpu") > guess  # this machine is slower
    store["jobs"].insert({"kind": "train", "status": "succeeded", "base_model": "default", "device_slot": "cpu",
                          "created_at": db.now(), "config_json": db.dumps({"max_length": 128}),
                          "metrics_json": db.dumps({"train_samples_per_second": 300.0})})
    measured = finetune.estimate_seconds(store, 1000, config, "default", "cpu")
    assert measured < guess
    # A run with R-Drop went through each batch twice: its samples/s count for 1.7x that without it.
    from engine.jobs import overview

    store["jobs"].insert({"kind": "train", "status": "succeeded", "base_model": "default", "device_slot": "cpu",
                          "created_at": db.now(), "config_json": db.dumps({"max_length": 128, "r_drop": 1.0}),
                          "metrics_json": db.dumps({"train_samples_per_second": 20.0})})
    assert 34.0 in [round(v, 6) for v in overview.train_speeds(store, "default", "cpu")]
    # ... and so in the estimate of the next run: the median of 10, 300 and 34 (not of 10, 300 and 20)
    assert abs(finetune.estimate_seconds(store, 1000, config, "default", "cpu") - (1000 * config["epochs"] / 34 + 15)) < 1
    assert abs(measured - (1000 * config["epochs"] / 300 + 15)) < 1  # epochs x rows at the measured speed, plus start-up


def test_estimates_and_etas_count_the_gain_of_frozen_word_embeddings(store, monkeypatch):
    from engine.jobs import overview
    from engine.training import finetune

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")
    frozen = finetune.build_config("quick")
    trained = finetune.build_config("quick", {"freeze_embeddings": False})
    as_frozen = finetune.estimate_seconds(store, 1000, frozen, "default", "cpu") - 15
    as_trained = finetune.estimate_seconds(store, 1000, trained, "default", "cpu") - 15
    assert abs(as_trained / as_frozen - overview.FROZEN_EMBEDDINGS_GAIN) < 0.01
    # only a text classifier freezes its table: a tagger's or a LoRA run's estimate has no such gain
    for task, config in (("token-classification", frozen), ("text-classification", {**frozen, "lora": True})):
        assert overview.frozen_gain(config, task) == 1.0
    # a finished frozen run's samples/s counts as the trained speed it stands for
    store["jobs"].insert({"kind": "train", "status": "succeeded", "base_model": "default", "device_slot": "cpu",
                          "task": "text-classification", "created_at": db.now(),
                          "config_json": db.dumps({"max_length": 128, "freeze_embeddings": True}),
                          "metrics_json": db.dumps({"train_samples_per_second": 60.0})})
    assert [round(v, 6) for v in overview.train_speeds(store, "default", "cpu")] == [
        round(60.0 / overview.FROZEN_EMBEDDINGS_GAIN, 6)]
    assert abs(finetune.estimate_seconds(store, 1000, frozen, "default", "cpu") - 15 - 1000 / 60.0) < 0.01


# ---- training (tiny models) -------------------------------------------------------------------------------------


def test_text_run_saves_model_predictions_by_row_id_and_metrics(store, shared, tiny_text_model):
    from engine.models import inference
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=60, n_val=15, n_test=15)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={"max_length": 32, "batch_size": 8, "epochs": 2, "class_weighting": True})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    # auto: bf16 autocast on a CPU that computes bfloat16 natively, fp32 elsewhere (engine.models.precision)
    assert job["device"]["device"] == "cpu" and job["device"]["precision"] == ("bf16" if inference.cpu_has_bf16() else "fp32")
    for key in ("accuracy", "macro_f1", "weighted_f1", "validation_macro_f1", "train_samples_per_second"):
        assert job["metrics"][key] is not None
    train_rows = queue.progress_rows(store, run_id, "train")
    eval_rows = queue.progress_rows(store, run_id, "eval")
    assert train_rows[-1]["step"] == train_rows[-1]["total_steps"] > 0
    assert len(eval_rows) == 2 and all(r["macro_f1"] is not None for r in eval_rows)  # one each epoch
    assert len(list((Path(job["model_dir"]).parent / "checkpoints").glob("checkpoint-*"))) >= 1
    info = json.loads((Path(job["model_dir"]) / "bellwether.json").read_text())
    assert info["dataset"] == "fpb" and info["dataset_version"] == 1 and info["metrics"]["macro_f1"] == job["metrics"]["macro_f1"]
    # predictions are keyed by the dataset's row ids and agree with the saved model
    preds = list(store.query("SELECT * FROM predictions WHERE run_id = ? ORDER BY row_id", [run_id]))
    texts = {r["row_id"]: r["text"] for r in store.query("SELECT row_id, text FROM dataset_rows WHERE split = 'test'")}
    assert [p["row_id"] for p in preds] == sorted(texts)
    assert all(p["text"] == texts[p["row_id"]] for p in preds)
    predictor = inference.load(job["model_dir"])
    again = predictor.predict([p["text"] for p in preds])
    assert [a.label for a in again] == [p["pred_label"] for p in preds]
    assert predictor.labels == ["negative", "neutral", "positive"]


def test_lora_is_merged_into_a_plain_model(store, shared, tiny_text_model):
    from engine.models import inference
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={"max_length": 32, "batch_size": 8, "lora": True, "lora_r": 4,
                                        "lora_target_modules": "query,value"})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    files = {p.name for p in Path(job["model_dir"]).iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    preds = list(store.query("SELECT text, pred_label FROM predictions WHERE run_id = ? ORDER BY row_id", [run_id]))
    assert [p.label for p in inference.load(job["model_dir"]).predict([p["text"] for p in preds])] == [
        p["pred_label"] for p in preds]


def test_entity_tagging_on_a_conll_sample(store, shared, tmp_path):
    from engine.models import inference
    from engine.jobs import queue
    from engine.training import finetune
    from tests.helpers import build_tiny_model

    insert_conll_dataset(store, shared("finer", "FIN5.txt"), n=60)
    labels = json.loads(store.execute("SELECT labels_json FROM datasets").fetchone()[0])
    assert "I-ORG" in labels
    base = build_tiny_model(tmp_path / "tiny-ner", labels, task="token-classification")
    run_id = finetune.submit(store, "finer", task="token-classification", base_model=str(base), preset="quick",
                             overrides={"max_length": 64, "batch_size": 8})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    assert "entity_f1" in job["metrics"] and job["metrics"]["accuracy"] > 0
    preds = list(store.query("SELECT * FROM predictions WHERE run_id = ? ORDER BY row_id", [run_id]))
    rows = {r["row_id"]: r for r in store.query("SELECT * FROM dataset_rows WHERE split = 'test'")}
    assert [p["row_id"] for p in preds] == sorted(rows)
    for p in preds:  # one tag per word, never per sub-token
        assert json.loads(p["tokens_json"]) == json.loads(rows[p["row_id"]]["tokens_json"])
        assert len(json.loads(p["pred_tags_json"])) == len(json.loads(p["tokens_json"]))
    predictor = inference.load(job["model_dir"])
    assert predictor.task == "token-classification"
    first = preds[0]
    assert predictor.predict_tokens([json.loads(first["tokens_json"])])[0] == json.loads(first["pred_tags_json"])


def test_first_sub_token_carries_the_label():
    from transformers import AutoTokenizer

    from engine.training import finetune
    from engine.models.catalog import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    items = finetune._encode_tokens(tok, [{"tokens": ["Elcoteq", "laid", "off"], "tags": ["I-ORG", "O", "O"]}],
                                    {"O": 0, "I-ORG": 1}, 32)
    labels = items[0]["labels"]
    pieces = tok.convert_ids_to_tokens(items[0]["input_ids"])
    assert labels[0] == -100 and labels[-1] == -100  # [CLS], [SEP]
    first = pieces.index("el") if "el" in pieces else 1
    assert labels[first] == 1 and all(x == -100 for x in labels[first + 1 : pieces.index("laid")])
    assert labels[pieces.index("laid")] == 0


@pytest.mark.process
def test_data_parallel_with_two_cpu_processes(store, shared, tiny_text_model):
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=16)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={"max_length": 32, "batch_size": 8})
    done = cli("_job", str(run_id), env={"BELLWETHER_DDP_CPU_PROCS": "2"})
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", (job["error"], done.stderr[-2000:])
    assert job["device"]["world_size"] == 2 and job["metrics"]["world_size"] == 2
    # 64 rows, 8 per process, 2 processes: 4 steps, not 8
    assert queue.progress_rows(store, run_id, "train")[-1]["total_steps"] == 4
    assert store.execute("SELECT COUNT(*) FROM predictions WHERE run_id = ?", [run_id]).fetchone()[0] == 16


def test_crash_reasons_in_plain_words(store):
    from engine.jobs import process

    job = {"id": 1, "log_path": None}
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "reduce the batch size or the max length" in process.explain_failure(oom, job)
    full = OSError(28, "No space left on device")
    assert "disk is full" in process.explain_failure(full, job)


def test_a_base_model_deleted_after_queueing_fails_with_its_reason(store, shared, tmp_path):
    import shutil

    from engine.jobs import queue
    from engine.training import finetune
    from tests.helpers import build_tiny_model

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=30, n_val=6, n_test=6)
    base = build_tiny_model(tmp_path / "doomed", ["negative", "neutral", "positive"])
    run_id = finetune.submit(store, "fpb", base_model=str(base), preset="quick")
    shutil.rmtree(base)
    assert run_in_process(run_id) == 1
    job = queue.get(store, run_id)
    assert job["status"] == "failed" and "was not found" in job["error"]
    # `train --wait` (and `runs resume --wait`) follow the run and exit 1 with its reason: scripts can rely on it.
    import io

    from engine.cli import train

    out = io.StringIO()
    assert train.follow(store, run_id, out=out) == 1
    assert f"Run {run_id} failed: " in out.getvalue() and "was not found" in out.getvalue()


# ---- slow: the real default model through the queue -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.process
def test_real_fine_tune_of_the_default_model_through_the_queue(home, shared):
    from engine.models import inference
    from engine.jobs import queue

    conn = db.connect()
    # a 200-row slice (the CPU is shared: 128 rows train, so that this stays near a minute)
    insert_text_dataset(conn, shared("fpb", "train.csv"), n_train=128, n_val=32, n_test=40)
    try:
        done = cli("train", "--dataset", "fpb", "--preset", "quick", "--max-length", "64", "--epochs", "1",
                   "--batch-size", "16", "--wait", timeout=300)
    finally:
        stop_supervisor(home)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = int(done.stdout.strip().splitlines()[-1])
    job = queue.get(conn, run_id)
    assert job["status"] == "succeeded" and job["base_model"] == "default"
    assert len(queue.progress_rows(conn, run_id, "train")) >= 2
    assert job["metrics"]["n_test"] == 40 and 0 <= job["metrics"]["macro_f1"] <= 1
    predictor = inference.load(job["model_dir"])
    out = predictor.predict(["Profit rose sharply and the company raised its outlook."])
    assert out[0].label in {"negative", "neutral", "positive"}
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    assert listed[0]["id"] == run_id and listed[0]["macro_f1"] == job["metrics"]["macro_f1"]
