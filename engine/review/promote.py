"""Promote a run to be a feed's model: ``feeds.current_model`` (the column the source worker scores new articles with)
changes, the change is kept in ``feed_model_history`` (who, when, from which run), and on request the feed is
rescored with the new model (its older scores stay, so the Monitor can still show the old model's charts)."""

from __future__ import annotations

from engine import access, db
from engine.errors import UserError
from engine.i18n import _
from engine.monitor import feeds, scoring, sources


def promote(conn, feed: str | int, run_id: int, rescore: bool = False, note: str | None = None, actor=None) -> dict:
    """Make ``run_id`` the feed's current model and record it; ``rescore`` queues a score job for the articles the run
    has not scored. Returns the history row (with ``rescore_job_id`` when one was queued)."""
    feed_row = feeds.get_feed(conn, feed)
    who = access.check(conn, actor, "feed.promote", f"feed:{feed_row['name']}", owner=feed_row.get("created_by"))
    previous = sources.current_model(conn, feed_row["id"])
    if previous is not None and int(previous) == int(run_id) and not rescore:
        raise UserError(_("Run {run_id} is already the model of feed '{feed}'.", run_id=run_id, feed=feed_row["name"]))
    with db.transaction(conn):
        # the same column and checks as `feed set-model` (a finished sentiment run with a negative class)
        sources.set_current_model(conn, feed_row["id"], int(run_id), actor=who)
        history_id = conn["feed_model_history"].insert({
            "feed_id": feed_row["id"], "run_id": int(run_id), "previous_run_id": previous, "promoted_by": who.name,
            "promoted_at": db.now(), "note": (note or "").strip()[:500] or None,
        }).last_pk
        access.record(conn, who, "feed.promote", f"feed:{feed_row['name']}",
                      {"run_id": int(run_id), "previous_run_id": previous, "rescore": bool(rescore)})
    if rescore:
        job_id = scoring.enqueue(conn, feed_row["id"], int(run_id), actor=who)
        conn.execute("UPDATE feed_model_history SET rescore_job_id = ? WHERE id = ?", [job_id, history_id])
    return next(h for h in history(conn, feed_row["id"]) if h["id"] == history_id)


def history(conn, feed: str | int) -> list[dict]:
    """Every promotion of the feed, newest first, with the run names."""
    feed_row = feeds.get_feed(conn, feed)
    return list(conn.query(
        "SELECT h.*, j.name AS run_name, p.name AS previous_run_name FROM feed_model_history h "
        "LEFT JOIN jobs j ON j.id = h.run_id LEFT JOIN jobs p ON p.id = h.previous_run_id "
        "WHERE h.feed_id = ? ORDER BY h.id DESC", [feed_row["id"]]))
