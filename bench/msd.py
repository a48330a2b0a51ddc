"""``python -m bench.msd --samples K quality ...``: multi-sample dropout, a lever measured for Thorough (issue 13).

Multi-sample dropout (Inoue 2019, "Multi-Sample Dropout for Accelerated Training and Better Generalization"): in
training, the classifier head reads the pooled sentence vector through ``K`` different dropout masks and the loss is
the mean of the ``K`` cross-entropies; the encoder runs once, so a step costs little more. Evaluation and prediction
are unchanged (no dropout), and so is the saved model. It applies to heads of BERT's shape (a ``dropout`` module, then
a linear ``classifier``), such as the default model's; other runs train as before.

It is measured, not built into the engine: this command runs ``python -m bench quality`` with the rest of its
arguments, its runs in this process (``BELLWETHER_BENCH_INPROCESS``), with the Trainer's loss replaced as above:

    python -m bench.msd --samples 5 quality --presets thorough --seeds 5 --datasets fpb --format json --out q.json

The runs are the product's own (``finetune.submit`` and the job runner), so the figures compare seed for seed with
``python -m bench quality``'s. docs/benchmarks.md has what it did to Thorough.
"""

from __future__ import annotations

import argparse
import os
import sys

STEPS = {"multi_sample": 0}  # training steps that used the multi-sample loss (tests read it)


def multi_sample_loss(model, inputs: dict, samples: int):
    """(loss, outputs) for a BERT-shaped classifier, or None when the model's head is not of that shape."""
    import torch
    import torch.nn.functional as F

    classifier = getattr(model, "classifier", None)
    dropout = getattr(model, "dropout", None)
    if not isinstance(classifier, torch.nn.Linear) or not isinstance(getattr(dropout, "p", None), float):
        return None
    from engine.training.dropout import masked_dropout

    labels = inputs.pop("labels")
    p, forward = dropout.p, classifier.forward
    drop = masked_dropout if type(dropout).__name__ == "FastDropout" else F.dropout  # the run's own kind of mask
    classifier.forward = lambda x: torch.stack([forward(drop(x, p, True)) for _ in range(samples)])
    dropout.p = 0.0  # the masks are drawn above, once per sample
    try:
        outputs = model(**inputs)
    finally:
        del classifier.forward
        dropout.p = p
    logits = outputs.logits  # (samples, batch, labels)
    loss = torch.stack([F.cross_entropy(logits[k].float(), labels) for k in range(samples)]).mean()
    outputs.logits = logits.mean(0)
    STEPS["multi_sample"] += 1
    return loss, outputs


def install(samples: int):
    """Replace the Trainer's loss in training by the multi-sample one; returns the function that puts it back."""
    from transformers.trainer import Trainer

    original = Trainer.compute_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and "labels" in inputs and samples > 1:
            done = multi_sample_loss(model, inputs, samples)
            if done is not None:
                return done if return_outputs else done[0]
        return original(self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    Trainer.compute_loss = compute_loss

    def undo():
        Trainer.compute_loss = original

    return undo


def _annotate(rest: list[str], samples: int) -> None:
    """The JSON written by ``--out`` says which lever its runs trained with and the command that reruns it."""
    import json

    if "--out" not in rest or rest.index("--out") + 1 >= len(rest):
        return
    path = rest[rest.index("--out") + 1]
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    result["command"] = f"python -m bench.msd --samples {samples} " + " ".join(rest)
    result["multi_sample_dropout"] = samples
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.msd", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=5, help="dropout masks per step (5)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="python -m bench's arguments, from 'quality' on")
    args = p.parse_args(argv)
    if not args.rest or args.rest[0] != "quality":
        p.error("give the bench quality command after --samples, e.g. quality --presets thorough --datasets fpb")
    from bench import cli

    before = os.environ.get("BELLWETHER_BENCH_INPROCESS")
    os.environ["BELLWETHER_BENCH_INPROCESS"] = "1"
    undo = install(args.samples)
    try:
        status = cli.main(args.rest)
        _annotate(args.rest, args.samples)
        return status
    finally:
        undo()
        if before is None:
            os.environ.pop("BELLWETHER_BENCH_INPROCESS", None)
        else:
            os.environ["BELLWETHER_BENCH_INPROCESS"] = before


if __name__ == "__main__":
    sys.exit(main())
