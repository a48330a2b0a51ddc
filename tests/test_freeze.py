"""Frozen word embeddings (``freeze_embeddings``, engine/training/finetune.py): a text classifier trains every weight
but the word-embedding table, the saved model holds that table exactly as the base model had it, entity tagging and
generation train it as before, a table shared with an output layer is never frozen, and a run from before the change
is re-run with its table trained."""

from __future__ import annotations

from pathlib import Path

from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 1}
TABLE = "bert.embeddings.word_embeddings.weight"


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_a_run_leaves_the_word_embeddings_as_loaded_and_trains_the_rest(store, shared, tiny_text_model):
    import torch

    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    assert finetune.build_config("quick")["freeze_embeddings"] is True
    assert all(finetune.preset_config(p, "text-classification")["freeze_embeddings"] for p in finetune.PRESETS)
    # not measured for entity tagging, and a causal model's table is its output layer too: both train it
    for task in ("token-classification", "generation"):
        assert not any(finetune.preset_config(p, task)["freeze_embeddings"] for p in finetune.PRESETS)
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=12)
    ids = [finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick", overrides={**SMALL, **extra},
                           again=True) for extra in ({}, {"freeze_embeddings": False})]
    for run_id in ids:
        assert run_in_process(run_id) == 0
    frozen, trained = (queue.get(store, i) for i in ids)
    assert frozen["status"] == trained["status"] == "succeeded"
    assert frozen["config"]["freeze_embeddings"] is True and trained["config"]["freeze_embeddings"] is False
    assert "word embeddings frozen" in Path(frozen["log_path"]).read_text()
    assert "word embeddings frozen" not in Path(trained["log_path"]).read_text()

    base, frozen_w, trained_w = _weights(tiny_text_model), _weights(frozen["model_dir"]), _weights(trained["model_dir"])
    assert torch.equal(frozen_w[TABLE], base[TABLE])
    assert not torch.equal(trained_w[TABLE], base[TABLE])
    # everything else learnt in both runs
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(frozen_w[layer], base[layer]) and not torch.equal(trained_w[layer], base[layer])
    # the saved model predicts, through Reports' loader, what the run stored
    stored = store.execute("SELECT text, pred_label FROM predictions WHERE run_id = ? AND split = 'test' ORDER BY row_id",
                           [frozen["id"]]).fetchall()
    assert len(stored) == 12
    loaded = inference.load(frozen["model_dir"], precision="exact").predict([text for text, _ in stored])
    assert [p.label for p in loaded] == [label for _, label in stored]


def test_a_table_shared_with_the_output_layer_is_never_frozen():
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    from engine.training import finetune

    causal = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    assert causal.get_output_embeddings().weight is causal.get_input_embeddings().weight
    assert finetune.freeze_word_embeddings(causal) == 0
    assert all(p.requires_grad for p in causal.parameters())

    classifier = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))
    assert finetune.freeze_word_embeddings(classifier) == 64 * 16
    untrained = [name for name, p in classifier.named_parameters() if not p.requires_grad]
    assert untrained == ["bert.embeddings.word_embeddings.weight"]


def test_a_run_from_before_frozen_embeddings_is_re_run_with_its_table_trained():
    from engine.training import reproduce

    assert reproduce.same_settings({"config": {"epochs": 1, "seed": 3}})["freeze_embeddings"] is False
    assert reproduce.same_settings({"config": {"epochs": 1, "freeze_embeddings": True}})["freeze_embeddings"] is True


def test_the_train_page_and_the_cli_offer_the_choice_and_the_run_keeps_it(home, monkeypatch, shared, tiny_text_model):
    from engine.cli.main import main
    from engine.jobs import queue
    from tests.helpers import train_page_on_fpb

    conn, at = train_page_on_fpb(monkeypatch, shared, tiny_text_model)
    box = at.checkbox(key="adv_freeze_embeddings")
    assert box.label == "Leave the word embeddings as the base model has them (faster)" and box.value is True
    box.uncheck()
    at.button[0].click().run()
    assert not at.exception
    assert queue.list_jobs(conn)[0]["config"]["freeze_embeddings"] is False
    for flag, frozen in (("--freeze-embeddings", True), ("--no-freeze-embeddings", False)):
        assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), flag, "--no-worker",
                     "--again", "--seed", str(int(frozen))]) == 0
        assert queue.list_jobs(conn)[0]["config"]["freeze_embeddings"] is frozen
