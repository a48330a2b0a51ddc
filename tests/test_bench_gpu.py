"""The GPU figures of the benchmarks (bench/gpu.py): the FLOP count, the peak table, MFU and the nvidia-smi sampler.

No GPU is needed: the sampler is pointed at a stand-in nvidia-smi that prints what the real one prints.
"""

from __future__ import annotations

import os
import stat

import pytest

from bench import gpu

MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}


def test_training_flops_follow_six_n_per_token_plus_attention():
    params = 6 * (4 * 384 * 384 + 2 * 384 * 1536)  # 10.6M encoder weights, embeddings excluded
    assert params == 10_616_832
    flops = gpu.training_flops(MINILM, tokens=1000, mean_seq_len=30)
    assert flops == pytest.approx(1000 * (6 * params + 12 * 6 * 384 * 30))
    # one epoch of fpb train (90,353 tokens) is about 5.8 TFLOP
    assert gpu.training_flops(MINILM, 90_353, 30.6) / 1e12 == pytest.approx(5.84, abs=0.02)


def test_peak_table_matches_names_as_cuda_reports_them_and_mfu():
    assert gpu.peak_flops("NVIDIA H200") == 989e12
    assert gpu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu.peak_flops("NVIDIA A10G") == 125e12  # not mistaken for an A100
    assert gpu.peak_flops("NVIDIA L40S") == 362e12  # not mistaken for an L4
    assert gpu.peak_flops("Tesla T4") == 65e12
    assert gpu.peak_flops("Some Future GPU") is None and gpu.peak_flops(None) is None
    assert gpu.mfu(989e12, 2.0, 989e12) == 0.5
    assert gpu.mfu(1e12, 2.0, None) is None and gpu.mfu(1e12, 0, 1e12) is None


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    script = tmp_path / "nvidia-smi"
    readings = tmp_path / "readings"
    readings.write_text("40, 1000\n90, 3000\n")
    # Each call prints the next reading (the last one again when they run out), as the real one prints one line per GPU.
    script.write_text(f"""#!/bin/sh
line=$(head -n 1 {readings})
rest=$(tail -n +2 {readings})
[ -n "$rest" ] && printf '%s\\n' "$rest" > {readings}
echo "$line"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return script


def test_sampler_reads_utilisation_and_memory_while_a_case_runs(fake_nvidia_smi):
    import time

    result, summary, seconds = gpu.measure(lambda: time.sleep(0.5) or "done", interval_s=0.05)
    assert result == "done" and seconds >= 0.5
    assert summary["samples"] >= 2
    assert summary["util_max_pct"] == 90.0 and summary["memory_peak_mb"] == 3000.0
    assert 40.0 < summary["util_mean_pct"] <= 90.0


def test_sampler_without_nvidia_smi_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with gpu.UtilSampler(interval_s=0.05) as sampler:
        pass
    assert sampler.summary() == {"samples": 0, "note": "nvidia-smi not found"}


def test_training_figures_of_a_run_count_its_tokens_and_epochs(tiny_text_model):
    import json

    texts = ["Profit rose", "Shares fell sharply after the warning", "Flat"]
    run = {"config": {"max_length": 128, "epochs": 2}, "epochs_run": 2.0, "train_runtime_s": 4.0}
    fig = gpu.training_figures(run, {"samples": 3, "util_mean_pct": 70.0}, str(tiny_text_model), texts, "NVIDIA H200")
    tokens, mean_len = gpu.token_count(str(tiny_text_model), texts, 128)
    assert tokens == 4 + 8 + 3  # [CLS] ... [SEP] each
    config = json.loads((tiny_text_model / "config.json").read_text())
    expected = gpu.training_flops(config, tokens * 2, mean_len)
    assert fig["train_tflops"] == round(expected / 1e12, 2)
    assert fig["mfu"] == round(expected / 4.0 / 989e12, 4)
    assert fig["utilisation"]["util_mean_pct"] == 70.0 and fig["peak_tflops"] == 989.0
