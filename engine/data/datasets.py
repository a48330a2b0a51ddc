"""Saved datasets: immutable versions, each with its rows, its source file and the validation report accepted for it.

Uploading the same name again makes a new version. A version is saved in one transaction (the dataset row, every
dataset row, the copy of the source file under ``uploads/``); a version is never changed afterwards, only deleted,
and deleting is refused while a queued or running job uses it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from engine import access, db, paths
from engine.data import ingest
from engine.data import generation
from engine.data import validate
from engine.errors import NotFound, UserError
from engine.i18n import _
from engine.text import clean_name, evenly

ACTIVE_JOB_STATUSES = ("queued", "running")
NAME_RE = re.compile(r"^[^:/\\\x00-\x1f]{1,100}$")


def check_name(name: str | None) -> str:
    name = clean_name(name or "")
    if not name:
        raise UserError(_("Give the dataset a name, such as 'fpb-sentiment'."))
    if not NAME_RE.match(name):
        raise UserError(_(
            "'{name}' cannot be a dataset name: use up to 100 characters without ':', '/' or '\\' "
            "(':' separates a name from its version, as in fpb:2).", name=name[:40]))
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' -> (name, None); 'name:3' or 'name:v3' -> (name, 3)."""
    ref = (ref or "").strip()
    if ":" in ref:
        name, _sep, version = ref.rpartition(":")
        version = version.strip().lower().lstrip("v")
        if not version.isdigit():
            raise UserError(_("'{ref}' is not a dataset reference: write NAME or NAME:VERSION, such as fpb:2.",
                              ref=ref))
        return name.strip(), int(version)
    return ref, None


def _decode(row: dict) -> dict:
    row = dict(row)
    row["mapping"] = db.loads(row.get("mapping_json"), {})
    row["labels"] = db.loads(row.get("labels_json"), [])
    row["counts"] = db.loads(row.get("counts_json"), {})
    row["report"] = db.loads(row.get("report_json"), {})
    row["ref"] = f"{row['name']}:{row['version']}"
    row["split_sizes"] = {s: sum(c.values()) for s, c in row["counts"].items()}
    return row


def get(conn, ref: str | int) -> dict:
    """A dataset by 'name' (latest version), 'name:version' or id. Raises NotFound."""
    if isinstance(ref, int):
        found = list(conn.query("select * from datasets where id = ?", [ref]))
        if not found:
            raise NotFound(_("There is no dataset with id {ref}.", ref=ref))
        return _decode(found[0])
    name, version = parse_ref(str(ref))
    if version is None:
        found = list(conn.query("select * from datasets where name = ? order by version desc limit 1", [name]))
    else:
        found = list(conn.query("select * from datasets where name = ? and version = ?", [name, version]))
    if not found:
        names = [r["name"] for r in conn.query("select distinct name from datasets order by name")]
        if version is not None and names:
            raise NotFound(_("There is no dataset '{name}' version {version}. Saved datasets: {names}.", name=name,
                             version=version, names=", ".join(names)))
        if version is not None:
            raise NotFound(_("There is no dataset '{name}' version {version}. No dataset has been saved yet.",
                             name=name, version=version))
        if names:
            raise NotFound(_("There is no dataset '{name}'. Saved datasets: {names}.", name=name,
                             names=", ".join(names)))
        raise NotFound(_("There is no dataset '{name}'. No dataset has been saved yet.", name=name))
    return _decode(found[0])


def rows(conn, dataset_id: int, split: str | None = None) -> list[dict]:
    """The rows of a dataset version, by row_id: row_id, split, text, label, tokens, tags."""
    sql = "select row_id, split, text, label, tokens_json, tags_json from dataset_rows where dataset_id = ?"
    params: list = [int(dataset_id)]
    if split is not None:
        if split not in validate.SPLITS:
            raise UserError(_("'{split}' is not a split. Use train, validation or test.", split=split))
        sql += " and split = ?"
        params.append(split)
    sql += " order by row_id"
    out = []
    for r in conn.query(sql, params):
        out.append({
            "row_id": r["row_id"], "split": r["split"], "text": r["text"], "label": r["label"],
            "tokens": db.loads(r["tokens_json"]), "tags": db.loads(r["tags_json"]),
        })
    return out


def sample_texts(conn, dataset_id: int, n: int = 300, split: str = "train") -> list[str]:
    """At most ``n`` texts of a dataset version's ``split``, spread over all its rows (not just the first ones)."""
    ids = [r[0] for r in conn.execute("SELECT row_id FROM dataset_rows WHERE dataset_id = ? AND split = ? "
                                      "ORDER BY row_id", [int(dataset_id), split])]
    ids = evenly(ids, n)
    texts = []
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters
        chunk = ids[start:start + 500]
        texts += [r[0] for r in conn.execute(
            f"SELECT text FROM dataset_rows WHERE dataset_id = ? AND row_id IN ({','.join('?' * len(chunk))}) "
            "ORDER BY row_id", [int(dataset_id), *chunk])]
    return texts


def list_datasets(conn, name: str | None = None) -> list[dict]:
    """Every saved version, newest first (or the versions of one name)."""
    if name:
        found = conn.query("select * from datasets where name = ? order by version desc", [name])
    else:
        found = conn.query("select * from datasets order by name, version desc")
    return [_decode(r) for r in found]


def _safe_file_name(name: str, max_bytes: int = 60) -> str:
    """A file name part safe on any file system: word characters, '.' and '-', at most ``max_bytes`` bytes of UTF-8
    (a 40-character Chinese name is 120 bytes; the four parts of a stored name must stay under the 255-byte limit).
    A longer name keeps its start and gets a short hash of the whole, so different names stay different."""
    name = Path(name).name
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE).strip("._") or "upload"
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    suffix = Path(name).suffix if len(Path(name).suffix) <= 8 else ""
    head = name.encode("utf-8")[: max_bytes - len(digest) - len(suffix) - 1].decode("utf-8", errors="ignore")
    return f"{head}-{digest}{suffix}"


def save(conn, candidate: ingest.Candidate, prepared: validate.Prepared, name: str, created_by: str | None = None,
         actor=None, label_confirmed: bool = False) -> dict:
    """Save the prepared rows as the next version of ``name``, all in one transaction, and copy the source file.

    A label column flagged by the checks (dates, numbers, free text, too many classes) is saved only with
    ``label_confirmed`` (the analyst's explicit choice); otherwise nothing is saved and the refusal says why.

    ``actor`` (engine.access) must be an analyst or admin; None is the local administrator. ``created_by`` defaults
    to the actor's name."""
    name = check_name(name)
    who = access.check(conn, actor, "dataset.import", f"dataset:{name}")
    created_by = created_by or who.name
    report = prepared.report
    if report.needs_label_choice and not label_confirmed:
        column = report.mapping.get("label")
        raise UserError(_(
            "Nothing was saved: the label column '{column}' does not look like labels (the report says why). "
            "Choose the column that holds the label, or confirm that '{column}' is the label (on the command line, "
            "add --label-column-ok).", column=column))
    copied: Path | None = None
    try:
        with db.transaction(conn):
            latest = conn.execute("select max(version) from datasets where name = ?", [name]).fetchone()[0]
            version = int(latest or 0) + 1
            folder = paths.uploads_dir() / "datasets"
            folder.mkdir(parents=True, exist_ok=True)
            copied = folder / f"{_safe_file_name(name)}-v{version}-{candidate.sha256[:12]}-{_safe_file_name(candidate.file_name)}"
            dataset_id = conn["datasets"].insert({
                "name": name,
                "version": version,
                "task": report.task or candidate.task,
                "source_file": candidate.file_name,
                "source_sha256": candidate.sha256,
                "source_format": candidate.format,
                "encoding": candidate.encoding,
                "mapping_json": db.dumps(report.mapping),
                "labels_json": db.dumps(sorted(report.labels)),
                "counts_json": db.dumps(report.counts),
                "report_json": db.dumps(report.to_dict()),
                "n_rows": len(prepared.rows),
                "created_at": db.now(),
                "created_by": created_by,
            }).last_pk
            access.record(conn, who, "dataset.import", f"dataset:{name}:{version}",
                          {"file": candidate.file_name, "sha256": candidate.sha256, "rows": len(prepared.rows)})
            batch = []
            for row in prepared.rows:
                batch.append({
                    "dataset_id": dataset_id,
                    "row_id": row["row_id"],
                    "split": row["split"],
                    "text": row["text"],
                    "label": row["label"],
                    "tokens_json": db.dumps(row["tokens"]) if row.get("tokens") is not None else None,
                    "tags_json": db.dumps(row["tags"]) if row.get("tags") is not None else None,
                })
                if len(batch) >= 2000:
                    conn["dataset_rows"].insert_all(batch)
                    batch = []
            if batch:
                conn["dataset_rows"].insert_all(batch)
            copied.write_bytes(candidate.data)
    except BaseException:
        if copied is not None and copied.exists():
            copied.unlink()
        raise
    return get(conn, int(dataset_id))


def source_path(dataset: dict) -> Path | None:
    """Where the copy of a version's source file lies, if it is still there."""
    folder = paths.uploads_dir() / "datasets"
    prefix = f"{_safe_file_name(dataset['name'])}-v{dataset['version']}-{(dataset.get('source_sha256') or '')[:12]}-"
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.name.startswith(prefix):
            return path
    return None


def import_file(
    conn,
    data: bytes,
    file_name: str,
    name: str,
    created_by: str | None = None,
    mapping: dict | None = None,
    format: str = "auto",
    encoding: str | None = None,
    sheet: str | None = None,
    ratios=validate.DEFAULT_RATIOS,
    seed: int = validate.DEFAULT_SEED,
    actor=None,
    task: str | None = None,
    label_confirmed: bool = False,
) -> tuple[dict, validate.CheckReport]:
    """Read, check and save in one call (for scripts and tests); the report is accepted as it is, but a flagged label
    column needs ``label_confirmed``. ``task`` 'generation' reads the file as generation data (text, prompt/response or
    messages); otherwise the file decides."""
    name = check_name(name)
    candidate = ingest.read_file(data, file_name, format=format, encoding=encoding, sheet=sheet)
    prepared = build(candidate, mapping, ratios=ratios, seed=seed, task=task)
    return save(conn, candidate, prepared, name, created_by, actor=actor,
                label_confirmed=label_confirmed), prepared.report


def build(candidate: ingest.Candidate, mapping: dict | None = None, ratios=validate.DEFAULT_RATIOS,
          seed: int = validate.DEFAULT_SEED, task: str | None = None) -> validate.Prepared:
    """Check a candidate for its task: generation data through engine.data.generation, the rest through validate."""
    if task == generation.TASK:
        candidate.task = generation.TASK
        return generation.build(candidate, mapping, ratios=ratios, seed=seed)
    if task not in (None, "", "auto", "text-classification", "token-classification"):
        raise UserError(_("'{task}' is not a task. Use text-classification, token-classification or generation.",
                          task=task))
    return validate.build(candidate, mapping, ratios=ratios, seed=seed)


def jobs_using(conn, dataset_id: int) -> list:
    placeholders = ", ".join("?" for _skip in ACTIVE_JOB_STATUSES)
    return list(conn.query(
        f"select id, kind, status from jobs where dataset_id = ? and status in ({placeholders}) order by id",
        [int(dataset_id), *ACTIVE_JOB_STATUSES],
    ))


def delete(conn, ref: str | int, confirm: bool = False, actor=None) -> dict:
    """Delete one version (its rows and its copy of the source file). Needs ``confirm=True``; refused while a
    queued or running job uses it. An analyst deletes only their own versions; an admin anyone's."""
    dataset = get(conn, ref)
    who = access.check(conn, actor, "dataset.delete", f"dataset:{dataset['ref']}", owner=dataset.get("created_by"))
    if not confirm:
        raise UserError(_(
            "Deleting dataset {ref} cannot be undone. Confirm to delete it (on the command line, add --yes).",
            ref=dataset["ref"]))
    source = source_path(dataset)
    with db.transaction(conn):
        busy = jobs_using(conn, dataset["id"])
        if busy:
            ids = ", ".join(f"#{j['id']} ({j['status']})" for j in busy)
            raise UserError(_(
                "Dataset {ref} is used by a job that has not finished: {ids}. Wait for it to finish or "
                "cancel it on the Runs page, then delete.", ref=dataset["ref"], ids=ids))
        conn.execute("delete from dataset_rows where dataset_id = ?", [dataset["id"]])
        conn.execute("delete from datasets where id = ?", [dataset["id"]])
        access.record(conn, who, "dataset.delete", f"dataset:{dataset['ref']}",
                      {"created_by": dataset.get("created_by"), "rows": dataset.get("n_rows")})
    if source is not None and source.exists():
        source.unlink()
    return dataset
