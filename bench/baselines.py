"""What an analyst would otherwise use, exactly as issue 7 describes it, on all-MiniLM-L6-v2 and fpb, seed 42.

- :func:`tutorial_recipe`: the classic tutorial loop: every text padded to 128 tokens, batch 16, ``torch.optim.AdamW``
  at 2e-5 with no schedule, a plain PyTorch loop, evaluated on dev after each epoch.
- :func:`trainer_defaults`: ``transformers.Trainer`` with its defaults (dynamic padding through the tokenizer's
  collator, linear decay, checkpoints every 500 steps), batch 16, lr 2e-5, evaluated on dev after each epoch.
- :func:`pipeline_scoring`: ``transformers.pipeline("text-classification")`` with default arguments, or with
  ``batch_size=32``.

Each function returns a dict of plain numbers (JSON-ready). Times are wall-clock seconds from ``time.perf_counter``.
"Time to a usable model" is measured from the start of the function (loading the model included) to a saved model
whose dev macro-F1 is at least 0.80; evaluating after each epoch is part of it, since that is how a user knows.
"""

from __future__ import annotations

import os
import random
import tempfile
import time

from bench import data

USABLE_F1 = 0.80


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load(model_path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(data.LABELS),
        id2label=dict(enumerate(data.LABELS)),
        label2id={l: i for i, l in enumerate(data.LABELS)},
        trust_remote_code=False,
    )
    return tok, model


def tutorial_recipe(model_path: str, n_train: int | None, n_dev: int | None, epochs: int, seed: int = data.SEED,
                    max_length: int = 128, batch_size: int = 16, lr: float = 2e-5) -> dict:
    """The tutorial recipe. With a constant learning rate, its first epoch is exactly a 1-epoch run of the recipe."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    t0 = time.perf_counter()
    _seed(seed)
    train, dev = data.fpb("train", n_train), data.fpb("dev", n_dev)
    tok, model = _load(model_path)
    label_id = {l: i for i, l in enumerate(data.LABELS)}

    def tensors(rows):
        enc = tok([r["text"] for r in rows], padding="max_length", truncation=True, max_length=max_length,
                  return_tensors="pt")
        return TensorDataset(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                             torch.tensor([label_id[r["label"]] for r in rows]))

    device = "cuda" if torch.cuda.is_available() else "cpu"  # what a tutorial reader on a GPU machine would do
    model.to(device)
    train_loader = DataLoader(tensors(train), batch_size=batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
    dev_loader = DataLoader(tensors(dev), batch_size=batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    train_s = 0.0
    per_epoch = []
    usable_s = None
    save_dir = tempfile.mkdtemp(prefix="bench-recipe-", dir=os.environ.get("BELLWETHER_HOME"))  # removed with it
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        for ids, mask, types, labels in train_loader:
            ids, mask, types, labels = (t.to(device) for t in (ids, mask, types, labels))
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        train_s += time.perf_counter() - start
        model.eval()
        pred = []
        with torch.no_grad():
            for ids, mask, types, _ in dev_loader:
                ids, mask, types = (t.to(device) for t in (ids, mask, types))
                logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
                pred += [data.LABELS[i] for i in logits.argmax(-1).tolist()]
        m = data.metrics([r["label"] for r in dev], pred)
        if usable_s is None and m["macro_f1"] >= USABLE_F1:
            model.save_pretrained(save_dir)
            tok.save_pretrained(save_dir)
            usable_s = time.perf_counter() - t0
        per_epoch.append({"epoch": epoch, "train_s": round(train_s, 2), "elapsed_s": round(time.perf_counter() - t0, 2),
                          "samples_per_s": round(len(train) * epoch / train_s, 2), **m})
    return {
        "n_train": len(train), "n_dev": len(dev), "epochs": epochs,
        "train_s": round(train_s, 2), "samples_per_s": round(len(train) * epochs / train_s, 2),
        "wall_s": round(time.perf_counter() - t0, 2), "time_to_usable_s": round(usable_s, 2) if usable_s else None,
        "per_epoch": per_epoch, "accuracy": per_epoch[-1]["accuracy"], "macro_f1": per_epoch[-1]["macro_f1"],
    }


def trainer_defaults(model_path: str, n_train: int | None, n_dev: int | None, epochs: int, seed: int = data.SEED,
                     batch_size: int = 16, lr: float = 2e-5) -> dict:
    """HF Trainer with its defaults; only batch size, lr, epochs, seed and an evaluation per epoch are set."""
    import numpy as np
    from transformers import Trainer, TrainerCallback, TrainingArguments

    t0 = time.perf_counter()
    _seed(seed)
    train, dev = data.fpb("train", n_train), data.fpb("dev", n_dev)
    tok, model = _load(model_path)
    label_id = {l: i for i, l in enumerate(data.LABELS)}

    def features(rows):  # truncation only; the default collator (DataCollatorWithPadding) pads each batch
        enc = tok([r["text"] for r in rows], truncation=True)
        return [{**{k: enc[k][i] for k in enc}, "labels": label_id[r["label"]]} for i, r in enumerate(rows)]

    def compute_metrics(p):
        pred = np.asarray(p.predictions).argmax(-1)
        return data.metrics([data.LABELS[i] for i in p.label_ids], [data.LABELS[i] for i in pred])

    state = {"eval_s": 0.0, "save_s": 0.0, "usable_s": None, "per_epoch": [], "t_train": None}
    save_dir = tempfile.mkdtemp(prefix="bench-trainer-", dir=os.environ.get("BELLWETHER_HOME"))  # removed with it

    class Timed(Trainer):
        def evaluate(self, *a, **k):
            start = time.perf_counter()
            result = super().evaluate(*a, **k)
            state["eval_s"] += time.perf_counter() - start
            return result

    class Usable(TrainerCallback):
        def on_evaluate(self, args, st, control, metrics=None, model=None, **kw):
            f1 = (metrics or {}).get("eval_macro_f1", 0.0)
            if state["usable_s"] is None and f1 >= USABLE_F1:
                start = time.perf_counter()
                model.save_pretrained(save_dir)
                tok.save_pretrained(save_dir)
                state["save_s"] += time.perf_counter() - start
                state["usable_s"] = time.perf_counter() - t0
            state["per_epoch"].append({"epoch": round(st.epoch or 0), "elapsed_s": round(time.perf_counter() - t0, 2),
                                       "accuracy": metrics.get("eval_accuracy"), "macro_f1": f1})

    with tempfile.TemporaryDirectory(prefix="bench-trainer-out-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, learning_rate=lr,
                                 num_train_epochs=epochs, seed=seed, eval_strategy="epoch", report_to="none",
                                 disable_tqdm=True)
        trainer = Timed(model=model, args=args, train_dataset=features(train), eval_dataset=features(dev),
                        processing_class=tok, compute_metrics=compute_metrics, callbacks=[Usable()])
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start - state["eval_s"] - state["save_s"]
    last = state["per_epoch"][-1]
    return {
        "n_train": len(train), "n_dev": len(dev), "epochs": epochs,
        "train_s": round(train_s, 2), "samples_per_s": round(len(train) * epochs / train_s, 2),
        "wall_s": round(time.perf_counter() - t0, 2),
        "time_to_usable_s": round(state["usable_s"], 2) if state["usable_s"] else None,
        "per_epoch": state["per_epoch"], "accuracy": last["accuracy"], "macro_f1": last["macro_f1"],
    }


def pipeline_scoring(model_dir: str, texts: list[str], batch_size: int | None = None) -> dict:
    """``pipeline("text-classification")`` over ``texts``: default arguments, or ``batch_size`` when given.

    ``load_s`` (building the pipeline) and ``score_s`` (the call) are reported apart; ``texts_per_s`` uses the call
    alone, the view most favourable to the pipeline.
    """
    from transformers import pipeline

    import torch

    t0 = time.perf_counter()
    on_gpu = {"device": 0} if torch.cuda.is_available() else {}  # on a CPU machine: exactly the default arguments
    clf = pipeline("text-classification", model=model_dir, **on_gpu)
    load_s = time.perf_counter() - t0
    start = time.perf_counter()
    out = clf(texts) if batch_size is None else clf(texts, batch_size=batch_size)
    score_s = time.perf_counter() - start
    return {
        "n_texts": len(texts), "batch_size": batch_size, "load_s": round(load_s, 2), "score_s": round(score_s, 2),
        "texts_per_s": round(len(texts) / score_s, 1), "labels": [o["label"] for o in out],
    }


def with_process_rate(result: dict) -> dict:
    """Add the whole-process figure to a pipeline case run by bench.runner: texts over the child's whole life
    (starting Python, importing transformers and torch, building the pipeline, the call)."""
    if result.get("process_s"):
        result["texts_per_s_process"] = round(result["n_texts"] / result["process_s"], 1)
    return result
