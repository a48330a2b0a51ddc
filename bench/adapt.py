"""``python -m bench.adapt OUT``: task-adaptive pretraining, one of the levers measured for Thorough (issue 13).

Masked-language training of the base encoder on the training texts of the study's own split (Gururangan et al. 2020,
"Don't Stop Pretraining": TAPT), before the fine-tuning: the dataset is imported as ``python -m bench quality`` imports
it (the automatic stratified split, in a throwaway data directory), and only its *training* split's texts are read, so
neither the validation and test splits nor ``dev.csv`` are seen. The default model is a sentence-transformers encoder
shipped without its masked-language head, so a fresh head is first trained alone for one epoch (the encoder as it is,
so that the head's first random gradients do not reach it), then everything for ``--epochs`` epochs (AdamW, warm-up
6%, linear decay, bf16 autocast where the CPU computes it, 15% of the tokens masked). OUT is a base-model folder:
the encoder's weights, the tokenizer and the sentence-transformers files (``1_Pooling``: mean pooling as before), so

    python -m bench.adapt /tmp/tapt --epochs 10
    BELLWETHER_BENCH_MODEL=/tmp/tapt python -m bench quality --presets thorough --seeds 5 --datasets fpb

fine-tunes it exactly as the default model is fine-tuned. It prints (and ``--out`` writes) the masked-language loss
after each epoch and the time taken. docs/benchmarks.md has what it did to Thorough.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

SENTENCE_TRANSFORMERS_FILES = ("1_Pooling", "modules.json", "sentence_bert_config.json",
                               "config_sentence_transformers.json")


def training_texts(dataset: str, n_train: int | None = None) -> list[str]:
    """The texts of the training split ``bench quality`` trains on (imported into a throwaway data directory)."""
    from bench import quality
    from engine import db, paths
    from engine.data import datasets

    with paths.temporary_home(prefix="bellwether-adapt-"):
        conn = db.connect()
        spec = quality.import_dataset(conn, dataset, n_train)
        rows = datasets.rows(conn, datasets.get(conn, spec)["id"], "train")
        conn.close()
    return [r["text"] for r in rows]


def adapt(source: str, texts: list[str], out: Path, epochs: int, learning_rate: float, seed: int = 0,
          batch_size: int = 32, max_length: int = 64) -> dict:
    """Masked-language training of ``source`` on ``texts``; the encoder saved to ``out``. Returns the figures."""
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

    from engine.models import inference

    if not texts:
        raise ValueError("no training texts")
    random.seed(seed)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(source)
    model = BertForMaskedLM.from_pretrained(source)  # the encoder's weights; the head's transform is new
    collate = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    encoded = [tok(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    bf16 = inference.cpu_has_bf16()

    def batches():
        order = list(range(len(encoded)))
        random.shuffle(order)
        for i in range(0, len(order), batch_size):
            batch = collate([{"input_ids": encoded[j]} for j in order[i:i + batch_size]])
            yield batch["input_ids"], batch["labels"]

    def loss_of(ids, labels, train_encoder: bool):
        masked = labels != -100
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.set_grad_enabled(train_encoder):
                hidden = model.bert(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long()).last_hidden_state
            logits = model.cls(hidden[masked])  # the vocabulary's logits only where a token was masked
        return torch.nn.functional.cross_entropy(logits.float(), labels[masked])

    started = time.perf_counter()
    model.train()
    head = [p for n, p in model.named_parameters() if n.startswith("cls.") and "decoder.weight" not in n]
    head_opt = torch.optim.AdamW(head, lr=1e-3)
    losses = []
    for ids, labels in batches():
        loss = loss_of(ids, labels, False)
        loss.backward()
        head_opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    figures = {"head_epoch_mlm_loss": round(sum(losses) / len(losses), 4), "epochs": []}

    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    total = epochs * ((len(encoded) + batch_size - 1) // batch_size)
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    for epoch in range(epochs):
        losses = []
        for ids, labels in batches():
            loss = loss_of(ids, labels, True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        figures["epochs"].append({"epoch": epoch + 1, "mlm_loss": round(sum(losses) / len(losses), 4),
                                  "seconds": round(time.perf_counter() - started, 1)})
        print(f"epoch {epoch + 1}: masked-language loss {figures['epochs'][-1]['mlm_loss']}", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    model.bert.save_pretrained(out)
    tok.save_pretrained(out)
    for name in SENTENCE_TRANSFORMERS_FILES:
        path = Path(source) / name
        if path.is_dir():
            shutil.copytree(path, out / name, dirs_exist_ok=True)
        elif path.is_file():
            shutil.copy(path, out / name)
    figures.update({"texts": len(texts), "bf16": bf16, "seconds": round(time.perf_counter() - started, 1)})
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adapt", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the folder to write the adapted base model to")
    p.add_argument("--dataset", default="fpb", choices=["fpb", "finfe-zh"], help="whose training split (fpb)")
    p.add_argument("--epochs", type=int, default=10, help="masked-language epochs after the head's (10)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="peak rate (1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, help="cap the training file as bench quality --n-train does")
    p.add_argument("--out", dest="json_out", help="also write the figures (JSON) here")
    args = p.parse_args(argv)

    from bench.cli import _base_model

    source = _base_model()[1]
    texts = training_texts(args.dataset, args.n_train)
    figures = adapt(source, texts, Path(args.out), args.epochs, args.learning_rate, args.seed)
    result = {"benchmark": "adapt", "command": "python -m bench.adapt " + " ".join(argv or sys.argv[1:]),
              "base_model": source, "dataset": args.dataset, "learning_rate": args.learning_rate, **figures}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
