"""``python -m bench.precision_ab``: CPU training speed, fp32 against bf16 autocast, on identical batches.

The default model (via ``finetune.load_model``, as a run builds it) takes optimizer steps (AdamW, lr 1e-4) on the same
fpb batches (batch 16, max length 64, length-grouped as the engine batches them) alternately in fp32 and under bf16
autocast (what TrainingArguments(bf16=True, use_cpu=True) does), ``--rounds`` rounds of ``--steps`` steps each. On
a machine other people load, interleaving keeps the two arms under the same load; the figure is the median of the
per-round samples/s ratios. Speed only: quality needs whole runs over seeds (``python -m bench quality``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def measure(rounds: int, steps: int, batch: int, max_length: int, base: str) -> dict:
    import torch

    from bench import data
    from engine.models import catalog, inference
    from engine.training import finetune

    labels = data.LABELS
    rows = data.fpb("train", batch * steps)
    rows.sort(key=lambda r: len(r["text"]))  # length-grouped, like the engine's sampler
    source = catalog.resolve(base).source
    tokenizer, model = finetune.load_model(source, "text-classification", labels, 42)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        enc = tokenizer([r["text"] for r in chunk], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        enc["labels"] = torch.tensor([labels.index(r["label"]) for r in chunk])
        batches.append(enc)

    def arm(bf16: bool) -> tuple[float, float]:
        """(samples per wall second, samples per CPU second of this process): under load other processes take
        wall time, so the CPU-time figure is the steadier measure of the work itself."""
        start, cpu_start = time.perf_counter(), time.process_time()
        for enc in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**enc).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
        return len(rows) / (time.perf_counter() - start), len(rows) / (time.process_time() - cpu_start)

    arm(False), arm(True)  # warm-up: first calls allocate and pick kernels
    per_round = []
    for _ in range(rounds):
        (fp32, fp32_cpu), (bf16, bf16_cpu) = arm(False), arm(True)
        per_round.append({"fp32_samples_per_s": round(fp32, 2), "bf16_samples_per_s": round(bf16, 2),
                          "ratio": round(bf16 / fp32, 3), "fp32_samples_per_cpu_s": round(fp32_cpu, 2),
                          "bf16_samples_per_cpu_s": round(bf16_cpu, 2), "cpu_ratio": round(bf16_cpu / fp32_cpu, 3)})
    return {
        "base_model": base, "batch": batch, "max_length": max_length, "steps_per_arm": len(batches),
        "rounds": per_round, "cpu_native_bfloat16": inference.cpu_has_bf16(), "torch_threads": torch.get_num_threads(),
        "median_ratio": round(statistics.median(r["ratio"] for r in per_round), 3),
        "median_cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in per_round), 3),
        "median_fp32_samples_per_s": round(statistics.median(r["fp32_samples_per_s"] for r in per_round), 2),
        "median_bf16_samples_per_s": round(statistics.median(r["bf16_samples_per_s"] for r in per_round), 2),
    }


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m bench.precision_ab", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = measure(args.rounds, args.steps, args.batch, args.max_length, args.model)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
