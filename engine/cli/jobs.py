"""``python -m engine jobs [list] | cancel JOB | log JOB | delete JOB`` (also ``job ...``): every job (training,
scoring, topics), why a queued one waits and how long each is likely to take; cancelling one, reading its log, and
deleting finished ones with their files.

A job is named as people see it: ``run-4`` (or ``4``), ``scoring-2`` (or ``S2``), ``topics-1`` (or ``T1``); its raw
id works too (engine.jobs.queue.resolve)."""

from __future__ import annotations

import json

from engine import db
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import overview
from engine.jobs import queue
from engine.jobs import supervisor


def register(subparsers) -> None:
    parser = subparsers.add_parser("jobs", aliases=["job"],
                                   help=_("every job: training runs, scoring and topics, with why it waits"))
    sub = parser.add_subparsers(dest="jobs_command", metavar=_("ACTION"))
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(func=cmd_list)
    p = sub.add_parser("list", help=_("every job, newest first (the default)"))
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    job_help = _("the job as the Jobs page names it: run-4 (or 4), scoring-2 (or S2), topics-1 (or T1), or its id")
    p = sub.add_parser("cancel", help=_("stop a queued or running job"))
    p.add_argument("id", metavar="JOB", help=job_help)
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("log", help=_("a job's log"))
    p.add_argument("id", metavar="JOB", help=job_help)
    p.add_argument("--tail", type=int, default=0, help=_("only the last N lines"))
    p.set_defaults(func=cmd_log)
    p = sub.add_parser("delete", help=_("delete a finished, failed or cancelled job and its files"))
    p.add_argument("id", metavar="JOB", help=job_help)
    p.add_argument("--yes", action="store_true", help=_("confirm the deletion"))
    p.set_defaults(func=cmd_delete)


def cmd_list(args) -> int:
    conn = db.connect()
    supervisor.check_running(conn)  # a job whose process vanished is shown as failed, not as running forever
    rows = overview.jobs(conn, limit=args.limit, worker_alive=supervisor.supervisor_alive(conn) is not None)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print(_("No jobs yet. Train a model with `python -m engine train --dataset NAME`."))
        return 0
    heads = [_("job"), _("kind"), _("status"), _("what"), _("state")]
    print(f"{heads[0]:<12} {heads[1]:<9} {heads[2]:<10} {heads[3]:<44} {heads[4]}")
    for r in rows:
        state = r["waiting"] or r["estimate"] or r["error"] or r["finished_at"] or ""
        if r["status"] == "running" and r["total_steps"]:
            state = f"{r['step']}/{r['total_steps']} · {state}"
        print(f"{r['ref']:<12} {overview.kind_words(r['kind']):<9} {queue.status_words(r['status']):<10} "
              f"{r['what'][:44]:<44} {state}")
    print(overview.speeds_note(conn))
    return 0


def cmd_cancel(args) -> int:
    conn = db.connect()
    job = queue.get(conn, args.id)
    state = queue.cancel(conn, job["id"])
    if state == "cancelled":
        print(_("{job}: cancelled.", job=queue.label(job, start=True)))
    else:
        print(_("{job}: cancel requested; it stops at its next step.", job=queue.label(job, start=True)))
    return 0


def cmd_log(args) -> int:
    conn = db.connect()
    job = queue.get(conn, args.id)
    if args.tail:
        text = queue.log_tail(job, args.tail)
    else:
        from pathlib import Path

        path = Path(job.get("log_path") or "")
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if not text:
        raise UserError(_("{job} has no log yet.", job=queue.label(job, start=True)))
    print(text)
    return 0


def cmd_delete(args) -> int:
    conn = db.connect()
    job = overview.delete(conn, args.id, confirm=args.yes)
    print(_("Deleted {job} and its files.", job=overview.label(job)))
    return 0
