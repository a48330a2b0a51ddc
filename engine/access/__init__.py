"""Who may do what, and the record of who did it.

- ``roles``: the roles (viewer < analyst < admin), the table of actions and the one check, :func:`roles.authorize`.
- ``users``: accounts in SQLite, passwords hashed with scrypt (memory-hard), sign-in with lock-out, sessions.
- ``audit``: the append-only audit log (SQLite triggers refuse UPDATE and DELETE).

Engine functions that change something take ``actor`` (an :class:`roles.Actor`, a user name, or None) and call
:func:`guard` first: it authorizes and records. ``None`` means the local administrator (the command line, or a
script calling the library directly on the server); pages always pass the signed-in user.
"""

from __future__ import annotations

from engine.access.audit import record
from engine.access.roles import ADMIN, ANALYST, VIEWER, Actor, Forbidden, authorize, can, resolve

__all__ = ["ADMIN", "ANALYST", "VIEWER", "Actor", "Forbidden", "authorize", "can", "check", "guard", "record",
           "resolve"]


def check(conn, actor, action: str, obj: str, owner: str | None = None, detail: dict | None = None) -> Actor:
    """Refuse ``action`` on ``obj`` unless ``actor`` may (the refusal is audited); returns the resolved actor. Call
    :func:`record` inside the write's transaction, so the change and its audit row land together."""
    who = resolve(conn, actor)
    try:
        authorize(conn, who, action, owner=owner)
    except Forbidden:
        record(conn, who, action, obj, {**(detail or {}), "refused": True})
        raise
    return who


def guard(conn, actor, action: str, obj: str, owner: str | None = None, detail: dict | None = None) -> Actor:
    """Refuse ``action`` on ``obj`` unless ``actor`` may (a refusal is audited too), else record it; returns the actor.

    Call it where the change is about to be made, after the input was checked, so the log says what happened."""
    who = check(conn, actor, action, obj, owner, detail)
    record(conn, who, action, obj, detail)
    return who
