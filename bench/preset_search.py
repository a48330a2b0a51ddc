"""The preset search behind the Balanced and Thorough presets (recorded in docs/benchmarks.md).

    python -m bench.preset_search [--quick] [--only NAME ...] [--out FILE]

Each candidate is a real run of the engine (``training.submit`` + the job process) on fpb train (dev as validation),
seed 42, in a temporary data directory: dev macro-F1 after each epoch, the time from queueing to each evaluation and
to the saved model. ``grouped_*`` candidates measure what length-grouped batches would do to training throughput with
the engine's Trainer settings (the engine has no such option yet), one epoch each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import data  # noqa: E402

CANDIDATES: dict[str, tuple[str, dict]] = {
    # name: (preset, overrides)
    "lr5e-5_2ep": ("balanced", {"epochs": 2, "learning_rate": 5e-5, "warmup_ratio": 0.1}),
    "lr1e-4_2ep": ("balanced", {"epochs": 2, "learning_rate": 1e-4, "warmup_ratio": 0.1}),
    "lr1e-4_2ep_classweights": ("balanced", {"epochs": 2, "learning_rate": 1e-4, "warmup_ratio": 0.1,
                                             "class_weighting": True}),
    "lr5e-5_4ep_len128": ("thorough", {"epochs": 4, "learning_rate": 5e-5, "max_length": 128,
                                       "early_stopping_patience": 2}),
}


def grouped_throughput(model_path: str, n_train: int | None, group_by_length: bool, batch_size: int = 16,
                       max_length: int = 128) -> dict:
    """One epoch of a Trainer set up as the engine's (dynamic padding, max length 128, batch 16), with or without
    length-grouped batches; training samples per second."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from bench.baselines import _load, _seed

    _seed(data.SEED)
    train = data.fpb("train", n_train)
    tok, model = _load(model_path)
    label_id = {l: i for i, l in enumerate(data.LABELS)}
    enc = tok([r["text"] for r in train], truncation=True, max_length=max_length)
    items = [{**{k: enc[k][i] for k in enc}, "labels": label_id[r["label"]]} for i, r in enumerate(train)]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, learning_rate=2e-5,
                                 num_train_epochs=1, seed=data.SEED, report_to="none", disable_tqdm=True,
                                 save_strategy="no", use_cpu=True,
                                 train_sampling_strategy="group_by_length" if group_by_length else "random")
        trainer = Trainer(model=model, args=args, train_dataset=items, data_collator=DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
    return {"n_train": len(train), "group_by_length": group_by_length, "train_s": round(train_s, 2),
            "samples_per_s": round(len(train) / train_s, 2)}


def main(argv: list[str] | None = None) -> int:
    from engine import db, paths
    from engine.models.catalog import default_model_path

    from bench import engine_side, runner

    parser = argparse.ArgumentParser(prog="python -m bench.preset_search")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="candidate names (default: all, and the grouped-batch throughput pair)")
    parser.add_argument("--grouped", action="store_true", help="only the length-grouped throughput pair")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    sizes = data.sizes("quick" if args.quick else "full")
    results: dict = {"sizes": sizes.as_dict(), "load_start": list(os.getloadavg()), "runs": {}}
    with paths.temporary_home("bellwether-search-"):
        if args.grouped or not args.only:
            for grouped in (False, True):
                results["runs"][f"grouped_{grouped}"] = runner.run_case(
                    "bench.preset_search:grouped_throughput",
                    {"model_path": str(default_model_path()), "n_train": sizes.n_train or 1024, "group_by_length": grouped})
                print(json.dumps(results["runs"][f"grouped_{grouped}"]), file=sys.stderr, flush=True)
        if not args.grouped:
            conn = db.connect()
            dataset = engine_side.import_fpb(conn, sizes.n_train, sizes.n_dev)
            for name in args.only or list(CANDIDATES):
                preset, overrides = CANDIDATES[name]
                run = engine_side.train_run(conn, dataset, "default", preset, overrides)
                run.pop("model_dir", None)
                results["runs"][name] = run
                print(name, json.dumps({k: run[k] for k in ("macro_f1", "wall_s", "per_epoch", "samples_per_s")}),
                      file=sys.stderr, flush=True)
            conn.close()
    results["load_end"] = list(os.getloadavg())
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
