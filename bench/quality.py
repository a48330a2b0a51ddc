"""``python -m bench quality``: how good and how steady each preset is, over seeds, through the product's own path.

For each dataset, preset, precision and seed: the training file is imported as an analyst imports it (no split
column: the automatic stratified 80/10/10 split), a run is queued with ``finetune.submit`` and its job process runs
as the supervisor runs it (``engine_side.train_run``). Quality is macro-F1 on the run's own test split and, for the
text datasets, on the held-out ``dev.csv`` (predicted with ``inference.load(..., "exact")``: what Reports would show
for an evaluated file); for FIN5 entity tagging, the seqeval entity F1 on the test split. Each group reports mean, min,
max, spread (max - min) and wall time per run.

Sizes: ``--n-train`` caps the training rows (a seeded subsample, file order kept) so that a seed study fits the time
there is; the full files are the default. BELLWETHER_BENCH_SIZE=tiny uses a few dozen rows (tests).
"""

from __future__ import annotations

import statistics
import time

from bench import data

DATASETS = ("fpb", "finfe-zh", "fin5")


def _text_rows(dataset: str, split: str, n: int | None) -> list[dict]:
    frame = data._read_csv(data.shared_dir() / dataset / f"{split}.csv", dtype=str, keep_default_na=False)
    return data._subsample([{"text": t, "label": lab} for t, lab in zip(frame["text"], frame["label"])], n)


def _conll_bytes(n: int | None) -> bytes:
    """FIN5 sentences (a seeded subsample of n when given), as the CoNLL file an analyst uploads."""
    text = (data.shared_dir() / "finer" / "FIN5.txt").read_text(encoding="utf-8")
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    blocks = data._subsample(blocks, n)
    return ("\n\n".join(blocks) + "\n").encode("utf-8")


def import_dataset(conn, dataset: str, n_train: int | None) -> str:
    """The training file imported with the automatic split, as the Data page does; returns 'name:version'."""
    import pandas as pd

    from engine.data import datasets

    if dataset == "fin5":
        ds, _ = datasets.import_file(conn, _conll_bytes(n_train), "FIN5.txt", "fin5-quality", created_by="bench",
                                     format="conll")
    else:
        rows = _text_rows(dataset, "train", n_train)
        csv = pd.DataFrame(rows, columns=["text", "label"]).to_csv(index=False).encode("utf-8")
        ds, _ = datasets.import_file(conn, csv, f"{dataset}.csv", f"{dataset}-quality", created_by="bench",
                                     mapping={"text": "text", "label": "label"})
    return f"{ds['name']}:{ds['version']}"


def _dev_f1(model_dir: str, dev: list[dict]) -> float:
    from sklearn.metrics import f1_score

    from engine.models import inference

    predictor = inference.load(model_dir, precision="exact")
    pred = [p.label for p in predictor.predict([r["text"] for r in dev])]
    true = [r["label"] for r in dev]
    return round(float(f1_score(true, pred, labels=sorted(set(true)), average="macro", zero_division=0)), 4)


def one_run(conn, dataset: str, ds_spec: str, base_model: str, preset: str, seed: int, overrides: dict,
            dev: list[dict] | None) -> dict:
    from bench import engine_side
    from engine.jobs import queue

    started = time.perf_counter()
    run = engine_side.train_run(conn, ds_spec, base_model, preset, {**overrides, "seed": seed})
    job = queue.get(conn, run["run_id"])
    m = job["metrics"]
    out = {
        "seed": seed, "run_id": run["run_id"], "precision": (job.get("device") or {}).get("precision"),
        "test_macro_f1": round(float(m.get("macro_f1") or 0), 4),
        "validation_macro_f1": round(float(m.get("validation_macro_f1") or 0), 4),
        "samples_per_s": run["samples_per_s"], "train_runtime_s": run["train_runtime_s"],
        "warnings": m.get("warnings") or [],
    }
    if m.get("weight_averaging"):  # whether the averaged weights or the best checkpoint was kept
        out["weight_averaging"] = m["weight_averaging"]
    if dataset == "fin5":
        out["test_entity_f1"] = round(float(m.get("entity_f1") or 0), 4)
    elif dev:
        out["dev_macro_f1"] = _dev_f1(job["model_dir"], dev)
    out["wall_s"] = round(time.perf_counter() - started, 2)
    return out


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {}
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "spread": round(max(values) - min(values), 4)}


def summarise(runs: list[dict], dataset: str) -> dict:
    key = "test_entity_f1" if dataset == "fin5" else "dev_macro_f1"
    return {
        "headline_metric": key,
        key: _stats([r.get(key) for r in runs]),
        "test_macro_f1": _stats([r["test_macro_f1"] for r in runs]),
        "samples_per_s": _stats([r["samples_per_s"] for r in runs]),
        "wall_s": _stats([r["wall_s"] for r in runs]),
        "n_flagged": sum(1 for r in runs if r["warnings"]),
    }


def bench_quality(mode: str, presets: list[str], seeds: int, datasets_: list[str], precisions: list[str],
                  n_train: int | None, max_length: int | None, base_model: str, partial_path=None,
                  options: dict | None = None, first_seed: int = 42) -> dict:
    """Every (dataset, preset, precision) group over ``seeds`` seeds (``first_seed``, the next, ...), in the store
    bench.cli made for this run.
    ``partial_path``: after each run, every run so far is written there (a long study stopped early keeps them)."""
    import json

    from engine import db

    done: list[dict] = []

    if mode == "tiny":
        n_train = min(n_train or 48, 48)
    groups = []
    conn = db.connect()
    for dataset in datasets_:
        ds_spec = import_dataset(conn, dataset, n_train)
        dev = None if dataset == "fin5" else _text_rows(dataset, "dev", 24 if mode == "tiny" else None)
        for preset in presets:
            for precision in precisions:
                overrides = {**(options or {}), "precision": precision}
                if max_length:
                    overrides["max_length"] = max_length
                runs = []
                for i in range(seeds):
                    runs.append(one_run(conn, dataset, ds_spec, base_model, preset, first_seed + i, overrides, dev))
                    done.append({"dataset": dataset, "preset": preset, "precision": precision, **runs[-1]})
                    if partial_path:
                        with open(partial_path, "w", encoding="utf-8") as f:
                            json.dump({"runs_so_far": done}, f, indent=2)
                groups.append({"dataset": dataset, "preset": preset, "precision": precision,
                               "n_train_file": n_train, "max_length": max_length, "seeds": seeds,
                               "options": options or {},
                               "summary": summarise(runs, dataset), "runs": runs})
    return {"groups": groups}


def render(result: dict) -> str:
    lines = ["| dataset | preset | precision | seeds | metric | mean | min | max | spread | samples/s (mean) | "
             "wall s per run (mean) | flagged |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in result["groups"]:
        s = g["summary"]
        key = s["headline_metric"]
        q = s.get(key) or {}
        lines.append(
            f"| {g['dataset']} | {g['preset']} | {g['precision']} | {g['seeds']} | {key} | {q.get('mean', '-')} | "
            f"{q.get('min', '-')} | {q.get('max', '-')} | {q.get('spread', '-')} | "
            f"{(s.get('samples_per_s') or {}).get('mean', '-')} | {(s.get('wall_s') or {}).get('mean', '-')} | "
            f"{s['n_flagged']} |")
    return "\n".join(lines)
