"""``python -m engine generate RUN "prompt"``: a finished generation run's answer, streamed to the terminal."""

from __future__ import annotations

import sys

from engine import db
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import runs
from engine.models import generate
from engine.reports import generation as generation_report


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help=_("write a response to a prompt with a finished generation run"))
    p.add_argument("run_id", metavar="RUN_ID", help=_("a finished generation run"))
    p.add_argument("prompt", metavar="PROMPT", help=_("the prompt to answer"))
    defaults = generate.Sampling()
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help=_("the longest answer, in tokens (at most {n})", n=generate.MAX_NEW_TOKENS_LIMIT))
    p.add_argument("--temperature", type=float, default=defaults.temperature, help=_("higher: more varied wording"))
    p.add_argument("--top-p", type=float, default=defaults.top_p,
                   help=_("draw only from the likeliest tokens covering this share"))
    p.add_argument("--top-k", type=int, default=defaults.top_k,
                   help=_("draw only from this many likeliest tokens (0: off)"))
    p.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty,
                   help=_("above 1: fewer repeats"))
    p.add_argument("--seed", type=int, help=_("the same seed gives the same answer"))
    p.add_argument("--greedy", action="store_true", help=_("always the likeliest token: the same answer every time"))
    p.add_argument("--base", action="store_true", help=_("also answer with the base model, for comparison"))
    p.add_argument("--system", help=_("a system message before the prompt (models with a chat template; otherwise a "
                                      "'### System:' block)"))
    p.set_defaults(func=cmd_generate)


def generation_run(conn, run_id) -> dict:
    run = runs.finished(conn, run_id)
    if run.get("task") != "generation":
        raise UserError(_("Run {run_id} is a {task} model, not a generation model. Use 'python -m engine predict' "
                          "for it, or pick a run trained on generation data.", run_id=run["id"], task=run.get("task")))
    return run


def cmd_generate(args) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    conn = db.connect()
    try:
        run = generation_run(conn, args.run_id)
    finally:
        conn.close()
    sampling = generate.Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                                 top_k=args.top_k, repetition_penalty=args.repetition_penalty, seed=args.seed,
                                 greedy=args.greedy).checked()
    sources = [(_("fine-tuned"), run["model_dir"])]
    if args.base:
        sources.append((_("base"), generation_report.base_source(run)))
    for which, source in sources:
        tokenizer, model = generate.load(source)
        if args.base:
            print(f"[{which}]")
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}]
        text = generate.prompt_text(tokenizer, messages=messages)  # the chat template when the model has one
        for piece in generate.stream(tokenizer, model, text, sampling):
            sys.stdout.write(piece)
            sys.stdout.flush()
        print()
    return 0
