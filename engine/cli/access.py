"""``python -m engine users ...`` and ``python -m engine audit``: accounts and the audit log, on the server.

The command line acts as the local administrator (``cli:$BELLWETHER_USER``): whoever can run it on the server can
read the data directory anyway. Passwords are prompted (twice) in a terminal, or read from the first line of standard
input otherwise; never taken as an argument, where they would land in the shell's history and the process list.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

from engine import db, i18n, settings
from engine.access import audit, users
from engine.access.roles import ROLES
from engine.errors import UserError
from engine.i18n import _


def register(subparsers) -> None:
    parser = subparsers.add_parser("users", help=_("accounts and roles: list, add, set-role, disable, reset-password"))
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("list", help=_("list the accounts with their roles and lock-outs"))
    p.add_argument("--format", default="text", choices=["text", "json"], help=_("text (default) or json"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("add", help=_("add an account (the password is prompted, or read from standard input)"))
    p.add_argument("name", help=_("the account's name (an e-mail for single sign-on)"))
    p.add_argument("--role", required=True, choices=ROLES, help=_("viewer, analyst or admin"))
    p.add_argument("--sso", action="store_true", help=_("a single sign-on identity (its e-mail), without a password"))
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("set-role", help=_("change an account's role"))
    p.add_argument("name", help=_("an account"))
    p.add_argument("role", choices=ROLES, help=_("viewer, analyst or admin"))
    p.set_defaults(func=cmd_set_role)

    p = sub.add_parser("language", help=_("set the interface language someone sees on the dashboard (en, zh_CN)"))
    p.add_argument("name", help=_("an account, or the local administrator's name in local mode"))
    p.add_argument("language", help=_("en (English) or zh_CN (简体中文)"))
    p.set_defaults(func=cmd_language)

    p = sub.add_parser("disable", help=_("disable an account (its sessions end at once); --enable undoes it"))
    p.add_argument("name", help=_("an account"))
    p.add_argument("--enable", action="store_true", help=_("enable the account again"))
    p.set_defaults(func=cmd_disable)

    p = sub.add_parser("reset-password", help=_("set a new password (prompted or from standard input); clears a lock"))
    p.add_argument("name", help=_("an account"))
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("bind-address", help=_("the address the dashboard may listen on: all interfaces only when "
                                              "accounts or single sign-on exist, else 127.0.0.1 (and why, on stderr)"))
    p.add_argument("--secrets", default=".streamlit/secrets.toml", help=_("Streamlit's secrets file ([auth] = SSO)"))
    p.set_defaults(func=cmd_bind_address)

    parser = subparsers.add_parser("audit", help=_("read or export the audit log (who did what, when)"))
    parser.add_argument("--actor", help=_("only this actor (a user name, or cli:NAME)"))
    parser.add_argument("--action", help=_("only this action or family (dataset.delete, run, sign_in, ...)"))
    parser.add_argument("--since", help=_("only from this time (ISO 8601, e.g. 2026-01-31)"))
    parser.add_argument("--limit", type=int, default=200, help=_("newest N rows (0: all)"))
    parser.add_argument("--format", default="text", choices=["text", "json", "csv"],
                        help=_("text (default), json or csv"))
    parser.add_argument("--output", help=_("write to this file instead of standard output"))
    parser.set_defaults(func=cmd_audit)


def _password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(_("Password: "))
        if confirm and getpass.getpass(_("Password again: ")) != first:
            raise UserError(_("The two passwords differ; nothing was changed. Run the command again."))
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def cmd_list(args) -> int:
    rows = users.list_users(db.connect())
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(_("No accounts yet. Add the first admin: python -m engine users add NAME --role admin"))
    for r in rows:
        state = (_("disabled") if r["disabled"] else _("locked until {when}", when=r["locked_until"]) if r["locked"]
                 else _("active"))
        kind = "sso" if r["sso"] else _("password")
        print(_("{name} {role} {kind} {state} last sign-in {when}", name=f"{r['name']:<32}", role=f"{_(r['role']):<8}",
                kind=f"{kind:<9}", state=f"{state:<10}", when=r["last_sign_in_at"] or "-"))
    return 0


def cmd_add(args) -> int:
    password = None if args.sso else users.check_new_password(_password())
    users.add(db.connect(), args.name, args.role, password, sso=args.sso)
    print(_("Added {name} ({role}).", name=args.name, role=_(args.role)), file=sys.stderr)
    return 0


def cmd_language(args) -> int:
    code = users.set_language(db.connect(), args.name, args.language)
    print(_("{name} now sees the dashboard in {language}.", name=args.name, language=i18n.LANGUAGES[code]),
          file=sys.stderr)
    return 0


def cmd_set_role(args) -> int:
    users.set_role(db.connect(), args.name, args.role)
    print(_("{name} is now {role}.", name=args.name, role=_(args.role)), file=sys.stderr)
    return 0


def cmd_disable(args) -> int:
    users.set_disabled(db.connect(), args.name, not args.enable)
    print(_("{name} is enabled.", name=args.name) if args.enable else _("{name} is disabled.", name=args.name),
          file=sys.stderr)
    return 0


def cmd_reset(args) -> int:
    users.reset_password(db.connect(), args.name, users.check_new_password(_password()))
    print(_("New password set for {name}; their lock-out and sessions are cleared.", name=args.name), file=sys.stderr)
    return 0


def sso_configured(secrets_file: str | Path) -> bool:
    import tomllib  # only this command reads Streamlit's secrets

    path = Path(secrets_file)
    if not path.is_file():
        return False
    try:
        return "auth" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def cmd_bind_address(args) -> int:
    conn = db.connect()
    if users.ensure_first_admin(conn, settings.admin_user(), settings.admin_password()):
        print(_("Created the first admin, {name}, from BELLWETHER_ADMIN_USER.", name=settings.admin_user()),
              file=sys.stderr)
    if users.count(conn) or sso_configured(args.secrets):
        print("0.0.0.0")
        print(_("Accounts exist: the dashboard listens on all interfaces and everyone signs in."), file=sys.stderr)
    else:
        print("127.0.0.1")
        print(_("No accounts and no single sign-on yet: the dashboard listens on 127.0.0.1 only (this machine), where "
                "you act as the local administrator. To open it to your team, add an admin "
                "(python -m engine users add NAME --role admin) and start again."), file=sys.stderr)
    return 0


def cmd_audit(args) -> int:
    rows = audit.read(db.connect(), limit=args.limit or None, actor=args.actor, action=args.action, since=args.since)
    if args.format == "csv":
        data = audit.to_csv(rows)
    elif args.format == "json":
        data = json.dumps(rows, indent=2, ensure_ascii=False).encode() + b"\n"
    else:
        data = "".join(f"{r['at']}  {r['actor']:<20} {r['action']:<16} {r['object']}"
                       f"{'  ' + json.dumps(r['detail'], ensure_ascii=False) if r['detail'] else ''}\n"
                       for r in rows).encode()
    if args.output:
        Path(args.output).write_bytes(data)
        print(_("Wrote {n} audit rows to {path}.", n=len(rows), path=args.output), file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
