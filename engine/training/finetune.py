"""Fine-tuning: configuration (presets, advanced options, validation) and the ``train`` job runner.

:func:`submit` checks everything an analyst chose (dataset, base model, options) and queues a run; nothing is queued
when anything is wrong (:class:`ConfigError` names the fields). :func:`run` is the job runner (``RUNNERS['train']``):
it runs in the job's own process, on CUDA (bf16 where supported, else fp16) or the CPU (bf16 autocast where the
processor computes it, else fp32: engine.models.precision), under torchrun with
several GPUs (or with ``BELLWETHER_DDP_CPU_PROCS=2``: two gloo processes on the CPU, for tests).

Output in ``runs/<id>/``: ``checkpoints/`` (one each epoch, and one on cancel), ``model/`` (the best checkpoint by
validation macro-F1: weights, tokenizer, ``config.id2label``, ``bellwether.json`` with metrics and the dataset
version), and ``predictions`` rows for the test split keyed by the dataset's ``row_id``. A model soup (``soup`` > 1,
Thorough) trains its runs one after another and saves their average as ``model/``; ``members/`` keeps each run's
figures (and, until the model is saved, its weights: engine/training/soup.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine import access, db, paths, settings
from engine.text import clean_name
from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import process
from engine.models import catalog
from engine.models import labels as label_words
from engine.models import pooling as pooling_head
from engine.models import precision as precisions
from engine.models.pooling import CHOICES as pooling_choices
from engine.errors import UserError
from engine.i18n import N_, _
from engine.data import datasets
from engine.data.wording import english
from engine.data import language as languages
from engine.jobs import runs
from engine.training import levers
from engine.training import soup
from engine.training import verdict

TASKS = ("text-classification", "token-classification", "generation")

# Chosen by measurement on Financial PhraseBank with the default model (docs/benchmarks.md, "The preset search"):
# a 22M-parameter MiniLM learns slowly at BERT-base rates, so the presets use higher learning rates with warm-up, and
# length-grouped batches (DEFAULTS) halve the padding.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 1, "learning_rate": 1e-4, "batch_size": 16, "max_length": 128},
    # Balanced: the weights averaged over the second epoch. Over 5 seeds on fpb it raised the lowest seed on both held-out
    # sets (dev.csv 0.807 -> 0.816, test split 0.776 -> 0.784); layer-wise LR decay with it did better on dev.csv but
    # worse on the test split, so it was not kept (docs/benchmarks.md, "Levers"). R-Drop (alpha 1) on top raised the
    # lowest seed on both again (dev.csv 0.816 -> 0.818, test split 0.784 -> 0.805) and narrowed the spread (0.025 ->
    # 0.015, 0.029 -> 0.012) for 1.7x the training time (about 3.3 minutes a run). A longer warm-up (20% of the steps,
    # not 10%) then raised the lowest seed on both again (dev.csv 0.818 -> 0.823, test split 0.805 -> 0.810).
    "balanced": {"epochs": 2, "learning_rate": 1e-4, "batch_size": 16, "max_length": 128, "average_last": 0.5,
                 "r_drop": 1.0, "warmup_ratio": 0.2},
    # Thorough: a model soup of three Balanced runs (seeds seed, seed + 1000, seed + 2000), their weights averaged into
    # one model (engine/training/soup.py). It replaced 3 epochs at 1e-4 with averaging and early stopping (dev.csv mean
    # 0.816, 0.801-0.830; test split 0.823), no better than one Balanced run in the same two minutes. Soups of three
    # Balanced runs over two sets of 5 seeds lifted the lowest draw (dev.csv 0.817-0.830 against single runs' 0.809-
    # 0.823); the seed study of this preset as shipped is in docs/benchmarks.md ("Thorough as a model soup"). FinBERT's
    # 0.84 is out of reach of this 22M model by every lever tried (task-adaptive pretraining, multi-sample dropout,
    # label smoothing, 5 epochs, prediction ensembles of up to 5 runs: 0.805-0.822).
    "thorough": {"epochs": 2, "learning_rate": 1e-4, "batch_size": 16, "max_length": 128, "average_last": 0.5,
                 "r_drop": 1.0, "warmup_ratio": 0.2, "soup": 3},
}
# Per-task preset settings laid over PRESETS (the analyst's own overrides still win). Generation (causal LM, runner in
# engine/training/generation.py): the learning rates usual for full fine-tuning of pretrained causal LMs. A seed study
# here (`python -m bench generation`, docs/benchmarks.md "Generation presets") found 1e-3 best for a 2-layer, 64-wide
# GPT-2 pretrained from scratch on this machine, but that does not carry over to a real pretrained model (they want
# lower rates, and 1e-3 full fine-tuning can wreck one), and no pretrained causal LM can be installed here to measure:
# these stay the common values until `python -m bench generation --model DIR` is run on a real model folder. Epochs: 1,
# 3 and up to 5 with early stopping (on the tiny model, perplexity still fell at the last of 3 epochs).
TASK_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Entity tagging: entities are a few tokens in many, and one epoch (58 steps on FIN5's 912 training sentences) left
    # the tagger answering 'O' on 2 seeds in 4 (entity F1 0). Over 5 seeds on FIN5 (docs/benchmarks.md): Quick (3 epochs)
    # entity F1 0.718-0.740, Balanced (up to 5) 0.745-0.790, Thorough (up to 8; early stopping never fired) 0.814-0.840.
    # Torch's own dropout masks: with the cheaper ones (engine/training/dropout.py) Quick's entity F1 came out lower on 8
    # seeds of 10 (mean 0.717 against 0.724; docs/benchmarks.md, "Cheaper dropout masks"), so tagging keeps torch's.
    # Its word embeddings train: frozen, Quick's entity F1 was lower or the same on 5 seeds of 5, and no faster.
    "token-classification": {
        "quick": {"epochs": 3, "fast_dropout": False, "freeze_embeddings": False},
        # measured without R-Drop, with the usual 10% warm-up
        "balanced": {"epochs": 5, "early_stopping_patience": 2, "r_drop": 0.0, "warmup_ratio": 0.1,
                     "fast_dropout": False, "freeze_embeddings": False},
        # Thorough's own rate (1e-4) and averaging, one run (soups were measured for text classification only)
        "thorough": {"epochs": 8, "early_stopping_patience": 3, "r_drop": 0.0, "warmup_ratio": 0.1, "soup": 1,
                     "fast_dropout": False, "freeze_embeddings": False},
    },
    # the generation runner trains with torch's dropout (the cheaper masks are the classifier runner's): its runs say so
    "generation": {
        "quick": {"epochs": 1, "learning_rate": 5e-5, "batch_size": 8, "max_length": 256, "fast_dropout": False,
                  "freeze_embeddings": False},
        "balanced": {"epochs": 3, "learning_rate": 5e-5, "batch_size": 8, "max_length": 256, "r_drop": 0.0,
                     "warmup_ratio": 0.1, "fast_dropout": False, "freeze_embeddings": False},
        "thorough": {"epochs": 5, "learning_rate": 3e-5, "batch_size": 8, "max_length": 256, "fast_dropout": False,
                     "freeze_embeddings": False, "early_stopping_patience": 2, "r_drop": 0.0, "warmup_ratio": 0.1,
                     "soup": 1},
    },
}
PRESET_TEXT = {
    "quick": N_("A first look: one pass over the data."),
    "balanced": N_("Good results for most datasets, steady from run to run: two passes, each batch read twice so "
                   "that the model answers alike (R-Drop), the weights of the second pass averaged."),
    "thorough": N_("The steadiest: Balanced trained three times from different seeds, the three models' weights "
                   "averaged into one (a model soup). Three times Balanced's time."),
}
TASK_PRESET_TEXT = {
    "token-classification": {
        "quick": N_("A first look: three passes over the data (fewer leave a tagger that marks no entity)."),
        "balanced": N_("Good results for most datasets: up to five passes, the weights of the later ones averaged; "
                       "stops early when validation stops improving."),
        "thorough": N_("Up to eight passes, the weights of the later ones averaged; keeps the best and stops early when "
                       "validation stops improving."),
    },
    "generation": {
        "quick": N_("A first look: one pass over the data."),
        "balanced": N_("Good results for most datasets: three passes."),
        "thorough": N_("Up to five passes; keeps the best and stops early when validation stops improving."),
    },
}


def preset_text(preset: str, task: str | None = None) -> str:
    """The one-line description of a preset for ``task`` (the Train page's cards), in the reader's language."""
    return _(TASK_PRESET_TEXT.get(task or "", {}).get(preset) or PRESET_TEXT[preset])


DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "learning_rate": 3e-5,
    "batch_size": 16,
    "max_length": 128,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "gradient_accumulation": 1,
    "seed": 42,
    "full_determinism": False,  # transformers' enable_full_determinism: deterministic GPU kernels (slower)
    "eval_steps": 0,  # 0: evaluate at the end of each epoch
    "early_stopping_patience": 0,  # 0: off
    "class_weighting": False,
    "group_by_length": True,  # batches of similar lengths: about half the padding of random batches
    "packing": False,
    # text classification: what the classifier reads (engine/models/pooling.py). 'auto': the mean of the tokens for a
    # sentence-transformers encoder such as the default model, [CLS] otherwise. Over 5 seeds on fpb (docs/benchmarks.md)
    # it lifted Quick from 0.577-0.800 dev macro-F1 to 0.802-0.833 and left Balanced as it was (0.807-0.841).
    "pooling": "auto",
    # Levers of the seed study (engine/training/levers.py; docs/benchmarks.md says what each did over 5 seeds).
    "layer_decay": 1.0,  # each encoder layer learns at this times the rate of the one above (1: off)
    "average_last": 0.0,  # weights averaged over this share of the last steps, kept if better on validation (0: off)
    "label_smoothing": 0.0,  # share of each label's target spread over the other labels (0: off)
    "r_drop": 0.0,  # R-Drop's alpha: each batch twice, KL between the two dropout draws (0: off; 1.7x the training time)
    # generation only: whole examples end to end in max-length blocks (engine/training/generation.py)
    "lora": False,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "lora_target_modules": "",  # empty: peft's default for the model type
    "precision": "auto",  # auto: engine.models.precision (bf16 on a GPU, else fp16; bf16 on a CPU that has it)
    # on the CPU, dropout masks from 16 random bits an element instead of torch's one draw (engine/training/dropout.py):
    # the same dropout, faster; runs from before it (no such key) are re-run without it, for the same draws
    "fast_dropout": True,
    # text classification: the word-embedding table (half of the default model's 22M weights) is not trained, so each
    # step skips its gradient and optimizer update (bf16 steps 1.38x as fast; over 5 seeds on fpb every preset scored
    # the same: docs/benchmarks.md, "Frozen word embeddings"); runs from before it (no such key) are re-run with it
    # trained, as they were (engine/training/reproduce.py)
    "freeze_embeddings": True,
    # classification: train the settings this many times from seeds seed, seed + 1000, ... and average the weights
    # into one model (engine/training/soup.py; 1: off). Thorough's: three Balanced runs (docs/benchmarks.md)
    "soup": 1,
}
PRECISIONS = ("auto", "fp32", "bf16")
FIELD_LABELS = {
    "epochs": "Epochs",
    "learning_rate": "Learning rate",
    "batch_size": "Batch size",
    "max_length": "Max length",
    "warmup_ratio": "Warm-up ratio",
    "weight_decay": "Weight decay",
    "gradient_accumulation": "Gradient accumulation",
    "seed": "Seed",
    "full_determinism": "Full determinism",
    "eval_steps": "Evaluate every N steps",
    "early_stopping_patience": "Early-stopping patience",
    "lora_r": "LoRA r",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "lora_target_modules": "LoRA target modules",
    "precision": "Precision",
    "layer_decay": "Layer-wise learning-rate decay",
    "average_last": "Weight averaging",
    "label_smoothing": "Label smoothing",
    "r_drop": "R-Drop",
    "packing": "Packing",
    "fast_dropout": "Cheaper dropout masks (CPU)",
    "freeze_embeddings": "Freeze word embeddings",
    "soup": "Model soup",
    "dataset": "Dataset",
    "base_model": "Base model",
    "task": "Task",
    "preset": "Preset",
    "purpose": "Purpose",
}

# Fallback speeds (training samples per second at max length 128) before anything was measured on this machine.
DEFAULT_SPEED = {"cpu": 10.0, "cuda": 600.0}  # samples/s at max length 128 when nothing is known of the model
# The default model (all-MiniLM-L6-v2) trains at about 40 samples/s on 2 CPU cores with length-grouped batches
# (docs/benchmarks.md); other models are guessed from their size relative to it until a run has been measured here.
ANCHOR_SPEED = {"cpu": 40.0, "cuda": 600.0}  # the GPU figure is a guess: never measured here
ANCHOR_WORK = 6 * (4 * 384**2 + 2 * 384 * 1536)  # encoder weights per token of the default model (6 layers, 384 wide)


class ConfigError(UserError):
    """Invalid choices; ``errors`` maps each field to its reason (the Train page shows each next to its field)."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__(" ".join(f"{FIELD_LABELS.get(k, k)}: {v}" for k, v in self.errors.items()))


class DuplicateRun(UserError):
    """A queued or running run already trains the same dataset version with the same base model and settings;
    ``run_ids`` names them. Queue another only when asked to again (``submit(..., again=True)``)."""

    def __init__(self, run_ids: list[int], dataset: str):
        self.run_ids = list(run_ids)
        which = ", ".join(f"#{i}" for i in self.run_ids)
        super().__init__(
            f"Run {which} already trains {dataset} with the same base model and settings, and has not finished. "
            "Training it again gives the same model; confirm to queue another anyway (on the command line, add "
            "--again), or change a setting."
        )


def same_runs_active(conn, dataset_id: int, base_model: str, config: dict) -> list[int]:
    """Queued or running training runs of ``dataset_id`` with the same base model and settings as ``config``."""
    def key(c: dict) -> dict:
        return {k: v for k, v in c.items() if k != "rerun_of"}

    found = []
    for row in conn.query("SELECT id, base_model, config_json FROM jobs WHERE kind = 'train' AND dataset_id = ? "
                          "AND status IN ('queued', 'running') ORDER BY id", [int(dataset_id)]):
        if row["base_model"] == base_model and key(db.loads(row["config_json"], {}) or {}) == key(config):
            found.append(int(row["id"]))
    return found


# --------------------------------------------------------------------------------------------------------------
# Configuration


def _number(errors, config, key, kind, low, high, low_open=False, what=""):
    value = config.get(key)
    what = _(what) if what else ""  # a hint after the number, such as " (0: off)"
    except_words = dict(what=what, low=f"{low:g}", high=f"{high:g}")
    try:
        if isinstance(value, bool):
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
    except (TypeError, ValueError):
        errors[key] = (_("must be a whole number{what}.", what=what) if kind is int
                       else _("must be a number{what}.", what=what))
        return
    if (value <= low if low_open else value < low) or value > high:
        errors[key] = (_("must be above {low} and at most {high}{what}; got {value}.", value=f"{value:g}", **except_words)
                       if low_open else
                       _("must be at least {low} and at most {high}{what}; got {value}.", value=f"{value:g}",
                         **except_words))
        return
    config[key] = value


def build_config(preset: str | None = "balanced", overrides: dict | None = None, max_length_limit: int | None = None) -> dict:
    """The full configuration for a preset plus overrides, validated. Raises ConfigError naming each bad field."""
    preset = (preset or "balanced").strip().lower()
    if preset not in PRESETS:
        raise ConfigError({"preset": _("must be one of {choices}; got {value}.", choices=", ".join(PRESETS),
                                       value=repr(preset))})
    config = {**DEFAULTS, **PRESETS[preset]}
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise ConfigError({k: _("is not an option Bellwether knows.") for k in sorted(unknown)})
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config["preset"] = preset
    errors: dict[str, str] = {}
    _number(errors, config, "epochs", float, 0, 100, low_open=True)
    _number(errors, config, "learning_rate", float, 0, 1, low_open=True, what=N_(" (typical: 0.00002 to 0.0001)"))
    _number(errors, config, "batch_size", int, 1, 1024)
    _number(errors, config, "max_length", int, 8, 8192, what=N_(" tokens"))
    _number(errors, config, "warmup_ratio", float, 0, 0.99)
    _number(errors, config, "weight_decay", float, 0, 1)
    _number(errors, config, "gradient_accumulation", int, 1, 256)
    _number(errors, config, "seed", int, 0, 2**31 - 1)
    _number(errors, config, "eval_steps", int, 0, 10**7, what=N_(" (0: once per epoch)"))
    _number(errors, config, "early_stopping_patience", int, 0, 100, what=N_(" (0: off)"))
    _number(errors, config, "layer_decay", float, 0, 1, low_open=True, what=N_(" (1: off)"))
    _number(errors, config, "average_last", float, 0, 0.9, what=N_(" (0: off)"))
    _number(errors, config, "label_smoothing", float, 0, 0.5, what=N_(" (0: off)"))
    _number(errors, config, "r_drop", float, 0, 10, what=N_(" (0: off)"))
    _number(errors, config, "soup", int, 1, soup.MAX_RUNS, what=N_(" runs (1: off)"))
    _number(errors, config, "lora_r", int, 1, 1024)
    _number(errors, config, "lora_alpha", float, 0, 10000, low_open=True)
    _number(errors, config, "lora_dropout", float, 0, 0.9)
    for key in ("class_weighting", "group_by_length", "lora", "full_determinism", "packing", "fast_dropout",
                "freeze_embeddings"):
        value = config.get(key)
        if isinstance(value, str):
            value = value.strip().lower() in {"1", "true", "yes", "on"}
        config[key] = bool(value)
    modules = config.get("lora_target_modules") or ""
    if isinstance(modules, (list, tuple)):
        modules = ",".join(str(m) for m in modules)
    modules = ",".join(m.strip() for m in str(modules).split(",") if m.strip())
    if modules and not all(m.replace("_", "").replace(".", "").isalnum() for m in modules.split(",")):
        errors["lora_target_modules"] = _("must be module names separated by commas, such as 'query,value'.")
    config["lora_target_modules"] = modules
    precision = str(config.get("precision") or "auto").strip().lower()
    if precision not in PRECISIONS:
        errors["precision"] = _("must be one of {choices}; got {value}.", choices=", ".join(PRECISIONS),
                                value=repr(config.get("precision")))
    config["precision"] = precision
    pooling = str(config.get("pooling") or "auto").strip().lower()
    if pooling not in pooling_choices:
        errors["pooling"] = _("must be one of {choices}; got {value}.", choices=", ".join(pooling_choices),
                              value=repr(config.get("pooling")))
    config["pooling"] = pooling
    if config.get("lora") and soup.runs(config) > 1 and "soup" not in errors:
        errors["soup"] = _("cannot be combined with LoRA: set it to 1, or turn LoRA off.")
    if errors:
        raise ConfigError(errors)
    if max_length_limit and config["max_length"] > max_length_limit:
        config["max_length_requested"] = config["max_length"]
        config["max_length"] = int(max_length_limit)
    return config


def preset_config(preset: str | None, task: str | None = None, overrides: dict | None = None) -> dict:
    """A preset's full configuration for ``task`` (its TASK_PRESETS laid over PRESETS, as ``submit`` lays them), plus
    ``overrides``: what the Train page's preset cards and Advanced fields show."""
    key = (preset or "balanced").strip().lower()
    laid = {**TASK_PRESETS.get(task or "", {}).get(key, {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return build_config(preset, laid)


def _dataset_get(conn, spec: str) -> dict:
    return datasets.get(conn, spec)


def _dataset_rows(conn, dataset_id: int, split: str | None) -> list[dict]:
    return datasets.rows(conn, dataset_id, split)


def dataset_choices(conn) -> list[dict]:
    """Saved dataset versions that can be trained on, newest first within each name."""
    return datasets.list_datasets(conn)


def split_counts(conn, dataset_id: int) -> dict[str, int]:
    return {
        r["split"]: r["n"]
        for r in conn.query("SELECT split, COUNT(*) AS n FROM dataset_rows WHERE dataset_id = ? GROUP BY split", [dataset_id])
    }


def measured_speed(conn, base_model: str, slot: str) -> float | None:
    """Median training samples/s of the last finished runs of ``base_model`` on this machine, as at max length 128
    without R-Drop (overview.train_speeds: the same figures the queue's ETAs use)."""
    speeds = sorted(overview.train_speeds(conn, base_model, slot))
    return speeds[len(speeds) // 2] if speeds else None


def guessed_speed(base_model: str, slot: str) -> float:
    """Samples/s at max length 128 before any run of ``base_model`` has been measured on this machine: the default
    model's measured speed scaled by the encoder's size (layers x width), or a cautious constant when the model's
    config cannot be read here (a hub name)."""
    fallback = DEFAULT_SPEED.get(slot, DEFAULT_SPEED["cpu"])
    spec = (base_model or catalog.DEFAULT).strip()
    folder = catalog.default_model_path() if spec == catalog.DEFAULT else Path(spec).expanduser()
    try:
        layers, hidden, inner = catalog.encoder_shape(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return fallback
    work = layers * (4 * hidden**2 + 2 * hidden * inner)
    if work <= 0:
        return fallback
    return ANCHOR_SPEED.get(slot, ANCHOR_SPEED["cpu"]) * ANCHOR_WORK / work


def base_speed(conn, base_model: str = "default", slot: str | None = None) -> float:
    """Training samples/s at max length 128 for ``base_model`` here: measured by earlier runs, else guessed."""
    slot = slot or queue.default_slot()
    return measured_speed(conn, base_model, slot) or guessed_speed(base_model, slot)


def estimate_seconds(conn, n_train: int, config: dict, base_model: str = "default", slot: str | None = None,
                     speed: float | None = None, task: str = "text-classification") -> float:
    """Seconds to train ``n_train`` rows of a ``task`` dataset with ``config``; ``speed`` (from base_speed) saves
    looking it up again."""
    slot = slot or queue.default_slot()
    speed = speed or base_speed(conn, base_model, slot)
    speed = speed * 128 / max(16, int(config.get("max_length", 128)))
    speed *= overview.precision_speedup(slot, config.get("precision"), task)  # bf16 on a CPU that computes it
    speed *= overview.frozen_gain(config, task)  # a classifier's word embeddings left untrained
    if config.get("lora"):
        speed *= 1.3
    speed /= overview.r_drop_cost(config)  # R-Drop: every batch goes through the model twice
    runs = overview.soup_runs(config)  # a model soup trains its runs one after another, each loading the model
    return runs * (n_train * float(config.get("epochs", 1)) / max(speed, 0.01) + 15.0)  # + loading, predictions


def estimate_range(conn, n_train: int, config: dict, base_model: str = "default", slot: str | None = None,
                   speed: float | None = None, task: str = "text-classification") -> tuple[float, float]:
    """(low, high) seconds to train, around :func:`estimate_seconds`: the spread of the speeds the last finished runs of
    this base model measured here (a busy machine was slower), or a wide range before any was measured."""
    middle = estimate_seconds(conn, n_train, config, base_model, slot, speed, task)
    measured = overview.train_speeds(conn, base_model, slot or queue.default_slot())
    if len(measured) >= 2:
        typical = sorted(measured)[len(measured) // 2]
        low, high = typical / max(measured), typical / (min(measured) * 0.85)
    elif measured:
        low, high = overview.RANGE[1]
    else:
        low, high = overview.RANGE[0]
    return middle * low, middle * high


def language_warning(conn, dataset: str, base_model: str | None = "default") -> str | None:
    """A plain warning when the dataset's main language is one the base model was not trained on, or else when the
    base model's vocabulary has no token for many of its words (engine.models.coverage: any base model whose tokenizer
    is on this machine); None when neither. One message, never both. The Train page shows it before Train; ``train``
    prints it."""
    try:
        ds = datasets.get(conn, dataset)
    except UserError:
        return None
    if warning := languages.model_warning(base_model, runs.dataset_language(conn, ds["id"])):
        return warning
    return languages.vocabulary_warning(base_model, datasets.sample_texts(conn, ds["id"]))


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"about {max(seconds, 5)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def submit(
    conn,
    dataset: str,
    task: str | None = None,
    base_model: str | None = "default",
    preset: str | None = "balanced",
    overrides: dict | None = None,
    created_by: str | None = None,
    name: str | None = None,
    rerun_of: int | None = None,
    allow_list: bool = False,
    actor=None,
    purpose: str | None = None,
    again: bool = False,
    corrects: int | None = None,
) -> int:
    """Check the choices and queue a training run; returns its id. Nothing is queued when anything is wrong.

    ``purpose``: what the model is for, 'sentiment', 'topics' or 'other' (None: guessed from the dataset's labels);
    only a run trained for topics may tag a feed's topics. A run with the same dataset version, base model and
    settings as a queued or running one raises :class:`DuplicateRun` unless ``again`` (or it is a ``rerun_of``).

    ``allow_list``: only base models an administrator allowed (the dashboard; the CLI runs as the operator).
    ``rerun_of``: the run this one repeats (:func:`engine.training.reproduce.rerun`), kept in its config.
    ``corrects``: the run this one retrains on a corrected dataset version (engine.review), kept in its config.
    ``actor`` (engine.access) must be an analyst or admin (None: the local administrator); ``created_by`` defaults to
    the actor's name."""
    who = access.check(conn, actor, "train.submit", f"dataset:{dataset}")
    created_by = created_by or who.name
    errors: dict[str, str] = {}
    ds = None
    try:
        ds = _dataset_get(conn, dataset)
    except UserError as exc:
        errors["dataset"] = str(exc)
    if ds is not None:
        if task and task not in TASKS:
            errors["task"] = _("must be one of {choices}.", choices=", ".join(TASKS))
        elif task and task != ds["task"]:
            errors["task"] = _("the dataset {name} is for {dataset_task}, not {task}.", name=ds["name"],
                               dataset_task=ds["task"], task=task)
        counts = split_counts(conn, ds["id"])
        labels = db.loads(ds.get("labels_json"), []) or []
        if counts.get("train", 0) < 2:
            errors["dataset"] = _("the dataset {name} has fewer than 2 training rows; add more data.", name=ds["name"])
        elif ds["task"] == "text-classification" and len(labels) < 2:
            errors["dataset"] = _("the dataset {name} has only one label; a classifier needs at least two.",
                                  name=ds["name"])
    base = None
    try:
        base = catalog.resolve(base_model, allow_list=allow_list)
    except UserError as exc:
        errors["base_model"] = str(exc)
    if base is not None and ds is not None and ds["task"] == "generation" and not catalog.is_causal_lm(base.source):
        errors["base_model"] = _("{spec} is not a model that generates text. Choose a causal language model such "
                                 "as gpt2, distilgpt2 or SmolLM2 (a local folder or hub id).", spec=base.spec)
    if ds is not None and ds["task"] == "generation" and soup.runs(overrides) > 1:
        errors["soup"] = _("is for classification and entity tagging; a generation run trains one model.")
    if ds is not None and ds["task"] != "generation" and (overrides or {}).get("packing"):
        errors["packing"] = _("is for generation datasets only (a classifier sees one example at a time).")
    if ds is not None and ds["task"] in TASK_PRESETS:
        task_preset = TASK_PRESETS[ds["task"]].get((preset or "balanced").strip().lower(), {})
        overrides = {**task_preset, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        config = build_config(preset, overrides, base.max_length if base else None)
    except ConfigError as exc:
        errors.update(exc.errors)
    chosen = None
    try:
        chosen = label_words.check_purpose(purpose)
    except UserError as exc:
        errors["purpose"] = str(exc)
    if ds is not None and chosen not in (None, label_words.OTHER) and ds["task"] != "text-classification":
        errors["purpose"] = _("a {task} model cannot be used for {purpose}; only a text classifier can. "
                              "Choose 'other'.", task=ds["task"], purpose=chosen)
    if errors:
        raise ConfigError(errors)
    if ds["task"] == "generation":  # its runner uses neither (a causal model's word table is its output layer too)
        config["fast_dropout"] = config["freeze_embeddings"] = False
    run_purpose = chosen or label_words.guess_purpose(db.loads(ds.get("labels_json"), []) or [], ds["task"])
    config["base_model_source"] = base.source
    config["dataset"] = f"{ds['name']}:{ds['version']}"
    if found := runs.dataset_language(conn, ds["id"]):
        config["language"] = found
    if rerun_of is not None:
        config["rerun_of"] = int(rerun_of)
    if corrects is not None:
        config["corrects"] = int(corrects)
    with db.transaction(conn):
        if not again and rerun_of is None:
            same = same_runs_active(conn, ds["id"], base.spec, config)
            if same:
                raise DuplicateRun(same, config["dataset"])
        job_id = queue.enqueue(
            conn,
            "train",
            task=ds["task"],
            dataset_id=ds["id"],
            base_model=base.spec,
            config=config,
            name=clean_name(name or f"{ds['name']} v{ds['version']} · {config['preset']}"),
            created_by=created_by,
            purpose=run_purpose,
        )
        access.record(conn, who, "train.submit", f"job:{job_id}",
                      {"dataset": config["dataset"], "base_model": base.spec, "rerun_of": rerun_of,
                       "purpose": run_purpose, "corrects": corrects})
    return job_id


# --------------------------------------------------------------------------------------------------------------
# The job runner


def ddp_plan() -> tuple[int, str]:
    """How many processes to run and on what: (1, ..) means a single process."""
    cpu_procs = settings.ddp_cpu_procs()
    if cpu_procs > 1:
        return cpu_procs, "cpu"
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return torch.cuda.device_count(), "cuda"
    return 1, "cuda" if torch.cuda.is_available() else "cpu"


GPU_NOTE = ("GPU kernels may not give bit-for-bit the same results on a re-run with the same seed; turn on full "
            "determinism (Advanced options) for identical re-runs, at some cost in speed.")


def environment_info(full_determinism: bool = False) -> dict:
    """What a re-run must match to give the same model: library versions, Python, torch's CPU threads and whether
    deterministic algorithms were asked for (recorded with the device in ``jobs.device_json``)."""
    import platform

    import torch
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:  # pragma: no cover - peft is a requirement
        peft_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
        "torch_threads": torch.get_num_threads(),
        "full_determinism": bool(full_determinism),
    }


def training_precision(kind: str, asked: str = "auto", task: str | None = "text-classification") -> str:
    """The precision a run of ``task`` trains in (auto | fp32 | bf16 asked, on a 'cuda' or 'cpu' device): the one
    policy in engine.models.precision, which the Train page's estimates and the queue's ETAs read too."""
    return precisions.training_precision(kind, asked, task)


OOM_MESSAGE = N_("The model ran out of memory while training. Lower the batch size (and raise gradient accumulation "
                 "to keep the effective batch), lower the max length, or turn on LoRA.")  # stored; shown with _()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of memory: CUDA's OutOfMemoryError, Python's MemoryError, or a RuntimeError
    that says so (other accelerators and allocators word it that way)."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextmanager
def plain_out_of_memory() -> Iterator[None]:
    """Turn running out of memory (in training, evaluation or generation) into the run's plain failure message,
    :data:`OOM_MESSAGE`, saying what to lower. Shared by the classification and generation runners."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only memory failures are translated; the rest go on up
        if not is_out_of_memory(exc):
            raise
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing memory is a courtesy; the message is what matters
            pass
        raise UserError(OOM_MESSAGE) from None


def run_device(config: dict, world_size: int = 1, kind: str | None = None, task: str = "text-classification") -> dict:
    """The device record a run of ``task`` trains on (``device_info``) from its settings: CUDA when torch sees a GPU,
    else the CPU, and the precision :func:`training_precision` picks for it. The classification and generation
    runners both call this."""
    import torch

    if kind is None:
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return device_info(world_size, kind, bool(config.get("full_determinism")), config.get("precision", "auto"), task)


def device_info(world_size: int, kind: str, full_determinism: bool = False, precision: str = "auto",
                task: str = "text-classification") -> dict:
    import torch

    if kind == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info = {
            "device": "cuda",
            "precision": training_precision(kind, precision, task),
            "gpu_name": props.name,
            "gpu_memory_gb": round(props.total_memory / 1024**3, 1),
            "gpu_count": torch.cuda.device_count(),
            "world_size": world_size,
            "cuda": torch.version.cuda,
        }
        if not full_determinism:
            info["reproducibility_note"] = GPU_NOTE
    else:
        info = {"device": "cpu", "precision": training_precision(kind, precision, task), "world_size": world_size,
                "cpu_threads": torch.get_num_threads()}
    info["environment"] = environment_info(full_determinism)
    return info


def seed_everything(seed: int, full_determinism: bool = False) -> None:
    """Python's, NumPy's and torch's generators from ``seed`` (transformers' own helpers); with ``full_determinism``
    also deterministic kernels (cuDNN, cuBLAS workspace), which GPUs otherwise do not promise."""
    from transformers import enable_full_determinism, set_seed

    if full_determinism:
        enable_full_determinism(int(seed), warn_only=True)  # an op without a deterministic kernel warns, not crashes
    else:
        set_seed(int(seed))


def load_model(source: str, task: str, labels: list[str], seed: int, full_determinism: bool = False,
               pooling: str | None = "cls"):
    """The tokenizer and the base model with a new head for ``labels``; the head's initial weights come from ``seed``
    alone (the generators are seeded right before the model is built, whatever was drawn before)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))
    auto = AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model_config = AutoConfig.from_pretrained(source, trust_remote_code=False, num_labels=len(labels),
                                              id2label=id2label, label2id=label2id)
    seed_everything(seed, full_determinism)
    model = auto.from_pretrained(source, config=model_config, trust_remote_code=False, ignore_mismatched_sizes=True)
    return tokenizer, pooling_head.apply(model, pooling_head.choose(pooling, source, task))


def run(conn, job: dict, ctx) -> dict:
    """The ``train`` runner: single process here, or torchrun workers when data parallel applies."""
    world_size, kind = ddp_plan()
    config = job.get("config") or {}
    if world_size > 1 and not os.environ.get("LOCAL_RANK"):
        return _run_torchrun(conn, job, ctx, world_size, kind)
    ctx.set_device(run_device(config, 1, kind, job.get("task") or "text-classification"))
    with plain_out_of_memory():
        return train(conn, job, ctx)


def _run_torchrun(conn, job, ctx, world_size: int, kind: str) -> dict:
    config = job.get("config") or {}
    ctx.set_device(device_info(world_size, kind, bool(config.get("full_determinism")), config.get("precision", "auto"),
                               job.get("task") or "text-classification"))
    result_path = ctx.job_dir / "ddp_result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}",
           "-m", "engine", "_ddp", str(job["id"])]
    ctx.log.info("data parallel: %s processes on %s (torchrun)", world_size, kind)
    env = {**settings.without_secrets(), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log_file = open(ctx.job_dir / "log.txt", "ab")  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                cwd=str(Path(__file__).resolve().parents[2]))
        code = proc.wait()
    finally:
        log_file.close()
    if code != 0 or not result_path.is_file():
        raise RuntimeError(f"the data-parallel workers exited with status {code}")
    result = json.loads(result_path.read_text())
    if result.get("cancelled"):
        raise process.Cancelled()
    if result.get("user_error"):
        raise UserError(result["user_error"])
    ctx.update(model_dir=result["model_dir"])
    return result["metrics"]


def ddp_worker(job_id: int) -> int:
    """One torchrun worker (``python -m engine _ddp ID``); rank 0 writes progress and the outputs."""
    conn = db.connect()
    job = queue.get(conn, job_id)
    rank = int(os.environ.get("RANK", "0"))
    job_dir = paths.run_dir(job_id)
    log = process.job_logger(job_id, job_dir / "log.txt")
    ctx = process.JobContext(conn=conn, job=job, log=log, job_dir=job_dir)
    result: dict[str, Any] = {}
    try:
        with plain_out_of_memory():
            metrics = train(conn, job, ctx)
        result = {"metrics": metrics, "model_dir": str(job_dir / "model")}
    except process.Cancelled:
        result = {"cancelled": True}
    except UserError as exc:
        result = {"user_error": str(exc)}
    if rank == 0:
        (job_dir / "ddp_result.json").write_text(json.dumps(result))
    return 0


class _Rows:
    """A torch dataset over encoded rows (lists of dicts)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _encode_text(tokenizer, rows, label2id, max_length):
    enc = tokenizer([r["text"] or "" for r in rows], truncation=True, max_length=max_length)
    items = []
    for i, r in enumerate(rows):
        item = {k: enc[k][i] for k in enc.keys()}
        item["labels"] = label2id[r["label"]]
        items.append(item)
    return items


def _encode_tokens(tokenizer, rows, label2id, max_length):
    items = []
    batch = [list(r["tokens"] or []) for r in rows]
    enc = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length)
    for i, r in enumerate(rows):
        tags = r["tags"] or []
        labels, seen = [], set()
        for wid in enc.word_ids(i):
            if wid is None or wid in seen:
                labels.append(-100)  # special tokens and later sub-tokens are ignored in the loss
            else:
                seen.add(wid)
                labels.append(label2id[tags[wid]])
        item = {k: enc[k][i] for k in enc.keys()}
        item["labels"] = labels
        items.append(item)
    return items


def _metrics(task: str, labels: list[str], preds, refs) -> dict:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    if task == "token-classification":
        from seqeval.metrics import classification_report

        true_seq, pred_seq = [], []
        for p_row, r_row in zip(preds, refs):
            t, p = [], []
            for p_i, r_i in zip(p_row, r_row):
                if r_i != -100:
                    t.append(labels[int(r_i)])
                    p.append(labels[int(p_i)])
            true_seq.append(t)
            pred_seq.append(p)
        flat_t = [x for s in true_seq for x in s]
        flat_p = [x for s in pred_seq for x in s]
        report = classification_report(true_seq, pred_seq, output_dict=True, zero_division=0)
        return {
            "accuracy": float(accuracy_score(flat_t, flat_p)) if flat_t else 0.0,
            "macro_f1": float(report.get("macro avg", {}).get("f1-score", 0.0)),
            "entity_f1": float(report.get("micro avg", {}).get("f1-score", 0.0)),
            "weighted_f1": float(report.get("weighted avg", {}).get("f1-score", 0.0)),
        }
    preds, refs = np.asarray(preds), np.asarray(refs)
    ids = list(range(len(labels)))
    return {
        "accuracy": float(accuracy_score(refs, preds)),
        "macro_f1": float(f1_score(refs, preds, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(refs, preds, labels=ids, average="weighted", zero_division=0)),
    }


def _progress_callback(ctx, is_main: bool, effective_batch: int, member: int = 0, members: int = 1):
    """Progress rows, cancel and test-only slow steps. In a soup (``members`` > 1 runs one after another) the steps
    count on over the runs, out of all of them, and each train row says which run it is (``extra``)."""
    import torch
    from transformers import TrainerCallback

    step_delay = settings.test_step_delay_s()
    which = {"soup_run": member + 1, "soup_runs": members} if members > 1 else None

    class Progress(TrainerCallback):
        def __init__(self):
            self.cancelled = False
            self.loss = None
            self.lr = None
            self.start = None
            self.start_step = 0
            self.last_row = 0.0
            self.finished = False  # set before the final evaluation, which is not a progress row
            self.offset = 0  # the steps of a soup's earlier runs

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()
            self.start_step = state.global_step
            self.offset = member * state.max_steps

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.loss = float(logs["loss"])
            if "learning_rate" in logs:
                self.lr = float(logs["learning_rate"])
            if is_main and "eval_loss" in logs and not self.finished:
                ctx.progress(
                    kind="eval",
                    step=self.offset + state.global_step,
                    total_steps=members * state.max_steps,
                    epoch=state.epoch,
                    eval_loss=logs.get("eval_loss"),
                    accuracy=logs.get("eval_accuracy"),
                    macro_f1=logs.get("eval_macro_f1"),
                )
                ctx.log.info("eval at step %s: loss %.4f accuracy %.4f macro-F1 %.4f", state.global_step,
                             logs.get("eval_loss", float("nan")), logs.get("eval_accuracy", float("nan")),
                             logs.get("eval_macro_f1", float("nan")))

        def on_step_end(self, args, state, control, **kwargs):
            if step_delay:  # test-only: slow steps down so that tests can act while a run is in flight
                time.sleep(step_delay)
            now = time.monotonic()
            elapsed = now - (self.start or now)
            done = state.global_step - self.start_step
            if is_main and (now - self.last_row >= 1.0 or state.global_step >= state.max_steps or done <= 1):
                self.last_row = now
                per_step = elapsed / done if done else None
                ctx.progress(
                    kind="train",
                    step=self.offset + state.global_step,
                    total_steps=members * state.max_steps,
                    epoch=state.epoch,
                    loss=self.loss,  # only on the row after a logging step, so that curves show real points
                    learning_rate=self.lr,
                    samples_per_s=(done * effective_batch / elapsed) if elapsed > 0 else None,
                    elapsed_s=elapsed,
                    eta_s=((members * state.max_steps - self.offset - state.global_step) * per_step
                           if per_step else None),
                    **({"extra": which} if which else {}),
                )
                self.loss = None
            cancel = ctx.should_cancel() if is_main else False
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flag = torch.tensor([1 if cancel else 0], device="cuda" if torch.distributed.get_backend() == "nccl" else "cpu")
                torch.distributed.broadcast(flag, 0)
                cancel = bool(flag.item())
            if cancel and not self.cancelled:
                self.cancelled = True
                ctx.log.info("cancel requested: saving a checkpoint at step %s, then stopping", state.global_step)
                control.should_save = True
                control.should_training_stop = True
            return control

    return Progress()


def _weighted_trainer_class(weights, label_smoothing: float = 0.0):
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(logits.device, logits.dtype), ignore_index=-100,
                                                label_smoothing=label_smoothing)
            loss = loss_fn(logits.view(-1, logits.shape[-1]), labels.view(-1))
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


class _EpochSeededSampler:
    """Training order from the run's seed and the epoch alone: length-grouped (similar lengths together) or a plain
    shuffle. Trainer calls ``set_epoch`` each epoch, so a resumed run replays the same order, and every
    data-parallel rank draws the same permutation (accelerate then shards the batches)."""

    def __init__(self, dataset, batch_size: int, seed: int, group_by_length: bool):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.group_by_length = group_by_length
        self.epoch = 0
        self.lengths = [len(item["input_ids"]) for item in getattr(dataset, "items", dataset)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.group_by_length:
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        return iter(torch.randperm(len(self.lengths), generator=generator).tolist())


def _seeded_sampler_trainer_class(base, seed: int, group_by_length: bool):
    class SeededTrainer(base):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return _EpochSeededSampler(dataset, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                       seed, group_by_length)

    return SeededTrainer


def _training_data(conn, dataset_id: int, task: str) -> tuple[str, int, list[str], dict[str, list[dict]]]:
    """The dataset's name, version, labels (the dataset's order, then any seen only in rows) and rows per split; a
    validation slice is carved from the end of train when the dataset has none."""
    ds = conn.execute("SELECT name, version, labels_json FROM datasets WHERE id = ?", [dataset_id]).fetchone()
    if not ds:
        raise UserError(_("The dataset this run was trained on no longer exists."))
    ds_name, ds_version, labels_json = ds
    labels = list(db.loads(labels_json, []))
    rows = {s: _dataset_rows(conn, dataset_id, s) for s in ("train", "validation", "test")}
    if task == "text-classification":
        seen = sorted({r["label"] for split in rows.values() for r in split if r["label"] is not None})
    else:
        seen = sorted({t for split in rows.values() for r in split for t in (r["tags"] or [])})
    labels = labels or seen
    labels += [x for x in seen if x not in labels]
    if not rows["validation"]:  # carve a validation slice from train, deterministically
        n_val = max(1, len(rows["train"]) // 10)
        rows["validation"] = rows["train"][-n_val:]
        rows["train"] = rows["train"][:-n_val]
    return ds_name, ds_version, labels, rows


def _with_lora(model, config: dict, task: str, seed: int, determinism: bool):
    """The model wrapped with LoRA adapters as the run's settings say."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = [m for m in (config.get("lora_target_modules") or "").split(",") if m] or None
    seed_everything(seed, determinism)  # LoRA's A matrices: from the seed, not from what tokenising drew
    try:
        return get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.TOKEN_CLS if task == "token-classification" else TaskType.SEQ_CLS,
                r=int(config["lora_r"]),
                lora_alpha=config["lora_alpha"],
                lora_dropout=float(config["lora_dropout"]),
                target_modules=targets,
            ),
        )
    except ValueError as exc:
        raise UserError(_("LoRA could not be set up for this base model ({error}). Check LoRA target modules.",
                          error=exc)) from None


def freeze_word_embeddings(model) -> int:
    """Stop training ``model``'s word-embedding table; returns how many weights that leaves untrained (0 when the
    table is shared with an output layer, which must learn, or the model has none)."""
    table = model.get_input_embeddings()
    weight = getattr(table, "weight", None)
    if weight is None:
        return 0
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is weight:
        return 0
    weight.requires_grad_(False)
    return int(weight.numel())


def _training_arguments(config: dict, job_dir: Path, seed: int, determinism: bool, device: dict, world: int):
    """The Trainer's arguments from the run's settings and device."""
    from transformers import TrainingArguments

    on_cuda = device.get("device") == "cuda"
    batch = int(config["batch_size"])
    accum = int(config["gradient_accumulation"])
    eval_steps = int(config.get("eval_steps") or 0)
    strategy = "steps" if eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(job_dir / "checkpoints"),
        num_train_epochs=float(config["epochs"]),
        learning_rate=float(config["learning_rate"]),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch * 2,
        gradient_accumulation_steps=accum,
        warmup_steps=float(config["warmup_ratio"]),
        weight_decay=float(config["weight_decay"]),
        label_smoothing_factor=float(config.get("label_smoothing") or 0.0),
        seed=seed,
        data_seed=seed,
        full_determinism=determinism,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=eval_steps or None,
        save_steps=eval_steps or None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=settings.logging_steps(),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        bf16=device.get("precision") == "bf16",  # on the CPU too: bf16 autocast, float32 weights
        fp16=on_cuda and device.get("precision") == "fp16",
        use_cpu=not on_cuda,
        ddp_backend=("gloo" if not on_cuda else "nccl") if world > 1 else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Length-grouped batches (the training sampler is _EpochSeededSampler). Evaluation rows may come back in
        # another order: metrics pair predictions with label_ids from the same output, and test predictions are
        # made in input order below.
        train_sampling_strategy="group_by_length" if config.get("group_by_length", True) else "random",
    )


def _predict_test(model, tokenizer, task: str, test_rows: list[dict], labels: list[str], max_length: int,
                  run_id: int) -> tuple[list[dict], dict]:
    """Test-split prediction rows keyed by row_id (a plain loop in input order, never Trainer.predict positions)
    and the test metrics computed from them."""
    import torch

    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))
    model.eval()
    dev = next(model.parameters()).device
    pred_rows = []
    with torch.inference_mode():
        for start in range(0, len(test_rows), 64):
            chunk = test_rows[start : start + 64]
            if task == "token-classification":
                words = [list(r["tokens"] or []) for r in chunk]
                enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt")
                pred = model(**{k: v.to(dev) for k, v in enc.items()}).logits.argmax(-1).cpu().numpy()
                for b, r in enumerate(chunk):
                    tags, seen = ["O" if "O" in label2id else labels[0]] * len(words[b]), set()
                    for pos, wid in enumerate(enc.word_ids(b)):
                        if wid is not None and wid not in seen:
                            seen.add(wid)
                            tags[wid] = id2label[int(pred[b][pos])]
                    pred_rows.append({
                        "run_id": run_id, "split": "test", "row_id": r["row_id"], "text": r["text"],
                        "tokens_json": db.dumps(words[b]), "true_tags_json": db.dumps(r["tags"]),
                        "pred_tags_json": db.dumps(tags),
                    })
            else:
                enc = tokenizer([r["text"] or "" for r in chunk], truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt")
                probs = torch.softmax(model(**{k: v.to(dev) for k, v in enc.items()}).logits.float(), -1).cpu().numpy()
                for b, r in enumerate(chunk):
                    best_i = int(probs[b].argmax())
                    pred_rows.append({
                        "run_id": run_id, "split": "test", "row_id": r["row_id"], "text": r["text"],
                        "true_label": r["label"], "pred_label": id2label[best_i], "confidence": float(probs[b][best_i]),
                        "probs_json": db.dumps({id2label[j]: float(probs[b][j]) for j in range(len(labels))}),
                    })
    if not pred_rows:
        return [], {}
    if task == "token-classification":
        true_ids = [[label2id[t] for t in db.loads(p["true_tags_json"])] for p in pred_rows]
        pred_ids = [[label2id[t] for t in db.loads(p["pred_tags_json"])] for p in pred_rows]
        return pred_rows, _metrics(task, labels, pred_ids, true_ids)
    return pred_rows, _metrics(task, labels, [label2id[p["pred_label"]] for p in pred_rows],
                               [label2id[p["true_label"]] for p in pred_rows])


def _save_model(job_dir: Path, model, tokenizer, max_length: int, labels: list[str], record: dict) -> Path:
    """The model folder with its tokenizer and bellwether.json: written beside, then moved into place, so a crash
    never leaves half a model."""
    import torch

    final = job_dir / "model"
    tmp = job_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.bellwether_max_length = max_length
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    if getattr(model, "dtype", torch.float32) != torch.float32:
        model = model.float()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "bellwether.json").write_text(json.dumps(record, indent=2, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def train_or_fall_back_to_fp32(trainer, remake, device: dict, ctx, resume_from, seed: int, determinism: bool,
                               world: int = 1):
    """``trainer.train()``, for both runners. A model whose layers cannot run under bf16 autocast on the CPU fails in
    its first step: it is trained again in fp32, from the same seed, by ``remake(plain_model, device)``'s trainer, and
    the run says so (``precision_note``, shown on the Runs page). Anything later, on a GPU, or out of memory is a real
    failure and is raised. Returns (trainer, train output, device)."""
    try:
        return trainer, trainer.train(resume_from_checkpoint=resume_from), device
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        if device.get("device") != "cpu" or device.get("precision") != "bf16" or trainer.state.global_step > 0 \
                or world > 1 or is_out_of_memory(exc):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    from accelerate.utils import extract_model_from_parallel

    note = f"This model could not train in bf16 on this CPU ({reason}); it trained in fp32 instead."
    ctx.log.warning("%s", note)
    device = {**device, "precision": "fp32", "precision_note": note}
    ctx.set_device(device)
    # accelerate wrapped the model's forward in bf16 autocast; take the plain model back before training again
    plain = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)
    seed_everything(seed, determinism)
    trainer = remake(plain, device)
    return trainer, trainer.train(resume_from_checkpoint=resume_from), device


def train(conn, job: dict, ctx) -> dict:
    """Fine-tune in this process (one rank of a data-parallel run, or the only process)."""
    import numpy as np
    import torch
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
    )

    config = job["config"] or db.loads(job.get("config_json"), {})
    task = job["task"]
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = rank == 0
    seed = int(config["seed"])
    determinism = bool(config.get("full_determinism"))
    device = job.get("device") or run_device(config, world, task=task)
    log = ctx.log

    ds_name, ds_version, labels, rows = _training_data(conn, job["dataset_id"], task)
    label2id = {label: i for i, label in enumerate(labels)}

    source = config.get("base_model_source") or catalog.resolve(job.get("base_model")).source
    log.info("loading base model %s (%s) for %s with %s labels", job.get("base_model"), source, task, len(labels))
    seeds = soup.member_seeds(seed, soup.runs(config))
    members = soup.Members(ctx.job_dir, seeds) if len(seeds) > 1 else None
    if members is not None:
        log.info("model soup: %s runs of these settings, seeds %s, their weights averaged into one model", len(seeds),
                 ", ".join(str(s) for s in seeds))
    max_length = int(config["max_length"])
    encode = _encode_tokens if task == "token-classification" else _encode_text
    encoded: dict[str, Any] = {}
    batch = int(config["batch_size"])
    accum = int(config["gradient_accumulation"])
    class_weights = None

    def compute_metrics(eval_pred):
        logits, refs = eval_pred.predictions, eval_pred.label_ids  # same output: rows stay paired
        if isinstance(logits, tuple):
            logits = logits[0]
        return _metrics(task, labels, np.argmax(logits, axis=-1), refs)

    def fit(index: int, resume_from: str | None, train_it: bool = True) -> dict[str, Any]:
        """Member ``index`` of the run (the only one unless it is a soup): the model from its seed, trained unless
        ``train_it`` is false (a soup whose members are all done needs a model and trainer to evaluate the average)."""
        nonlocal device, class_weights
        member_seed = seeds[index]
        try:
            # Seeded right before the head is created: the same seed gives the same initial model in any process.
            tokenizer, model = load_model(source, task, labels, member_seed, determinism, config.get("pooling"))
        except OSError as exc:
            raise UserError(_(
                "The base model {spec} was not found or could not be read ({error}). "
                "It may have been moved or deleted, or this machine is offline; choose another base model.",
                spec=job.get("base_model"), error=exc)) from None
        if not encoded:
            if task == "text-classification":
                log.info("the classifier reads %s", "the mean of the tokens"
                         if getattr(model.config, pooling_head.CONFIG_KEY, "") == "mean" else "the first token ([CLS])")
            encoded.update(train=encode(tokenizer, rows["train"], label2id, max_length),
                           validation=encode(tokenizer, rows["validation"], label2id, max_length), tokenizer=tokenizer,
                           collator=(DataCollatorForTokenClassification(tokenizer) if task == "token-classification"
                                     else DataCollatorWithPadding(tokenizer)))
        train_items, val_items = encoded["train"], encoded["validation"]
        if config.get("lora"):
            model = _with_lora(model, config, task, member_seed, determinism)
        elif config.get("freeze_embeddings"):  # this runner's tasks are text and token classification
            frozen = freeze_word_embeddings(model)
            if frozen and index == 0:
                log.info("word embeddings frozen: %s of %s weights not trained", f"{frozen:,}",
                         f"{sum(p.numel() for p in model.parameters()):,}")
        from engine.training import dropout as fast_dropout_lever  # torch at import: loaded by the runner only

        fast_dropout = None  # on a GPU torch's dropout and fused attention are the fast ones
        if config.get("fast_dropout") and device.get("device") == "cpu":
            fast_dropout = fast_dropout_lever.apply(model)
            if index == 0:
                log.info("dropout masks: 16 random bits an element (%s modules%s)", len(fast_dropout["modules"]),
                         ", attention included" if fast_dropout["attention"] else "")

        args = _training_arguments(config, ctx.job_dir, member_seed, determinism, device, world)
        callbacks = [_progress_callback(ctx, is_main, batch * accum * world, member=index, members=len(seeds))]
        if int(config.get("early_stopping_patience") or 0) > 0:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(config["early_stopping_patience"])))
        trainer_cls = Trainer
        if config.get("class_weighting"):
            if class_weights is None:  # from the training rows: the same for every run of a soup
                if task == "token-classification":
                    counts = np.bincount([lab for it in train_items for lab in it["labels"] if lab != -100],
                                         minlength=len(labels))
                else:
                    counts = np.bincount([it["labels"] for it in train_items], minlength=len(labels))
                weights = counts.sum() / (len(labels) * np.maximum(counts, 1))
                log.info("class weights: %s", {labels[i]: round(float(w), 3) for i, w in enumerate(weights)})
                class_weights = torch.tensor(weights, dtype=torch.float32)
            trainer_cls = _weighted_trainer_class(class_weights, float(config.get("label_smoothing") or 0.0))
        if float(config.get("r_drop") or 0.0) > 0:
            trainer_cls = levers.rdrop_trainer_class(trainer_cls, float(config["r_drop"]), class_weights,
                                                     float(config.get("label_smoothing") or 0.0))
            if index == 0:
                log.info("R-Drop: alpha %s (each batch goes through the model twice)", config["r_drop"])
        trainer_cls = _seeded_sampler_trainer_class(trainer_cls, member_seed, bool(config.get("group_by_length", True)))
        if float(config.get("layer_decay") or 1.0) < 1:
            trainer_cls = levers.layerwise_trainer_class(trainer_cls, float(config["layer_decay"]))
        averager = None
        if float(config.get("average_last") or 0.0) > 0:
            averager = levers.weight_averager(float(config["average_last"]))
            callbacks.append(averager)

        def make_trainer(args, plain_model=None):
            return trainer_cls(
                model=plain_model if plain_model is not None else model,
                args=args,
                train_dataset=_Rows(train_items),
                eval_dataset=_Rows(val_items),
                data_collator=encoded["collator"],
                processing_class=encoded["tokenizer"],
                compute_metrics=compute_metrics,
                callbacks=callbacks,
            )

        trainer = make_trainer(args)
        if not train_it:
            if fast_dropout is not None:
                fast_dropout_lever.restore(fast_dropout)
            return {"trainer": trainer}
        what = f"run {index + 1} of {len(seeds)} (seed {member_seed}) " if members is not None else ""
        log.info(
            "training %son %s (%s, world size %s): %s train rows, %s validation rows, %s epochs, batch %s%s", what,
            device.get("device"), device.get("precision"), world, len(train_items), len(val_items), config["epochs"],
            batch, f", resuming from {resume_from}" if resume_from else "",
        )
        started = time.monotonic()
        trainer, result, device = train_or_fall_back_to_fp32(
            trainer, lambda plain, dev: make_trainer(_training_arguments(config, ctx.job_dir, member_seed, determinism,
                                                                         dev, world), plain),
            device, ctx, resume_from, member_seed, determinism, world)
        progress_cb = callbacks[0]
        if progress_cb.cancelled:
            raise process.Cancelled()
        best = trainer.state.best_metric
        progress_cb.finished = True
        val_metrics = trainer.evaluate()  # the best model is loaded: these are its validation figures (all ranks)
        averaged = None
        if averager is not None and averager.count:
            # The averaged weights are one more candidate: kept when validation says they are at least as good
            replaced = averager.swap_into(trainer.model)
            averaged_metrics = trainer.evaluate()
            kept = (averaged_metrics.get("eval_macro_f1") or 0) >= (val_metrics.get("eval_macro_f1") or 0)
            averaged = {"steps": averager.count, "validation_macro_f1": averaged_metrics.get("eval_macro_f1"),
                        "best_checkpoint_validation_macro_f1": val_metrics.get("eval_macro_f1"), "kept": kept}
            log.info("weights averaged over the last %s steps: validation macro-F1 %.4f against the best checkpoint's "
                     "%.4f; %s", averager.count, averaged["validation_macro_f1"] or 0,
                     averaged["best_checkpoint_validation_macro_f1"] or 0,
                     "kept the average" if kept else "kept the checkpoint")
            if kept:
                val_metrics = averaged_metrics
            else:
                levers.restore(trainer.model, replaced)
        if fast_dropout is not None:  # the model as loaded (transformers' dropout and attention): saved and tested
            fast_dropout_lever.restore(fast_dropout)
        return {"trainer": trainer, "result": result, "val_metrics": val_metrics, "best": best, "averaged": averaged,
                "runtime_s": time.monotonic() - started}

    resume_from = job.get("resume_from")
    if resume_from and not Path(resume_from).is_dir():
        log.info("checkpoint %s is gone; starting from the beginning", resume_from)
        resume_from = None
    fitted: dict[str, Any] | None = None
    if members is None:
        fitted = fit(0, resume_from)
    else:
        trained_now: dict[int, dict] = {}  # members trained in this attempt: their weights, without a read back
        for index in range(len(seeds)):
            if members.done(index):
                log.info("run %s of %s (seed %s) was trained before: its weights are kept", index + 1, len(seeds),
                         seeds[index])
                continue
            fitted = fit(index, resume_from)  # a checkpoint left is this member's (soup.Members.finish)
            resume_from = None  # a checkpoint belongs to one member at most
            val = fitted["val_metrics"]
            figures = {"seed": seeds[index], "validation_macro_f1": val.get("eval_macro_f1"),
                       "validation_accuracy": val.get("eval_accuracy"), "best_validation_macro_f1": fitted["best"],
                       "train_loss": fitted["result"].training_loss, "train_runtime_s": fitted["runtime_s"],
                       "train_samples_per_second": fitted["result"].metrics.get("train_samples_per_second"),
                       "steps": fitted["trainer"].state.global_step, "epochs": fitted["trainer"].state.epoch,
                       "weight_averaging": fitted["averaged"]}
            weights = {k: v.detach().cpu().clone() for k, v in fitted["trainer"].model.state_dict().items()}
            if is_main:
                members.finish(index, weights, figures)
            trained_now[index] = {"weights": weights, "figures": figures}
        if fitted is None:  # every member was done before (the run stopped while averaging): a model to average into
            fitted = fit(len(seeds) - 1, None, train_it=False)
        each = [trained_now[i]["figures"] if i in trained_now else members.figures(i) for i in range(len(seeds))]
        souped = soup.average([trained_now[i]["weights"] if i in trained_now else members.weights(i)
                               for i in range(len(seeds))])
        fitted["trainer"].model.load_state_dict(souped)
        del souped, trained_now
        fitted["val_metrics"] = fitted["trainer"].evaluate()
        member_f1 = [m.get("validation_macro_f1") or 0 for m in each]
        fitted["soup"] = {"runs": len(seeds), "seeds": seeds, "validation_macro_f1": fitted["val_metrics"].get(
            "eval_macro_f1"), "member_validation_macro_f1": member_f1, "members": each}
        fitted["best"] = max(member_f1)
        fitted["runtime_s"] = sum(m.get("train_runtime_s") or 0 for m in each)
        fitted["train_loss"] = float(np.mean([m.get("train_loss") or 0 for m in each]))
        fitted["samples_per_second"] = float(np.mean([m.get("train_samples_per_second") or 0 for m in each]))
        fitted["steps"] = sum(int(m.get("steps") or 0) for m in each)
        log.info("model soup of %s runs: validation macro-F1 %.4f (the runs alone: %s)", len(seeds),
                 fitted["val_metrics"].get("eval_macro_f1") or 0, ", ".join(f"{f:.4f}" for f in member_f1))
    trainer, val_metrics = fitted["trainer"], fitted["val_metrics"]
    if not is_main:
        return {}

    from accelerate.utils import extract_model_from_parallel

    # The plain model: no data-parallel wrapper, and no bf16/fp16 autocast around its forward (accelerate's, for
    # training), so that the test predictions stored now are the saved float32 model's, as every later prediction is.
    model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)
    tokenizer = encoded["tokenizer"]
    if config.get("lora"):
        model = model.merge_and_unload()
    result = fitted.get("result")
    metrics: dict[str, Any] = {
        "validation_accuracy": val_metrics.get("eval_accuracy"),
        "validation_macro_f1": val_metrics.get("eval_macro_f1"),
        "validation_loss": val_metrics.get("eval_loss"),
        "best_validation_macro_f1": fitted["best"],
        "best_checkpoint": None if members is not None else trainer.state.best_model_checkpoint,
        "train_loss": fitted["train_loss"] if members is not None else result.training_loss,
        "train_runtime_s": fitted["runtime_s"],
        "train_samples_per_second": (fitted["samples_per_second"] if members is not None
                                     else result.metrics.get("train_samples_per_second")),
        "epochs": trainer.state.epoch,
        "steps": fitted["steps"] if members is not None else trainer.state.global_step,
        "n_train": len(encoded["train"]),
        "n_validation": len(encoded["validation"]),
        "world_size": world,
    }
    if fitted.get("averaged") is not None:
        metrics["weight_averaging"] = fitted["averaged"]
    if members is not None:
        metrics["soup"] = fitted["soup"]
        metrics.pop("weight_averaging", None)  # each member's own is in soup.members

    pred_rows, test_metrics = _predict_test(model, tokenizer, task, rows["test"], labels, max_length, job["id"])
    if pred_rows:
        metrics.update(test_metrics, n_test=len(pred_rows), metrics_split="test")
        checked, checked_split = pred_rows, "test"
    else:
        metrics.update(accuracy=metrics["validation_accuracy"], macro_f1=metrics["validation_macro_f1"],
                       metrics_split="validation", n_test=0)
        checked = _predict_test(model, tokenizer, task, rows["validation"], labels, max_length, job["id"])[0]
        checked_split = "validation"
    # A run that "succeeded" but learnt nothing useful says so (engine/training/verdict.py): recorded with the metrics
    said_warnings = verdict.from_prediction_rows(checked, task, checked_split, said_form=True)
    if task == "text-classification":  # what 'auto' came to: the run record shows how the classifier read sentences
        metrics["pooling"] = getattr(model.config, pooling_head.CONFIG_KEY, "cls")
    metrics["warnings"] = [english(w) for w in said_warnings]  # English, and as said sentences for the reader's language
    metrics["warnings_said"] = said_warnings
    for warning in metrics["warnings"]:
        log.warning("%s", warning)

    final = _save_model(ctx.job_dir, model, tokenizer, max_length, labels, {
        "run_id": job["id"], "task": task, "labels": labels, "dataset": ds_name, "dataset_version": ds_version,
        "dataset_id": job["dataset_id"], "base_model": job.get("base_model"), "config": config, "metrics": metrics,
        "device": device, "created_at": db.now(),
    })
    with db.transaction(conn):
        conn.execute("DELETE FROM predictions WHERE run_id = ? AND split = 'test'", [job["id"]])
        if pred_rows:
            conn["predictions"].insert_all(pred_rows)
        conn.execute("UPDATE jobs SET model_dir = ? WHERE id = ?", [str(final), job["id"]])
    if members is not None:
        members.drop_weights()  # the run's model is their average; each member's figures stay in metrics and members/
    log.info("saved the model to %s; test accuracy %.4f, macro-F1 %.4f", final, metrics.get("accuracy") or 0,
             metrics.get("macro_f1") or 0)
    return metrics
