"""Generation training speed: the engine's runner pieces against a plain Trainer with DataCollatorForLanguageModeling.

``python -m bench.generation_bench [--rows 160] [--epochs 1] [--format json]``

Both sides train the same tiny GPT-2 (built from a config, the default model's WordPiece tokenizer) on the same
Reuters rows (description -> headline, written in the plain prompt format), at identical settings: batch size,
max length, learning rate, epochs, seed, fp32 on the CPU. The engine side uses engine.training.generation's encoding
(response-only labels), its collator and the seeded length-grouped sampler; the baseline tokenizes prompt+response as
one text and lets DataCollatorForLanguageModeling(mlm=False) pad and label it, in random order. Speed is real
(non-pad) tokens per second of trainer.train().
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.data import shared_dir

SETTINGS = {"batch_size": 16, "max_length": 64, "learning_rate": 5e-3, "seed": 7}


def _rows(n: int) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(shared_dir() / "news" / "reuters_headlines.csv", encoding="cp1252").dropna()
    return [{"text": d, "label": h, "tokens": None} for d, h in zip(frame["Description"][:n], frame["Headlines"][:n])]


def _tiny_gpt2(folder: Path) -> Path:
    """An untrained 2-layer, 64-wide GPT-2 with the default model's WordPiece tokenizer (as tests/helpers.py builds)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.models.catalog import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=2,
                                       eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _args(out: Path, epochs: float, group: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, learning_rate=SETTINGS["learning_rate"],
        per_device_train_batch_size=SETTINGS["batch_size"], seed=SETTINGS["seed"], save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, logging_strategy="no",
        dataloader_num_workers=0, remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if group else "random",
    )


def _timed(trainer, items, epochs) -> dict:
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    tokens = sum(len(it["input_ids"]) for it in items) * epochs
    return {"seconds": round(seconds, 2), "tokens": int(tokens), "tokens_per_s": round(tokens / seconds, 1)}


def engine_side(model_dir: Path, rows: list[dict], epochs: float, out: Path) -> dict:
    from transformers import Trainer

    from engine.models import generate
    from engine.training import finetune
    from engine.training.generation import Collator, encode_row

    finetune.seed_everything(SETTINGS["seed"])
    tokenizer, model = generate.load_causal(model_dir)
    model.train()
    items = [encode_row(tokenizer, r, SETTINGS["max_length"]) for r in rows]
    cls = finetune._seeded_sampler_trainer_class(Trainer, SETTINGS["seed"], True)
    trainer = cls(model=model, args=_args(out / "engine", epochs, True), train_dataset=finetune._Rows(items),
                  data_collator=Collator(tokenizer.pad_token_id))
    return _timed(trainer, items, epochs)


def plain_trainer(model_dir: Path, rows: list[dict], epochs: float, out: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer, set_seed

    from engine.models.generate import PLAIN_PROMPT

    set_seed(SETTINGS["seed"])
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), trust_remote_code=False)
    texts = [PLAIN_PROMPT.format(prompt=r["text"]) + r["label"] for r in rows]
    enc = tokenizer(texts, truncation=True, max_length=SETTINGS["max_length"], add_special_tokens=False)
    items = [{"input_ids": ids} for ids in enc["input_ids"]]
    trainer = Trainer(model=model, args=_args(out / "plain", epochs, False), train_dataset=items,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    return _timed(trainer, items, epochs)


def run(n_rows: int = 160, epochs: float = 1.0) -> dict:
    import torch

    rows = _rows(n_rows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = _tiny_gpt2(tmp / "gpt2")
        plain = plain_trainer(model_dir, rows, epochs, tmp)
        engine = engine_side(model_dir, rows, epochs, tmp)
    return {"rows": n_rows, "epochs": epochs, **SETTINGS, "torch_threads": torch.get_num_threads(),
            "engine": engine, "plain_trainer_dclm": plain,
            "speedup": round(engine["tokens_per_s"] / plain["tokens_per_s"], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generation_bench")
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    result = run(args.rows, args.epochs)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"generation training, tiny GPT-2, {result['rows']} rows x {result['epochs']} epochs, batch "
              f"{result['batch_size']}, max length {result['max_length']}, {result['torch_threads']} threads")
        print(f"  engine (length-grouped, response-only labels): {result['engine']['tokens_per_s']:>10,.1f} tokens/s")
        print(f"  plain Trainer + DataCollatorForLanguageModeling: {result['plain_trainer_dclm']['tokens_per_s']:>8,.1f} tokens/s")
        print(f"  ratio: {result['speedup']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
