"""Accounts: names, roles, scrypt password hashes, sign-in with a growing lock-out, and browser sessions.

Passwords are never stored nor logged: ``scrypt`` (memory-hard, 16 MiB per hash) with a random salt per user.
Failed sign-ins are slowed (a pause growing with the failures) and, from the fifth in a row, lock the account for a
time that doubles with each further failure (30 s, 60 s, ... capped at 1 hour); a good password after the lock ends
clears the count. Every attempt, good or bad, is in the audit log.

Sessions: a signed-in browser gets a random token (kept in a cookie by the dashboard); the store keeps only its
SHA-256 and when it was last used, so logout, disabling the account and idle expiry end it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import time
from datetime import datetime, timezone

from engine import db, i18n
from engine.access import audit
from engine.access.roles import ADMIN, ROLES, Actor, Forbidden, authorize, resolve
from engine.errors import NotFound, UserError
from engine.i18n import N_, _

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 10
LOCK_AFTER = 5  # failures in a row before the account locks
LOCK_FIRST_S = 30.0
LOCK_MAX_S = 3600.0
PAUSE_PER_FAILURE_S = 0.5  # the pause after a failed attempt grows with the failures (capped at PAUSE_MAX_S)
PAUSE_MAX_S = 3.0
SESSION_IDLE_S = 8 * 3600.0  # a session unused this long ends
SESSION_MAX_S = 7 * 24 * 3600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def clock() -> float:
    """Now, in seconds (tests replace it to reach a lock's expiry)."""
    return time.time()


def pause(seconds: float) -> None:
    time.sleep(seconds)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).replace(microsecond=0).isoformat()


def _epoch(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 2**20, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:  # still do the work, so a missing account takes as long as a wrong password
        hash_password(password)
        return False
    _scheme, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                         maxmem=64 * 2**20, dklen=32)
    return hmac.compare_digest(got.hex(), digest)


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise UserError(_("A user name is 1 to 64 letters, digits or . _ @ + - (for example 'alice' or "
                          "'alice@bank.com'), starting with a letter or digit."))
    return name


def check_new_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(_("Choose a password of at least {n} characters.", n=MIN_PASSWORD))
    return password


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(_("The role must be one of {roles} (not '{role}').", roles=", ".join(ROLES), role=role))
    return role


def get(conn, name: str) -> dict:
    rows = list(conn.query("SELECT * FROM users WHERE name = ?", [name]))
    if not rows:
        raise NotFound(_("There is no user '{name}'. `python -m engine users list` shows them.", name=name))
    return rows[0]


def count(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM users WHERE disabled = 0").fetchone()[0]


def list_users(conn) -> list[dict]:
    out = []
    for row in conn.query("SELECT name, role, disabled, sso, created_at, created_by, last_sign_in_at, failures, "
                          "locked_until FROM users ORDER BY name"):
        row["locked"] = _epoch(row["locked_until"]) > clock()
        out.append(row)
    return out


def add(conn, name: str, role: str, password: str | None = None, actor=None, sso: bool = False) -> dict:
    """Create an account. ``password`` for a password account; ``sso`` for a single sign-on identity (its e-mail),
    which has no password. The very first account may be created by the local administrator only."""
    who = resolve(conn, actor)
    authorize(conn, who, "users.manage")
    name = check_name(name)
    _check_role(role)
    if sso == bool(password):
        raise UserError(_("Give a password for a password account, or mark it as single sign-on (--sso), not "
                          "both."))
    if conn.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
        raise UserError(_("There is already a user '{name}'. Use set-role or reset-password to change it.",
                          name=name))
    with db.transaction(conn):
        conn["users"].insert({"name": name, "role": role, "password_hash": hash_password(check_new_password(password))
                              if password else None, "sso": int(sso), "disabled": 0, "failures": 0,
                              "created_at": db.now(), "created_by": who.label})
        audit.record(conn, who, "users.add", f"user:{name}", {"role": role, "sso": sso})
    return get(conn, name)


def set_role(conn, name: str, role: str, actor=None) -> None:
    who = resolve(conn, actor)
    authorize(conn, who, "users.manage")
    user = get(conn, name)
    _check_role(role)
    if user["role"] == ADMIN and role != ADMIN:
        _keep_an_admin(conn, name)
    with db.transaction(conn):
        conn.execute("UPDATE users SET role = ? WHERE name = ?", [role, name])
        audit.record(conn, who, "users.set_role", f"user:{name}", {"from": user["role"], "to": role})


def set_disabled(conn, name: str, disabled: bool = True, actor=None) -> None:
    """Disable (or enable) an account; disabling ends its sessions at once."""
    who = resolve(conn, actor)
    authorize(conn, who, "users.manage")
    user = get(conn, name)
    if disabled and user["role"] == ADMIN:
        _keep_an_admin(conn, name)
    with db.transaction(conn):
        conn.execute("UPDATE users SET disabled = ? WHERE name = ?", [int(disabled), name])
        if disabled:
            conn.execute("DELETE FROM sessions WHERE user = ?", [name])
        audit.record(conn, who, "users.disable" if disabled else "users.enable", f"user:{name}")


def reset_password(conn, name: str, password: str, actor=None) -> None:
    """A new password; it also clears a lock-out and ends the account's sessions."""
    who = resolve(conn, actor)
    authorize(conn, who, "users.manage")
    user = get(conn, name)
    if user["sso"]:
        raise UserError(_("'{name}' signs in with single sign-on and has no password here.", name=name))
    digest = hash_password(check_new_password(password))
    with db.transaction(conn):
        conn.execute("UPDATE users SET password_hash = ?, failures = 0, locked_until = NULL WHERE name = ?",
                     [digest, name])
        conn.execute("DELETE FROM sessions WHERE user = ?", [name])
        audit.record(conn, who, "users.reset_password", f"user:{name}")


def _keep_an_admin(conn, name: str) -> None:
    others = conn.execute("SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0 AND name != ?",
                          [ADMIN, name]).fetchone()[0]
    if not others:
        raise UserError(_("'{name}' is the last active administrator; make another user an admin first.",
                          name=name))


def ensure_first_admin(conn, name: str | None, password: str | None) -> bool:
    """On first start: create the admin named by BELLWETHER_ADMIN_USER / BELLWETHER_ADMIN_PASSWORD when there are
    no accounts yet. True when it did."""
    if not name or not password or conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
        return False
    add(conn, name, ADMIN, password, actor=None)
    return True


# --- sign-in --------------------------------------------------------------------------------------------------------

WRONG = N_("That name and password do not match. Check them, or ask an administrator to reset your password.")


def sign_in(conn, name: str, password: str) -> Actor:
    """The account's Actor, or :class:`Forbidden` with a plain reason. A locked account is refused without checking
    the password; each failure is counted, paused on and audited."""
    name = (name or "").strip()
    row = conn.execute("SELECT role, password_hash, disabled, failures, locked_until, sso FROM users WHERE name = ?",
                       [name]).fetchone()
    now = clock()
    if row is not None and _epoch(row[4]) > now:
        wait = math.ceil(_epoch(row[4]) - now)
        audit.record(conn, name, "sign_in.failed", f"user:{name}", {"reason": "locked"})
        raise Forbidden(_("Too many wrong passwords: this account is locked for {duration} more. Try again then, or "
                          "ask an administrator to reset your password.", duration=_duration(wait)))
    good = check_password(password or "", row[1] if row is not None else None)
    if good and not row[2]:
        with db.transaction(conn):
            conn.execute("UPDATE users SET failures = 0, locked_until = NULL, last_sign_in_at = ? WHERE name = ?",
                         [db.now(), name])
            audit.record(conn, Actor(name, row[0]), "sign_in", f"user:{name}")
        return Actor(name, row[0])
    failures = (row[3] or 0) + 1 if row is not None else 0
    detail = {"reason": "disabled" if good else "wrong password" if row is not None else "unknown name"}
    with db.transaction(conn):
        if row is not None and not good:
            locked = None
            if failures >= LOCK_AFTER:
                lock_s = min(LOCK_FIRST_S * 2 ** (failures - LOCK_AFTER), LOCK_MAX_S)
                locked = _iso(now + lock_s)
                detail["locked_for_s"] = lock_s
            conn.execute("UPDATE users SET failures = ?, locked_until = ? WHERE name = ?", [failures, locked, name])
        audit.record(conn, name or "(no name)", "sign_in.failed", f"user:{name}", detail)
    pause(min(PAUSE_PER_FAILURE_S * max(failures, 1), PAUSE_MAX_S))
    if good:  # a disabled account: the password was right, so say why
        raise Forbidden(_("This account is disabled. Ask an administrator to enable it."))
    if failures >= LOCK_AFTER:
        raise Forbidden(_("That name and password do not match. Check them, or ask an administrator to reset your "
                          "password. Too many wrong passwords: the account is locked for {duration}.",
                          duration=_duration(int(detail["locked_for_s"]))))
    raise Forbidden(_(WRONG))


def sso_actor(conn, identity: str | None) -> Actor:
    """The account a single sign-on identity (its e-mail) maps to; refused when there is none or it is disabled."""
    identity = (identity or "").strip()
    row = conn.execute("SELECT role, disabled FROM users WHERE name = ? COLLATE NOCASE", [identity]).fetchone()
    if row is None or row[1]:
        audit.record(conn, identity or "(no identity)", "sign_in.failed", f"user:{identity}",
                     {"reason": "sso identity without an active account"})
        raise Forbidden(_("You signed in as {identity}, but Bellwether has no active account for you. Ask an "
                          "administrator to run `python -m engine users add {name} --role viewer --sso`.",
                          identity=identity or _("an unknown identity"), name=identity or "you@bank.com"))
    name = conn.execute("SELECT name FROM users WHERE name = ? COLLATE NOCASE", [identity]).fetchone()[0]
    audit.record(conn, Actor(name, row[0]), "sign_in", f"user:{name}", {"via": "sso"})
    return Actor(name, row[0])


def _duration(seconds: int) -> str:
    return _("{n} s", n=seconds) if seconds < 120 else _("{n} min", n=round(seconds / 60))


# --- sessions -------------------------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn, actor: Actor) -> str:
    """A new session token for a signed-in browser (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = clock()
    conn.execute("DELETE FROM sessions WHERE last_seen_at < ?", [_iso(now - SESSION_IDLE_S)])
    conn["sessions"].insert({"token_sha256": _digest(token), "user": actor.name, "created_at": _iso(now),
                             "last_seen_at": _iso(now)})
    return token


def session_actor(conn, token: str | None) -> Actor | None:
    """The account behind a session token, or None when it is unknown, idle too long, too old or its account is
    disabled. Using it keeps it alive."""
    if not token or not isinstance(token, str):
        return None
    row = conn.execute(
        "SELECT s.user, s.created_at, s.last_seen_at, u.role, u.disabled FROM sessions s JOIN users u "
        "ON u.name = s.user WHERE s.token_sha256 = ?", [_digest(token)]).fetchone()
    now = clock()
    if row is None or row[4] or _epoch(row[2]) < now - SESSION_IDLE_S or _epoch(row[1]) < now - SESSION_MAX_S:
        return None
    if _epoch(row[2]) < now - 60:  # at most one write a minute per session
        conn.execute("UPDATE sessions SET last_seen_at = ? WHERE token_sha256 = ?", [_iso(now), _digest(token)])
    return Actor(row[0], row[3])


def end_session(conn, token: str | None, actor: Actor | None = None) -> None:
    if token:
        conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", [_digest(token)])
    if actor is not None:
        audit.record(conn, actor, "sign_out", f"user:{actor.name}")


def language(conn, name: str | None) -> str | None:
    """The interface language ``name`` chose (engine.i18n), or None."""
    if not name:
        return None
    row = conn.execute("SELECT language FROM user_preferences WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def set_language(conn, name: str, code: str) -> str:
    """Remember ``name``'s interface language (anyone may choose their own)."""
    code = i18n.check_language(code)
    conn["user_preferences"].upsert({"name": name, "language": code, "updated_at": db.now()}, pk="name")
    return code
