"""``python -m bench.selftrain``: self-training on unlabelled news, one of the levers measured for Thorough (issue 13).

Self-training (pseudo-labelling; Du et al. 2021, "Self-training Improves Pre-training for Natural Language
Understanding"): a *teacher* run labels texts nobody labelled, its most confident calls join the training split as
*silver* rows, and a *student* run trains on gold and silver from the base model again. Here, for each seed:

1. ``fpb/train.csv`` is imported as ``python -m bench quality`` imports it (the automatic 80/10/10 split, a throwaway
   data directory) and a Balanced run of that seed is the teacher (the product's own run: ``finetune.submit`` and a
   job process);
2. the headlines and the first sentence of each description in shared/'s three unlabelled news files (CNBC, Guardian,
   Reuters samples; read as UTF-8, else Windows-1252, as they are) with four words or more, each once, are predicted
   by the teacher;
3. for each label, the predictions with confidence >= ``--threshold``, most confident first, up to ``--ratio`` times
   the training split's size shared as the training split's labels are (fewer when fewer pass the threshold), join the
   training split; the validation and test splits stay exactly as imported;
4. a Balanced run of the same seed on that dataset is the student.

Both are scored as ``bench quality`` scores (macro-F1 on the test split and on ``fpb/dev.csv``; neither is ever
labelled silver). The figures of each seed are printed and written (``--out``):

    python -m bench.selftrain --seeds 5 --out selftrain.json

docs/benchmarks.md has what it did.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path

NEWS_FILES = ("guardian_headlines.csv", "cnbc_headlines.csv", "reuters_headlines.csv")
FIGURES = ("dev_macro_f1", "test_macro_f1", "validation_macro_f1", "wall_s")


def news_texts(folder: Path) -> list[str]:
    """The unlabelled texts: headlines and descriptions' first sentences of four words or more, each once."""
    import pandas as pd

    texts: list[str] = []
    for name in NEWS_FILES:
        try:
            frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        except UnicodeDecodeError:
            frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False, encoding="cp1252")
        texts += [t.strip() for t in frame["Headlines"] if len(t.strip().split()) >= 4]
        if "Description" in frame:
            texts += [d.strip().split(". ")[0] for d in frame["Description"] if len(d.strip().split()) >= 4]
    return list(dict.fromkeys(texts))


def silver_rows(train: list[dict], texts: list[str], predictions, ratio: float, threshold: float) -> tuple[list, dict]:
    """Confident predictions as training rows, shared by label as the gold training rows are; and, per label,
    [rows taken, predictions that passed the threshold]."""
    share = collections.Counter(r["label"] for r in train)
    wanted = int(ratio * len(train))
    rows, taken = [], {}
    for label, count in share.items():
        passed = sorted([(p.confidence, t) for p, t in zip(predictions, texts)
                         if p.label == label and p.confidence >= threshold], reverse=True)
        k = int(round(wanted * count / len(train)))
        rows += [{"text": t, "label": label, "split": "train"} for _, t in passed[:k]]
        taken[label] = [min(k, len(passed)), len(passed)]
    return rows, taken


def one_seed(seed: int, ratio: float, threshold: float, n_train: int | None, base_model: str) -> dict:
    import pandas as pd

    from bench import data, quality
    from engine import db, paths
    from engine.data import datasets
    from engine.jobs import queue
    from engine.models import inference

    out: dict = {"seed": seed, "ratio": ratio, "threshold": threshold}
    with paths.temporary_home("bellwether-selftrain-"):
        conn = db.connect()
        spec = quality.import_dataset(conn, "fpb", n_train)
        dev = quality._text_rows("fpb", "dev", 24 if n_train else None)
        started = time.perf_counter()
        teacher = quality.one_run(conn, "fpb", spec, base_model, "balanced", seed, {"precision": "auto"}, dev)
        out["teacher"] = {k: teacher[k] for k in FIGURES}
        texts = news_texts(data.shared_dir() / "news")
        scoring = time.perf_counter()
        model_dir = queue.get(conn, teacher["run_id"])["model_dir"]
        predictions = inference.load(model_dir, precision="fast").predict(texts)
        out.update({"scored": len(texts), "score_s": round(time.perf_counter() - scoring, 1)})
        gold = datasets.rows(conn, datasets.get(conn, spec)["id"])
        silver, out["silver_per_class"] = silver_rows([g for g in gold if g["split"] == "train"], texts, predictions,
                                                      ratio, threshold)
        rows = [{"text": g["text"], "label": g["label"], "split": g["split"]} for g in gold] + silver
        csv = pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(index=False).encode("utf-8")
        ds, _ = datasets.import_file(conn, csv, "selftrain.csv", "fpb-selftrain", created_by="bench",
                                     mapping={"text": "text", "label": "label", "split": "split"})
        student = quality.one_run(conn, "fpb", f"{ds['name']}:{ds['version']}", base_model, "balanced", seed,
                                  {"precision": "auto"}, dev)
        out["student"] = {k: student[k] for k in FIGURES}
        out["total_s"] = round(time.perf_counter() - started, 1)
        conn.close()
    return out


def summary(runs: list[dict]) -> dict:
    def stats(values):
        return {"mean": round(statistics.fmean(values), 4), "min": min(values), "max": max(values)}

    return {who: {key: stats([r[who][key] for r in runs]) for key in ("dev_macro_f1", "test_macro_f1")}
            for who in ("teacher", "student")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.selftrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds (5)")
    p.add_argument("--first-seed", type=int, default=42, help="the first seed (42)")
    p.add_argument("--ratio", type=float, default=2.0, help="silver rows at most, times the training split (2)")
    p.add_argument("--threshold", type=float, default=0.9, help="the teacher's confidence a silver row needs (0.9)")
    p.add_argument("--n-train", type=int, help="cap the training file as bench quality --n-train does (tests)")
    p.add_argument("--out", help="also write the figures (JSON) here; after each seed, the seeds so far")
    args = p.parse_args(argv)

    from bench.cli import _base_model

    result = {"benchmark": "selftrain", "command": "python -m bench.selftrain " + " ".join(argv or sys.argv[1:]),
              "runs": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result["runs"].append(one_seed(seed, args.ratio, args.threshold, args.n_train, _base_model()[0]))
        print(json.dumps(result["runs"][-1]), file=sys.stderr, flush=True)
        result["summary"] = summary(result["runs"])
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
