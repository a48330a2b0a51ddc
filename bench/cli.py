"""``python -m bench train|score|monitor|quality|review|generation [--quick] [--format json]``: the engine against the
usual tools, the presets' quality over seeds (``quality``: bench/quality.py), the review page's speed (``review``:
bench/review.py), and the generation presets and packing (``generation``: bench/generation_presets.py).

Every run measures the baselines and the engine side by side on this machine, in a data directory of its own (a
temporary ``BELLWETHER_HOME``; the analyst's store is never touched). The baselines and the measurements live in
``bench/``; the latest figures, the machine and the preset search are in ``docs/benchmarks.md``.

``--quick`` subsamples fpb and the news and trains for fewer steps (under 3 minutes on 2 CPU cores). For tests,
``BELLWETHER_BENCH_SIZE=tiny`` shrinks everything to seconds and ``BELLWETHER_BENCH_MODEL`` points at another base
model (a tiny one); the figures are then meaningless, only the shape counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from engine import paths, settings
from engine.errors import UserError

TARGETS = {
    "throughput_vs_trainer": 1.0,
    "throughput_vs_recipe": 2.5,
    "time_to_usable_speedup": 2.0,
    "thorough_max_s": 15 * 60,
    "score_vs_pipeline_default": 3.0,
    "score_vs_pipeline_batched": 1.5,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Benchmark the engine against the usual tools (training, scoring, monitor).")
    p.add_argument("which", choices=["train", "score", "monitor", "quality", "review", "generation"],
                   help="what to measure")
    p.add_argument("--quick", action="store_true", help="subsampled data and fewer steps: under 3 minutes on 2 CPU cores")
    p.add_argument("--format", choices=["table", "json"], default="table", help="json: one object with every figure and ratio")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--model", help="bench score: a trained model folder to score with (default: one fine-tuned here with the Quick "
                   "preset); bench generation: a causal language model folder to fine-tune in the presets stage")
    p.add_argument("--keep", action="store_true", help="keep the benchmark's data directory and print where it is")
    p.add_argument("--items", type=int, default=40, help="review: items answered by keys in Chromium (40)")
    q = p.add_argument_group("quality (python -m bench quality)")
    q.add_argument("--presets", default="quick,balanced,thorough", help="comma-separated presets")
    q.add_argument("--seeds", type=int, help="seeds per preset (42, 43, ...): default 5 for quality, 3 for generation")
    q.add_argument("--first-seed", type=int, default=42,
                   help="quality: the first seed (default 42): --first-seed 45 --seeds 2 runs seeds 45 and 46 only")
    q.add_argument("--datasets", default="fpb,finfe-zh,fin5", help="comma-separated: fpb, finfe-zh, fin5")
    q.add_argument("--precision", default="auto", help="comma-separated: auto, fp32, bf16 (each is its own group; "
                   "bench generation too: each candidate once per precision)")
    q.add_argument("--n-train", type=int, help="cap the training file at this many rows / sentences (seeded subsample)")
    q.add_argument("--max-length", type=int, help="override the presets' max length")
    q.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="a training option laid over every preset, e.g. --set pooling=mean (repeatable): a lever to measure; "
                   "bench generation: learning_rate=R only (one rate instead of each preset's candidates)")
    g = p.add_argument_group("generation (python -m bench generation)")
    g.add_argument("--no-packing-study", action="store_true",
                   help="skip the packed/padded comparison (one pretraining run for the base model, none with --model)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run one benchmark; a UserError becomes one line on stderr and status 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------------------------


def _bench():
    from bench import baselines, data, engine_side, runner

    return baselines, data, engine_side, runner


def machine() -> dict:
    import psutil
    import torch
    import transformers

    from engine.models import inference

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu, "cpu_cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "cpu_native_bfloat16": inference.cpu_has_bf16(), "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _options(pairs: list[str]) -> dict:
    """--set OPTION=VALUE pairs as training overrides (numbers read as numbers)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set wants OPTION=VALUE, such as pooling=mean; got {pair!r}.")
        try:
            options[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key.strip()] = value.strip()
    return options


def _mode(args) -> str:
    return settings.bench_size() or ("quick" if args.quick else "full")


def _base_model() -> tuple[str, str]:
    """(what training.submit is given, the folder the baselines load)."""
    from engine.models.catalog import default_model_path

    override = settings.bench_model()
    if override:
        return override, override
    return "default", str(default_model_path())


@contextmanager
def _environment(name: str, value: str | None):
    """``name`` set to ``value`` for the block (unless already set; None: untouched), as it was afterwards."""
    if value is None or name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def run(args) -> int:
    started = time.perf_counter()
    mode = _mode(args)
    load_start = _load()
    result = {"benchmark": args.which, "mode": mode, "machine": machine(), "command": _command(args)}
    # Whatever the measured code prints (the Trainer's log lines) goes to stderr: stdout carries only the result.
    # a kept study's soups keep their runs' weights too, for `python -m bench.ensemble DIR --members`
    with paths.temporary_home("bellwether-bench-", args.keep), redirect_stdout(sys.stderr), \
            _environment("BELLWETHER_KEEP_SOUP_MEMBERS", "1" if args.keep else None):
        if args.which == "train":
            result.update(bench_train(mode))
        elif args.which == "score":
            result.update(bench_score(mode, args.model))
        elif args.which == "quality":
            from bench import quality

            result.update(quality.bench_quality(
                mode, _list(args.presets), args.seeds or 5, _list(args.datasets), _list(args.precision), args.n_train,
                args.max_length, _base_model()[0], partial_path=(args.out + ".partial") if args.out else None,
                options=_options(args.set), first_seed=args.first_seed))
        elif args.which == "review":
            from bench import review

            result.update(review.bench_review(args.items))
        elif args.which == "generation":
            from bench import generation_presets

            options = _options(args.set)
            if set(options) - {"learning_rate"} or not isinstance(options.get("learning_rate", 1.0), float | int):
                raise UserError("bench generation takes one --set only: learning_rate=R (one rate for every preset).")
            result.update(generation_presets.bench_generation(
                mode, 1 if mode == "quick" and not args.seeds else args.seeds or 3,
                progress=lambda line: print(line, file=sys.stderr, flush=True), base_model=args.model,
                presets=_list(args.presets), packing_study=not args.no_packing_study,
                precisions=_generation_precisions(args.precision), learning_rate=options.get("learning_rate")))
        else:
            result.update(bench_monitor(mode))
    result["load_average"] = {"start": load_start, "end": _load()}
    result["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text if args.format == "json" else render(result))
    return 0


def _generation_precisions(text: str) -> list[str]:
    """--precision for bench generation: fp32 and/or bf16; auto is what the engine picks for a generation run here."""
    from engine.models import precision

    chosen = [precision.training_precision("cpu", p, "generation") if p == "auto" else p for p in _list(text)]
    if not chosen or set(chosen) - {"fp32", "bf16"}:
        raise UserError(f"bench generation's --precision takes fp32, bf16 or auto (comma-separated); got {text!r}.")
    return chosen


def _list(text: str) -> list[str]:
    return [x.strip().lower() for x in str(text or "").split(",") if x.strip()]


def _command(args) -> str:
    parts = ["python -m bench", args.which]
    if args.which == "generation":
        parts += [f"--seeds {args.seeds}"] if args.seeds else []
        parts += [f"--presets {args.presets}"] if args.presets != "quick,balanced,thorough" else []
        parts += ["--no-packing-study"] if args.no_packing_study else []
        parts += [f"--precision {args.precision}"] if args.precision != "auto" else []
        parts += [f"--set {pair}" for pair in args.set]
        parts += [f"--model {args.model}"] if args.model else []
    if args.which == "quality":
        parts += [f"--presets {args.presets}", f"--seeds {args.seeds or 5}", f"--datasets {args.datasets}",
                  f"--precision {args.precision}"]
        parts += [f"--first-seed {args.first_seed}"] if args.first_seed != 42 else []
        parts += [f"--n-train {args.n_train}"] if args.n_train else []
        parts += [f"--max-length {args.max_length}"] if args.max_length else []
        parts += [f"--set {pair}" for pair in args.set]
    if args.which == "review":
        parts.append(f"--items {args.items}")
    if args.quick:
        parts.append("--quick")
    if args.format == "json":
        parts.append("--format json")
    if getattr(args, "model", None) and args.which != "generation":
        parts.append(f"--model {args.model}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# train


def bench_train(mode: str) -> dict:
    baselines, data, engine_side, runner = _bench()
    from bench import gpu  # standard library only until it measures
    from engine import db

    sizes = data.sizes(mode)
    submit_model, model_path = _base_model()
    common = {"model_path": model_path, "n_train": sizes.n_train, "n_dev": sizes.n_dev}
    out: dict = {"sizes": sizes.as_dict(), "seed": data.SEED, "baselines": {}, "engine": {}}
    b = out["baselines"]

    # The tutorial recipe has a constant learning rate, so the first epoch of its longest run is exactly its 1-epoch run.
    recipe = runner.run_case("bench.baselines:tutorial_recipe", {**common, "epochs": sizes.epochs_long})
    first = recipe["per_epoch"][0]
    b["tutorial_recipe_1_epoch"] = {
        "epochs": 1, "samples_per_s": first["samples_per_s"], "train_s": first["train_s"],
        "accuracy": first["accuracy"], "macro_f1": first["macro_f1"], "peak_rss_mb": recipe["peak_rss_mb"],
        "time_to_usable_s": recipe["time_to_usable_s"] if recipe["time_to_usable_s"] and
        recipe["time_to_usable_s"] <= first["elapsed_s"] + 1e-6 else None,
        "note": "first epoch of the recipe's longest run (constant learning rate: identical to a 1-epoch run)"
        if sizes.epochs_long > 1 else "",
    }
    if sizes.epochs_long > 1:
        b[f"tutorial_recipe_{sizes.epochs_long}_epochs"] = recipe
    b["trainer_defaults_1_epoch"] = runner.run_case("bench.baselines:trainer_defaults", {**common, "epochs": 1})
    if sizes.epochs_long > 1:
        b[f"trainer_defaults_{sizes.epochs_long}_epochs"] = runner.run_case(
            "bench.baselines:trainer_defaults", {**common, "epochs": sizes.epochs_long})

    gpu_name = _gpu_name()
    gpu_runs: dict = {}
    train_texts = [r["text"] for r in data.fpb("train", sizes.n_train)] if gpu_name else []
    conn = db.connect()
    try:
        dataset = engine_side.import_fpb(conn, sizes.n_train, sizes.n_dev)
        e = out["engine"]

        def engine_run(name: str, preset: str, overrides: dict | None = None) -> None:
            if not gpu_name:
                e[name] = engine_side.train_run(conn, dataset, submit_model, preset, overrides)
                return
            e[name], util, _ = gpu.measure(engine_side.train_run, conn, dataset, submit_model, preset, overrides)
            gpu_runs[name] = gpu.training_figures(e[name], util, model_path, train_texts, gpu_name)

        # The engine at the Trainer-defaults/recipe settings: batch 16, max length 128, 1 epoch, lr 2e-5, no warm-up,
        # and none of Balanced's levers (R-Drop, weight averaging) or bf16, which the baselines do not have either.
        engine_run("identical_settings_1_epoch", "balanced",
                   {"epochs": 1, "learning_rate": 2e-5, "batch_size": 16, "max_length": 128, "warmup_ratio": 0.0,
                    "weight_decay": 0.0, "early_stopping_patience": 0, "class_weighting": False, "r_drop": 0.0,
                    "average_last": 0.0, "precision": "fp32"})
        engine_run("balanced", "balanced")
        if sizes.thorough:
            engine_run("thorough", "thorough")
    finally:
        conn.close()

    ident = e["identical_settings_1_epoch"]
    trainer1 = b["trainer_defaults_1_epoch"]
    usable = [r["time_to_usable_s"] for r in b.values() if r.get("time_to_usable_s")]
    longest = max(r.get("wall_s") or r.get("train_s") or 0 for r in b.values())
    r = out["ratios"] = {
        "throughput_vs_trainer": _ratio(ident["samples_per_s"], trainer1["samples_per_s"]),
        "throughput_vs_recipe": _ratio(ident["samples_per_s"], b["tutorial_recipe_1_epoch"]["samples_per_s"]),
        "baseline_time_to_usable_s": min(usable) if usable else None,
        "engine_time_to_usable_s": e["balanced"]["time_to_usable_s"],
        "time_to_usable_speedup": _ratio(min(usable), e["balanced"]["time_to_usable_s"]) if usable else None,
    }
    if not usable and e["balanced"]["time_to_usable_s"]:
        # No baseline got there at all: the speed-up is at least its longest run over the engine's time.
        r["time_to_usable_speedup_at_least"] = _ratio(longest, e["balanced"]["time_to_usable_s"])
    t = out["targets"] = {
        "throughput_at_least_trainer": _met(r["throughput_vs_trainer"], TARGETS["throughput_vs_trainer"]),
        "throughput_at_least_2_5x_recipe": _met(r["throughput_vs_recipe"], TARGETS["throughput_vs_recipe"]),
        "time_to_usable_2x_faster_baseline": _met(r["time_to_usable_speedup"] or r.get("time_to_usable_speedup_at_least"),
                                                  TARGETS["time_to_usable_speedup"]),
    }
    if "thorough" in e:
        t["thorough_under_15_min"] = e["thorough"]["wall_s"] <= TARGETS["thorough_max_s"]
        out["best_quality"] = {"thorough_dev_macro_f1": e["thorough"]["macro_f1"], "finbert_reference_macro_f1": 0.84}
    out["peak_rss_mb"] = {
        **{f"baseline_{k}": v.get("peak_rss_mb") for k, v in b.items()},
        **{f"engine_{k}": v.get("peak_rss_mb") for k, v in e.items()},
    }
    out["gpu"] = _gpu_note(gpu_name, gpu_runs)
    return out


def _met(value, target) -> bool | None:
    return None if value is None else value >= target


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _gpu_note(name: str | None, runs: dict | None = None) -> dict:
    if name:
        return {"available": True, "device": name, "runs": runs or {},
                "note": "Every case ran on the GPU: the engine's jobs, the Trainer and the tutorial recipe on CUDA, "
                        "the pipelines with device=0."}
    return {"available": False, "note": "No GPU on this machine: GPU utilisation and training MFU not measured."}


# ---------------------------------------------------------------------------------------------------------------
# score


def bench_score(mode: str, model_dir: str | None) -> dict:
    """The score job (fast and exact precision) against ``pipeline("text-classification")`` on the same texts.

    The model: ``--model DIR`` when given, else one fine-tuned here by the engine's Quick preset on fpb train (label
    agreement means little on an untrained head, whose classes are near ties).
    """
    baselines, data, engine_side, runner = _bench()
    from bench import gpu  # standard library only until it measures
    from engine import db

    sizes = data.sizes(mode)
    submit_model, _ = _base_model()
    gpu_name = _gpu_name()
    out: dict = {"sizes": sizes.as_dict(), "sets": {}}
    conn = db.connect()
    try:
        if model_dir:
            if not (Path(model_dir) / "config.json").is_file():
                raise UserError(f"{model_dir} is not a trained model folder (it has no config.json).")
            out["model"] = {"source": f"the model in {model_dir}"}
        else:
            trained = engine_side.train_run(conn, engine_side.import_fpb(conn, sizes.n_train, sizes.n_dev),
                                            submit_model, "quick")
            model_dir = trained["model_dir"]
            out["model"] = {"source": f"fine-tuned here with the Quick preset on fpb train ({trained['n_train']} rows)",
                            "dev_macro_f1": trained["macro_f1"], "train_wall_s": trained["wall_s"]}
        runs = {precision: engine_side.register_model(conn, model_dir) for precision in ("fast", "exact")}
        feeds = {
            "dev": engine_side.import_dev_feed(conn, sizes.n_dev),
            "headlines": engine_side.import_headlines(conn, sizes.n_news),
        }
        for name, feed_id in feeds.items():
            titles = engine_side.article_titles(conn, feed_id)
            texts = [t for _, t in titles]
            jobs = {}
            for precision, run_id in runs.items():
                if gpu_name:
                    jobs[precision], util, _ = gpu.measure(engine_side.score_run, conn, feed_id, run_id, precision)
                    jobs[precision]["gpu_utilisation"] = util
                else:
                    jobs[precision] = engine_side.score_run(conn, feed_id, run_id, precision)
            p_default = baselines.with_process_rate(
                runner.run_case("bench.baselines:pipeline_scoring", {"model_dir": model_dir, "texts": texts}))
            p_batched = baselines.with_process_rate(runner.run_case(
                "bench.baselines:pipeline_scoring", {"model_dir": model_dir, "texts": texts, "batch_size": 32}))
            labels = {precision: [job["labels"].get(aid) for aid, _ in titles] for precision, job in jobs.items()}

            def agreement(a: list, b: list) -> float:
                return round(sum(x == y for x, y in zip(a, b)) / max(1, len(texts)), 4)

            exact_agrees = min(agreement(labels["exact"], p_batched["labels"]), agreement(labels["exact"], p_default["labels"]))
            fast_agrees = agreement(labels["fast"], p_batched["labels"])
            for rec in (*jobs.values(), p_default, p_batched):
                rec.pop("labels", None)
            s = out["sets"][name] = {
                "n_texts": len(texts),
                "pipeline_default": p_default,
                "pipeline_batch_32": p_batched,
                "engine_score_job": jobs["fast"],
                "engine_score_job_exact": jobs["exact"],
                # exact: float32, as the pipeline runs; fast: the job's default precision (bfloat16 here if native)
                "agreement_exact_with_pipeline": exact_agrees,
                "agreement_fast_with_pipeline": fast_agrees,
                "ratios": {},
            }
            for key, job in (("", jobs["fast"]), ("exact_", jobs["exact"])):
                s["ratios"].update({
                    f"{key}vs_pipeline_default": _ratio(job["texts_per_s"], p_default["texts_per_s"]),
                    f"{key}vs_pipeline_batch_32": _ratio(job["texts_per_s"], p_batched["texts_per_s"]),
                    # whole processes on both sides: Python, imports and the model load counted for both
                    f"{key}process_vs_pipeline_default": _ratio(job["texts_per_s_wall"], p_default.get("texts_per_s_process")),
                    f"{key}process_vs_pipeline_batch_32": _ratio(job["texts_per_s_wall"], p_batched.get("texts_per_s_process")),
                })
    finally:
        conn.close()
    targets = out["targets"] = {}
    for name, s in out["sets"].items():
        targets[f"{name}_3x_pipeline_default"] = _met(s["ratios"]["vs_pipeline_default"], TARGETS["score_vs_pipeline_default"])
        targets[f"{name}_1_5x_pipeline_batched"] = _met(s["ratios"]["vs_pipeline_batch_32"], TARGETS["score_vs_pipeline_batched"])
        targets[f"{name}_exact_identical_labels"] = s["agreement_exact_with_pipeline"] == 1.0
        targets[f"{name}_fast_agreement_reported"] = s["agreement_fast_with_pipeline"]
    out["peak_rss_mb"] = {f"{name}_{k}": s[k]["peak_rss_mb"] for name, s in out["sets"].items()
                          for k in ("engine_score_job", "engine_score_job_exact", "pipeline_default", "pipeline_batch_32")}
    out["gpu"] = _gpu_note(gpu_name)
    return out


# ---------------------------------------------------------------------------------------------------------------
# monitor


def bench_monitor(mode: str) -> dict:
    from bench import monitor_bench

    return {"monitor": monitor_bench.run(mode=mode)}


# ---------------------------------------------------------------------------------------------------------------
# The table


def render(result: dict) -> str:
    lines = [f"# bench {result['benchmark']} ({result['mode']})", ""]
    m = result["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cpu_cores']} cores, {m['memory_gb']} GB; torch {m['torch']}, "
                 f"transformers {m['transformers']}; GPU: {m['gpu'] or 'none'}")
    lines.append(f"load average at start {result['load_average']['start']}, at end {result['load_average']['end']}; "
                 f"took {result['total_s']} s")
    lines.append("")
    if result["benchmark"] == "review":
        from bench import review

        return "\n".join(lines + review.render(result))
    if result["benchmark"] == "train":
        lines.append("| run | samples/s | dev accuracy | dev macro-F1 | wall s | to usable s | peak RSS MB |")
        lines.append("|---|---|---|---|---|---|---|")
        rows = [(f"baseline: {k}", v) for k, v in result["baselines"].items()]
        rows += [(f"engine: {k}", v) for k, v in result["engine"].items()]
        for name, v in rows:
            lines.append(f"| {name} | {v.get('samples_per_s')} | {v.get('accuracy')} | {v.get('macro_f1')} | "
                         f"{v.get('wall_s', '')} | {v.get('time_to_usable_s') or '-'} | {v.get('peak_rss_mb')} |")
    elif result["benchmark"] == "score":
        lines.append(f"model: {result['model']['source']}" + (f", dev macro-F1 {result['model']['dev_macro_f1']}"
                                                              if result["model"].get("dev_macro_f1") is not None else ""))
        lines.append("")
        lines.append("| set | texts | pipeline default texts/s | pipeline batch 32 texts/s | engine job, fast texts/s "
                     "| engine job, exact texts/s | fast: whole process texts/s | pipelines: whole process texts/s "
                     "| agreement exact / fast |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for name, s in result["sets"].items():
            fast, exact = s["engine_score_job"], s["engine_score_job_exact"]
            pd_, pb = s["pipeline_default"], s["pipeline_batch_32"]
            lines.append(f"| {name} | {s['n_texts']} | {pd_['texts_per_s']} | {pb['texts_per_s']} | "
                         f"{fast['texts_per_s']} ({fast['dtype']}) | {exact['texts_per_s']} | {fast['texts_per_s_wall']} | "
                         f"{pd_.get('texts_per_s_process')} / {pb.get('texts_per_s_process')} | "
                         f"{s['agreement_exact_with_pipeline']} / {s['agreement_fast_with_pipeline']} |")
        lines.append("")
        for name, s in result["sets"].items():
            lines.append(f"{name} ratios: " + ", ".join(f"{k}={v}" for k, v in s["ratios"].items()))
    elif result["benchmark"] == "quality":
        from bench import quality

        lines.append(quality.render(result))
    elif result["benchmark"] == "generation":
        from bench import generation_presets

        lines.append(generation_presets.render(result))
    else:
        lines.append("```")
        lines.append(json.dumps(result.get("monitor"), indent=2, default=str))
        lines.append("```")
    for key in ("ratios", "targets", "peak_rss_mb"):
        if key in result:
            lines.append("")
            lines.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in result[key].items()))
    return "\n".join(lines)
