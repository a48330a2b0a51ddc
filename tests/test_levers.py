"""The seed study's training levers (engine/training/levers.py): layer-wise learning-rate decay, weight averaging over
the last steps and label smoothing are validated options, really change training, and are recorded with the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 2}


def test_each_layer_learns_at_decay_times_the_rate_of_the_one_above():
    from engine.training.levers import layer_scale

    assert layer_scale("classifier.weight", 6, 0.8) == 1.0
    assert layer_scale("bert.pooler.dense.weight", 6, 0.8) == 1.0
    assert layer_scale("bert.encoder.layer.5.attention.self.query.weight", 6, 0.8) == pytest.approx(0.8)
    assert layer_scale("bert.encoder.layer.0.output.dense.bias", 6, 0.8) == pytest.approx(0.8 ** 6)
    assert layer_scale("bert.embeddings.word_embeddings.weight", 6, 0.8) == pytest.approx(0.8 ** 7)
    assert layer_scale("bert.encoder.layer.0.output.dense.bias", 6, 1.0) == 1.0  # 1: off


def test_the_optimizer_gets_a_group_per_layer_with_its_own_rate(tiny_text_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from engine.training import levers

    model = AutoModelForSequenceClassification.from_pretrained(tiny_text_model, num_labels=3)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.01, use_cpu=True,
                             report_to="none")
    trainer = levers.layerwise_trainer_class(Trainer, 0.5)(model=model, args=args)
    optimizer = trainer.create_optimizer()
    rates = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            rates[id(param)] = (group["lr"], group["weight_decay"])
    named = dict(model.named_parameters())
    n = model.config.num_hidden_layers
    assert rates[id(named["classifier.weight"])] == (pytest.approx(1e-3), 0.01)
    assert rates[id(named["classifier.bias"])][1] == 0.0  # no weight decay on biases, as the Trainer does
    top = next(k for k in named if f"encoder.layer.{n - 1}." in k and k.endswith("weight") and "LayerNorm" not in k)
    assert rates[id(named[top])][0] == pytest.approx(1e-3 * 0.5)
    emb = next(k for k in named if "word_embeddings" in k)
    assert rates[id(named[emb])][0] == pytest.approx(1e-3 * 0.5 ** (n + 1))
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len([p for p in model.parameters() if p.requires_grad])


def test_the_levers_are_validated_options():
    from engine.training import finetune

    config = finetune.build_config("quick")
    assert (config["layer_decay"], config["average_last"], config["label_smoothing"]) == (1.0, 0.0, 0.0)  # off
    config = finetune.build_config("balanced")  # what the seed study kept for Balanced (docs/benchmarks.md)
    assert (config["layer_decay"], config["average_last"], config["label_smoothing"]) == (1.0, 0.5, 0.0)
    with pytest.raises(finetune.ConfigError) as exc:
        finetune.build_config("quick", {"layer_decay": 0, "average_last": 1.0, "label_smoothing": 0.7})
    assert set(exc.value.errors) == {"layer_decay", "average_last", "label_smoothing"}
    assert "1: off" in exc.value.errors["layer_decay"] and "0: off" in exc.value.errors["average_last"]


def test_a_run_with_every_lever_trains_averages_and_records_what_it_kept(store, shared, tiny_text_model):
    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="balanced",
                             overrides={**SMALL, "layer_decay": 0.8, "average_last": 0.5, "label_smoothing": 0.1})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    assert (job["config"]["layer_decay"], job["config"]["average_last"], job["config"]["label_smoothing"]) == (0.8, 0.5, 0.1)
    averaged = job["metrics"]["weight_averaging"]
    assert averaged["steps"] == 6  # 48 rows / batch 8 = 6 steps an epoch; the last half of 12 steps
    assert isinstance(averaged["kept"], bool)
    # the validation figure the run reports is the one of the weights it kept
    kept_f1 = averaged["validation_macro_f1"] if averaged["kept"] else averaged["best_checkpoint_validation_macro_f1"]
    assert job["metrics"]["validation_macro_f1"] == pytest.approx(kept_f1)
    log = Path(job["log_path"]).read_text()
    assert "weights averaged over the last 6 steps" in log
    saved = json.loads((Path(job["model_dir"]) / "bellwether.json").read_text())
    assert saved["metrics"]["weight_averaging"] == averaged
    assert len(inference.load(job["model_dir"], precision="exact").predict(["Profit rose", "Sales fell"])) == 2


def test_the_average_replaces_the_weights_only_when_validation_says_so(tiny_text_model):
    """swap_into puts the running mean into the model and restore undoes it exactly."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from engine.training import levers

    model = AutoModelForSequenceClassification.from_pretrained(tiny_text_model, num_labels=3)
    averager = levers.weight_averager(0.5)

    class State:
        max_steps, global_step = 4, 0

    state = State()
    averager.on_train_begin(None, state, None)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    snapshots = []
    for step in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * step)
        state.global_step = step
        averager.on_step_end(None, state, None, model=model)
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
    assert averager.count == 2  # steps 3 and 4: the last half
    last = {k: v.detach().clone() for k, v in model.named_parameters()}
    replaced = averager.swap_into(model)
    name = "classifier.weight"
    assert torch.allclose(dict(model.named_parameters())[name], (snapshots[2][name] + snapshots[3][name]) / 2)
    levers.restore(model, replaced)
    assert all(torch.equal(v, last[k]) for k, v in model.named_parameters())
    assert not torch.equal(before[name], last[name])


def test_the_train_page_and_the_cli_set_the_levers_and_the_run_keeps_them(home, monkeypatch, shared, tiny_text_model):
    from engine.cli.main import main
    from engine.jobs import queue
    from tests.helpers import train_page_on_fpb
    from engine.training import finetune

    conn, at = train_page_on_fpb(monkeypatch, shared, tiny_text_model)
    preset = finetune.preset_config("balanced", "text-classification")
    cards = " ".join(m.value for m in at.markdown)
    assert "weights averaged over the last 50%" in cards  # Balanced's card says so
    decay = at.number_input(key="adv_layer_decay")
    assert decay.label == "Layer-wise learning-rate decay (1: off)" and decay.value == preset["layer_decay"]
    assert at.number_input(key="adv_average_last").value == preset["average_last"]
    decay.set_value(0.85)
    at.number_input(key="adv_label_smoothing").set_value(0.6).run()  # out of range: refused next to its field
    at.button[0].click().run()
    assert not queue.list_jobs(conn)
    assert any("Label smoothing" in e.value or "0.5" in e.value for e in at.error)
    at.number_input(key="adv_label_smoothing").set_value(0.1).run()
    at.button[0].click().run()
    assert not at.exception
    config = queue.list_jobs(conn)[0]["config"]
    assert (config["layer_decay"], config["label_smoothing"]) == (0.85, 0.1)
    assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--layer-decay", "0.9",
                 "--average-last", "0.3", "--no-worker", "--again"]) == 0
    config = queue.list_jobs(conn)[0]["config"]
    assert (config["layer_decay"], config["average_last"]) == (0.9, 0.3)


def test_entity_tagging_has_its_own_presets_on_the_train_page_and_in_the_run(home, monkeypatch, shared):
    """One epoch left FIN5 taggers answering 'O' (docs/benchmarks.md): a tagging dataset gets three epochs in Quick."""
    from engine import db
    from engine.jobs import queue, supervisor
    from engine.training import finetune
    from tests.helpers import open_page, texts
    from tests.test_training import insert_conll_dataset

    assert finetune.preset_config("quick", "token-classification")["epochs"] == 3
    assert finetune.preset_config("quick", "text-classification")["epochs"] == 1
    balanced = finetune.preset_config("balanced", "token-classification")
    assert (balanced["epochs"], balanced["early_stopping_patience"], balanced["average_last"]) == (5, 2, 0.5)
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    conn = db.connect()
    insert_conll_dataset(conn, shared("finer", "FIN5.txt"), n=30)
    at = open_page("train")
    at.radio(key="train_preset").set_value("quick").run()
    assert at.number_input(key="adv_epochs").value == 3
    page = texts(at)
    assert "three passes over the data" in page and "3 epochs · learning rate 0.0001" in page
    at.button[0].click().run()
    assert not at.exception
    job = queue.list_jobs(conn)[0]
    assert job["task"] == "token-classification" and job["config"]["epochs"] == 3
