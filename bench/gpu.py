"""GPU utilisation and model FLOP utilisation (MFU) of training, for the benchmarks when a GPU is present.

- :class:`UtilSampler` polls ``nvidia-smi`` (utilisation %, memory used) in a thread while a case runs; without
  ``nvidia-smi`` it records nothing and says so.
- :func:`training_flops` counts the FLOPs of fine-tuning an encoder on a number of tokens: 6 x the encoder's
  non-embedding parameters per token (forward 2, backward 4), plus the attention scores and their use
  (12 x layers x width x sequence length per token), as in Kaplan et al. 2020 / Chowdhery et al. 2022 (PaLM, MFU).
- :func:`peak_flops` is the dense bf16/fp16 tensor peak of the GPU by its name (datasheet figures, no sparsity).
- :func:`mfu` = achieved FLOPs per second / peak.

Written for a GPU session to run unchanged; on the machines this project has had, only the pure parts ran (tests).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

# Dense bf16/fp16 tensor-core peaks, FLOP/s, from the vendors' datasheets (SXM parts where there are two).
PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "V100": 125e12,
    "T4": 65e12,
}


def peak_flops(device_name: str | None) -> float | None:
    """The dense half-precision peak of a GPU named like 'NVIDIA H200' or 'Tesla T4'; None when unknown."""
    if not device_name:
        return None
    name = device_name.upper()
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):  # 'L40S' before 'L4', 'A100' before 'A10'
        if key in name:
            return PEAK_FLOPS[key]
    return None


def training_flops(config: dict, tokens: int, mean_seq_len: float) -> float:
    """FLOPs to train on ``tokens`` token positions (padding included: the GPU computes it) of mean length
    ``mean_seq_len``."""
    from engine.models.catalog import encoder_shape

    layers, hidden, inner = encoder_shape(config)
    params = layers * (4 * hidden * hidden + 2 * hidden * inner)  # attention projections + feed-forward
    per_token = 6 * params + 12 * layers * hidden * mean_seq_len
    return per_token * tokens


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    if not peak or not seconds or seconds <= 0:
        return None
    return flops / seconds / peak


class UtilSampler:
    """``with UtilSampler() as s: ...`` then ``s.summary()``: mean and max GPU utilisation and peak memory."""

    QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, interval_s: float = 0.5, gpu: int = 0, command: str = "nvidia-smi"):
        self.interval_s = interval_s
        self.gpu = gpu
        self.command = shutil.which(command)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None if self.command else f"{command} not found"

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.command, *self.QUERY, f"--id={self.gpu}"], capture_output=True,
                                     text=True, timeout=10)
                util, mem = (float(x) for x in out.stdout.strip().splitlines()[0].split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "UtilSampler":
        if self.command:
            self._thread = threading.Thread(target=self._poll, name="gpu-util", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0, "note": self.error or "no samples"}
        utils = [u for u, _ in self.samples]
        return {"samples": len(utils), "util_mean_pct": round(sum(utils) / len(utils), 1),
                "util_max_pct": max(utils), "memory_peak_mb": max(m for _, m in self.samples)}


def measure(fn, *args, interval_s: float = 0.5, **kwargs) -> tuple[object, dict, float]:
    """Run ``fn`` under a sampler: (its result, the sampler's summary, seconds)."""
    start = time.perf_counter()
    with UtilSampler(interval_s=interval_s) as sampler:
        result = fn(*args, **kwargs)
    return result, sampler.summary(), time.perf_counter() - start


def token_count(model_path: str, texts: list[str], max_length: int) -> tuple[int, float]:
    """(token positions of one epoch over ``texts``, mean per text), truncated at ``max_length``. Length-grouped
    batches pad almost nothing (docs/benchmarks.md), so real tokens stand for the positions computed."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    return sum(lengths), (sum(lengths) / len(lengths) if lengths else 0.0)


def training_figures(run: dict, util: dict, model_path: str, texts: list[str], device_name: str | None) -> dict:
    """GPU utilisation and MFU of one engine training run (``engine_side.train_run``'s result)."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    max_length = int(run["config"].get("max_length") or 128)
    per_epoch, mean_len = token_count(model_path, texts, max_length)
    epochs = float(run.get("epochs_run") or run["config"].get("epochs") or 1)
    flops = training_flops(config, int(per_epoch * epochs), mean_len)
    seconds = run.get("train_runtime_s")  # the Trainer's train() loop: per-epoch evaluation included
    peak = peak_flops(device_name)
    value = mfu(flops, seconds or 0, peak)
    return {"gpu": device_name, "utilisation": util, "train_tflops": round(flops / 1e12, 2),
            "train_runtime_s": seconds, "peak_tflops": round(peak / 1e12, 1) if peak else None,
            "mfu": round(value, 4) if value is not None else None,
            "note": "MFU = 6 x encoder parameters + attention FLOPs per token x tokens trained / train() time "
                    "(its per-epoch evaluation counted as time, not as FLOPs) / the GPU's dense bf16 peak"}
