"""``python -m engine train ...``, ``runs list|show|cancel|resume|rerun|logs``, ``worker``."""

from __future__ import annotations

import argparse
import json
import sys

from engine import db, paths
from engine.jobs import queue, runs
from engine.jobs import supervisor
from engine.monitor import poller
from engine.errors import UserError
from engine.i18n import _
from engine.training import finetune
from engine.training import reproduce
from engine.training import verdict


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help=_("queue a fine-tuning run (prints the run id on its last line)"))
    p.add_argument("--dataset", required=True, help=_("NAME or NAME:VERSION"))
    p.add_argument("--task", choices=["text-classification", "token-classification", "generation"])
    p.add_argument("--base-model", default="default", help=_("default, a local model folder, or a Hugging Face hub id"))
    p.add_argument("--preset", default="balanced", type=str.lower, choices=["quick", "balanced", "thorough"])
    p.add_argument("--epochs", type=float)
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--gradient-accumulation", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--full-determinism", action="store_true", default=None,
                   help=_("deterministic GPU kernels: identical re-runs on a GPU too, somewhat slower"))
    p.add_argument("--precision", type=str.lower, choices=["auto", "fp32", "bf16"],
                   help=_("auto (default): bf16 on a GPU that supports it (else fp16); on a CPU that computes bfloat16 "
                          "natively, bf16 too (the same quality; about 1.3x as fast alone, 1.6-2x with the default "
                          "cheaper dropout masks and frozen word embeddings), else fp32"))
    p.add_argument("--pooling", type=str.lower, choices=["auto", "cls", "mean"],
                   help=_("text classification: what the classifier reads: auto (default: the mean of the tokens for a "
                          "sentence-transformers model such as the default one, else the first token), cls or mean"))
    p.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help=_("text classification: leave the word embeddings as the base model has them (the default: "
                          "faster steps, the same quality over seeds); --no-freeze-embeddings trains every weight"))
    p.add_argument("--layer-decay", type=float,
                   help=_("each encoder layer learns at this times the rate of the layer above (1: off)"))
    p.add_argument("--average-last", type=float,
                   help=_("average the weights over this share of the last steps; kept when validation says it is "
                          "at least as good as the best checkpoint (0: off)"))
    p.add_argument("--label-smoothing", type=float, help=_("spread this share of each label's target over the others (0: off)"))
    p.add_argument("--r-drop", type=float,
                   help=_("R-Drop: send each batch through twice and add this times the disagreement of the two "
                          "dropout draws to the loss (0: off; a step takes about twice as long)"))
    p.add_argument("--soup", type=int,
                   help=_("model soup: train the settings this many times from seeds SEED, SEED+1000, ... and average "
                          "the weights into one model (1: off; Thorough: 3 Balanced runs; each run takes the whole "
                          "time again)"))
    p.add_argument("--eval-steps", type=int)
    p.add_argument("--early-stopping-patience", type=int)
    p.add_argument("--class-weighting", action="store_true", default=None)
    p.add_argument("--packing", action="store_true", default=None,
                   help=_("generation: pack short examples end to end into max-length blocks (no padding steps)"))
    p.add_argument("--lora", action="store_true", default=None)
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--lora-target-modules", help=_("comma-separated, e.g. query,value"))
    p.add_argument("--name")
    p.add_argument("--purpose", type=str.lower, choices=["sentiment", "topics", "other"],
                   help=_("what the model is for (guessed from the dataset's labels when omitted); only a run trained "
                        "for topics can tag a feed's topics"))
    p.add_argument("--again", action="store_true",
                   help=_("queue it even when a queued or running run has the same dataset and settings"))
    p.add_argument("--no-worker", action="store_true", help=_("only queue; do not start a supervisor"))
    p.add_argument("--wait", action="store_true", help=_("follow the run; exit 0 only if it succeeds"))
    p.set_defaults(func=cmd_train)

    runs = subparsers.add_parser("runs", help=_("list, inspect, cancel, resume and re-run training runs"))
    rs = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    lst = rs.add_parser("list", help=_("all runs, newest first"))
    lst.add_argument("--format", choices=["table", "json"], default="table")
    lst.add_argument("--limit", type=int)
    lst.set_defaults(func=cmd_list)
    show = rs.add_parser("show", help=_("one run with its configuration and metrics"))
    show.add_argument("id", type=int)
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.set_defaults(func=cmd_show)
    c = rs.add_parser("cancel", help=_("stop a queued or running run"))
    c.add_argument("id", type=int)
    c.set_defaults(func=cmd_cancel)
    r = rs.add_parser("resume", help=_("continue a failed or cancelled run from its last checkpoint"))
    r.add_argument("id", type=int)
    r.add_argument("--no-worker", action="store_true")
    r.add_argument("--wait", action="store_true")
    r.set_defaults(func=cmd_resume)
    again = rs.add_parser("rerun", help=_("run a finished run again: same settings, same dataset version"))
    again.add_argument("id", type=int)
    again.add_argument("--seed", type=int, help=_("another seed (default: the run's own)"))
    again.add_argument("--no-worker", action="store_true")
    again.add_argument("--wait", action="store_true", help=_("follow the new run, then compare it with the first"))
    again.set_defaults(func=cmd_rerun)
    lg = rs.add_parser("logs", help=_("the run's log"))
    lg.add_argument("id", type=int)
    lg.add_argument("--tail", type=int, default=0, help=_("only the last N lines"))
    lg.set_defaults(func=cmd_logs)

    w = subparsers.add_parser("worker", help=_("run the supervisor that starts queued jobs (Ctrl-C stops it)"))
    w.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    w.add_argument("--idle-exit", type=float, default=None, help=_("stop after this many idle seconds"))
    w.set_defaults(func=cmd_worker)


def cmd_worker(args) -> int:
    """The supervisor, with the feed sources' poller and notifications as its periodic step."""
    return supervisor.worker(args.poll, args.idle_exit, periodic=lambda conn: poller.step(conn, out=sys.stderr))


def cmd_train(args) -> int:
    # every training setting that has an option (all of finetune.DEFAULTS but group_by_length) and was given
    overrides = {n: getattr(args, n, None) for n in finetune.DEFAULTS if getattr(args, n, None) is not None}
    conn = db.connect()
    if warning := finetune.language_warning(conn, args.dataset, args.base_model):
        print(_("WARNING: {warning}", warning=warning), file=sys.stderr)
    run_id = finetune.submit(conn, args.dataset, args.task, args.base_model, args.preset, overrides,
                             created_by=paths.default_user(), name=args.name, purpose=args.purpose, again=args.again)
    job = queue.get(conn, run_id)
    print(_("Queued run {run_id}: {name} ({max_length} tokens, {epochs} epochs, for {purpose}).", run_id=run_id,
            name=job["name"], max_length=job["config"].get("max_length"), epochs=job["config"].get("epochs"),
            purpose=_(runs.purpose(job))), file=sys.stderr)  # sentiment, topics, other: N_ in runs
    if not args.no_worker:
        supervisor.ensure_supervisor()
    if args.wait:
        code = follow(conn, run_id)
        print(run_id)
        return code
    print(run_id)
    return 0


def follow(conn, run_id: int, out=None) -> int:
    """Show a progress bar until the run finishes; 0 only if it succeeded."""
    last_loss: list[float] = []

    def line(p: dict) -> str:
        frac = min(1.0, (p["step"] or 0) / p["total_steps"])
        eta = " " + _("ETA {n} s", n=int(p["eta_s"])) if p.get("eta_s") is not None else ""
        if p.get("loss") is not None:
            last_loss[:] = [p["loss"]]
        loss = " " + _("loss {loss}", loss=f"{last_loss[0]:.4f}") if last_loss else ""
        position = runs.soup_position(p)  # a model soup: which of its runs is training
        which = " " + _("run {i} of {n}", i=position[0], n=position[1]) if position else ""
        return f"[{'#' * int(frac * 30):<30}] {p['step']}/{p['total_steps']}{which}{loss}{eta}"

    def done(job: dict) -> str:
        m = job["metrics"]
        figures = _("accuracy {accuracy}, macro-F1 {macro_f1}. Model: {model_dir}",
                    accuracy=f"{m.get('accuracy', 0):.3f}", macro_f1=f"{m.get('macro_f1', 0):.3f}",
                    model_dir=job["model_dir"])
        warnings = verdict.for_run(conn, job)
        if warnings:  # finished, but the model is not one to trust: say so instead of a plain "succeeded"
            return _("Run {run_id} finished, but WARNING: {warnings}", run_id=run_id, warnings=" ".join(warnings)) \
                + f"\n({figures})"
        soup = runs.soup_words(m)
        return _("Run {run_id} succeeded: {figures}", run_id=run_id, figures=figures) + (f"\n{soup}" if soup else "")

    return queue.follow(conn, run_id, "train", line, done, failed_word="Run", out=out)


def cmd_list(args) -> int:
    conn = db.connect()
    rows = [runs.summary(conn, j) for j in queue.list_jobs(conn, kind="train", limit=args.limit)]
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(_("No runs yet. Start one with `python -m engine train --dataset NAME`."))
        return 0
    print(f"{'id':>4}  {_('status'):<10} {_('task'):<21} {_('purpose'):<9} {_('dataset'):<20} {_('result'):<28}  "
          + _("created"))
    for r in rows:  # macro-F1 for classifiers and taggers, validation perplexity for generation runs
        value = r["key_value"]
        result = "-" if value is None else f"{_(runs.KEY_METRIC_WORDS[r['key_metric']])} {value:,.3f}"
        print(f"{r['id']:>4}  {r['status']:<10} {r['task'] or '':<21} {r['purpose'] or '':<9} "
              f"{(r['dataset'] or '')[:20]:<20} {result:<28}  {r['created_at']}")
    return 0


def cmd_show(args) -> int:
    conn = db.connect()
    job = queue.get(conn, args.id)
    out = runs.summary(conn, job)
    out.update(config=job["config"], metrics=job["metrics"], attempt=job.get("attempt"),
               resume_from=job.get("resume_from"), log_path=job.get("log_path"))

    out["warnings"] = verdict.for_run(conn, job)
    out["rerun_of"] = (job["config"] or {}).get("rerun_of")
    out["comparison"] = reproduce.rerun_comparison(conn, args.id)
    out["soup_said"] = runs.soup_words(job["metrics"])  # what the Runs page says of a model soup
    p = queue.last_progress(conn, args.id)
    out["progress"] = {k: p[k] for k in ("step", "total_steps", "epoch", "loss", "eta_s")} if p else None
    if args.format == "json":
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return 0
    for key in ("id", "name", "status", "task", "purpose", "dataset", "base_model", "created_at", "started_at", "finished_at",
                "error", "model_dir"):
        if out.get(key) is not None:
            print(f"{key:>12}: {out[key]}")
    print(f"{'device':>12}: {json.dumps(out['device'])}")
    print(f"{'config':>12}: {json.dumps(out['config'])}")
    if out["metrics"]:
        print(f"{'metrics':>12}: {json.dumps(out['metrics'], default=str)}")
    if out["progress"]:
        print(f"{'progress':>12}: {json.dumps(out['progress'])}")
    if out["soup_said"]:
        print(f"{_('soup'):>12}: {out['soup_said']}")
    for warning in out["warnings"]:
        print(f"{_('WARNING'):>12}: {warning}")
    if out["comparison"]:
        _print_comparison(out["comparison"])
    return 0


def _print_comparison(comparison: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"{_('rerun of'):>12}: " + _("run {run_id}", run_id=comparison["source_id"]), file=out)
    if comparison.get("source_missing"):
        return
    print(f"{_('seeds'):>12}: {comparison['source_seed']} -> {comparison['seed']}", file=out)
    for m in comparison["metrics"]:
        a = "-" if m["source"] is None else f"{m['source']:.4f}"
        b = "-" if m["rerun"] is None else f"{m['rerun']:.4f}"
        print(f"{m['metric']:>22}: " + _("{a} (run {source_id})  {b} (this run)", a=a, b=b,
                                           source_id=comparison["source_id"]), file=out)
    print(f"{_('predictions'):>12}: {reproduce.comparison_words(comparison)}", file=out)


def cmd_cancel(args) -> int:
    conn = db.connect()
    state = queue.cancel(conn, args.id)
    print(_("Run {run_id}: cancelled.", run_id=args.id) if state == "cancelled"
          else _("Run {run_id}: cancel requested; it stops at its next step.", run_id=args.id))
    return 0


def cmd_resume(args) -> int:
    conn = db.connect()
    queue.resume(conn, args.id)
    job = queue.get(conn, args.id)
    if job.get("resume_from"):
        print(_("Run {run_id} queued again, from {checkpoint}.", run_id=args.id, checkpoint=job["resume_from"]),
              file=sys.stderr)
    else:
        print(_("Run {run_id} queued again, from the beginning (no checkpoint was saved).", run_id=args.id),
              file=sys.stderr)
    if not args.no_worker:
        supervisor.ensure_supervisor()
    if args.wait:
        return follow(conn, args.id)
    return 0


def cmd_rerun(args) -> int:
    conn = db.connect()
    new_id = reproduce.rerun(conn, args.id, seed=args.seed, created_by=paths.default_user())
    job = queue.get(conn, new_id)
    print(_("Queued run {run_id}: {name} (seed {seed}, dataset {dataset}).", run_id=new_id, name=job["name"],
            seed=job["config"].get("seed"), dataset=job["config"].get("dataset")), file=sys.stderr)
    if not args.no_worker:
        supervisor.ensure_supervisor()
    if args.wait:
        code = follow(conn, new_id)
        comparison = reproduce.rerun_comparison(conn, new_id)
        if code == 0 and comparison:
            _print_comparison(comparison, out=sys.stderr)
        print(new_id)
        return code
    print(new_id)
    return 0


def cmd_logs(args) -> int:
    conn = db.connect()
    job = queue.get(conn, args.id)
    text = queue.log_tail(job, args.tail) if args.tail else _read_all(job)
    if not text:
        raise UserError(_("Run {run_id} has no log yet.", run_id=args.id))
    print(text)
    return 0


def _read_all(job: dict) -> str:
    from pathlib import Path

    path = Path(job.get("log_path") or "")
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
