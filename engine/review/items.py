"""Review items: what gets reviewed, who holds which item, and the answers.

Items come from three places, each into a named queue:

- :func:`queue_feed`: the articles of a feed scored by a run, least confident first (``margin`` between the two most
  likely classes, or ``entropy``), queue ``feed:<name>``;
- :func:`queue_predictions`: the mistakes and low-confidence rows of a run's test split or of a file evaluated with it
  (``eval:<name>``), queue ``run:<id>:<split>``;
- :func:`flag`: an article or a prediction an analyst marks as wrong (the Monitor's drill-down, Try it), queue
  ``flagged``.

An item is unique by what it is (``item_key``): queueing again adds only what is new, and an item already reviewed is
never queued again. :func:`next_item` hands a reviewer the next open item and holds it for them for ``lease_s``
seconds (inside one write transaction, so two reviewers never get the same item; a closed tab's hold lapses);
:func:`label` and :func:`skip` store the answer at once. The model's suggestion and the reviewer's answer are kept
apart (``suggested_label`` / ``answer_label``).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from datetime import datetime, timedelta, timezone

from engine import access, db
from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine.jobs import runs
from engine.monitor import feeds

LEASE_S = 300  # how long an item stays with the reviewer it was handed to (a lost tab's item is free again after it)
STATUSES = ("open", "done", "skipped")
STATUS_WORDS = {"open": N_("open"), "done": N_("done"), "skipped": N_("skipped")}  # stored as keys, shown translated
ORDERS = ("margin", "entropy")
FLAGGED = "flagged"


def _later(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def uncertainty(probs: dict[str, float]) -> tuple[float, float]:
    """(margin between the two most likely classes, entropy in bits) of a probability dict."""
    values = sorted((float(v) for v in (probs or {}).values()), reverse=True)
    if not values:
        return 0.0, 0.0
    margin = values[0] - (values[1] if len(values) > 1 else 0.0)
    entropy = -sum(p * math.log2(p) for p in values if p > 0)
    return round(margin, 6), round(entropy, 6)


def _priority(order: str, margin: float, entropy: float, n_classes: int) -> float:
    """Lower comes first, between 0 and 1: the margin, or 1 - entropy / its maximum (so both orders mix in a queue)."""
    if order not in ORDERS:
        raise UserError(_("Order items by 'margin' or 'entropy', not '{order}'.", order=order))
    if order == "margin":
        return margin
    return round(1.0 - entropy / math.log2(n_classes), 6) if n_classes > 1 else 1.0


def _decode(row: dict) -> dict:
    row = dict(row)
    row["probs"] = db.loads(row.get("probs_json"), {}) or {}
    row["labels"] = list(row["probs"])
    return row


def _insert(conn, items: list[dict], who) -> int:
    """Insert the items whose key is new; returns how many were added."""
    now = db.now()
    added = 0
    for item in items:
        cur = conn.execute(
            "INSERT INTO review_items (queue, item_key, kind, feed_id, article_id, run_id, split, row_id, text, "
            "true_label, suggested_label, confidence, margin, entropy, priority, probs_json, status, note, "
            "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
            "ON CONFLICT (item_key) DO NOTHING",
            [item["queue"], item["item_key"], item["kind"], item.get("feed_id"), item.get("article_id"),
             item.get("run_id"), item.get("split"), item.get("row_id"), item["text"], item.get("true_label"),
             item.get("suggested_label"), item.get("confidence"), item.get("margin"), item.get("entropy"),
             item.get("priority", 0.0), db.dumps(item.get("probs") or {}), item.get("note"), now, who.name])
        added += cur.rowcount
    return added


def queue_feed(conn, feed: str | int, run_id: int | None = None, limit: int = 100, order: str = "margin",
               text: str = "title", actor=None) -> dict:
    """Queue the ``limit`` least confident articles of ``feed`` as scored by ``run_id`` (default: the feed's current
    model) that have no review item yet. Returns {queue, added, considered}."""
    from engine.monitor import sources  # the feed's current model (same layer, below review)

    feed_row = feeds.get_feed(conn, feed)
    who = access.check(conn, actor, "review.label", f"feed:{feed_row['name']}")
    run_id = run_id or sources.current_model(conn, feed_row["id"])
    if not run_id:
        raise UserError(_("Feed '{feed}' has not been scored yet: score it with a model first.", feed=feed_row["name"]))
    limit = max(1, min(int(limit), 10_000))
    rows = conn.execute(
        "SELECT a.id, a.title, a.body, s.label, s.confidence, s.probs_json FROM scores s JOIN articles a "
        "ON a.id = s.article_id WHERE a.feed_id = ? AND s.run_id = ? AND NOT EXISTS (SELECT 1 FROM review_items r "
        "WHERE r.item_key = 'article:' || a.id)", [feed_row["id"], int(run_id)]).fetchall()
    if not rows and not conn.execute("SELECT 1 FROM scores s JOIN articles a ON a.id = s.article_id "
                                     "WHERE a.feed_id = ? AND s.run_id = ? LIMIT 1",
                                     [feed_row["id"], int(run_id)]).fetchone():
        raise UserError(_("Run {run_id} has not scored feed '{feed}'. Score the feed with it first.", run_id=run_id,
                          feed=feed_row["name"]))
    ranked = []
    for article_id, title, body, label, confidence, probs_json in rows:
        probs = db.loads(probs_json, {}) or {}
        margin, entropy = uncertainty(probs)
        ranked.append((_priority(order, margin, entropy, len(probs)), article_id, title, body, label, confidence, probs,
                       margin,
                       entropy))
    picked = heapq.nsmallest(limit, ranked, key=lambda r: (r[0], r[1]))
    queue = f"feed:{feed_row['name']}"
    items = [{
        "queue": queue, "item_key": f"article:{r[1]}", "kind": "article", "feed_id": feed_row["id"],
        "article_id": r[1], "run_id": int(run_id), "text": _article_text(r[2], r[3], text), "suggested_label": r[4],
        "confidence": r[5], "probs": r[6], "margin": r[7], "entropy": r[8], "priority": r[0],
    } for r in picked]
    with db.transaction(conn):
        added = _insert(conn, items, who)
        access.record(conn, who, "review.label", f"queue:{queue}", {"run_id": run_id, "added": added, "order": order})
    return {"queue": queue, "added": added, "considered": len(rows)}


def _article_text(title: str | None, body: str | None, mode: str) -> str:
    title, body = (title or "").strip(), (body or "").strip()
    if mode == "title+body" and body:
        return f"{title}. {body}" if title else body
    return title or body


def queue_predictions(conn, run_id: int, split: str = "test", below: float = 0.6, mistakes: bool = True,
                      limit: int = 200, order: str = "margin", actor=None) -> dict:
    """Queue a run's predictions on ``split`` ('test' or 'eval:<name>') that are wrong (``mistakes``) or less
    confident than ``below``, least confident first. Returns {queue, added, considered}."""
    run = runs.finished(conn, run_id)
    who = access.check(conn, actor, "review.label", f"run:{run['id']}")
    rows = list(conn.query(
        "SELECT row_id, text, true_label, pred_label, confidence, probs_json FROM predictions WHERE run_id = ? "
        "AND split = ? AND pred_label IS NOT NULL", [run["id"], split]))
    if not rows:
        known = [r[0] for r in conn.execute("SELECT DISTINCT split FROM predictions WHERE run_id = ?", [run["id"]])]
        raise UserError(_("Run {run_id} has no text predictions on '{split}'. It has: {known}.", run_id=run["id"],
                          split=split, known=", ".join(known) or _("none")))
    ranked = []
    for r in rows:
        wrong = r["true_label"] is not None and r["true_label"] != r["pred_label"]
        unsure = r["confidence"] is not None and r["confidence"] < below
        if not ((mistakes and wrong) or unsure):
            continue
        probs = db.loads(r["probs_json"], {}) or {}
        margin, entropy = uncertainty(probs)
        ranked.append((_priority(order, margin, entropy, len(probs)), r, probs, margin, entropy))
    picked = heapq.nsmallest(max(1, min(int(limit), 10_000)), ranked, key=lambda x: (x[0], x[1]["row_id"]))
    queue = f"run:{run['id']}:{split}"
    items = [{
        "queue": queue, "item_key": f"pred:{run['id']}:{split}:{r['row_id']}", "kind": "prediction",
        "run_id": run["id"], "split": split, "row_id": r["row_id"], "text": r["text"] or "",
        "true_label": r["true_label"], "suggested_label": r["pred_label"], "confidence": r["confidence"],
        "probs": probs, "margin": margin, "entropy": entropy, "priority": p,
    } for p, r, probs, margin, entropy in picked]
    with db.transaction(conn):
        added = _insert(conn, items, who)
        access.record(conn, who, "review.label", f"queue:{queue}", {"added": added, "below": below})
    return {"queue": queue, "added": added, "considered": len(rows)}


def flag(conn, *, article_id: int | None = None, run_id: int | None = None, split: str | None = None,
         row_id: int | None = None, text: str | None = None, suggested_label: str | None = None,
         probs: dict | None = None, note: str | None = None, actor=None) -> dict:
    """Flag something as wrongly labelled: an article (with the run whose label is doubted), a stored prediction
    (run, split, row_id), or a text tried on a run (Try it). Returns the item (existing or new) in queue 'flagged'."""
    who = access.check(conn, actor, "review.label", "queue:flagged")
    item: dict = {"queue": FLAGGED, "kind": "flag", "note": (note or "").strip()[:500] or None, "priority": 0.0}
    if article_id is not None:
        found = conn.execute("SELECT feed_id, title, body FROM articles WHERE id = ?", [int(article_id)]).fetchone()
        if not found:
            raise NotFound(_("There is no article {article_id}.", article_id=article_id))
        item.update(item_key=f"article:{int(article_id)}", kind="article", article_id=int(article_id),
                    feed_id=found[0], text=_article_text(found[1], found[2], "title"))
        if run_id is not None:
            score = conn.execute("SELECT label, confidence, probs_json FROM scores WHERE article_id = ? AND run_id = ?",
                                 [int(article_id), int(run_id)]).fetchone()
            if score:
                suggested_label, probs = score[0], db.loads(score[2], {})
                item["confidence"] = score[1]
    elif run_id is not None and split is not None and row_id is not None:
        found = conn.execute("SELECT text, true_label, pred_label, confidence, probs_json FROM predictions WHERE "
                             "run_id = ? AND split = ? AND row_id = ?", [int(run_id), split, int(row_id)]).fetchone()
        if not found:
            raise NotFound(_("Run {run_id} has no prediction for row {row_id} of '{split}'.", run_id=run_id,
                             row_id=row_id, split=split))
        item.update(item_key=f"pred:{int(run_id)}:{split}:{int(row_id)}", kind="prediction", split=split,
                    row_id=int(row_id), text=found[0] or "", true_label=found[1], confidence=found[3])
        suggested_label, probs = found[2], db.loads(found[4], {})
    elif text and text.strip():
        text = text.strip()
        item.update(item_key="text:" + hashlib.sha256(text.encode("utf-8")).hexdigest(), kind="text", text=text)
    else:
        raise UserError(_("Say what to flag: an article, a prediction (run, split and row), or a text."))
    if run_id is not None:
        item["run_id"] = int(run_id)
    item["suggested_label"] = suggested_label
    item["probs"] = probs or {}
    if probs:
        item["margin"], item["entropy"] = uncertainty(probs)
        item.setdefault("confidence", max(probs.values()))
    with db.transaction(conn):
        added = _insert(conn, [item], who)
        row = conn.execute("SELECT id, status FROM review_items WHERE item_key = ?", [item["item_key"]]).fetchone()
        if not added and row[1] != "open":  # flagged again after a review: open it again for a second look
            conn.execute("UPDATE review_items SET status = 'open', queue = ?, note = COALESCE(?, note) WHERE id = ?",
                         [FLAGGED, item.get("note"), row[0]])
        access.record(conn, who, "review.label", f"review:{row[0]}", {"flagged": item["item_key"]})
    return get(conn, row[0])


def get(conn, item_id: int) -> dict:
    rows = list(conn.query("SELECT * FROM review_items WHERE id = ?", [int(item_id)]))
    if not rows:
        raise NotFound(_("There is no review item {item_id}. `python -m engine review list` shows them.",
                         item_id=item_id))
    return _decode(rows[0])


def next_item(conn, queue: str | None = None, lease_s: float = LEASE_S, again: bool = False, actor=None) -> dict | None:
    """Hand the reviewer the next item of ``queue`` (any queue when None) and hold it for them for ``lease_s``.

    The item they already hold comes back first (a reloaded page shows the same item); otherwise the open item with
    the lowest priority that nobody holds (or whose hold has lapsed). ``again``: skipped items too. None: nothing left.
    """
    who = access.check(conn, actor, "review.label", f"queue:{queue or '*'}")
    statuses = ("open", "skipped") if again else ("open",)
    status_sql = ", ".join("?" for _ in statuses)
    where_queue, params = ("AND queue = ?", [queue]) if queue else ("", [])
    now = db.now()
    with db.transaction(conn):
        row = conn.execute(
            f"SELECT id FROM review_items WHERE status IN ({status_sql}) {where_queue} AND claimed_by = ? "
            "AND lease_until > ? ORDER BY priority, id LIMIT 1", [*statuses, *params, who.name, now]).fetchone()
        if row is None:
            row = conn.execute(
                f"SELECT id FROM review_items WHERE status IN ({status_sql}) {where_queue} AND (claimed_by IS NULL "
                "OR lease_until IS NULL OR lease_until <= ? OR claimed_by = ?) ORDER BY priority, id LIMIT 1",
                [*statuses, *params, now, who.name]).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE review_items SET claimed_by = ?, lease_until = ? WHERE id = ?",
                     [who.name, _later(lease_s), row[0]])
    return get(conn, row[0])


def release(conn, item_id: int, actor=None) -> None:
    """Give back an item held by this reviewer (it is free for others at once)."""
    who = access.check(conn, actor, "review.label", f"review:{item_id}")
    conn.execute("UPDATE review_items SET claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?",
                 [int(item_id), who.name])


# An answer given before: (labelled?, by someone?) -> the whole sentence.
_ALREADY = {
    (True, True): N_("Item {item_id} was already labelled by {who} on {when}. To change the answer, ask for it again "
                     "(--again)."),
    (True, False): N_("Item {item_id} was already labelled on {when}. To change the answer, ask for it again "
                      "(--again)."),
    (False, True): N_("Item {item_id} was already skipped by {who} on {when}. To change the answer, ask for it again "
                      "(--again)."),
    (False, False): N_("Item {item_id} was already skipped on {when}. To change the answer, ask for it again "
                       "(--again)."),
}


def _answer(conn, item_id: int, status: str, label: str | None, actor, again: bool) -> dict:
    who = access.check(conn, actor, "review.label", f"review:{item_id}")
    with db.transaction(conn):
        item = get(conn, item_id)
        if item["status"] != "open" and not again and not (item["status"] == "skipped" and status == "done"):
            raise UserError(_(_ALREADY[(item["status"] == "done", bool(item.get("answered_by")))], item_id=item_id,
                              who=item.get("answered_by"), when=item.get("answered_at")))
        held = item.get("claimed_by")
        if held and held != who.name and (item.get("lease_until") or "") > db.now():
            raise UserError(_("Item {item_id} is being reviewed by {who} right now; take the next one instead.",
                              item_id=item_id, who=held))
        if label is not None:
            label = str(label).strip()
            allowed = item["labels"]
            if allowed and label not in allowed:
                raise UserError(_("'{label}' is not a label of this model. Use one of: {labels}.", label=label,
                                  labels=", ".join(allowed)))
            if not label:
                raise UserError(_("Give a label."))
        conn.execute("UPDATE review_items SET status = ?, answer_label = ?, answered_by = ?, answered_at = ?, "
                     "claimed_by = NULL, lease_until = NULL WHERE id = ?",
                     [status, label, who.name, db.now(), int(item_id)])
        access.record(conn, who, "review.label", f"review:{item_id}",
                      {"status": status, "label": label, "suggested": item.get("suggested_label")})
    return get(conn, item_id)


def label(conn, item_id: int, label: str, again: bool = False, actor=None) -> dict:
    """Store the reviewer's label for an item (at once). Refused when another reviewer holds it, or when it was
    already answered (unless ``again``)."""
    return _answer(conn, item_id, "done", label, actor, again)


def accept(conn, item_id: int, actor=None) -> dict:
    """Agree with the model: the suggested label becomes the answer."""
    item = get(conn, item_id)
    if not item.get("suggested_label"):
        raise UserError(_("Item {item_id} has no suggestion from a model: choose a label.", item_id=item_id))
    return label(conn, item_id, item["suggested_label"], actor=actor)


def skip(conn, item_id: int, actor=None) -> dict:
    """Skip an item: it is not handed out again unless asked (``next_item(again=True)``)."""
    return _answer(conn, item_id, "skipped", None, actor, False)


def list_items(conn, queue: str | None = None, status: str | None = None, limit: int = 1000) -> list[dict]:
    sql, params = "SELECT * FROM review_items WHERE 1", []
    if queue:
        sql += " AND queue = ?"
        params.append(queue)
    if status:
        if status not in STATUSES:
            raise UserError(_("A status is one of {statuses}, not '{status}'.", statuses=", ".join(STATUSES),
                              status=status))
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY status = 'open' DESC, priority, id LIMIT ?"
    params.append(int(limit))
    return [_decode(r) for r in conn.query(sql, params)]


def queues(conn) -> list[dict]:
    """Each queue with its counts: done, skipped, open (left)."""
    return list(conn.query(
        "SELECT queue, SUM(status = 'done') AS done, SUM(status = 'skipped') AS skipped, SUM(status = 'open') AS left, "
        "MIN(run_id) AS run_id, MAX(created_at) AS last_added FROM review_items GROUP BY queue ORDER BY last_added DESC"))


def counts(conn, queue: str | None = None) -> dict:
    sql = "SELECT status, COUNT(*) FROM review_items" + (" WHERE queue = ?" if queue else "") + " GROUP BY status"
    found = dict(conn.execute(sql, [queue] if queue else []).fetchall())
    return {"done": found.get("done", 0), "skipped": found.get("skipped", 0), "left": found.get("open", 0)}


def agreement(conn, queue: str | None = None) -> dict:
    """How often reviewers agreed with the model's suggestion (answered items with a suggestion)."""
    sql = ("SELECT COUNT(*), SUM(answer_label = suggested_label) FROM review_items WHERE status = 'done' "
           "AND suggested_label IS NOT NULL" + (" AND queue = ?" if queue else ""))
    n, same = conn.execute(sql, [queue] if queue else []).fetchone()
    return {"answered": n or 0, "agreed": same or 0, "rate": (same or 0) / n if n else None}


DEFAULT_LABELS = ("negative", "neutral", "positive")


def labels_for(conn, item: dict) -> list[str]:
    """The labels an item can be given: the model's (from its probabilities, else the run's model), else sentiment's."""
    if item.get("labels"):
        return list(item["labels"])
    if item.get("run_id"):
        try:
            return runs.labels(runs.get(conn, item["run_id"]))
        except UserError:
            pass
    return list(DEFAULT_LABELS)


def corrected_runs(conn, queue: str | None = None) -> list[int]:
    """The runs whose calls a queue's items (or all items) doubted, newest first."""
    sql = "SELECT DISTINCT run_id FROM review_items WHERE run_id IS NOT NULL" + (" AND queue = ?" if queue else "")
    return sorted((r[0] for r in conn.execute(sql, [queue] if queue else [])), reverse=True)
