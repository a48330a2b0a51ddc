"""``python -m engine notify channel add|list|edit|test|remove`` and ``notify log``: where alerts are pushed."""

from __future__ import annotations

import getpass
import json
import os
import sys

from engine import db, paths
from engine.i18n import _
from engine.monitor import notify


def register(subparsers) -> None:
    no = subparsers.add_parser("notify", help=_("channels that alerts (and finished runs) are pushed to"))
    ns = no.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    ch = ns.add_parser("channel", help=_("add, list, edit, test or remove a webhook or e-mail channel"))
    cs = ch.add_subparsers(dest="channel_command", metavar="ACTION", required=True)
    add = cs.add_parser("add", help=_("a webhook (json, slack or teams) or an e-mail (SMTP) channel"))
    add.add_argument("name")
    add.add_argument("--kind", required=True, choices=list(notify.KINDS))
    add.add_argument("--url", help=_("webhook: its URL (kept secret: never shown in full); '-' reads it from stdin"))
    add.add_argument("--style", default="json", choices=list(notify.STYLES), help=_("webhook payload (json)"))
    add.add_argument("--smtp-host")
    add.add_argument("--smtp-port", type=int, default=25)
    add.add_argument("--smtp-user")
    add.add_argument("--smtp-password-env", metavar="VAR",
                     help=_("read the SMTP password from this environment variable (else asked when --smtp-user is "
                              "given)"))
    add.add_argument("--security", default="none", choices=["none", "starttls", "ssl"])
    add.add_argument("--sender", help=_("e-mail: the From address"))
    add.add_argument("--to", help=_("e-mail: recipients, comma-separated"))
    add.add_argument("--events", default="alerts", help=_("alerts, runs, or alerts,runs (runs: training runs that end)"))
    add.set_defaults(func=cmd_add)
    ls = cs.add_parser("list", help=_("channels, where they go (secrets hidden) and their last delivery"))
    ls.add_argument("--format", default="table", choices=["table", "json"])
    ls.set_defaults(func=cmd_list)
    te = cs.add_parser("test", help=_("send a test message now and log it"))
    te.add_argument("name")
    te.set_defaults(func=cmd_test)
    ed = cs.add_parser("edit", help=_("change a channel in place (its delivery log is kept)"))
    ed.add_argument("name")
    ed.add_argument("--events", help=_("alerts, runs, or alerts,runs"))
    state = ed.add_mutually_exclusive_group()
    state.add_argument("--pause", action="store_true", help=_("send it nothing until --resume"))
    state.add_argument("--resume", action="store_true", help=_("send it what it asks for again"))
    ed.add_argument("--url", help=_("webhook: a new URL; '-' reads it from stdin"))
    ed.add_argument("--to", help=_("e-mail: new recipients, comma-separated"))
    ed.add_argument("--smtp-password-env", metavar="VAR", help=_("e-mail: the new SMTP password from this variable"))
    ed.set_defaults(func=cmd_edit)
    rm = cs.add_parser("remove", help=_("remove a channel and its delivery log"))
    rm.add_argument("name")
    rm.set_defaults(func=cmd_remove)
    lg = ns.add_parser("log", help=_("the delivery log: every alert sent, retried or failed"))
    lg.add_argument("--channel")
    lg.add_argument("--limit", type=int, default=30)
    lg.add_argument("--format", default="table", choices=["table", "json"])
    lg.set_defaults(func=cmd_log)


def cmd_add(args) -> int:
    url = sys.stdin.readline().strip() if args.url == "-" else args.url
    password = None
    if args.smtp_password_env:
        password = os.environ.get(args.smtp_password_env, "")
    elif args.smtp_user and sys.stdin.isatty():
        password = getpass.getpass(_("SMTP password: "))
    conn = db.connect()
    row = notify.add_channel(conn, args.name, args.kind, url=url, style=args.style, host=args.smtp_host,
                             port=args.smtp_port, username=args.smtp_user, password=password, sender=args.sender,
                             to=args.to, security=args.security, events=args.events,
                             created_by=paths.default_user())
    print(_("Channel '{name}' ({kind}) -> {target}, for {events}.", name=row["name"], kind=row["kind"],
            target=row["target"], events=row["events"]))
    return 0


def cmd_list(args) -> int:
    rows = notify.list_channels(db.connect())
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return 0
    if not rows:
        print(_("No channels. Add one with `python -m engine notify channel add NAME --kind webhook --url URL`."))
    for row in rows:
        last = row["last_delivery"]
        if not last:
            state = _("nothing sent yet")
        elif last.get("error"):
            state = _("last {status} {at}: {error}", status=last["status"], at=last["at"], error=last["error"])
        else:
            state = _("last {status} {at}", status=last["status"], at=last["at"])
        print(f"{row['id']:>3}  {row['name']}  {row['kind']}  {row['target']}  {row['events']}  {state}")
    return 0


def cmd_test(args) -> int:
    result = notify.send_test(db.connect(), args.name)
    if result["status"] == "sent":
        print(_("Test message sent to '{channel}'.", channel=result["channel"]))
        return 0
    print(_("error: the test message to '{channel}' failed: {error}", channel=result["channel"], error=result["error"]),
          file=sys.stderr)
    return 1


def cmd_edit(args) -> int:
    url = sys.stdin.readline().strip() if args.url == "-" else args.url
    password = os.environ.get(args.smtp_password_env, "") if args.smtp_password_env else None
    enabled = False if args.pause else True if args.resume else None
    row = notify.edit_channel(db.connect(), args.name, events=args.events, enabled=enabled, url=url, to=args.to,
                              password=password)
    if row["enabled"]:
        print(_("Channel '{name}' (on) -> {target}, for {events}.", name=row["name"], target=row["target"],
                events=row["events"]))
    else:
        print(_("Channel '{name}' (paused) -> {target}, for {events}.", name=row["name"], target=row["target"],
                events=row["events"]))
    return 0


def cmd_remove(args) -> int:
    notify.remove_channel(db.connect(), args.name)
    print(_("Channel '{name}' removed.", name=args.name))
    return 0


def cmd_log(args) -> int:
    rows = notify.deliveries(db.connect(), args.channel, args.limit)
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return 0
    for row in rows:
        tries = _("tries {n}", n=row["attempts"])
        print(f"{row['id']:>5}  {row['channel']}  {row['event_key']}  {row['status']}  {tries}  "
              f"{row['sent_at'] or row['created_at']}" + (f"  {row['last_error']}" if row["last_error"] else ""))
    return 0
