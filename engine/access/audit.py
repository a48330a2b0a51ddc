"""The audit log: who uploaded, imported, trained, cancelled, resumed, deleted, acknowledged, changed a rule, signed
in or failed to, when, on what. Append-only: the table's triggers refuse UPDATE and DELETE."""

from __future__ import annotations

import json

import pandas as pd

from engine import db, export


def record(conn, actor, action: str, obj: str, detail: dict | None = None) -> None:
    """Append one row. ``actor``: an Actor, or a plain name (sign-in attempts by an unknown name)."""
    label = getattr(actor, "label", None) or str(actor)
    role = getattr(actor, "role", None)
    conn.execute(
        "INSERT INTO audit_log (at, actor, role, action, object, detail_json) VALUES (?, ?, ?, ?, ?, ?)",
        [db.now(), label, role, action, str(obj), db.dumps(detail) if detail else None],
    )


def read(conn, limit: int | None = 500, actor: str | None = None, action: str | None = None,
         since: str | None = None) -> list[dict]:
    """Newest first, filtered by actor (exact), action (prefix: 'run.' gives cancel and resume) and time."""
    where, params = [], []
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if action:
        where.append("(action = ? OR action LIKE ?)")
        params += [action, action.rstrip(".") + ".%"]
    if since:
        where.append("at >= ?")
        params.append(since)
    sql = "SELECT id, at, actor, role, action, object, detail_json FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = []
    for row in conn.query(sql, params):
        row["detail"] = db.loads(row.pop("detail_json"), {}) or {}
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> bytes:
    """The rows as CSV bytes, formula-escaped (engine.export)."""
    frame = pd.DataFrame([{**{k: r[k] for k in ("id", "at", "actor", "role", "action", "object")},
                           "detail": json.dumps(r["detail"], ensure_ascii=False) if r["detail"] else ""}
                          for r in rows], columns=["id", "at", "actor", "role", "action", "object", "detail"])
    return export.to_csv_bytes(frame)
