"""``python -m bench.precision_ab``: CPU training speed, fp32 against bf16 autocast, on identical batches.

The default model (via ``finetune.load_model``, as a run builds it) takes optimizer steps (AdamW, lr 1e-4) on the same
fpb batches (batch 16, max length 64, length-grouped as the engine batches them) alternately in fp32 and under bf16
autocast (what TrainingArguments(bf16=True, use_cpu=True) does), ``--rounds`` rounds of ``--steps`` steps each. On
a machine other people load, interleaving keeps the two arms under the same load; the figure is the median of the
per-round samples/s ratios. Speed only: quality needs whole runs over seeds (``python -m bench quality``).

``--causal LAYERSxWIDTH`` (e.g. ``6x768``, distilgpt2's shape; ``12x768``, GPT-2's) times a causal language model
instead: a GPT-2 of that shape built from a config (no pretrained causal model can be installed here; random weights
train at the same speed as real ones) learns the same fpb sentences as plain text (the loss on every token), with the
default model's tokenizer, as the generation runner trains it.

``--compile``: the model runs through ``torch.compile(dynamic=True)`` (inductor, which needs a C compiler); the first
pass of each arm, compilation included, is reported apart as ``first_pass_s``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def causal_model(shape: str, seed: int = 42):
    """(tokenizer, model): a GPT-2 of ``shape`` ('LAYERSxWIDTH', 64 wide per attention head) built from a config, with
    the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.errors import UserError
    from engine.models.catalog import default_model_path

    try:
        layers, width = (int(x) for x in shape.lower().split("x"))
        assert layers > 0 and width > 0 and width % 64 == 0
    except (ValueError, AssertionError):
        raise UserError(f"--causal takes LAYERSxWIDTH with the width a multiple of 64, such as 6x768; got {shape!r}.")
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=width, n_layer=layers, n_head=width // 64,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return tokenizer, GPT2LMHeadModel(config)


def measure(rounds: int, steps: int, batch: int, max_length: int, base: str, causal: str | None = None,
            compiled: bool = False) -> dict:
    import torch

    from bench import data
    from engine.models import catalog, inference
    from engine.training import finetune

    labels = data.LABELS
    rows = data.fpb("train", batch * steps)
    rows.sort(key=lambda r: len(r["text"]))  # length-grouped, like the engine's sampler
    if causal:
        tokenizer, model = causal_model(causal)
        base = f"GPT-2 {causal} from a config"
    else:
        tokenizer, model = finetune.load_model(catalog.resolve(base).source, "text-classification", labels, 42)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model, dynamic=True) if compiled else model
    batches = []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        enc = tokenizer([r["text"] for r in chunk], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        if causal:  # every real token is a target; padding is not
            enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        else:
            enc["labels"] = torch.tensor([labels.index(r["label"]) for r in chunk])
        batches.append(enc)

    def arm(bf16: bool) -> tuple[float, float]:
        """(samples per wall second, samples per CPU second of this process): under load other processes take
        wall time, so the CPU-time figure is the steadier measure of the work itself."""
        start, cpu_start = time.perf_counter(), time.process_time()
        for enc in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward(**enc).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
        return len(rows) / (time.perf_counter() - start), len(rows) / (time.process_time() - cpu_start)

    first_pass = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):  # warm-up: first calls allocate, pick kernels (and compile)
        started = time.perf_counter()
        arm(bf16)
        first_pass[name] = round(time.perf_counter() - started, 2)
    per_round = []
    for _ in range(rounds):
        (fp32, fp32_cpu), (bf16, bf16_cpu) = arm(False), arm(True)
        per_round.append({"fp32_samples_per_s": round(fp32, 2), "bf16_samples_per_s": round(bf16, 2),
                          "ratio": round(bf16 / fp32, 3), "fp32_samples_per_cpu_s": round(fp32_cpu, 2),
                          "bf16_samples_per_cpu_s": round(bf16_cpu, 2), "cpu_ratio": round(bf16_cpu / fp32_cpu, 3)})
    return {
        "compiled": compiled, "first_pass_s": first_pass, "base_model": base, "task": "generation" if causal else "text-classification", "batch": batch, "max_length": max_length, "steps_per_arm": len(batches),
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
    p.add_argument("--causal", metavar="LAYERSxWIDTH",
                   help="time a causal language model of this shape built from a config (6x768: distilgpt2's)")
    p.add_argument("--compile", action="store_true", help="run the model through torch.compile (first pass reported apart)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from engine.errors import UserError

    try:
        result = measure(args.rounds, args.steps, args.batch, args.max_length, args.model, args.causal, args.compile)
    except UserError as exc:
        print(exc)
        return 2
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
