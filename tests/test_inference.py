"""The predictor: batched by token counts yet answering in input order, and the precision it runs in."""

from __future__ import annotations

import pytest

from engine.models import inference
from engine.errors import UserError

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "",
    "Shares fell.",
    "The company said that its net sales in the third quarter would be lower than a year earlier " * 20,  # truncated
    "Up",
    "Pre-tax loss totalled EUR 0.3 mn , compared to a profit of EUR 2.2 mn in the first quarter of 2005 .",
    "银行板块下跌",
]


def test_batched_predictions_come_back_in_input_order_and_equal_one_at_a_time(tiny_text_model):
    predictor = inference.Predictor(tiny_text_model, device="cpu", precision="exact")
    batched = predictor.predict(TEXTS, batch_size=3)
    for text, got in zip(TEXTS, batched):
        alone = predictor.predict([text], batch_size=1)[0]
        assert got.label == alone.label
        assert got.probs == pytest.approx(alone.probs, abs=1e-5)
        assert sum(got.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert got.confidence == pytest.approx(max(got.probs.values()), abs=1e-6)
    assert predictor.predict([]) == []
    progress = []
    predictor.predict(TEXTS, batch_size=2, progress=lambda done, total: progress.append((done, total)))
    assert progress == [(2, 7), (4, 7), (6, 7), (7, 7)]


def test_batches_are_grouped_by_token_count_so_padding_is_small(tiny_text_model):
    predictor = inference.Predictor(tiny_text_model, device="cpu")
    texts = ["word " * n for n in (40, 2, 39, 1, 41, 3)]
    widths = [batch["input_ids"].shape[1] for _, batch in predictor._batches(texts, 3)]
    assert widths == [5, 43]  # [1, 2, 3] and [39, 40, 41] words, plus [CLS] and [SEP]; in input order: 43 and 43
    seen = sorted(i for idx, _ in predictor._batches(texts, 4) for i in idx)
    assert seen == list(range(len(texts)))


def test_precision_picks_the_dtype_for_the_hardware(monkeypatch, tiny_text_model):
    import torch

    assert inference.pick_dtype("cpu", "exact") is torch.float32
    assert inference.pick_dtype("cuda", "exact") is torch.float32
    assert inference.pick_dtype("cuda", "fast") is torch.float16
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")
    assert inference.pick_dtype("cpu", "fast") is torch.float32  # emulated bfloat16 would be slower
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")
    assert inference.pick_dtype("cpu", "fast") is torch.bfloat16
    with pytest.raises(UserError, match="Precision must be one of fast, exact"):
        inference.pick_dtype("cpu", "int3")
    fast = inference.Predictor(tiny_text_model, device="cpu", precision="fast")
    exact = inference.Predictor(tiny_text_model, device="cpu", precision="exact")
    assert (fast.dtype_name, exact.dtype_name) == ("bfloat16", "float32")
    assert next(fast.model.parameters()).dtype is torch.bfloat16
    for a, b in zip(fast.predict(TEXTS), exact.predict(TEXTS)):
        assert a.probs == pytest.approx(b.probs, abs=0.02)
    # The cache keeps one predictor per precision: a fast one is never handed to a caller asking for exact.
    assert inference.load(tiny_text_model, precision="fast").dtype_name == "bfloat16"
    assert inference.load(tiny_text_model).dtype_name == "float32"


def test_cpu_flags_decide_native_bfloat16(monkeypatch, tmp_path):
    monkeypatch.delenv("BELLWETHER_CPU_BF16", raising=False)
    real_open = open

    def fake_cpuinfo(flags):
        def fake_open(path, *a, **k):
            if path == "/proc/cpuinfo":
                target = tmp_path / "cpuinfo"
                target.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
                return real_open(target, *a, **k)
            return real_open(path, *a, **k)
        return fake_open

    monkeypatch.setattr("builtins.open", fake_cpuinfo("fpu sse avx2 avx512f avx512_bf16 avx512_vnni"))
    inference._cpu_flags_have_bf16.cache_clear()  # read once per process: each fake processor is a new process here
    assert inference.cpu_has_bf16()
    monkeypatch.setattr("builtins.open", fake_cpuinfo("fpu sse avx2 avx512f avx512_vnni"))
    inference._cpu_flags_have_bf16.cache_clear()
    assert not inference.cpu_has_bf16()
    inference._cpu_flags_have_bf16.cache_clear()  # the real processor for the tests after this one


def test_a_model_that_fails_in_reduced_precision_falls_back_to_float32(monkeypatch, tiny_text_model):
    import torch

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")
    predictor = inference.Predictor(tiny_text_model, device="cpu", precision="fast")
    real_forward = predictor.model.forward

    def bf16_unsupported(*args, **kwargs):
        if next(predictor.model.parameters()).dtype is torch.bfloat16:
            raise RuntimeError('"addmm_impl_cpu_" not implemented for \'BFloat16\'')
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(predictor.model, "forward", bf16_unsupported)
    got = predictor.predict(TEXTS, batch_size=3)
    exact = inference.Predictor(tiny_text_model, device="cpu", precision="exact").predict(TEXTS, batch_size=3)
    assert [g.label for g in got] == [e.label for e in exact]
    assert predictor.dtype_name == "float32"
    assert predictor.fallback.startswith("bfloat16 failed (\"addmm_impl_cpu_\" not implemented")
