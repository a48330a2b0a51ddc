"""Levers measured for Thorough (issue 13) on a tiny model and 40 rows: `python -m bench.adapt` (task-adaptive
pretraining), `bench.msd` (multi-sample dropout) and `bench.selftrain` (self-training on unlabelled news)."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture
def tiny_encoder(tiny_text_model, tmp_path):
    """The tiny classifier's folder with a sentence-transformers pooling file, as the default model has."""
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_text_model, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def test_adapt_reads_only_the_training_split_and_writes_a_base_model_the_engine_fine_tunes(
        home, shared, tiny_encoder, tmp_path, monkeypatch, capsys):
    import torch
    from safetensors.torch import load_file

    from bench import adapt, quality
    from engine import db
    from engine.data import datasets
    from engine.models import pooling

    shared("fpb", "train.csv")
    monkeypatch.setenv("BELLWETHER_BENCH_MODEL", str(tiny_encoder))
    out = tmp_path / "adapted"
    figures_path = tmp_path / "adapt.json"

    assert adapt.main([str(out), "--n-train", "40", "--epochs", "2", "--out", str(figures_path)]) == 0

    figures = json.loads(figures_path.read_text())
    assert figures == json.loads(capsys.readouterr().out)
    assert [e["epoch"] for e in figures["epochs"]] == [1, 2]
    assert all(e["mlm_loss"] > 0 for e in figures["epochs"]) and figures["head_epoch_mlm_loss"] > 0
    # the texts are the training split's of the same import bench quality makes: none of validation, test or dev.csv
    conn = db.connect()
    assert not list(conn.query("select id from datasets"))  # the analyst's store untouched: adapt imports elsewhere
    ds = datasets.get(conn, quality.import_dataset(conn, "fpb", 40))
    train = {r["text"] for r in datasets.rows(conn, ds["id"], "train")}
    held_out = {r["text"] for split in ("validation", "test") for r in datasets.rows(conn, ds["id"], split)}
    assert figures["texts"] == len(train) and held_out
    assert set(adapt.training_texts("fpb", 40)) == train and not train & held_out
    # the encoder learnt (its weights moved) and the folder is an ordinary base model, mean pooling still declared
    before = load_file(str(tiny_encoder / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    key = "bert.encoder.layer.0.attention.self.query.weight"
    moved = after.get(key[len("bert."):], after.get(key))
    assert moved is not None and not torch.equal(moved, before[key])
    assert pooling.choose("auto", out, "text-classification") == "mean"
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, moved)


def test_multi_sample_loss_is_the_mean_of_each_masks_cross_entropy():
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForSequenceClassification

    from bench import msd

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3))
    model.train()
    inputs = {"input_ids": torch.randint(0, 50, (4, 6)), "labels": torch.tensor([0, 1, 2, 1])}
    seen = {}

    def at_head(module, args):  # the pooled vector and the random generator as the head starts
        seen.update(x=args[0].detach().clone(), rng=torch.get_rng_state())

    model.classifier.register_forward_pre_hook(at_head)
    loss, outputs = msd.multi_sample_loss(model, dict(inputs), samples=3)
    # the same masks again, by hand: one per sample on the pooled vector, each through the same linear head
    torch.set_rng_state(seen["rng"])
    per_sample = [model.classifier.forward(F.dropout(seen["x"], 0.1, True)) for _ in range(3)]
    expected = torch.stack([F.cross_entropy(lg, inputs["labels"]) for lg in per_sample]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(outputs.logits, torch.stack(per_sample).mean(0), atol=1e-6)
    assert model.dropout.p == 0.1 and "forward" not in vars(model.classifier)  # the model is left as it was


def test_bench_msd_runs_bench_quality_with_the_multi_sample_loss_and_puts_the_trainer_back(
        home, shared, tiny_text_model, monkeypatch, capsys, tmp_path):
    from transformers.trainer import Trainer

    from bench import msd

    shared("fpb", "train.csv")
    monkeypatch.setenv("BELLWETHER_BENCH_SIZE", "tiny")
    monkeypatch.setenv("BELLWETHER_BENCH_MODEL", str(tiny_text_model))
    original = Trainer.compute_loss
    msd.STEPS["multi_sample"] = 0
    assert msd.main(["--samples", "3", "quality", "--presets", "quick", "--seeds", "1", "--datasets", "fpb",
                     "--precision", "fp32", "--max-length", "32", "--format", "json",
                     "--out", str(tmp_path / "q.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "q.json").read_text())
    assert written["multi_sample_dropout"] == 3 and written["command"].startswith("python -m bench.msd --samples 3 ")
    assert written["groups"] == result["groups"]
    assert result["benchmark"] == "quality" and len(result["groups"][0]["runs"]) == 1
    assert msd.STEPS["multi_sample"] > 0  # every training step of the run used it
    assert Trainer.compute_loss is original


def test_bench_msd_wants_the_quality_command(capsys):
    from bench import msd

    with pytest.raises(SystemExit):
        msd.main(["--samples", "3", "train"])
    assert "give the bench quality command" in capsys.readouterr().err


def test_silver_rows_keep_the_training_splits_label_shares_and_only_confident_calls():
    from types import SimpleNamespace as P

    from bench import selftrain

    train = [{"label": "neutral"}] * 6 + [{"label": "negative"}] * 2 + [{"label": "positive"}] * 2
    texts = [f"text {i}" for i in range(12)]
    calls = ([P(label="neutral", confidence=0.99 - i / 100) for i in range(8)]  # 8 confident: 6 wanted (0.6 x 10)
             + [P(label="negative", confidence=0.95), P(label="negative", confidence=0.5)]  # 1 confident of 2 wanted
             + [P(label="positive", confidence=0.91), P(label="positive", confidence=0.97)])
    rows, taken = selftrain.silver_rows(train, texts, calls, ratio=1.0, threshold=0.9)
    assert taken == {"neutral": [6, 8], "negative": [1, 1], "positive": [2, 2]}
    assert [r["text"] for r in rows if r["label"] == "neutral"] == texts[:6]  # the most confident first
    assert [r["text"] for r in rows if r["label"] == "negative"] == ["text 8"]  # 0.5 is below the threshold
    assert {r["split"] for r in rows} == {"train"}


def test_selftrain_adds_silver_news_rows_to_the_training_split_only(home, shared, tiny_encoder, tmp_path, monkeypatch,
                                                                    capsys):
    from bench import data, quality, selftrain

    shared("fpb", "train.csv")
    shared("news", "reuters_headlines.csv")
    monkeypatch.setenv("BELLWETHER_BENCH_MODEL", str(tiny_encoder))
    seen = {}  # each run's dataset, split by split
    real = quality.one_run

    def recording(conn, dataset, spec, *args, **kwargs):
        from engine.data import datasets

        seen[spec] = {split: [r["text"] for r in datasets.rows(conn, datasets.get(conn, spec)["id"], split)]
                      for split in ("train", "validation", "test")}
        return real(conn, dataset, spec, *args, **kwargs)

    monkeypatch.setattr(quality, "one_run", recording)
    out = tmp_path / "s.json"
    assert selftrain.main(["--seeds", "1", "--n-train", "40", "--threshold", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    run = result["runs"][0]
    assert run["seed"] == 42 and run["scored"] == len(selftrain.news_texts(data.shared_dir() / "news")) > 1000
    teacher, student = list(seen.values())
    news = set(selftrain.news_texts(data.shared_dir() / "news"))
    added = [t for t in student["train"] if t not in teacher["train"]]
    # every silver row is a news text, as many as the figures say (threshold 0: ratio 2 x the training split)
    assert added and set(added) <= news and len(added) == sum(n for n, _ in run["silver_per_class"].values())
    # threshold 0: every prediction passes; each label takes what its share of 2 x the training split allows
    assert sum(passed for _, passed in run["silver_per_class"].values()) == run["scored"]
    assert all(taken <= passed for taken, passed in run["silver_per_class"].values())
    assert 0.5 * len(teacher["train"]) < len(added) <= 2 * len(teacher["train"]) + 3
    # the held-out splits are the teacher's, with no news in them
    assert student["validation"] == teacher["validation"] and student["test"] == teacher["test"]
    assert not news & set(student["validation"] + student["test"])
    for who in ("teacher", "student"):
        assert 0 <= run[who]["dev_macro_f1"] <= 1 and run[who]["wall_s"] > 0
    assert set(result["summary"]) == {"teacher", "student"}
