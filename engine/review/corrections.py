"""Reviewed items become data: a new dataset version, a retrain with the corrected run's settings, and the comparison.

:func:`add_to_dataset` makes ``name:n+1`` from a chosen version: every row of that version is copied as it is (same
``row_id``, split, text and label: the validation and test rows are never re-drawn, so old and new runs are measured on
the same test rows), the label list is copied unchanged (same order, so label ids mean the same), and the reviewed
rows are appended to the training split with new row ids. A reviewed text already in the version is not added: with
the same label it is reported as already there, with another label as a conflict (never overwritten). The new
version's ``origin_json`` names the version it extends and the review items it took.

:func:`retrain` queues the corrected run's exact settings and base model on the new version; :func:`compare` puts the
two runs side by side on the test rows both predicted (matched by ``row_id``, checked to be the same text, scored by
label name) and on the reviewed items (which the new run saw in training).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from engine import access, db
from engine.data import datasets
from engine.errors import UserError
from engine.i18n import N_, _
from engine.jobs import queue as job_queue
from engine.jobs import runs
from engine.review import items as review_items
from engine.training import reproduce


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def answered(conn, queue: str | None = None, item_ids: list[int] | None = None) -> list[dict]:
    """The labelled items of a queue (or the given ids), oldest answer first."""
    sql, params = "SELECT * FROM review_items WHERE status = 'done' AND answer_label IS NOT NULL", []
    if item_ids:
        sql += f" AND id IN ({', '.join('?' for _ in item_ids)})"
        params += [int(i) for i in item_ids]
    if queue:
        sql += " AND queue = ?"
        params.append(queue)
    return [review_items._decode(r) for r in conn.query(sql + " ORDER BY answered_at, id", params)]


def plan(conn, dataset: dict, chosen: list[dict]) -> dict:
    """What adding ``chosen`` items to ``dataset`` would do: {add, already, conflicts, unknown_label}."""
    existing: dict[str, tuple[str, str]] = {}
    for r in datasets.rows(conn, dataset["id"]):
        existing.setdefault(_norm(r["text"]), (r["label"], r["split"]))
    labels = set(dataset["labels"])
    out: dict[str, list] = {"add": [], "already": [], "conflicts": [], "unknown_label": []}
    taken: dict[str, dict] = {}
    for item in chosen:
        key, answer = _norm(item["text"]), item["answer_label"]
        if answer not in labels:
            out["unknown_label"].append({"item": item["id"], "text": item["text"], "label": answer})
        elif key in existing:
            label, split = existing[key]
            entry = {"item": item["id"], "text": item["text"], "label": answer, "dataset_label": label, "split": split}
            out["already" if label == answer else "conflicts"].append(entry)
        elif key in taken:
            if taken[key]["answer_label"] != answer:
                out["conflicts"].append({"item": item["id"], "text": item["text"], "label": answer,
                                         "dataset_label": taken[key]["answer_label"], "split": "reviewed"})
            else:
                out["already"].append({"item": item["id"], "text": item["text"], "label": answer,
                                       "dataset_label": answer, "split": "reviewed"})
        elif item["text"].strip():
            taken[key] = item
            out["add"].append(item)
    return out


def add_to_dataset(conn, dataset_ref: str, queue: str | None = None, item_ids: list[int] | None = None,
                   actor=None) -> dict:
    """Make the next version of ``dataset_ref``'s name: its rows unchanged plus the reviewed items (of ``queue`` or
    ``item_ids``) in the training split. Returns {dataset, added, already, conflicts, unknown_label}."""
    base = datasets.get(conn, dataset_ref)
    who = access.check(conn, actor, "dataset.add_reviewed", f"dataset:{base['ref']}")
    if base["task"] != "text-classification":
        raise UserError(_("Dataset {ref} is for {task}; reviewed items are sentence labels, so they can be added to "
                          "text-classification datasets only.", ref=base["ref"], task=base["task"]))
    chosen = answered(conn, queue, item_ids)
    if not chosen:
        raise UserError(_("There are no labelled review items to add in queue '{queue}'. Review some first (Review "
                          "page, or python -m engine review next).", queue=queue) if queue else
                        _("There are no labelled review items to add. Review some first (Review page, or python -m "
                          "engine review next)."))
    found = plan(conn, base, chosen)
    if not found["add"]:
        parts = [_(w, n=len(found[k])) for k, w in (
            ("already", N_("{n} already in the dataset with the same label")),
            ("conflicts", N_("{n} in the dataset with another label")),
            ("unknown_label", N_("{n} with a label the dataset does not have"))) if found[k]]
        raise UserError(_("None of the {n} reviewed items can be added to {ref}: {reasons}. Nothing was saved.",
                          n=len(chosen), ref=base["ref"], reasons=_("; ").join(parts)))
    with db.transaction(conn):
        version = int(conn.execute("SELECT MAX(version) FROM datasets WHERE name = ?", [base["name"]]).fetchone()[0]) + 1
        next_row = int(conn.execute("SELECT MAX(row_id) FROM dataset_rows WHERE dataset_id = ?",
                                    [base["id"]]).fetchone()[0] or 0) + 1
        counts: dict[str, Counter] = defaultdict(Counter)
        for split, counted in (base["counts"] or {}).items():
            counts[split].update(counted)
        row_ids = {}
        for k, item in enumerate(found["add"]):
            row_ids[item["id"]] = next_row + k
            counts["train"][item["answer_label"]] += 1
        origin = {
            "from": base["ref"], "from_id": base["id"], "review_items": [i["id"] for i in found["add"]],
            "row_ids": {str(k): v for k, v in row_ids.items()},
            "already": [e["item"] for e in found["already"]], "conflicts": found["conflicts"],
            "unknown_label": found["unknown_label"], "by": who.name,
        }
        new_id = conn["datasets"].insert({
            "name": base["name"], "version": version, "task": base["task"], "source_file": base.get("source_file"),
            "source_sha256": base.get("source_sha256"), "source_format": base.get("source_format"),
            "encoding": base.get("encoding"), "mapping_json": base.get("mapping_json"),
            "labels_json": base.get("labels_json"),  # the same labels in the same order: label ids keep their meaning
            "counts_json": db.dumps({s: dict(c) for s, c in counts.items()}),
            "report_json": base.get("report_json"), "n_rows": int(base["n_rows"] or 0) + len(found["add"]),
            "created_at": db.now(), "created_by": who.name, "origin_json": db.dumps(origin),
        }).last_pk
        # every row of the version, copied in SQL as stored: same row_id, split, text, label, tokens and tags
        conn.execute("INSERT INTO dataset_rows (dataset_id, row_id, split, text, label, tokens_json, tags_json) "
                     "SELECT ?, row_id, split, text, label, tokens_json, tags_json FROM dataset_rows "
                     "WHERE dataset_id = ?", [new_id, base["id"]])
        conn["dataset_rows"].insert_all({
            "dataset_id": new_id, "row_id": row_ids[item["id"]], "split": "train", "text": item["text"].strip(),
            "label": item["answer_label"]} for item in found["add"])
        db.executemany(conn, "UPDATE review_items SET dataset_id = ? WHERE id = ?",
                       [(new_id, item["id"]) for item in found["add"]])
        access.record(conn, who, "dataset.add_reviewed", f"dataset:{base['name']}:{version}",
                      {"from": base["ref"], "added": len(found["add"]), "conflicts": len(found["conflicts"])})
    return {"dataset": datasets.get(conn, int(new_id)), "added": len(found["add"]), "already": found["already"],
            "conflicts": found["conflicts"], "unknown_label": found["unknown_label"]}


def origin(dataset: dict) -> dict:
    return db.loads(dataset.get("origin_json"), {}) or {}


def retrain(conn, run_id: int, dataset_ref: str, seed: int | None = None, actor=None) -> int:
    """Queue run ``run_id``'s settings on ``dataset_ref`` (a version made by :func:`add_to_dataset`); returns the id."""
    ds = datasets.get(conn, dataset_ref)
    old = runs.get(conn, run_id)
    if old.get("dataset_id") and ds["id"] != old["dataset_id"]:
        old_ds = datasets.get(conn, int(old["dataset_id"]))
        if old_ds["name"] != ds["name"] or old_ds["labels_json"] != ds["labels_json"]:
            raise UserError(_("Run {run_id} was trained on {old_ref}; retrain it on a later version of {name} with "
                              "the same labels, not on {ref}.", run_id=run_id, old_ref=old_ds["ref"],
                              name=old_ds["name"], ref=ds["ref"]))
    return reproduce.retrain_on(conn, int(run_id), ds["ref"], seed=seed, actor=actor)


def _scores(pairs: list[tuple[str, str]]) -> dict:
    """Accuracy and macro-F1 over (true, predicted) label names (classes: every true or predicted label)."""
    if not pairs:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    classes = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    f1s = []
    for c in classes:
        tp = sum(1 for t, p in pairs if t == c and p == c)
        fp = sum(1 for t, p in pairs if t != c and p == c)
        fn = sum(1 for t, p in pairs if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"n": len(pairs), "accuracy": sum(t == p for t, p in pairs) / len(pairs), "macro_f1": sum(f1s) / len(f1s)}


def _test_predictions(conn, run_id: int) -> dict[int, tuple[str, str, str]]:
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT row_id, text, true_label, pred_label FROM predictions WHERE run_id = ? AND split = 'test' "
        "AND pred_label IS NOT NULL", [int(run_id)])}


def compare(conn, old_run: int, new_run: int, match: str | None = None, reviewed: bool = True) -> dict:
    """The two runs on the same test rows (overall, and on rows whose text matches the regular expression ``match``)
    and on the reviewed items the new version added (predicted now with both models; seen in training by the new
    run). Rows are matched by row_id and must carry the same text; metrics are computed from label names."""
    a, b = runs.finished(conn, old_run), runs.finished(conn, new_run)
    pa, pb = _test_predictions(conn, a["id"]), _test_predictions(conn, b["id"])
    common = sorted(set(pa) & set(pb))
    moved = [r for r in common if _norm(pa[r][0]) != _norm(pb[r][0]) or pa[r][1] != pb[r][1]]
    if moved:
        raise UserError(_("Runs {old} and {new} were tested on different rows ({n} test rows differ in text or "
                          "label), so they cannot be compared row by row.", old=a["id"], new=b["id"], n=len(moved)))
    pattern = None
    if match:
        try:
            pattern = re.compile(match, re.IGNORECASE)
        except re.error as exc:
            raise UserError(_("'{match}' is not a valid pattern: {problem}.", match=match, problem=exc)) from None
    sets = {"test": common}
    if pattern is not None:
        sets["test: " + match] = [r for r in common if pattern.search(pa[r][0] or "")]
    out: dict = {"old_run": a["id"], "new_run": b["id"], "rows": {}, "changed": {}}
    for name, ids in sets.items():
        out["rows"][name] = {
            "old": _scores([(pa[r][1], pa[r][2]) for r in ids]), "new": _scores([(pb[r][1], pb[r][2]) for r in ids]),
            "seen_in_training": False,
        }
        fixed = sum(1 for r in ids if pa[r][2] != pa[r][1] and pb[r][2] == pb[r][1])
        broken = sum(1 for r in ids if pa[r][2] == pa[r][1] and pb[r][2] != pb[r][1])
        out["changed"][name] = {"fixed": fixed, "broken": broken}
    out["n_only_one"] = len(set(pa) ^ set(pb))
    if reviewed:
        ds = conn.execute("SELECT origin_json FROM datasets WHERE id = ?", [b.get("dataset_id")]).fetchone()
        ids = [int(i) for i in (db.loads(ds[0], {}) or {}).get("review_items", [])] if ds else []
        chosen = [review_items.get(conn, i) for i in ids]
        if chosen:
            texts, truth = [c["text"] for c in chosen], [c["answer_label"] for c in chosen]
            preds_a, preds_b = _predict(a, texts), _predict(b, texts)
            out["rows"]["reviewed items"] = {
                "old": _scores(list(zip(truth, preds_a))), "new": _scores(list(zip(truth, preds_b))),
                "seen_in_training": True,
            }
    return out


def _predict(run: dict, texts: list[str]) -> list[str]:
    from engine.models import inference  # loads torch: only when the reviewed items are compared

    return [p.label for p in inference.load(run["model_dir"]).predict(texts)]


def comparison_rows(result: dict) -> list[dict]:
    """One row per set of rows, for a table: rows, old and new accuracy and macro-F1, fixed, broken. The keys are
    fixed (a page renames them for its headings); the names of the sets of rows are in the current language."""
    table = []
    for name, entry in result["rows"].items():
        changed = result["changed"].get(name, {})
        shown = (_("test") if name == "test" else _("reviewed items") if name == "reviewed items"
                 else _("test: {match}", match=name[len("test: "):]) if name.startswith("test: ") else name)
        table.append({
            "rows": _("{rows} (seen in training by the new run)", rows=shown) if entry["seen_in_training"] else shown,
            "n": entry["old"]["n"], "old accuracy": entry["old"]["accuracy"], "new accuracy": entry["new"]["accuracy"],
            "old macro-F1": entry["old"]["macro_f1"], "new macro-F1": entry["new"]["macro_f1"],
            "fixed": changed.get("fixed"), "broken": changed.get("broken"),
        })
    return table


def retrain_status(conn, run_id: int) -> dict:
    """For a retrained run: the run it corrects and both statuses."""
    job = job_queue.get(conn, run_id)
    source = (job.get("config") or {}).get("corrects")
    return {"run": job["id"], "status": job["status"], "corrects": source}


def retrains(conn, run_id: int | None = None) -> list[dict]:
    """Runs queued by :func:`retrain` (newest first), each with ``corrects`` (the run it corrects) and its status."""
    sql = ("SELECT id, name, status, dataset_id, json_extract(config_json, '$.corrects') AS corrects, created_at "
           "FROM jobs WHERE kind = 'train' AND json_extract(config_json, '$.corrects') IS NOT NULL")
    params: list = []
    if run_id is not None:
        sql += " AND json_extract(config_json, '$.corrects') = ?"
        params.append(int(run_id))
    return list(conn.query(sql + " ORDER BY id DESC", params))


def reviewed_versions(conn) -> list[dict]:
    """Dataset versions made from reviewed items, newest first."""
    return [datasets.get(conn, int(r[0])) for r in conn.execute(
        "SELECT id FROM datasets WHERE origin_json IS NOT NULL ORDER BY id DESC")]
