"""``python -m engine review queue|flag|next|label|accept|skip|list|retrain|compare``: the Review page, headless.

``dataset add-reviewed`` (engine/cli/dataset.py) and ``feed promote`` (engine/cli/feed.py) close the loop."""

from __future__ import annotations

import json
import sys

from engine import db, paths
from engine.access.roles import ADMIN, Actor
from engine.errors import UserError
from engine.jobs import supervisor
from engine.review import corrections, items


def register(subparsers) -> None:
    parser = subparsers.add_parser("review", help="review the model's doubtful calls; answers become training data")
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def reviewer(p):
        p.add_argument("--reviewer", help="who reviews (default: $BELLWETHER_USER or $USER)")

    p = sub.add_parser("queue", help="queue items: a feed's least confident articles, or a run's mistakes and "
                                     "low-confidence rows of its test split or an evaluated file")
    p.add_argument("--feed", help="a feed: its articles scored by --run (default: the feed's current model)")
    p.add_argument("--run", type=int, help="the run whose calls are reviewed")
    p.add_argument("--split", default="test", help="with --run and no --feed: 'test' or 'eval:NAME' (test)")
    p.add_argument("--limit", type=int, default=100, help="at most this many items (100)")
    p.add_argument("--order", choices=items.ORDERS, default="margin",
                   help="least confident by the margin between the top two classes (default) or by entropy")
    p.add_argument("--below", type=float, default=0.6, help="with --split: also rows less confident than this (0.6)")
    p.add_argument("--no-mistakes", action="store_true", help="with --split: only the low-confidence rows")
    reviewer(p)
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("flag", help="flag an article, a prediction or a text as wrongly labelled (queue 'flagged')")
    p.add_argument("--article", type=int)
    p.add_argument("--run", type=int)
    p.add_argument("--split")
    p.add_argument("--row", type=int)
    p.add_argument("--text")
    p.add_argument("--note")
    reviewer(p)
    p.set_defaults(func=cmd_flag)

    p = sub.add_parser("next", help="take the next item (held for you for a few minutes) and print it")
    p.add_argument("--queue", help="the queue (default: any)")
    p.add_argument("--again", action="store_true", help="skipped items too")
    p.add_argument("--format", default="text", choices=["text", "json"])
    reviewer(p)
    p.set_defaults(func=cmd_next)

    p = sub.add_parser("label", help="answer an item with a label")
    p.add_argument("id", type=int)
    p.add_argument("label")
    p.add_argument("--again", action="store_true", help="change an answer given before")
    reviewer(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("accept", help="agree with the model's suggestion for an item")
    p.add_argument("id", type=int)
    reviewer(p)
    p.set_defaults(func=cmd_accept)

    p = sub.add_parser("skip", help="skip an item (not shown again unless asked with --again)")
    p.add_argument("id", type=int)
    reviewer(p)
    p.set_defaults(func=cmd_skip)

    p = sub.add_parser("list", help="the queues with their counts, or the items of one queue")
    p.add_argument("--queue")
    p.add_argument("--status", choices=items.STATUSES)
    p.add_argument("--format", default="text", choices=["text", "json"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("retrain", help="queue the corrected run's settings on the new dataset version")
    p.add_argument("--run", type=int, required=True, help="the run being corrected")
    p.add_argument("--dataset", required=True, help="NAME:VERSION made by `dataset add-reviewed`")
    p.add_argument("--no-worker", action="store_true", help="only queue it")
    p.add_argument("--wait", action="store_true", help="follow it, then print the comparison (one step)")
    p.add_argument("--match", help="with --wait: also compare the test rows whose text matches this expression")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("compare", help="two runs on the same test rows and on the reviewed items")
    p.add_argument("old", type=int)
    p.add_argument("new", type=int)
    p.add_argument("--match", help="also the test rows whose text matches this regular expression")
    p.add_argument("--format", default="text", choices=["text", "json"])
    p.set_defaults(func=cmd_compare)


def actor(args) -> Actor:
    """The command line runs as the server's operator (an administrator), under the reviewer's name."""
    return Actor(getattr(args, "reviewer", None) or paths.default_user(), ADMIN, "cli")


def _item_text(item: dict) -> str:
    probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(item["probs"].items(), key=lambda kv: -kv[1]))
    lines = [f"Item {item['id']} ({item['queue']}, {item['status']})", f"  {item['text']}"]
    if item.get("suggested_label"):
        lines.append(f"  model: {item['suggested_label']}" + (f" ({probs})" if probs else ""))
    if item.get("answer_label"):
        lines.append(f"  answer: {item['answer_label']} by {item['answered_by']} at {item['answered_at']}")
    return "\n".join(lines)


def cmd_queue(args) -> int:
    conn = db.connect()
    if args.feed:
        result = items.queue_feed(conn, args.feed, args.run, limit=args.limit, order=args.order, actor=actor(args))
    elif args.run:
        result = items.queue_predictions(conn, args.run, args.split, below=args.below, mistakes=not args.no_mistakes,
                                         limit=args.limit, order=args.order, actor=actor(args))
    else:
        raise UserError("Say what to review: --feed NAME (its scored articles) or --run ID (its predictions).")
    print(f"Queue {result['queue']}: {result['added']} new items (of {result['considered']} considered).")
    print(f"Review them with: python -m engine review next --queue '{result['queue']}'")
    return 0


def cmd_flag(args) -> int:
    conn = db.connect()
    item = items.flag(conn, article_id=args.article, run_id=args.run, split=args.split, row_id=args.row,
                      text=args.text, note=args.note, actor=actor(args))
    print(_item_text(item))
    return 0


def cmd_next(args) -> int:
    conn = db.connect()
    item = items.next_item(conn, args.queue, again=args.again, actor=actor(args))
    if item is None:
        print("Nothing left to review" + (f" in {args.queue}." if args.queue else "."), file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({k: v for k, v in item.items() if not k.endswith("_json")}, ensure_ascii=False, indent=2))
        return 0
    print(_item_text(item))
    left = items.counts(conn, item["queue"])
    print(f"  {left['done']} done, {left['left']} left. Answer: review label {item['id']} LABEL | accept "
          f"{item['id']} | skip {item['id']}")
    return 0


def cmd_label(args) -> int:
    conn = db.connect()
    print(_item_text(items.label(conn, args.id, args.label, again=args.again, actor=actor(args))))
    return 0


def cmd_accept(args) -> int:
    conn = db.connect()
    print(_item_text(items.accept(conn, args.id, actor=actor(args))))
    return 0


def cmd_skip(args) -> int:
    conn = db.connect()
    items.skip(conn, args.id, actor=actor(args))
    print(f"Item {args.id} skipped.")
    return 0


def cmd_list(args) -> int:
    conn = db.connect()
    if not args.queue and not args.status:
        found = items.queues(conn)
        if args.format == "json":
            print(json.dumps(found, indent=2))
            return 0
        if not found:
            print("No review items yet. Queue some: python -m engine review queue --feed NAME | --run ID")
        for q in found:
            print(f"{q['queue']}: {q['done']} done, {q['skipped']} skipped, {q['left']} left")
        return 0
    found = items.list_items(conn, args.queue, args.status)
    if args.format == "json":
        print(json.dumps([{k: v for k, v in i.items() if not k.endswith("_json")} for i in found],
                         ensure_ascii=False, indent=2))
        return 0
    for i in found:
        answer = f" -> {i['answer_label']} ({i['answered_by']})" if i.get("answer_label") else ""
        print(f"{i['id']:>6}  {i['status']:8} {i.get('suggested_label') or '-':10}{answer}  {i['text'][:80]}")
    return 0


def cmd_retrain(args) -> int:
    conn = db.connect()
    run_id = corrections.retrain(conn, args.run, args.dataset)
    print(f"Queued run {run_id}: run {args.run}'s settings on {args.dataset}. When it has finished: "
          f"python -m engine review compare {args.run} {run_id}")
    if not args.no_worker:
        supervisor.ensure_supervisor()
    if args.wait:
        from engine.cli.train import follow  # the training progress bar, shared with `train --wait`

        code = follow(conn, run_id)
        if code:
            return code
        _print_comparison(corrections.compare(conn, args.run, run_id, match=args.match), args.run, run_id)
    print(run_id)
    return 0


def cmd_compare(args) -> int:
    conn = db.connect()
    result = corrections.compare(conn, args.old, args.new, match=args.match)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    _print_comparison(result, args.old, args.new)
    return 0


def _print_comparison(result: dict, old: int, new: int) -> None:
    print(f"Run {old} (old) against run {new} (new), on the same rows:")

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for row in corrections.comparison_rows(result):
        print(f"  {row['rows']}: {row['n']} rows, macro-F1 {f(row['old macro-F1'])} -> {f(row['new macro-F1'])}, "
              f"accuracy {f(row['old accuracy'])} -> {f(row['new accuracy'])}"
              + (f", {row['fixed']} fixed, {row['broken']} broken" if row["fixed"] is not None else ""))
