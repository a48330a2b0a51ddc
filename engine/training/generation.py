"""The ``train`` job runner for the generation task: fine-tune a causal language model (GPT-2, SmolLM, Qwen, ...).

- **Data.** Plain text rows learn every token. Prompt/response and messages rows are written as the model's chat
  template, or the plain format of :mod:`engine.models.generate`, and only the response tokens (and the end token that
  closes them) carry loss: every prompt token's label is -100. GPT-2's missing pad token is its end-of-text.
- **Batches.** Length-grouped (the run's seeded sampler from :mod:`engine.training.finetune`), padded per batch; or,
  with ``packing``, whole examples laid end to end in blocks of up to ``max_length`` tokens (:func:`pack`): each
  example's positions restart at 0 and no mask is passed, so transformers' packed-sequence masks keep attention inside
  each example, and the first token of each example carries no loss (nothing of its own comes before it). The loss is
  therefore the same as unpacked (prompt tokens still carry none); only the padding goes. Validation stays unpacked.
- **LoRA.** Target modules by model type: ``c_attn`` for GPT-2, ``q_proj,k_proj,v_proj,o_proj`` for Llama / Qwen /
  Mistral-style models (or what the analyst typed).
- **Curves.** The Trainer's validation loss is logged as the run's eval rows (perplexity = exp(loss)).
- **Outputs.** Before training, the base model's token-level loss on the validation and test rows and its greedy
  output for up to :data:`N_EVAL_GENERATIONS` held-out prompts; after, the fine-tuned model's. ``metrics`` hold both
  losses and perplexities and ROUGE/BLEU; ``predictions`` rows (split test) hold prompt, reference, fine-tuned output
  (pred_label) and base output. Cancel saves a checkpoint; resume continues from it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from engine import db
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import process
from engine.models import catalog
from engine.models import generate
from engine.training import finetune

TASK = "generation"
N_EVAL_GENERATIONS = 40  # held-out prompts generated for the report (base and fine-tuned)
EVAL_MAX_NEW_TOKENS = 48
PRESETS = finetune.TASK_PRESETS[TASK]  # laid over finetune.PRESETS by finetune.submit
LORA_TARGETS = {
    "gpt2": "c_attn",
    "llama": "q_proj,k_proj,v_proj,o_proj",
    "qwen2": "q_proj,k_proj,v_proj,o_proj",
    "qwen3": "q_proj,k_proj,v_proj,o_proj",
    "mistral": "q_proj,k_proj,v_proj,o_proj",
    "gemma": "q_proj,k_proj,v_proj,o_proj",
    "phi3": "qkv_proj,o_proj",
}
OOM_MESSAGE = finetune.OOM_MESSAGE  # one message and one helper for both runners (finetune.plain_out_of_memory)


def lora_targets(model_type: str) -> str | None:
    return LORA_TARGETS.get(model_type)


# ---- encoding ----------------------------------------------------------------------------------------------------


def encode_row(tokenizer, row: dict, max_length: int) -> dict:
    """input_ids, attention_mask and labels for one dataset row; -100 on every prompt token."""
    eos = generate.eos_token_id(tokenizer)
    if row.get("label") is None:  # plain text: every token is learnt
        ids = tokenizer(row["text"] or "", add_special_tokens=False)["input_ids"][: max_length - 1] + [eos]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}
    turns = row.get("tokens")
    prompt = generate.prompt_text(tokenizer, row["text"], turns[:-1] if turns else None)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(row["label"], add_special_tokens=False)["input_ids"] + [eos]
    if len(p_ids) + len(r_ids) > max_length:  # keep the response (up to half the room) and the end of the prompt
        r_ids = r_ids[: max(max_length // 2, max_length - len(p_ids))]
        p_ids = p_ids[len(p_ids) - (max_length - len(r_ids)):] if max_length > len(r_ids) else []
    ids = p_ids + r_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(p_ids) + list(r_ids)}


def pack(items: list[dict], block: int) -> list[dict]:
    """Whole encoded examples laid end to end into blocks of at most ``block`` tokens (an example never straddles two
    blocks), best fit, longest first: each example goes into the fullest block it still fits in, so long and short
    examples share blocks and few tokens are left as padding. Each block has ``input_ids``, ``labels`` and
    ``position_ids`` restarting at 0 for every example; the first label of each example is -100, so no token is learnt
    from the example before it. Deterministic: the same items give the same blocks."""
    import bisect

    blocks: list[dict] = []
    room: list[tuple[int, int]] = []  # (tokens still free, block index), sorted
    for i in sorted(range(len(items)), key=lambda k: -len(items[k]["input_ids"])):
        it = items[i]
        n = len(it["input_ids"])
        if not n:
            continue
        at = bisect.bisect_left(room, (n, -1))
        if at < len(room):
            free, b = room.pop(at)
        else:
            free, b = block, len(blocks)
            blocks.append({"input_ids": [], "labels": [], "position_ids": []})
        current = blocks[b]
        current["input_ids"] += list(it["input_ids"])
        current["labels"] += [-100] + list(it["labels"][1:])
        current["position_ids"] += list(range(n))
        if free - n > 0:
            bisect.insort(room, (free - n, b))
    return blocks


class PackedCollator:
    """Pads packed blocks on the right (pad id, -100 labels, the padding's own positions from 0) and passes no
    attention mask: the positions tell the model where each example starts. Unpacked rows (the validation rows the
    Trainer evaluates with the same collator) are padded as :class:`Collator` pads them."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items):
        import torch

        if "position_ids" not in items[0]:
            return Collator(self.pad_id)(items)
        width = max(len(it["input_ids"]) for it in items)
        batch = {"input_ids": [], "labels": [], "position_ids": []}
        for it in items:
            gap = width - len(it["input_ids"])
            batch["input_ids"].append(list(it["input_ids"]) + [self.pad_id] * gap)
            batch["labels"].append(list(it["labels"]) + [-100] * gap)
            batch["position_ids"].append(list(it["position_ids"]) + list(range(gap)))
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


class Collator:
    """Pads a batch on the right: pad id for inputs, 0 for the mask, -100 for labels."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items):
        import torch

        width = max(len(it["input_ids"]) for it in items)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for it in items:
            gap = width - len(it["input_ids"])
            batch["input_ids"].append(list(it["input_ids"]) + [self.pad_id] * gap)
            batch["attention_mask"].append(list(it["attention_mask"]) + [0] * gap)
            batch["labels"].append(list(it["labels"]) + [-100] * gap)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def token_loss(model, items: list[dict], pad_id: int, batch_size: int = 16) -> float | None:
    """Mean cross-entropy per learnt token (labels != -100) over ``items``: exp() of it is the perplexity."""
    import torch

    if not items:
        return None
    collate = Collator(pad_id)
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = {k: v.to(dev) for k, v in collate(items[start : start + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            shift_logits, shift_labels = logits[:, :-1, :], batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                                     shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((shift_labels != -100).sum())
    return total / max(count, 1)


def perplexity(loss: float | None) -> float | None:
    return None if loss is None else float(math.exp(min(loss, 50.0)))


def generate_outputs(tokenizer, model, rows: list[dict]) -> list[str]:
    """Greedy outputs for held-out prompts (bounded tokens)."""
    sampling = generate.Sampling(greedy=True, max_new_tokens=EVAL_MAX_NEW_TOKENS, min_new_tokens=1, repetition_penalty=1.1)
    out = []
    for row in rows:
        turns = row.get("tokens")
        text = generate.prompt_text(tokenizer, row["text"], turns[:-1] if turns else None)
        out.append(generate.generate(tokenizer, model, text, sampling))
    return out


# ---- the runner --------------------------------------------------------------------------------------------------


def run(conn, job: dict, ctx) -> dict:
    """The ``train`` runner for generation jobs (single process)."""
    # the device and precision policy classifiers use (engine.models.precision: bf16 autocast on a CPU that computes it)
    ctx.set_device(finetune.run_device(job.get("config") or {}, task=TASK))
    with finetune.plain_out_of_memory():
        return train(conn, job, ctx)


def _base_figures(job_dir: Path, tokenizer, model, val_items, test_items, gen_rows, pad_id, log) -> dict:
    """The base model's losses and outputs, measured once (a resumed run reads them back)."""
    path = job_dir / "base_eval.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.monotonic()
    figures = {
        "validation_loss": token_loss(model, val_items, pad_id),
        "test_loss": token_loss(model, test_items, pad_id),
        "outputs": generate_outputs(tokenizer, model, gen_rows),
    }
    log.info("base model: validation loss %.4f, %s held-out outputs in %.1f s", figures["validation_loss"] or 0,
             len(gen_rows), time.monotonic() - started)
    path.write_text(json.dumps(figures))
    return figures


def train(conn, job: dict, ctx) -> dict:
    from transformers import EarlyStoppingCallback, Trainer

    config = job["config"] or db.loads(job.get("config_json"), {})
    seed = int(config["seed"])
    determinism = bool(config.get("full_determinism"))
    device = job.get("device") or finetune.run_device(config, task=TASK)
    log = ctx.log
    ds_name, ds_version, _skip, rows = finetune._training_data(conn, job["dataset_id"], TASK)
    source = config.get("base_model_source") or catalog.resolve(job.get("base_model")).source
    log.info("loading causal language model %s (%s)", job.get("base_model"), source)
    finetune.seed_everything(seed, determinism)
    try:
        tokenizer, model = generate.load_causal(source)
    except UserError as exc:
        raise UserError(_("The base model {spec} cannot be trained for generation: {error}",
                          spec=job.get("base_model"), error=exc)) from None
    model.train()
    if device.get("device") == "cuda":
        model.to("cuda")
    max_length = int(config["max_length"])
    pad_id = tokenizer.pad_token_id
    train_items = [encode_row(tokenizer, r, max_length) for r in rows["train"]]
    val_items = [encode_row(tokenizer, r, max_length) for r in rows["validation"]]
    test_items = [encode_row(tokenizer, r, max_length) for r in rows["test"]]
    gen_rows = [r for r in rows["test"] if r.get("label") is not None][:N_EVAL_GENERATIONS]
    base = _base_figures(ctx.job_dir, tokenizer, model, val_items, test_items, gen_rows, pad_id, log)
    model.train()

    if config.get("lora"):
        from peft import LoraConfig, TaskType, get_peft_model

        targets = config.get("lora_target_modules") or lora_targets(model.config.model_type)
        finetune.seed_everything(seed, determinism)
        try:
            model = get_peft_model(model, LoraConfig(
                task_type=TaskType.CAUSAL_LM, r=int(config["lora_r"]), lora_alpha=config["lora_alpha"],
                lora_dropout=float(config["lora_dropout"]),
                target_modules=[m for m in targets.split(",") if m] if targets else None,
            ))
        except ValueError as exc:
            raise UserError(_("LoRA could not be set up for this base model ({error}). Check LoRA target modules.",
                              error=exc)) from None
        log.info("LoRA on %s", targets or "peft's default modules")
        config = {**config, "lora_target_modules": targets or ""}  # recorded with the run and in the model card

    def arguments(dev: dict):
        made = finetune._training_arguments(config, ctx.job_dir, seed, determinism, dev, 1)
        made.metric_for_best_model = "loss"  # the lowest validation loss is the best checkpoint
        made.greater_is_better = False
        return made

    args = arguments(device)
    batch, accum = int(config["batch_size"]), int(config["gradient_accumulation"])
    callbacks = [finetune._progress_callback(ctx, True, batch * accum)]
    if int(config.get("early_stopping_patience") or 0) > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(config["early_stopping_patience"])))
    train_set, collator = train_items, Collator(pad_id)
    if config.get("packing"):
        train_set = pack(train_items, max_length)
        collator = PackedCollator(pad_id)
        model.config.use_cache = False  # with a cache, transformers ignores the packed positions (one long text)
        n_real = sum(len(it["input_ids"]) for it in train_items)
        log.info("packing: %s examples in %s blocks of up to %s tokens (%.0f%% filled)", len(train_items),
                 len(train_set), max_length, 100 * n_real / max(1, len(train_set) * max_length))
    trainer_cls = finetune._seeded_sampler_trainer_class(Trainer, seed, bool(config.get("group_by_length", True)))

    def make_trainer(args, the_model):
        return trainer_cls(model=the_model, args=args, train_dataset=finetune._Rows(train_set),
                           eval_dataset=finetune._Rows(val_items), data_collator=collator,
                           processing_class=tokenizer, callbacks=callbacks)

    trainer = make_trainer(args, model)
    resume_from = job.get("resume_from")
    if resume_from and not Path(resume_from).is_dir():
        log.info("checkpoint %s is gone; starting from the beginning", resume_from)
        resume_from = None
    log.info("training generation on %s (%s): %s train rows, %s validation rows, %s epochs, batch %s%s",
             device.get("device"), device.get("precision"), len(train_items), len(val_items), config["epochs"], batch,
             f", resuming from {resume_from}" if resume_from else "")
    started = time.monotonic()
    trainer, result, device = finetune.train_or_fall_back_to_fp32(
        trainer, lambda plain, dev: make_trainer(arguments(dev), plain), device, ctx, resume_from, seed, determinism)
    if callbacks[0].cancelled:
        raise process.Cancelled()
    callbacks[0].finished = True
    from accelerate.utils import extract_model_from_parallel

    # The plain model, without the bf16 autocast accelerate wrapped its forward in for training: the perplexities and
    # held-out generations recorded now are the saved float32 model's, as the Playground and `evaluate` later give.
    model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)
    model.config.use_cache = True  # packing turned it off for training; generation wants it
    if config.get("lora"):
        model = model.merge_and_unload()
    n_tokens = sum(sum(1 for lab in it["labels"] if lab != -100) for it in train_items)
    val_loss = token_loss(model, val_items, pad_id)
    test_loss = token_loss(model, test_items, pad_id)
    outputs = generate_outputs(tokenizer, model, gen_rows)
    refs = [r["label"] for r in gen_rows]
    scores = generate.overlap_scores(refs, outputs) if gen_rows else {}
    base_scores = generate.overlap_scores(refs, base["outputs"]) if gen_rows else {}
    runtime = time.monotonic() - started
    metrics: dict[str, Any] = {
        "validation_loss": val_loss,
        "validation_perplexity": perplexity(val_loss),
        "base_validation_loss": base["validation_loss"],
        "base_validation_perplexity": perplexity(base["validation_loss"]),
        "test_loss": test_loss,
        "test_perplexity": perplexity(test_loss),
        "base_test_loss": base["test_loss"],
        "base_test_perplexity": perplexity(base["test_loss"]),
        **scores,
        **{f"base_{k}": v for k, v in base_scores.items()},
        "n_generated": len(gen_rows),
        "lora_target_modules": config.get("lora_target_modules") if config.get("lora") else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_loss": result.training_loss,
        "train_runtime_s": runtime,
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_tokens_learnt": n_tokens,
        "epochs": trainer.state.epoch,
        "steps": trainer.state.global_step,
        "n_train": len(train_items),
        "packed_blocks": len(train_set) if config.get("packing") else None,
        "n_validation": len(val_items),
        "n_test": len(test_items),
        "metrics_split": "test",
        "world_size": 1,
    }
    final = _save(ctx.job_dir, model, tokenizer, max_length, {
        "run_id": job["id"], "task": TASK, "dataset": ds_name, "dataset_version": ds_version,
        "dataset_id": job["dataset_id"], "base_model": job.get("base_model"), "base_model_source": source,
        "config": config, "metrics": metrics, "device": device, "created_at": db.now(),
        "prompt_format": "chat template" if generate.has_chat_template(tokenizer) else "plain",
    })
    pred_rows = [{
        "run_id": job["id"], "split": "test", "row_id": r["row_id"], "text": r["text"], "true_label": r["label"],
        "pred_label": out, "base_output": base_out,
    } for r, out, base_out in zip(gen_rows, outputs, base["outputs"])]
    with db.transaction(conn):
        conn.execute("DELETE FROM predictions WHERE run_id = ? AND split = 'test'", [job["id"]])
        if pred_rows:
            conn["predictions"].insert_all(pred_rows)
        conn.execute("UPDATE jobs SET model_dir = ? WHERE id = ?", [str(final), job["id"]])
    log.info("saved the model to %s; validation perplexity %.2f (base %.2f)", final,
             metrics["validation_perplexity"] or 0, metrics["base_validation_perplexity"] or 0)
    return metrics


def _save(job_dir: Path, model, tokenizer, max_length: int, record: dict) -> Path:
    """The model folder with its tokenizer, bellwether.json and a model card: written beside, then moved in place."""
    import torch

    final, tmp = job_dir / "model", job_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.bellwether_max_length = max_length
    if getattr(model, "dtype", torch.float32) != torch.float32:
        model = model.float()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "bellwether.json").write_text(json.dumps(record, indent=2, default=str))
    (tmp / "README.md").write_text(model_card(record))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def model_card(record: dict) -> str:
    m = record.get("metrics") or {}
    config = record.get("config") or {}

    def fmt(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"

    settings_lines = "\n".join(f"- {k}: {v}" for k, v in sorted(config.items()) if k not in ("base_model_source",))
    return f"""# Bellwether generation model (run {record.get('run_id')})

- Base model: {record.get('base_model')} ({record.get('base_model_source')})
- Dataset: {record.get('dataset')} version {record.get('dataset_version')}
- Prompt format: {record.get('prompt_format')}
- Trained: {record.get('created_at')}

## Figures (held-out rows)

| | base model | fine-tuned |
|---|---|---|
| validation loss | {fmt(m.get('base_validation_loss'))} | {fmt(m.get('validation_loss'))} |
| validation perplexity | {fmt(m.get('base_validation_perplexity'), 2)} | {fmt(m.get('validation_perplexity'), 2)} |
| test perplexity | {fmt(m.get('base_test_perplexity'), 2)} | {fmt(m.get('test_perplexity'), 2)} |
| ROUGE-1 | {fmt(m.get('base_rouge1'))} | {fmt(m.get('rouge1'))} |
| ROUGE-2 | {fmt(m.get('base_rouge2'))} | {fmt(m.get('rouge2'))} |
| ROUGE-L | {fmt(m.get('base_rougeL'))} | {fmt(m.get('rougeL'))} |
| BLEU | {fmt(m.get('base_bleu'), 2)} | {fmt(m.get('bleu'), 2)} |

## Settings

{settings_lines}
"""
