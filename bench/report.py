"""Markdown tables for docs/benchmarks.md from the JSON that ``python -m bench ... --out FILE`` writes.

    python -m bench.report train.json score.json [search.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def train_table(r: dict) -> str:
    lines = ["| run | samples/s | dev accuracy | dev macro-F1 | wall-clock s | time to usable model s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    names = {
        "tutorial_recipe_1_epoch": "tutorial recipe (pad 128, batch 16, AdamW 2e-5, plain loop), 1 epoch",
        "tutorial_recipe_3_epochs": "tutorial recipe, 3 epochs",
        "trainer_defaults_1_epoch": "HF Trainer defaults (dynamic padding, batch 16, lr 2e-5, linear decay), 1 epoch",
        "trainer_defaults_3_epochs": "HF Trainer defaults, 3 epochs",
        "identical_settings_1_epoch": "**engine**, identical settings (batch 16, max length 128, lr 2e-5, 1 epoch)",
        "balanced": "**engine, Balanced preset**",
        "thorough": "**engine, Thorough preset**",
    }
    for group in ("baselines", "engine"):
        for key, v in r[group].items():
            lines.append(f"| {names.get(key, key)} | {_f(v.get('samples_per_s'), 1)} | {_f(v.get('accuracy'), 3)} | "
                         f"{_f(v.get('macro_f1'), 3)} | {_f(v.get('wall_s') or v.get('train_s'), 0)} | "
                         f"{_f(v.get('time_to_usable_s'), 0)} | {_f(v.get('peak_rss_mb'), 0)} |")
    return "\n".join(lines)


def score_table(r: dict) -> str:
    """The scoring table; runs from before the fast/exact split (one job, ``agreement_with_pipeline``) still read."""
    two = any("engine_score_job_exact" in s for s in r["sets"].values())
    if not two:
        lines = ["| texts | n | pipeline default texts/s | pipeline batch_size=32 texts/s | engine score job texts/s "
                 "| engine job, whole process texts/s | vs default | vs batched | same labels | peak RSS MB (job / default / batched) |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in r["sets"].items():
            j, d, b = s["engine_score_job"], s["pipeline_default"], s["pipeline_batch_32"]
            lines.append(f"| {name} | {s['n_texts']} | {_f(d['texts_per_s'], 1)} | {_f(b['texts_per_s'], 1)} | "
                         f"{_f(j['texts_per_s'], 1)} | {_f(j['texts_per_s_wall'], 1)} | {_f(s['ratios']['vs_pipeline_default'])}x | "
                         f"{_f(s['ratios']['vs_pipeline_batch_32'])}x | {s['agreement_with_pipeline']:.2%} | "
                         f"{_f(j['peak_rss_mb'], 0)} / {_f(d['peak_rss_mb'], 0)} / {_f(b['peak_rss_mb'], 0)} |")
        return "\n".join(lines)
    lines = ["| texts | n | pipeline default texts/s | pipeline batch_size=32 texts/s | score job, fast texts/s "
             "| score job, exact texts/s | fast vs default | fast vs batched | exact vs default | exact vs batched "
             "| same labels: exact / fast | whole process texts/s (fast / default / batched) "
             "| peak RSS MB (fast / exact / default / batched) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in r["sets"].items():
        f, e, d, b = s["engine_score_job"], s["engine_score_job_exact"], s["pipeline_default"], s["pipeline_batch_32"]
        x = s["ratios"]
        lines.append(f"| {name} | {s['n_texts']} | {_f(d['texts_per_s'], 1)} | {_f(b['texts_per_s'], 1)} | "
                     f"{_f(f['texts_per_s'], 1)} ({f.get('dtype')}) | {_f(e['texts_per_s'], 1)} | "
                     f"{_f(x['vs_pipeline_default'])}x | {_f(x['vs_pipeline_batch_32'])}x | "
                     f"{_f(x['exact_vs_pipeline_default'])}x | {_f(x['exact_vs_pipeline_batch_32'])}x | "
                     f"{s['agreement_exact_with_pipeline']:.2%} / {s['agreement_fast_with_pipeline']:.2%} | "
                     f"{_f(f['texts_per_s_wall'], 1)} / {_f(d.get('texts_per_s_process'), 1)} / "
                     f"{_f(b.get('texts_per_s_process'), 1)} | {_f(f['peak_rss_mb'], 0)} / {_f(e['peak_rss_mb'], 0)} / "
                     f"{_f(d['peak_rss_mb'], 0)} / {_f(b['peak_rss_mb'], 0)} |")
    return "\n".join(lines)


def search_table(r: dict) -> str:
    lines = ["| candidate | config | dev macro-F1 by epoch (s since queued) | final dev macro-F1 | wall-clock s | samples/s |",
             "|---|---|---|---|---|---|"]
    for name, v in r["runs"].items():
        if name.startswith("grouped_"):
            lines.append(f"| Trainer as the engine sets it, group_by_length={v['group_by_length']} | 1 epoch, "
                         f"{v['n_train']} rows | – | – | {_f(v['train_s'], 0)} | {_f(v['samples_per_s'], 1)} |")
            continue
        cfg = ", ".join(f"{k}={val}" for k, val in v["config"].items())
        epochs = "; ".join(f"{e['epoch']:.0f}: {e['macro_f1']:.3f} ({_f(e.get('elapsed_s'), 0)})" for e in v["per_epoch"])
        lines.append(f"| {name} | {cfg} | {epochs} | {_f(v['macro_f1'], 3)} | {_f(v['wall_s'], 0)} | "
                     f"{_f(v['samples_per_s'], 1)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for path in argv:
        r = json.loads(Path(path).read_text())
        if "runs" in r:
            print(search_table(r))
        elif r.get("benchmark") == "train":
            print(train_table(r))
            print()
            print("ratios:", json.dumps(r["ratios"]))
            print("targets:", json.dumps(r["targets"]))
        elif r.get("benchmark") == "score":
            print(score_table(r))
            print()
            print("targets:", json.dumps(r["targets"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
