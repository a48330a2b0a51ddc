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

``--arms``: what is timed, in turn each round (default ``fp32,bf16``): ``fp32`` and ``bf16`` with torch's dropout (the
engine before its cheaper dropout masks), ``fp32+fast`` and ``bf16+fast`` with the engine's masks
(engine/training/dropout.py: what runs on the CPU train with now); ``+frozen`` after either leaves the word
embeddings untrained (``freeze_embeddings``, what text classification trains with now), e.g. ``bf16+fast+frozen``.
Ratios are to the first arm; ``ratio`` and ``median_ratio`` are the last arm's, so ``--arms fp32,bf16+fast+frozen``
compares the engine before all three changes with what ``auto`` trains a text classifier with now on a CPU that
computes bfloat16, and ``--arms bf16,bf16+fast`` the masks alone.

``--compile``: the model runs through ``torch.compile(dynamic=True)`` (inductor, which needs a C compiler); the first
pass of each arm, compilation included, is reported apart as ``first_pass_s``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

ARMS = frozenset(f"{p}{fast}{frozen}" for p in ("fp32", "bf16") for fast in ("", "+fast") for frozen in ("", "+frozen"))


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
            compiled: bool = False, arms: tuple[str, ...] = ("fp32", "bf16")) -> dict:
    import torch

    from bench import data
    from engine.models import catalog, inference
    from engine.training import dropout, finetune

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

    def arm(name: str) -> tuple[float, float]:
        """(samples per wall second, samples per CPU second of this process) for the arm ``name``: under load other
        processes take wall time, so the CPU-time figure is the steadier measure of the work itself."""
        bf16 = name.startswith("bf16")
        swapped = dropout.apply(model) if "+fast" in name else None
        table = model.get_input_embeddings().weight
        table.requires_grad_("+frozen" not in name)  # AdamW skips a weight with no gradient
        start, cpu_start = time.perf_counter(), time.process_time()
        for enc in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward(**enc).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if swapped is not None:
            dropout.restore(swapped)
        return len(rows) / wall, len(rows) / cpu

    first_pass = {}
    for name in arms:  # warm-up: first calls allocate, pick kernels (and compile)
        started = time.perf_counter()
        arm(name)
        first_pass[name] = round(time.perf_counter() - started, 2)
    per_round = []
    first, last = arms[0], arms[-1]
    for _ in range(rounds):
        speeds = {name: arm(name) for name in arms}
        row = {}
        for name, (wall, cpu) in speeds.items():
            row[f"{name}_samples_per_s"] = round(wall, 2)
            row[f"{name}_samples_per_cpu_s"] = round(cpu, 2)
        row["ratios"] = {name: round(wall / speeds[first][0], 3) for name, (wall, _) in speeds.items()}
        row["ratio"] = row["ratios"][last]
        row["cpu_ratio"] = round(speeds[last][1] / speeds[first][1], 3)
        per_round.append(row)
    result = {
        "compiled": compiled, "arms": list(arms), "first_pass_s": first_pass, "base_model": base,
        "task": "generation" if causal else "text-classification", "batch": batch, "max_length": max_length,
        "steps_per_arm": len(batches), "rounds": per_round, "cpu_native_bfloat16": inference.cpu_has_bf16(),
        "torch_threads": torch.get_num_threads(),
        "median_ratio": round(statistics.median(r["ratio"] for r in per_round), 3),
        "median_cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in per_round), 3),
        "median_ratios": {name: round(statistics.median(r["ratios"][name] for r in per_round), 3) for name in arms},
    }
    for name in arms:
        result[f"median_{name}_samples_per_s"] = round(statistics.median(r[f"{name}_samples_per_s"] for r in per_round), 2)
    return result


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
    p.add_argument("--arms", default="fp32,bf16",
                   help="comma-separated, timed in turn: fp32, bf16 (torch's dropout), fp32+fast, bf16+fast (the engine's "
                   "cheaper dropout masks), each with +frozen (word embeddings not trained; classifiers only); ratios "
                   "are to the first (default fp32,bf16)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from engine.errors import UserError

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if len(arms) < 2 or len(set(arms)) < len(arms) or not set(arms) <= ARMS:
        print(f"--arms takes two or more of {', '.join(sorted(ARMS))}, each once; got {args.arms!r}.")
        return 2
    if args.causal and any("+frozen" in a for a in arms):
        print("+frozen is for classifiers: a causal model's word embeddings are its output layer too.")
        return 2
    try:
        result = measure(args.rounds, args.steps, args.batch, args.max_length, args.model, args.causal, args.compile,
                         arms)
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
