"""Cheaper dropout masks for training on the CPU (engine/training/dropout.py): the same dropout (keep probability,
scaling, gradient), reproducible from the seed, the attention's dropout included; the model is put back as it was
loaded before it is tested and saved, and a run from before the change is re-run with torch's masks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 1}


def _tiny_bert(hidden_dropout=0.1, attention_dropout=0.1):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        hidden_dropout_prob=hidden_dropout, attention_probs_dropout_prob=attention_dropout)
    return BertForSequenceClassification(config)


def _batch():
    import torch

    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 100, (3, 10), generator=generator)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0  # padding: the attention must leave it out, as transformers' does
    mask[1, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_a_mask_keeps_each_element_with_probability_one_minus_p_and_scales_what_it_keeps():
    import torch

    from engine.training import dropout

    torch.manual_seed(1)
    x = torch.ones(1_000_000)
    y = dropout.masked_dropout(x, 0.1, True)
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9)
    assert float((y == 0).float().mean()) == pytest.approx(0.1, abs=0.002)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.003)
    assert float((dropout.masked_dropout(x, 0.5, True) == 0).float().mean()) == pytest.approx(0.5, abs=0.002)
    # the four 16-bit slices of each 64-bit draw are each unbiased: no position in a word is kept more often
    kept = dropout.keep_mask(torch.Size([400_000]), 0.1).view(-1, 4).float().mean(0)
    assert torch.allclose(kept, torch.full((4,), 0.9), atol=0.004)
    assert torch.equal(dropout.masked_dropout(x, 0.1, False), x) and torch.equal(dropout.masked_dropout(x, 0.0, True), x)
    assert torch.equal(dropout.masked_dropout(x[:10], 1.0, True), torch.zeros(10))
    # the same seed draws the same mask; another seed another
    torch.manual_seed(7)
    a = dropout.keep_mask(torch.Size([1000]), 0.1)
    torch.manual_seed(7)
    b = dropout.keep_mask(torch.Size([1000]), 0.1)
    torch.manual_seed(8)
    c = dropout.keep_mask(torch.Size([1000]), 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_gradient_flows_through_what_was_kept_only():
    import torch

    from engine.training import dropout

    torch.manual_seed(2)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout.FastDropout(0.25)(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.all(x.grad[~kept] == 0)
    assert dropout.FastDropout(0.25).eval()(x) is x  # evaluation: no dropout


def test_a_swapped_model_answers_as_before_in_evaluation_and_drops_in_training():
    import torch

    from engine.training import dropout

    model = _tiny_bert().eval()
    batch = _batch()
    with torch.no_grad():
        before = model(**batch).logits
    state = dropout.apply(model)
    assert model.config._attn_implementation == dropout.ATTENTION
    # three a layer (the attention's holds its rate), the embeddings', the classifier's
    assert len(state["modules"]) == 2 * 3 + 2
    assert all(isinstance(m, dropout.FastDropout) and not m.training for m in model.modules()
               if "Dropout" in type(m).__name__)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, before, atol=1e-6)  # the padding is still left out
        model.train()
        torch.manual_seed(5)
        first = model(**batch).logits
        torch.manual_seed(5)
        again = model(**batch).logits
        second = model(**batch).logits
    assert torch.equal(first, again) and not torch.allclose(first, second)  # from the seed; each draw its own
    dropout.restore(state)
    assert model.config._attn_implementation == "sdpa"
    assert not any(isinstance(m, dropout.FastDropout) for m in model.modules())


def test_the_attention_probabilities_get_their_dropout_too():
    """With every other dropout off, training still differs from evaluation: the attention's own dropout, which torch's
    fused attention applies inside and this module's attention function applies with the cheaper masks."""
    import torch
    from torch.profiler import profile

    from engine.training import dropout

    model = _tiny_bert(hidden_dropout=0.0, attention_dropout=0.3)
    batch = _batch()
    state = dropout.apply(model)
    with torch.no_grad():
        model.eval()
        evaluated = model(**batch).logits
        model.train()
        with profile() as prof:
            trained = model(**batch).logits
    assert not torch.allclose(evaluated, trained)
    assert not [e.key for e in prof.key_averages() if "bernoulli" in e.key or "dropout" in e.key]  # no torch mask drawn
    dropout.restore(state)
    off = _tiny_bert(hidden_dropout=0.0, attention_dropout=0.0)
    state = dropout.apply(off)
    with torch.no_grad():
        assert torch.allclose(off.eval()(**batch).logits, off.train()(**batch).logits, atol=1e-6)


def test_a_run_trains_with_the_cheaper_masks_and_saves_the_model_as_loaded(store, shared, tiny_text_model):
    import torch

    from engine.jobs import queue
    from engine.models import inference
    from engine.training import finetune

    assert finetune.build_config("quick")["fast_dropout"] is True
    # entity tagging keeps torch's masks: the seed study found its entity F1 lower with the cheaper ones
    assert not any(finetune.preset_config(p, "token-classification")["fast_dropout"] for p in finetune.PRESETS)
    # nor does the generation runner use them, and its runs' settings say so
    assert not any(finetune.preset_config(p, "generation")["fast_dropout"] for p in finetune.PRESETS)
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=40, n_val=12, n_test=12)
    ids = [finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick", overrides={**SMALL, **extra},
                           again=True) for extra in ({}, {}, {"fast_dropout": False})]
    for run_id in ids:
        assert run_in_process(run_id) == 0
    fast, again, plain = (queue.get(store, i) for i in ids)
    assert fast["status"] == again["status"] == plain["status"] == "succeeded"
    assert "dropout masks: 16 random bits an element (8 modules, attention included)" in Path(fast["log_path"]).read_text()
    assert "dropout masks" not in Path(plain["log_path"]).read_text() and plain["config"]["fast_dropout"] is False
    # reproducible from the seed, and other masks than torch's (the trained weights differ)
    fast_w, again_w, plain_w = (_weights(j["model_dir"]) for j in (fast, again, plain))
    assert all(torch.equal(fast_w[k], again_w[k]) for k in fast_w)
    assert not all(torch.equal(fast_w[k], plain_w[k]) for k in fast_w)
    # saved as loaded (transformers' attention in its config), and Reports' loader predicts what the run stored
    assert "bellwether_dropout" not in (Path(fast["model_dir"]) / "config.json").read_text()
    stored = store.execute("SELECT text, pred_label FROM predictions WHERE run_id = ? AND split = 'test' ORDER BY row_id",
                           [fast["id"]]).fetchall()
    assert len(stored) == 12
    loaded = inference.load(fast["model_dir"], precision="exact").predict([text for text, _ in stored])
    assert [p.label for p in loaded] == [label for _, label in stored]


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_a_run_from_before_the_cheaper_masks_is_re_run_with_torchs():
    from engine.training import reproduce

    assert reproduce.same_settings({"config": {"epochs": 1, "seed": 3}})["fast_dropout"] is False
    assert reproduce.same_settings({"config": {"epochs": 1, "fast_dropout": True}})["fast_dropout"] is True

