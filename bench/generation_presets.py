"""``python -m bench generation [--seeds 3] [--quick]``: the generation presets chosen by measurement, and packing.

No pretrained causal language model can be installed on this machine, so the study builds one small enough to train
here, from scratch, on real text, then fine-tunes it as an analyst would fine-tune GPT-2:

1. **Packing (plain text, from scratch).** A tiny GPT-2 built from a config (2 layers, 64 wide, the default model's
   WordPiece tokenizer, as tests/helpers.py builds it) learns 1,000 Financial PhraseBank training sentences (a seeded
   subsample) as plain text,
   one epoch at learning rate 5e-3, batch 16, max length 128, once with the engine's padded, length-grouped batches
   and once packed (:func:`engine.training.generation.pack`), per seed: optimizer steps, train seconds, real
   (non-pad) tokens per second and validation perplexity on fpb dev sentences (unpacked, the same for both).
2. **Presets (prompt/response fine-tuning).** The packed model of the first seed is the "pretrained" base. It is
   fine-tuned on 250 Reuters news rows (a seeded shuffle, 200 train / 50 validation; description -> headline, the plain prompt format, response-only loss) with each
   preset's candidate learning rates at the preset's epochs and batch size, with the engine's own Trainer arguments
   (warm-up, weight decay, evaluation each epoch, the best checkpoint kept, early stopping for Thorough), per seed:
   validation perplexity of the response tokens and wall seconds. The chosen candidate per preset has the lowest mean
   validation perplexity; its range over seeds goes in docs/benchmarks.md.

3. **Precision** (``--precision fp32,bf16``): every candidate of the presets stage once per precision, bf16 being the
   autocast the engine trains in (``--set learning_rate=R`` keeps one rate per preset, to compare at the chosen one).

Everything runs in this process on the CPU (fp32 unless ``--precision`` says otherwise) from the engine's pieces (encoding, collators, seeded sampler,
TrainingArguments), not through the queue: the base model's held-out generations that every real run makes would
cost more than the training itself here.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

from bench import data

PRETRAIN = {"learning_rate": 5e-3, "batch_size": 16, "max_length": 128, "epochs": 1}
# preset: (epochs, early-stopping patience, candidate learning rates); batch 8 as the generation presets have.
# Sized for 2 shared CPU cores (about half an hour in all): three rates for Quick, two for the longer presets.
CANDIDATES = {
    "quick": (1, 0, [5e-5, 2e-4, 1e-3]),
    "balanced": (3, 0, [2e-4, 1e-3]),
    "thorough": (5, 2, [5e-4, 1e-3]),  # moved up from 1e-4 / 5e-4 once Quick and Balanced showed 1e-3 ahead
}
SIZES = {"full": (1000, 250), "quick": (400, 120), "tiny": (48, 40)}  # (fpb sentences, Reuters rows)
FINETUNE_BATCH = 8
FINETUNE_MAX_LENGTH = 128


def tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """An untrained 2-layer, 64-wide GPT-2 with the default model's WordPiece tokenizer (tests/helpers.py's)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.models.catalog import default_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=2,
                                       bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                       pad_token_id=tokenizer.pad_token_id))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentences(split: str, n: int | None) -> list[dict]:
    return [{"text": r["text"], "label": None, "tokens": None} for r in data.fpb(split, n)]


def headlines(n: int | None) -> dict[str, list[dict]]:
    """Reuters (description -> headline) in a fixed, seeded 80/20 train/validation split."""
    import random

    frame = data._read_csv(data.shared_dir() / "news" / "reuters_headlines.csv", encoding="cp1252").dropna()
    rows = [{"text": str(d).strip(), "label": str(h).strip(), "tokens": None}
            for d, h in zip(frame["Description"], frame["Headlines"]) if str(d).strip() and str(h).strip()]
    random.Random(data.SEED).shuffle(rows)
    rows = rows[:n] if n else rows
    cut = int(len(rows) * 0.8)
    return {"train": rows[:cut], "validation": rows[cut:]}


def _train(model_dir: Path, train_rows: list[dict], val_rows: list[dict], out: Path, seed: int, *, epochs: float,
           learning_rate: float, batch_size: int, max_length: int, packing: bool = False, patience: int = 0,
           precision: str = "fp32") -> dict:
    """One training run with the engine's pieces; returns its figures and leaves the best model in ``out/model``."""
    from transformers import EarlyStoppingCallback, Trainer

    from engine.models import generate
    from engine.training import finetune
    from engine.training import generation as gen

    config = {**finetune.DEFAULTS, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
              "max_length": max_length, "seed": seed, "early_stopping_patience": patience, "packing": packing}
    finetune.seed_everything(seed)
    tokenizer, model = generate.load_causal(model_dir)
    model.train()
    pad_id = tokenizer.pad_token_id
    items = [gen.encode_row(tokenizer, r, max_length) for r in train_rows]
    val_items = [gen.encode_row(tokenizer, r, max_length) for r in val_rows]
    train_set, collator = items, gen.Collator(pad_id)
    if packing:
        train_set, collator = gen.pack(items, max_length), gen.PackedCollator(pad_id)
        model.config.use_cache = False
    device = {"device": "cpu", "precision": precision}
    args = finetune._training_arguments(config, out, seed, False, device, 1)
    args.metric_for_best_model, args.greater_is_better = "loss", False
    args.save_total_limit = 1
    callbacks = [EarlyStoppingCallback(early_stopping_patience=patience)] if patience else []
    cls = finetune._seeded_sampler_trainer_class(Trainer, seed, True)
    trainer = cls(model=model, args=args, train_dataset=finetune._Rows(train_set),
                  eval_dataset=finetune._Rows(val_items), data_collator=collator, callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)  # measured as saved: float32
    model.config.use_cache = True
    loss = gen.token_loss(model, val_items, pad_id)
    per_epoch = [round(math.exp(min(h["eval_loss"], 50)), 2) for h in trainer.state.log_history if "eval_loss" in h]
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    real = sum(len(it["input_ids"]) for it in items) * epochs
    return {
        "seed": seed, "learning_rate": learning_rate, "epochs": epochs, "packing": packing, "precision": precision,
        "steps": trainer.state.global_step, "epochs_run": round(trainer.state.epoch or 0, 2),
        "train_s": round(train_s, 2), "tokens_per_s": round(real / train_s, 1),
        "validation_perplexity": round(math.exp(min(loss, 50)), 3), "per_epoch_validation_perplexity": per_epoch,
        "blocks" if packing else "examples": len(train_set),
    }


def _range(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def bench_generation(mode: str, seeds: int = 3, progress=None, base_model: str | None = None,
                     presets: list[str] | None = None, packing_study: bool = True,
                     precisions: list[str] | None = None, learning_rate: float | None = None) -> dict:
    """Both stages; ``mode`` full | quick (1 seed, fewer rows) | tiny (tests: a few rows, the shape only).
    ``base_model``: a causal language model folder (e.g. a copy of distilgpt2) to fine-tune in the presets stage
    instead of the tiny model pretrained in the packing stage. ``presets``: only these presets' candidates;
    ``packing_study`` False: only the one pretraining run the presets stage needs (none with ``base_model``).
    ``precisions``: fp32 and/or bf16 (bf16 autocast, as the engine trains in it), each candidate once per precision;
    ``learning_rate``: this one rate for every preset instead of its candidates."""
    import torch

    say = progress or (lambda *_: None)
    n_sentences, n_headlines = SIZES[mode]
    if mode == "tiny":
        seeds = min(seeds, 2)
        candidates = {"quick": (1, 0, [1e-3, 5e-3]), "balanced": (1, 0, [1e-3])}
    else:
        candidates = CANDIDATES
    candidates = {k: v for k, v in candidates.items() if not presets or k in presets}
    if learning_rate:
        candidates = {k: (epochs, patience, [learning_rate]) for k, (epochs, patience, _) in candidates.items()}
    precisions = list(dict.fromkeys(precisions or ["fp32"]))
    seed_list = [data.SEED + i for i in range(seeds)]
    train_sentences, dev_sentences = sentences("train", n_sentences), sentences("dev", 200 if mode != "tiny" else 16)
    news = headlines(n_headlines)
    out: dict = {"torch_threads": torch.get_num_threads(), "seeds": seed_list, "precisions": precisions, "pretrain": dict(PRETRAIN),
                 "data": {"fpb_train_sentences": len(train_sentences), "fpb_dev_sentences": len(dev_sentences),
                          "reuters_train": len(news["train"]), "reuters_validation": len(news["validation"])},
                 "packing": {"runs": []}, "presets": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        tmp = Path(tmp)
        untrained = tiny_gpt2(tmp / "untrained")
        base = None
        for seed in (seed_list if packing_study else [] if base_model else seed_list[:1]):
            for packing in (False, True) if packing_study else (True,):
                run = _train(untrained, train_sentences, dev_sentences, tmp / f"pre-{seed}-{packing}", seed,
                             packing=packing, **PRETRAIN)
                out["packing"]["runs"].append(run)
                say(f"pretrain seed {seed} packing={packing}: {run}")
                if packing and base is None:
                    base = tmp / f"pre-{seed}-{packing}" / "model"
        runs = out["packing"]["runs"]
        plain, packed = [r for r in runs if not r["packing"]], [r for r in runs if r["packing"]]
        out["packing"]["summary"] = {} if not plain else {
            side: {"steps": rs[0]["steps"], "train_s": _range([r["train_s"] for r in rs]),
                   "tokens_per_s": _range([r["tokens_per_s"] for r in rs]),
                   "validation_perplexity": _range([r["validation_perplexity"] for r in rs])}
            for side, rs in (("padded", plain), ("packed", packed))
        }
        if plain:
            out["packing"]["summary"]["speedup"] = _range([p["tokens_per_s"] / u["tokens_per_s"]
                                                           for u, p in zip(plain, packed)])
        if base_model:
            base = Path(base_model)
        out["base_model"] = str(base_model) if base_model else "the tiny GPT-2 pretrained above (packed, first seed)"
        for preset, (epochs, patience, rates) in candidates.items():
            by_arm: dict[tuple[float, str], list[dict]] = {(lr, p): [] for lr in rates for p in precisions}
            for seed in seed_list:  # seed-major: a study stopped early has every rate at the seeds it reached
                for (lr, precision), group in by_arm.items():
                    started = time.perf_counter()
                    run = _train(base, news["train"], news["validation"], tmp / f"{preset}-{lr}-{precision}-{seed}",
                                 seed, epochs=epochs, learning_rate=lr, batch_size=FINETUNE_BATCH,
                                 max_length=FINETUNE_MAX_LENGTH, patience=patience, precision=precision)
                    run["wall_s"] = round(time.perf_counter() - started, 2)
                    group.append(run)
                    say(f"{preset} lr {lr} {precision} seed {seed}: {run}")
            groups = []
            for (lr, precision), group in by_arm.items():
                groups.append({"learning_rate": lr, "precision": precision, "epochs": epochs,
                               "early_stopping_patience": patience,
                               "validation_perplexity": _range([r["validation_perplexity"] for r in group]),
                               "train_s": _range([r["train_s"] for r in group]),
                               "wall_s": _range([r["wall_s"] for r in group]), "runs": group})
            best = min(groups, key=lambda g: (g["validation_perplexity"]["mean"], g["wall_s"]["mean"]))
            out["presets"][preset] = {"candidates": groups, "chosen_learning_rate": best["learning_rate"]}
        out["base_validation_perplexity"] = _base_perplexity(base, news["validation"])
    return out


def _base_perplexity(model_dir: Path, rows: list[dict]) -> float:
    from engine.models import generate
    from engine.training import generation as gen

    tokenizer, model = generate.load_causal(model_dir)
    items = [gen.encode_row(tokenizer, r, FINETUNE_MAX_LENGTH) for r in rows]
    return round(math.exp(min(gen.token_loss(model, items, tokenizer.pad_token_id), 50)), 3)


def render(result: dict) -> str:
    p = result["packing"]["summary"]
    lines = [] if not p else [f"Packing: tiny GPT-2 from scratch on {result['data']['fpb_train_sentences']} fpb sentences (plain text), "
             f"1 epoch, lr {result['pretrain']['learning_rate']}, batch {result['pretrain']['batch_size']}, max length "
             f"{result['pretrain']['max_length']}, seeds {result['seeds']}", "",
             "| batches | steps | train s (min-max) | real tokens/s (min-max) | fpb dev perplexity (min-max) |",
             "|---|---|---|---|---|"]
    for side in ("padded", "packed") if p else ():
        s = p[side]
        lines.append(f"| {side} | {s['steps']} | {s['train_s']['min']}-{s['train_s']['max']} | "
                     f"{s['tokens_per_s']['min']:,}-{s['tokens_per_s']['max']:,} | "
                     f"{s['validation_perplexity']['min']}-{s['validation_perplexity']['max']} |")
    if p:
        lines += ["", f"packed/padded tokens/s: {p['speedup']['min']}-{p['speedup']['max']} (mean {p['speedup']['mean']})", ""]
    lines += [f"Presets: fine-tuning that model on Reuters description -> headline ({result['data']['reuters_train']} "
              f"train, {result['data']['reuters_validation']} validation rows; base model's validation perplexity "
              f"{result['base_validation_perplexity']}; base: {result.get('base_model')}), batch {FINETUNE_BATCH}, max length {FINETUNE_MAX_LENGTH}", "",
              "| preset | epochs | learning rate | precision | validation perplexity mean (min-max) | train s mean (min-max) "
              "| wall s mean (min-max) | chosen |",
              "|---|---|---|---|---|---|---|---|"]
    for preset, g in result["presets"].items():
        for c in g["candidates"]:
            v, w = c["validation_perplexity"], c["wall_s"]
            t = c.get("train_s") or {"mean": "", "min": "", "max": ""}  # results recorded before it was kept
            lines.append(f"| {preset} | {c['epochs']}{' (early stop ' + str(c['early_stopping_patience']) + ')' if c['early_stopping_patience'] else ''} "
                         f"| {c['learning_rate']:g} | {c.get('precision', 'fp32')} | {v['mean']} ({v['min']}-{v['max']}) "
                         f"| {t['mean']} ({t['min']}-{t['max']}) | {w['mean']} ({w['min']}-{w['max']}) "
                         f"| {'yes' if c['learning_rate'] == g['chosen_learning_rate'] else ''} |")
    return "\n".join(lines)
