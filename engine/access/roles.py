"""Roles and the actions they allow: one table, one check.

- viewer: reads everything, changes nothing.
- analyst: uploads, trains, scores, reviews, acknowledges alerts; cancels, resumes, deletes and edits what they own.
- admin: everything, including users, anyone's objects, settings and the audit log.

:func:`authorize` is the only check; the dashboard's pages and the command line both go through it (pages also hide
what a role cannot do, but hiding is not the guard).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import paths
from engine.errors import UserError
from engine.i18n import N_, _

VIEWER, ANALYST, ADMIN = "viewer", "analyst", "admin"
ROLES = (VIEWER, ANALYST, ADMIN)
_RANK = {VIEWER: 0, ANALYST: 1, ADMIN: 2}

# action -> (the lowest role allowed, whether an analyst must own the object). Admins pass every owner check.
ACTIONS: dict[str, tuple[str, bool]] = {
    "dataset.import": (ANALYST, False),
    "dataset.delete": (ANALYST, True),
    "train.submit": (ANALYST, False),
    "run.cancel": (ANALYST, True),
    "run.resume": (ANALYST, True),
    "run.rerun": (ANALYST, False),
    "run.delete": (ANALYST, True),  # owner: the job's creator
    "run.evaluate": (ANALYST, True),  # owner: of an earlier eval:<name> it would replace (none: anyone)
    "feed.import": (ANALYST, False),
    "feed.score": (ANALYST, False),
    "topics.classify": (ANALYST, False),
    "topics.set": (ANALYST, True),  # owner: the feed's creator
    "topics.delete": (ANALYST, True),
    "alerts.rule": (ANALYST, True),
    "alerts.ack": (ANALYST, False),
    "feed.sources": (ANALYST, True),  # owner: the feed's creator (add, remove, poll now, set its current model)
    "review.label": (ANALYST, False),  # queue items for review, flag, claim, answer, skip
    "dataset.add_reviewed": (ANALYST, False),  # a new version of a dataset with reviewed rows added
    "feed.promote": (ANALYST, True),  # owner: the feed's creator (make a run the feed's model, keep the history)
    "notify.channels": (ADMIN, False),  # channels hold secrets and reach outside: administrators only
    "users.manage": (ADMIN, False),
    "audit.read": (ADMIN, False),
    "settings.read": (ADMIN, False),
    # recorded, never refused by role
    "sign_in": (VIEWER, False),
    "sign_in.failed": (VIEWER, False),
    "sign_out": (VIEWER, False),
}

# Plain words for a refusal: "<role> cannot <what>" (marked for the catalogue; translated where the sentence is made).
WORDS = {
    "dataset.import": N_("save datasets"),
    "dataset.delete": N_("delete datasets"),
    "train.submit": N_("start training runs"),
    "run.cancel": N_("cancel runs"),
    "run.resume": N_("resume runs"),
    "run.rerun": N_("run training again"),
    "run.delete": N_("delete runs and jobs"),
    "run.evaluate": N_("evaluate models on files"),
    "feed.import": N_("import news"),
    "feed.score": N_("score feeds"),
    "topics.classify": N_("tag topics"),
    "topics.set": N_("change topic rules"),
    "topics.delete": N_("remove topics or topic rules"),
    "alerts.rule": N_("change alert rules"),
    "alerts.ack": N_("acknowledge alerts"),
    "feed.sources": N_("change a feed's sources or its current model"),
    "review.label": N_("review the model's predictions"),
    "dataset.add_reviewed": N_("add reviewed items to datasets"),
    "feed.promote": N_("promote a model for a feed"),
    "notify.channels": N_("set up notification channels"),
    "users.manage": N_("manage users"),
    "audit.read": N_("read the audit log"),
    "settings.read": N_("see the server's settings"),
}


class Forbidden(UserError):
    """The signed-in person's role, or ownership, does not allow this."""


@dataclass(frozen=True)
class Actor:
    """Who acts. ``name`` is what ``created_by`` records (and owns by); ``via`` is 'web' (a signed-in account), 'cli'
    (the command line and direct library calls) or 'local' (the dashboard with no accounts, on this machine only);
    the audit log writes the last two as 'cli:<name>' and 'local:<name>'."""

    name: str
    role: str
    via: str = "web"

    @property
    def label(self) -> str:
        return f"{self.via}:{self.name}" if self.via in ("cli", "local") else self.name


def local_admin() -> Actor:
    """The command line on the server (and direct library calls): an administrator named by BELLWETHER_USER/$USER.
    Whoever can run commands on the server can already read and change the data directory."""
    return Actor(paths.default_user(), ADMIN, "cli")


def resolve(conn, actor) -> Actor:
    """An :class:`Actor` from an Actor, a user name (looked up: an unknown or disabled account may do nothing), or
    None (the local administrator)."""
    if actor is None:
        return local_admin()
    if isinstance(actor, Actor):
        return actor
    row = conn.execute("SELECT role, disabled FROM users WHERE name = ?", [str(actor)]).fetchone()
    if row is None or row[1]:
        raise Forbidden(_("There is no active account '{name}'. Ask an administrator to add or enable it.",
                          name=actor))
    return Actor(str(actor), row[0])


def can(actor: Actor, action: str, owner: str | None = None) -> bool:
    try:
        authorize(None, actor, action, owner)
    except Forbidden:
        return False
    return True


def authorize(conn, actor: Actor, action: str, owner: str | None = None) -> None:
    """Raise :class:`Forbidden` (a plain sentence) unless ``actor`` may do ``action`` on an object owned by
    ``owner``. An analyst's owner check passes for their own objects and for objects nobody owns."""
    if action not in ACTIONS:
        raise KeyError(f"{action} is not an action of engine.access.roles.ACTIONS")
    if not isinstance(actor, Actor):
        actor = resolve(conn, actor)
    minimum, owned = ACTIONS[action]
    what = _(WORDS[action]) if action in WORDS else action
    if _RANK.get(actor.role, -1) < _RANK[minimum]:
        if minimum == ADMIN:
            raise Forbidden(_("Your role ({role}) cannot {what}: only an administrator can. Ask an administrator if "
                              "you need it.", role=_(actor.role), what=what))
        raise Forbidden(_("Your role ({role}) cannot {what}: only an analyst or an administrator can. Ask an "
                          "administrator if you need it.", role=_(actor.role), what=what))
    if owned and actor.role != ADMIN and owner and owner != actor.name:
        raise Forbidden(_("Only {owner}, who created it, or an administrator can {what} on it. Ask them or an "
                          "administrator.", owner=owner, what=what))
