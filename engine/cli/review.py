"""``python -m engine review queue|flag|next|label|accept|skip|list|retrain|compare``: the Review page, headless.

``dataset add-reviewed`` (engine/cli/dataset.py) and ``feed promote`` (engine/cli/feed.py) close the loop."""

from __future__ import annotations

import json
import sys

from engine import db, paths
from engine.access.roles import ADMIN, Actor
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import supervisor
from engine.review import corrections, items


def register(subparsers) -> None:
    parser = subparsers.add_parser("review", help=_("review the model's doubtful calls; answers become training data"))
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def reviewer(p):
        p.add_argument("--reviewer", help=_("who reviews (default: $BELLWETHER_USER or $USER)"))

    p = sub.add_parser("queue", help=_("queue items: a feed's least confident articles, or a run's mistakes and "
                                       "low-confidence rows of its test split or an evaluated file"))
    p.add_argument("--feed", help=_("a feed: its articles scored by --run (default: the feed's current model)"))
    p.add_argument("--run", type=int, help=_("the run whose calls are reviewed"))
    p.add_argument("--split", default="test", help=_("with --run and no --feed: 'test' or 'eval:NAME' (test)"))
    p.add_argument("--limit", type=int, default=100, help=_("at most this many items (100)"))
    p.add_argument("--order", choices=items.ORDERS, default="margin",
                   help=_("least confident by the margin between the top two classes (default) or by entropy"))
    p.add_argument("--below", type=float, default=0.6, help=_("with --split: also rows less confident than this (0.6)"))
    p.add_argument("--no-mistakes", action="store_true", help=_("with --split: only the low-confidence rows"))
    reviewer(p)
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("flag", help=_("flag an article, a prediction or a text as wrongly labelled (queue 'flagged')"))
    p.add_argument("--article", type=int, help=_("an article's id"))
    p.add_argument("--run", type=int, help=_("the run whose label is doubted"))
    p.add_argument("--split", help=_("with --run and --row: 'test' or 'eval:NAME'"))
    p.add_argument("--row", type=int, help=_("with --run and --split: the row's id"))
    p.add_argument("--text", help=_("a text tried on a model"))
    p.add_argument("--note", help=_("why it looks wrong"))
    reviewer(p)
    p.set_defaults(func=cmd_flag)

    p = sub.add_parser("next", help=_("take the next item (held for you for a few minutes) and print it"))
    p.add_argument("--queue", help=_("the queue (default: any)"))
    p.add_argument("--again", action="store_true", help=_("skipped items too"))
    p.add_argument("--format", default="text", choices=["text", "json"], help=_("text (default) or json"))
    reviewer(p)
    p.set_defaults(func=cmd_next)

    p = sub.add_parser("label", help=_("answer an item with a label"))
    p.add_argument("id", type=int, help=_("the item's id"))
    p.add_argument("label", help=_("one of the model's labels"))
    p.add_argument("--again", action="store_true", help=_("change an answer given before"))
    reviewer(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("accept", help=_("agree with the model's suggestion for an item"))
    p.add_argument("id", type=int, help=_("the item's id"))
    reviewer(p)
    p.set_defaults(func=cmd_accept)

    p = sub.add_parser("skip", help=_("skip an item (not shown again unless asked with --again)"))
    p.add_argument("id", type=int, help=_("the item's id"))
    reviewer(p)
    p.set_defaults(func=cmd_skip)

    p = sub.add_parser("list", help=_("the queues with their counts, or the items of one queue"))
    p.add_argument("--queue", help=_("only this queue's items"))
    p.add_argument("--status", choices=items.STATUSES, help=_("only items in this state"))
    p.add_argument("--format", default="text", choices=["text", "json"], help=_("text (default) or json"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("retrain", help=_("queue the corrected run's settings on the new dataset version"))
    p.add_argument("--run", type=int, required=True, help=_("the run being corrected"))
    p.add_argument("--dataset", required=True, help=_("NAME:VERSION made by `dataset add-reviewed`"))
    p.add_argument("--no-worker", action="store_true", help=_("only queue it"))
    p.add_argument("--wait", action="store_true", help=_("follow it, then print the comparison (one step)"))
    p.add_argument("--match", help=_("with --wait: also compare the test rows whose text matches this expression"))
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("compare", help=_("two runs on the same test rows and on the reviewed items"))
    p.add_argument("old", type=int, help=_("the old run"))
    p.add_argument("new", type=int, help=_("the new run"))
    p.add_argument("--match", help=_("also the test rows whose text matches this regular expression"))
    p.add_argument("--format", default="text", choices=["text", "json"], help=_("text (default) or json"))
    p.set_defaults(func=cmd_compare)


def actor(args) -> Actor:
    """The command line runs as the server's operator (an administrator), under the reviewer's name."""
    return Actor(getattr(args, "reviewer", None) or paths.default_user(), ADMIN, "cli")


def _item_text(item: dict) -> str:
    probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(item["probs"].items(), key=lambda kv: -kv[1]))
    lines = [_("Item {item_id} ({queue}, {status})", item_id=item["id"], queue=item["queue"],
               status=_(items.STATUS_WORDS.get(item["status"], item["status"]))), f"  {item['text']}"]
    if item.get("suggested_label"):
        lines.append("  " + (_("model: {label} ({probs})", label=item["suggested_label"], probs=probs) if probs
                             else _("model: {label}", label=item["suggested_label"])))
    if item.get("answer_label"):
        lines.append("  " + _("answer: {label} by {who} at {when}", label=item["answer_label"], who=item["answered_by"],
                              when=item["answered_at"]))
    return "\n".join(lines)


def cmd_queue(args) -> int:
    conn = db.connect()
    if args.feed:
        result = items.queue_feed(conn, args.feed, args.run, limit=args.limit, order=args.order, actor=actor(args))
    elif args.run:
        result = items.queue_predictions(conn, args.run, args.split, below=args.below, mistakes=not args.no_mistakes,
                                         limit=args.limit, order=args.order, actor=actor(args))
    else:
        raise UserError(_("Say what to review: --feed NAME (its scored articles) or --run ID (its predictions)."))
    print(_("Queue {queue}: {added} new items (of {considered} considered).", queue=result["queue"],
            added=result["added"], considered=result["considered"]))
    print(_("Review them with: python -m engine review next --queue '{queue}'", queue=result["queue"]))
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
        print(_("Nothing left to review in {queue}.", queue=args.queue) if args.queue else _("Nothing left to review."),
              file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({k: v for k, v in item.items() if not k.endswith("_json")}, ensure_ascii=False, indent=2))
        return 0
    print(_item_text(item))
    left = items.counts(conn, item["queue"])
    print("  " + _("{done} done, {left} left. Answer: review label {item_id} LABEL | accept {item_id} | skip {item_id}",
                   done=left["done"], left=left["left"], item_id=item["id"]))
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
    print(_("Item {item_id} skipped.", item_id=args.id))
    return 0


def cmd_list(args) -> int:
    conn = db.connect()
    if not args.queue and not args.status:
        found = items.queues(conn)
        if args.format == "json":
            print(json.dumps(found, indent=2))
            return 0
        if not found:
            print(_("No review items yet. Queue some: python -m engine review queue --feed NAME | --run ID"))
        for q in found:
            print(_("{queue}: {done} done, {skipped} skipped, {left} left", queue=q["queue"], done=q["done"],
                    skipped=q["skipped"], left=q["left"]))
        return 0
    found = items.list_items(conn, args.queue, args.status)
    if args.format == "json":
        print(json.dumps([{k: v for k, v in i.items() if not k.endswith("_json")} for i in found],
                         ensure_ascii=False, indent=2))
        return 0
    for i in found:
        answer = f" -> {i['answer_label']} ({i['answered_by']})" if i.get("answer_label") else ""
        status = _(items.STATUS_WORDS.get(i["status"], i["status"]))
        print(f"{i['id']:>6}  {status:8} {i.get('suggested_label') or '-':10}{answer}  {i['text'][:80]}")
    return 0


def cmd_retrain(args) -> int:
    conn = db.connect()
    run_id = corrections.retrain(conn, args.run, args.dataset)
    print(_("Queued run {run_id}: run {old_id}'s settings on {dataset}. When it has finished: "
            "python -m engine review compare {old_id} {run_id}", run_id=run_id, old_id=args.run, dataset=args.dataset))
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
    print(_("Run {old} (old) against run {new} (new), on the same rows:", old=old, new=new))

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for row in corrections.comparison_rows(result):
        values = dict(rows=row["rows"], n=row["n"], old_f1=f(row["old macro-F1"]), new_f1=f(row["new macro-F1"]),
                      old_acc=f(row["old accuracy"]), new_acc=f(row["new accuracy"]))
        if row["fixed"] is not None:
            print("  " + _("{rows}: {n} rows, macro-F1 {old_f1} -> {new_f1}, accuracy {old_acc} -> {new_acc}, "
                           "{fixed} fixed, {broken} broken", fixed=row["fixed"], broken=row["broken"], **values))
        else:
            print("  " + _("{rows}: {n} rows, macro-F1 {old_f1} -> {new_f1}, accuracy {old_acc} -> {new_acc}",
                           **values))
