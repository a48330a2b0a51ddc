"""``python -m engine jobs [list] | delete ID``: every job (training, scoring, topics), why a queued one waits and
how long each is likely to take; deleting finished ones with their files."""

from __future__ import annotations

import json

from engine import db
from engine.jobs import overview
from engine.jobs import supervisor


def register(subparsers) -> None:
    parser = subparsers.add_parser("jobs", help="every job: training runs, scoring and topics, with why it waits")
    sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(func=cmd_list)
    p = sub.add_parser("list", help="every job, newest first (the default)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("delete", help="delete a finished, failed or cancelled job and its files")
    p.add_argument("id", type=int)
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.set_defaults(func=cmd_delete)


def cmd_list(args) -> int:
    conn = db.connect()
    supervisor.check_running(conn)  # a job whose process vanished is shown as failed, not as running forever
    rows = overview.jobs(conn, limit=args.limit, worker_alive=supervisor.supervisor_alive(conn) is not None)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("No jobs yet. Train a model with `python -m engine train --dataset NAME`.")
        return 0
    print(f"{'id':>4}  {'kind':<9} {'status':<10} {'what':<44} state")
    for r in rows:
        state = r["waiting"] or r["estimate"] or r["error"] or r["finished_at"] or ""
        if r["status"] == "running" and r["total_steps"]:
            state = f"{r['step']}/{r['total_steps']} · {state}"
        print(f"{r['id']:>4}  {r['kind']:<9} {r['status']:<10} {r['what'][:44]:<44} {state}")
    print(overview.speeds_note(conn))
    return 0


def cmd_delete(args) -> int:
    conn = db.connect()
    job = overview.delete(conn, args.id, confirm=args.yes)
    print(f"Deleted {overview.label(job)} and its files.")
    return 0
