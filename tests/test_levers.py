"""The seed study's training levers (engine/training/levers.py): layer-wise learning-rate decay, weight averaging over
the last steps, label smoothing and R-Drop are validated options, really change training, and are recorded with the
run."""

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
    assert (config["layer_decay"], config["average_last"], config["label_smoothing"], config["r_drop"]) == (1.0, 0.5, 0.0,
                                                                                                           1.0)
    assert config["warmup_ratio"] == 0.2  # a fifth of the steps: Balanced's lowest seed rose on both held-out sets
    assert finetune.build_config("quick")["warmup_ratio"] == 0.1 and finetune.build_config("quick")["r_drop"] == 0.0
    # Thorough: Balanced's settings trained three times and averaged into one model (a model soup)
    thorough = finetune.build_config("thorough")
    assert thorough["soup"] == 3 and {k: v for k, v in thorough.items() if k not in ("soup", "preset")} == {
        k: v for k, v in config.items() if k not in ("soup", "preset")}
    assert config["soup"] == finetune.build_config("quick")["soup"] == 1
    with pytest.raises(finetune.ConfigError) as exc:
        finetune.build_config("quick", {"layer_decay": 0, "average_last": 1.0, "label_smoothing": 0.7, "r_drop": -1})
    assert set(exc.value.errors) == {"layer_decay", "average_last", "label_smoothing", "r_drop"}
    assert "1: off" in exc.value.errors["layer_decay"] and "0: off" in exc.value.errors["average_last"]


def test_a_run_with_every_lever_trains_averages_and_records_what_it_kept(store, shared, tiny_text_model):
    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="balanced",
                             overrides={**SMALL, "layer_decay": 0.8, "average_last": 0.5, "label_smoothing": 0.1,
                                        "r_drop": 1.0})
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
    assert "R-Drop: alpha 1.0" in log and job["config"]["r_drop"] == 1.0
    saved = json.loads((Path(job["model_dir"]) / "bellwether.json").read_text())
    assert saved["metrics"]["weight_averaging"] == averaged
    assert len(inference.load(job["model_dir"], precision="exact").predict(["Profit rose", "Sales fell"])) == 2


def test_r_drop_adds_the_disagreement_of_two_dropout_draws_to_the_loss():
    import torch
    import torch.nn.functional as F

    from engine.training.levers import rdrop_loss

    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    same = rdrop_loss(a, a.clone(), y, alpha=5.0)
    assert same.item() == pytest.approx(F.cross_entropy(a, y).item(), abs=1e-6)  # one draw twice: no disagreement
    kl = 0.5 * (F.kl_div(F.log_softmax(a, -1), F.log_softmax(b, -1), log_target=True, reduction="batchmean")
                + F.kl_div(F.log_softmax(b, -1), F.log_softmax(a, -1), log_target=True, reduction="batchmean"))
    expected = 0.5 * (F.cross_entropy(a, y) + F.cross_entropy(b, y)) + 2.0 * kl
    assert rdrop_loss(a, b, y, alpha=2.0).item() == pytest.approx(expected.item(), rel=1e-5)
    # Entity tagging: positions labelled -100 (sub-word pieces, padding) count for neither term.
    tags = torch.tensor([[0, -100], [2, -100]])
    noisy_b = torch.stack([b[0], torch.full((3,), 50.0)]).reshape(1, 2, 3).repeat(2, 1, 1)
    clean_b = torch.stack([b[0], b[1]]).reshape(1, 2, 3).repeat(2, 1, 1)
    left = torch.stack([a[0], a[1]]).reshape(1, 2, 3).repeat(2, 1, 1)
    assert rdrop_loss(left, noisy_b, tags, 1.0).item() == pytest.approx(rdrop_loss(left, clean_b, tags, 1.0).item())


def test_r_drop_trains_on_two_dropout_draws_and_evaluates_as_before(tiny_text_model, tmp_path):
    """Without dropout the two draws agree and the loss is the plain one; with dropout they differ and it is larger."""
    import torch
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from engine.training import levers

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]), "labels": torch.tensor([0, 2])}
    quiet = AutoModelForSequenceClassification.from_pretrained(tiny_text_model, num_labels=3, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0).train()
    plain = Trainer(model=quiet, args=args).compute_loss(quiet, dict(batch))
    rdrop = levers.rdrop_trainer_class(Trainer, 4.0)(model=quiet, args=args)
    assert rdrop.compute_loss(quiet, dict(batch)).item() == pytest.approx(plain.item(), rel=1e-5)
    noisy = AutoModelForSequenceClassification.from_pretrained(tiny_text_model, num_labels=3, hidden_dropout_prob=0.3,
                                                               attention_probs_dropout_prob=0.3).train()
    torch.manual_seed(1)
    with_kl = levers.rdrop_trainer_class(Trainer, 4.0)(model=noisy, args=args).compute_loss(noisy, dict(batch))
    torch.manual_seed(1)
    without = levers.rdrop_trainer_class(Trainer, 0.0)(model=noisy, args=args).compute_loss(noisy, dict(batch))
    assert with_kl.item() > without.item()
    noisy.eval()  # evaluation: the base class's loss, one pass
    assert rdrop.compute_loss(noisy, dict(batch)).item() == pytest.approx(
        Trainer(model=noisy, args=args).compute_loss(noisy, dict(batch)).item())


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
    assert "weights averaged over the last 50% · R-Drop 1" in cards  # Balanced's card says so
    decay = at.number_input(key="adv_layer_decay")
    assert decay.label == "Layer-wise learning-rate decay (1: off)" and decay.value == preset["layer_decay"]
    assert at.number_input(key="adv_average_last").value == preset["average_last"]
    decay.set_value(0.85)
    at.number_input(key="adv_label_smoothing").set_value(0.6).run()  # out of range: refused next to its field
    at.button[0].click().run()
    assert not queue.list_jobs(conn)
    assert any("Label smoothing" in e.value or "0.5" in e.value for e in at.error)
    at.number_input(key="adv_label_smoothing").set_value(0.1).run()
    at.number_input(key="adv_r_drop").set_value(1.0).run()
    at.button[0].click().run()
    assert not at.exception
    config = queue.list_jobs(conn)[0]["config"]
    assert (config["layer_decay"], config["label_smoothing"], config["r_drop"]) == (0.85, 0.1, 1.0)
    assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--layer-decay", "0.9",
                 "--average-last", "0.3", "--r-drop", "0.5", "--no-worker", "--again"]) == 0
    config = queue.list_jobs(conn)[0]["config"]
    assert (config["layer_decay"], config["average_last"], config["r_drop"]) == (0.9, 0.3, 0.5)


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
    assert balanced["r_drop"] == 0.0 and balanced["warmup_ratio"] == 0.1  # what tagging's Balanced was measured with
    assert finetune.preset_config("balanced", "generation")["warmup_ratio"] == 0.1
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
