"""The precision a training run uses, and what that does to its speed: one policy for the runner (engine.training), the
Train page's estimates and the queue's ETAs (engine.jobs.overview), which sit on different layers.

``auto`` trains in bf16 on a GPU that supports it (else fp16 with loss scaling) and, on a CPU that computes bfloat16
natively (inference.cpu_has_bf16), in bf16 autocast for the tasks in CPU_AUTO_BF16_TASKS: those whose presets were
measured over seeds in both precisions with the same quality (docs/benchmarks.md, "bf16 training on the CPU"). A task
added later trains in fp32 until it is measured too, unless the run asks for bf16 itself. bf16 is mixed precision:
the weights, the optimizer state and the saved model stay float32.
"""

from __future__ import annotations

from engine.models import inference

# Measured equal to fp32 over 5 seeds (fpb: Quick, Balanced, Thorough; FIN5: Quick) and, for generation, over 3 seeds
# (Quick and Balanced on a tiny GPT-2: validation perplexity equal to 4 significant figures). Steps of distilgpt2- and
# GPT-2-shaped models ran 1.77x and 1.83x as fast in bf16 here (`python -m bench.precision_ab --causal 6x768`).
CPU_AUTO_BF16_TASKS = frozenset({"text-classification", "token-classification", "generation"})

# How much faster a whole training run is in bf16 autocast than in fp32 on a CPU that computes bfloat16 natively, both
# with the cheaper dropout masks (engine/training/dropout.py): steps 1.57x (1.64x against 1.04x), whole runs on fpb
# about 1.4x (Quick) to 1.7x (Balanced, whose R-Drop draws masks twice a step) (docs/benchmarks.md, "Cheaper dropout
# masks"). What estimates and ETAs count, not a promise; for generation too, whose whole runs were not measured on a
# real model here (its steps gain more: the note above).
CPU_BF16_TRAIN_SPEEDUP = 1.45


def training_precision(kind: str, asked: str | None = "auto", task: str | None = "text-classification") -> str:
    """The precision a run of ``task`` trains in on a device of ``kind`` ('cuda' or 'cpu') when it asks for ``asked``
    (auto | fp32 | bf16): see the module's docstring. BELLWETHER_CPU_BF16 overrides the processor check."""
    asked = (asked or "auto").lower()
    if asked == "fp32":
        return "fp32"
    if kind == "cuda":
        import torch

        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if asked == "bf16":
        return "bf16"
    return "bf16" if task in CPU_AUTO_BF16_TASKS and inference.cpu_has_bf16() else "fp32"


def train_speedup(kind: str | None, precision: str | None) -> float:
    """How many times the fp32 speed a CPU run in ``precision`` trains at (1 on a GPU, whose runs are measured in the
    precision they all use, and for fp32; CPU bf16 only helps where the processor computes it)."""
    if kind == "cpu" and precision == "bf16" and inference.cpu_has_bf16():
        return CPU_BF16_TRAIN_SPEEDUP
    return 1.0
