"""The mean-pooling head (engine/models/pooling.py): a sentence classifier on a sentence-transformers encoder reads the
mean of its token vectors, as the encoder was trained; the choice is saved with the model and every loader (Reports,
scoring, Review) predicts with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 1}


def _encode(model_dir, texts):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")


def test_the_head_reads_the_mean_of_the_real_tokens(tiny_text_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    from engine.models import pooling

    model = pooling.apply(AutoModelForSequenceClassification.from_pretrained(tiny_text_model), "mean").eval()
    batch = _encode(tiny_text_model, ["Profit rose sharply this quarter", "Loss"])  # the second is mostly padding
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.base_model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))
        cls = AutoModelForSequenceClassification.from_pretrained(tiny_text_model).eval()(**batch).logits
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(logits, cls, atol=1e-3)  # it is not the [CLS] pooler any more
    assert model.config.bellwether_pooling == "mean"


def test_auto_means_mean_pooling_only_for_a_sentence_transformers_encoder(tiny_text_model, tmp_path):
    from engine.models import catalog, pooling

    assert pooling.choose("auto", catalog.default_model_path(), "text-classification") == "mean"
    assert pooling.choose("auto", tiny_text_model, "text-classification") == "cls"
    assert pooling.choose("auto", catalog.default_model_path(), "token-classification") == "cls"
    assert pooling.choose("cls", catalog.default_model_path(), "text-classification") == "cls"


def test_pooling_is_a_validated_option():
    from engine.training import finetune

    assert finetune.build_config("quick", {"pooling": " Mean "})["pooling"] == "mean"
    with pytest.raises(finetune.ConfigError) as exc:
        finetune.build_config("quick", {"pooling": "max"})
    assert "pooling" in exc.value.errors


def test_a_mean_pooled_run_trains_saves_and_predicts_the_same_when_loaded_again(store, shared, tiny_text_model, tmp_path):
    """Trained through the engine on a sentence-transformers-style folder with pooling 'auto': the saved config says
    mean, and the model Reports and scoring load predicts exactly what the trained model in memory would."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    encoder = tmp_path / "st-encoder"
    shutil.copytree(tiny_text_model, encoder)
    (encoder / "1_Pooling").mkdir()
    (encoder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=12)
    run_id = finetune.submit(store, "fpb", base_model=str(encoder), preset="quick", overrides={**SMALL, "pooling": "auto"})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    model_dir = Path(job["model_dir"])
    assert json.loads((model_dir / "config.json").read_text())["bellwether_pooling"] == "mean"

    texts = ["Operating profit rose to EUR 13.1 mn", "The company cut 200 jobs", "Sales were flat"]
    predictor = inference.load(model_dir, precision="exact")
    loaded = predictor.predict(texts)
    plain = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()  # [CLS], as a plain loader reads it
    batch = _encode(model_dir, texts)
    with torch.no_grad():
        mean_probs = predictor.model(**{k: v for k, v in batch.items()}).logits.softmax(-1)
        cls_probs = plain(**batch).logits.softmax(-1)
    assert [round(p.confidence, 4) for p in loaded] == [round(float(mean_probs[i].max()), 4) for i in range(len(texts))]
    assert not torch.allclose(mean_probs, cls_probs, atol=1e-4)


def test_the_train_page_and_the_cli_offer_the_choice_and_the_run_keeps_it(home, monkeypatch, shared, tiny_text_model):
    from engine.cli.main import main
    from engine.jobs import queue
    from tests.helpers import train_page_on_fpb

    conn, at = train_page_on_fpb(monkeypatch, shared, tiny_text_model)
    reading = at.selectbox(key="adv_pooling")
    assert reading.label == "Sentence reading" and reading.value == "auto"
    reading.set_value("mean")
    at.button[0].click().run()
    assert not at.exception
    assert queue.list_jobs(conn)[0]["config"]["pooling"] == "mean"
    assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--pooling", "cls",
                 "--no-worker", "--again"]) == 0
    assert queue.list_jobs(conn)[0]["config"]["pooling"] == "cls"
