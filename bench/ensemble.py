"""``python -m bench.ensemble DIR``: would averaging several runs' predictions beat one run? (issue 13's ensembling lever)

DIR is a data directory kept by ``python -m bench quality ... --datasets fpb --keep`` (its stderr says where). Every
succeeded text-classification run in it is one member. For each run, and for each ensemble of ``k`` runs (``--sizes``,
default 2, 3 and all; k consecutive runs in id order, wrapping round, so each run is in k of them), the ensemble's
prediction is the label with the highest mean probability over its members (``inference.load(..., "exact")``, what
Reports uses). Reported: macro-F1 on the held-out ``dev.csv`` (``--dataset``'s, in ../shared/data) and on the runs'
own test split, per ensemble and as mean / min / max over the ensembles of one size. Ensembling would cost k times a
run's training and k models at every prediction, so it is worth building only if these figures say so.

``--soups`` also averages the members' saved *weights* (a uniform model soup, Wortsman et al. 2022) for the same sets
of runs and predicts with that one model, loaded as Reports loads a run: k times the training, but one model at every
prediction, so every loader would read it unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from engine.training import soup


def _macro_f1(labels: list[str], probs, truth: list[str]) -> float:
    from sklearn.metrics import f1_score

    pred = [labels[i] for i in probs.argmax(1)]
    return round(float(f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)), 4)


def _stats(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def measure(dataset: str = "fpb", sizes: list[int] | None = None, dev_limit: int | None = None,
            soups: bool = False) -> dict:
    """The figures for the store ``BELLWETHER_HOME`` points at (see the module's docstring)."""
    import numpy as np

    from bench import quality
    from engine import db
    from engine.data import datasets
    from engine.errors import UserError
    from engine.jobs import queue
    from engine.models import inference

    conn = db.connect()
    jobs = [queue.get(conn, r[0]) for r in conn.execute(
        "SELECT id FROM jobs WHERE kind = 'train' AND status = 'succeeded' AND task = 'text-classification' "
        "ORDER BY id").fetchall()]
    jobs = [j for j in jobs if j.get("model_dir")]
    if not jobs:
        raise UserError("No finished text-classification run in this data directory: run `python -m bench quality "
                        "--datasets fpb --keep` first and pass the folder it prints.")
    if len({j["dataset_id"] for j in jobs}) != 1:
        raise UserError("The runs in this data directory were trained on different datasets: keep one study per folder.")
    dev = quality._text_rows(dataset, "dev", dev_limit)
    test = datasets.rows(conn, jobs[0]["dataset_id"], "test")
    dev_truth, test_truth = [r["label"] for r in dev], [r["label"] for r in test]

    probs, labels = {}, None
    runs = []

    def as_array(preds):
        return np.array([[p.probs[label] for label in labels] for p in preds])

    for job in jobs:
        predictor = inference.load(job["model_dir"], precision="exact")
        if labels is None:
            labels = predictor.labels
        if predictor.labels != labels:
            raise UserError("The runs' label sets differ, so their predictions cannot be averaged.")
        probs[job["id"]] = (as_array(predictor.predict([r["text"] for r in dev])),
                            as_array(predictor.predict([r["text"] for r in test])))
        runs.append({"run_id": job["id"], "seed": job["config"].get("seed"),
                     "dev_macro_f1": _macro_f1(labels, probs[job["id"]][0], dev_truth),
                     "test_macro_f1": _macro_f1(labels, probs[job["id"]][1], test_truth)})
    ids = [r["run_id"] for r in runs]
    result = {"dataset": dataset, "n_dev": len(dev), "n_test": len(test), "runs": runs,
              "single": {"dev_macro_f1": _stats([r["dev_macro_f1"] for r in runs]),
                         "test_macro_f1": _stats([r["test_macro_f1"] for r in runs])},
              "ensembles": []}
    by_id = {j["id"]: j for j in jobs}
    for k, sets in _member_sets(ids, sizes, smallest=1):
        each = [{"members": m,
                 "dev_macro_f1": _macro_f1(labels, np.mean([probs[i][0] for i in m], axis=0), dev_truth),
                 "test_macro_f1": _macro_f1(labels, np.mean([probs[i][1] for i in m], axis=0), test_truth)}
                for m in sets]
        result["ensembles"].append(_group(k, each))
    if soups:
        weights: dict = {}  # each run's saved weights, read once
        result["soups"] = []
        for k, sets in _member_sets(ids, sizes, smallest=2):
            each = []
            for members in sets:
                predictor = _soup([by_id[i]["model_dir"] for i in members], weights)
                each.append({"members": members,
                             "dev_macro_f1": _macro_f1(labels, as_array(predictor.predict([r["text"] for r in dev])),
                                                       dev_truth),
                             "test_macro_f1": _macro_f1(labels, as_array(predictor.predict([r["text"] for r in test])),
                                                        test_truth)})
            result["soups"].append(_group(k, each))
    return result


def _member_sets(ids: list[int], sizes: list[int] | None, smallest: int) -> list[tuple[int, list[list[int]]]]:
    """For each size k (at least ``smallest``, at most all the runs): the sets of k consecutive runs, wrapping round,
    so each run is in k of them; all the runs make one set, however it is rotated."""
    out = []
    for k in sorted({min(max(smallest, s), len(ids)) for s in (sizes or [2, 3, len(ids)])}):
        starts = range(1) if k == len(ids) else range(len(ids))
        out.append((k, [[ids[(s + i) % len(ids)] for i in range(k)] for s in starts]))
    return out


def _group(size: int, each: list[dict]) -> dict:
    return {"size": size, "each": each, "dev_macro_f1": _stats([e["dev_macro_f1"] for e in each]),
            "test_macro_f1": _stats([e["test_macro_f1"] for e in each])}


def _soup(model_dirs: list[str], cache: dict | None = None):
    """A predictor for the mean of the runs' saved weights (a uniform model soup, engine.training.soup.average, as
    Thorough makes), loaded as Reports loads a run. ``cache`` keeps each folder's weights once read."""
    from pathlib import Path

    from safetensors.torch import load_file

    cache = {} if cache is None else cache
    for d in model_dirs:
        if d not in cache:
            cache[d] = load_file(str(Path(d) / "model.safetensors"))
    return _predictor(model_dirs[0], soup.average([cache[d] for d in model_dirs]))


def _predictor(model_dir: str, weights: dict):
    """A predictor for ``model_dir`` (its config, tokenizer and pooling) with ``weights`` in place of its own."""
    import shutil
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file

    from engine.models import inference

    folder = Path(tempfile.mkdtemp(prefix="bellwether-soup-"))
    shutil.copytree(model_dir, folder, dirs_exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    try:
        return inference.load(str(folder), precision="exact")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_members(dataset: str = "fpb", dev_limit: int | None = None) -> dict:
    """Inside each model-soup run kept with its runs' weights (``bench quality --keep``): each run alone, the uniform
    soup (the run's model), the run that scored best on validation alone, and a greedy soup (Wortsman et al. 2022:
    the runs in order of their validation macro-F1, each added only if the soup's validation macro-F1 does not fall),
    on dev.csv and the test split."""
    from pathlib import Path

    import numpy as np
    import torch

    from bench import quality
    from engine import db
    from engine.data import datasets
    from engine.errors import UserError
    from engine.jobs import queue

    conn = db.connect()
    jobs = [queue.get(conn, r[0]) for r in conn.execute(
        "SELECT id FROM jobs WHERE kind = 'train' AND status = 'succeeded' AND task = 'text-classification' "
        "ORDER BY id").fetchall()]
    jobs = [j for j in jobs if (j.get("metrics") or {}).get("soup") and j.get("model_dir")
            and (Path(j["model_dir"]).parent / "members" / "0.pt").is_file()]
    if not jobs:
        raise UserError("No model-soup run with its runs' weights in this data directory: run `python -m bench quality "
                        "--presets thorough --datasets fpb --keep` first and pass the folder it prints.")
    sets = {"dev": quality._text_rows(dataset, "dev", dev_limit)}
    for split in ("validation", "test"):
        sets[split] = datasets.rows(conn, jobs[0]["dataset_id"], split)

    def score(model_dir: str, weights: dict) -> dict:
        predictor = _predictor(model_dir, weights)
        labels = predictor.labels
        out = {}
        for name, rows in sets.items():
            probs = np.array([[p.probs[label] for label in labels] for p in predictor.predict([r["text"] for r in rows])])
            out[f"{name}_macro_f1"] = _macro_f1(labels, probs, [r["label"] for r in rows])
        return out

    runs, kinds = [], {"each run alone": [], "uniform soup": [], "best run by validation": [], "greedy soup": []}
    for job in jobs:
        folder = Path(job["model_dir"]).parent / "members"
        count = int(job["metrics"]["soup"]["runs"])
        states = [torch.load(folder / f"{i}.pt", map_location="cpu", weights_only=True) for i in range(count)]
        alone = [score(job["model_dir"], s) for s in states]
        uniform = score(job["model_dir"], soup.average(states))
        order = sorted(range(count), key=lambda i: -alone[i]["validation_macro_f1"])
        chosen, best_val = [order[0]], alone[order[0]]["validation_macro_f1"]
        greedy = alone[order[0]]
        for i in order[1:]:
            figures = score(job["model_dir"], soup.average([states[j] for j in chosen + [i]]))
            if figures["validation_macro_f1"] >= best_val:
                chosen, best_val, greedy = chosen + [i], figures["validation_macro_f1"], figures
        runs.append({"run_id": job["id"], "seed": job["config"].get("seed"), "seeds": job["metrics"]["soup"]["seeds"],
                     "each": alone, "uniform": uniform, "best_by_validation": alone[order[0]],
                     "greedy": {**greedy, "members": sorted(chosen)}})
        kinds["each run alone"] += alone
        kinds["uniform soup"].append(uniform)
        kinds["best run by validation"].append(alone[order[0]])
        kinds["greedy soup"].append(greedy)
    summary = {kind: {split: _stats([f[f"{split}_macro_f1"] for f in figures]) for split in ("dev", "test")}
               for kind, figures in kinds.items()}
    return {"dataset": dataset, "n_dev": len(sets["dev"]), "n_validation": len(sets["validation"]),
            "n_test": len(sets["test"]), "runs": runs, "summary": summary}


def render_members(result: dict) -> str:
    lines = ["| model | dev macro-F1 mean (min-max) | test-split macro-F1 mean (min-max) |", "|---|---|---|"]
    for kind, figures in result["summary"].items():
        d, t = figures["dev"], figures["test"]
        lines.append(f"| {kind} | {d['mean']} ({d['min']}-{d['max']}) | {t['mean']} ({t['min']}-{t['max']}) |")
    return "\n".join(lines)


def render(result: dict) -> str:
    lines = ["| members | ensembles | dev macro-F1 mean (min-max) | test-split macro-F1 mean (min-max) |", "|---|---|---|---|"]
    rows = [("1 (each run alone)", len(result["runs"]), result["single"])] + [
        (str(e["size"]), len(e["each"]), e) for e in result["ensembles"]] + [
        (f"{e['size']}, weights averaged (soup)", len(e["each"]), e) for e in result.get("soups", [])]
    for name, n, figures in rows:
        d, t = figures["dev_macro_f1"], figures["test_macro_f1"]
        lines.append(f"| {name} | {n} | {d['mean']} ({d['min']}-{d['max']}) | {t['mean']} ({t['min']}-{t['max']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    from engine.errors import UserError

    p = argparse.ArgumentParser(prog="python -m bench.ensemble", description=__doc__.split("\n")[0])
    p.add_argument("home", help="a data directory kept by `python -m bench quality ... --keep`")
    p.add_argument("--dataset", default="fpb", help="whose dev.csv is the held-out set (fpb, finfe-zh)")
    p.add_argument("--sizes", default="2,3,0", help="ensemble sizes, comma-separated; 0: all the runs (default 2,3,0)")
    p.add_argument("--soups", action="store_true",
                   help="also average the runs' saved weights (uniform model soups of the same sizes) and predict")
    p.add_argument("--members", action="store_true",
                   help="instead: inside each kept model-soup run (Thorough), each of its runs alone, the uniform "
                        "soup, the best run by validation and a greedy soup")
    p.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    os.environ["BELLWETHER_HOME"] = args.home
    try:
        sizes = [int(s) or 10**6 for s in args.sizes.split(",") if s.strip()]  # 0 (or more than there are): all
        tiny = os.environ.get("BELLWETHER_BENCH_SIZE") == "tiny"  # tests: a few dev sentences
        if args.members:
            result = measure_members(args.dataset, dev_limit=24 if tiny else None)
        else:
            result = measure(args.dataset, sizes, dev_limit=24 if tiny else None, soups=args.soups)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    print(render_members(result) if args.members else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
