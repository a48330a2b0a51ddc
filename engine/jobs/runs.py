"""A training run as the rest of the product sees it: look-up, title, task, labels, the finished ones.

A run is a job of kind 'train' (engine.jobs.queue). Reports, scoring, topics, alerts, trends and the pages all look
runs up here, so a run is named, checked and refused the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine import db
from engine.jobs import queue
from engine.data import language as languages
from engine.models import labels as label_words
from engine.models.catalog import config_labels

TEXT = "text-classification"
TOKENS = "token-classification"
KEY_METRIC = "macro_f1"  # the one figure a run is judged by in lists
GENERATION_KEY_METRIC = "validation_perplexity"  # a generation run's figure in lists (lower is better)
PURPOSE_NAMES = (N_("sentiment"), N_("topics"), N_("other"))  # runs.purpose(run) as written in sentences: _()
KEY_METRIC_WORDS = {KEY_METRIC: N_("macro-F1 (test)"), GENERATION_KEY_METRIC: N_("validation perplexity")}  # shown: _()


def key_metric(job: dict) -> str:
    """The figure a run is judged by in lists: validation perplexity for generation, macro-F1 otherwise."""
    return GENERATION_KEY_METRIC if job.get("task") == "generation" else KEY_METRIC


def get(conn, run_id: Any) -> dict:
    """Training run ``run_id`` in any state; NotFound in plain words when there is none."""
    try:
        run_id = int(run_id)
    except (TypeError, ValueError):
        raise NotFound(_("'{run_id}' is not a run number. Run numbers are whole numbers; see the Runs page.",
                         run_id=run_id)) from None
    rows = list(conn.query("SELECT * FROM jobs WHERE id = ? AND kind = 'train'", [run_id]))
    if not rows:
        raise NotFound(_("There is no training run {run_id}. Check the number on the Runs page.", run_id=run_id))
    return rows[0]


def finished(conn, run_id: Any) -> dict:
    """A training run that succeeded (reports, evaluation, Try it); a plain error otherwise."""
    run = get(conn, run_id)
    if run["status"] != "succeeded":
        raise UserError(_("Run {run_id} has not finished successfully (it is {status}). Reports are made for finished "
                          "runs; wait for it to finish or pick another run.", run_id=run["id"],
                          status=queue.status_words(run["status"])))
    return run


def for_scoring(conn, run_id: Any) -> dict:
    """A finished text-classification run whose model is on disk (it can score or tag a feed's articles)."""
    rows = list(conn.query("SELECT * FROM jobs WHERE id = ?", [int(run_id)]))
    if not rows or rows[0]["kind"] != "train":
        raise NotFound(_("There is no training run {run_id}. Choose a finished run from the Runs page.",
                         run_id=run_id))
    run = rows[0]
    if run["status"] != "succeeded":
        raise UserError(_("Run {run_id} is {status}, not finished: only a run that succeeded can score news.",
                          run_id=run_id, status=queue.status_words(run["status"])))
    if task(run) != TEXT:
        raise UserError(_("Run {run_id} tags entities; choose a sentiment (text-classification) run to score news.",
                          run_id=run_id))
    if not run.get("model_dir") or not (Path(run["model_dir"]) / "config.json").is_file():
        raise UserError(_("The model of run {run_id} is missing from disk ({path}). Train it again.", run_id=run_id,
                          path=run.get("model_dir")))
    return run


def purpose(run: dict) -> str:
    """What the run was trained for: 'sentiment', 'topics' or 'other'. Stored when it was queued; for a run trained
    before purposes were stored, guessed from its labels (a class named negative or positive: sentiment; any other
    text classifier: topics)."""
    stored = run.get("purpose")
    if stored in label_words.PURPOSES:
        return stored
    if task(run) != TEXT or run.get("task") == "generation":
        return label_words.OTHER
    found = config_labels(Path(run["model_dir"])) if run.get("model_dir") else None
    return label_words.guess_purpose(found or [], TEXT)


def for_topics(conn, run_id: Any) -> dict:
    """A finished run trained for topics (it can tag a feed's articles with topics); a plain refusal for a sentiment
    or other run, whose labels would otherwise be written as topics."""
    run = for_scoring(conn, run_id)
    found = purpose(run)
    if found != label_words.TOPICS:
        names = ", ".join(config_labels(Path(run["model_dir"])) or [])
        raise UserError(_("Run {run_id} was trained for {purpose}, not topics: its labels ({names}) would be written as "
                          "topics. Pick a run trained for topics, or train one on the Train page with the purpose "
                          "'Topics'.", run_id=run["id"], purpose=found, names=names))
    return run


def dataset_language(conn, dataset_id: int | None) -> dict | None:
    """A dataset version's main language: from its saved report, else told from its training rows now."""
    if not dataset_id:
        return None
    row = conn.execute("SELECT report_json FROM datasets WHERE id = ?", [int(dataset_id)]).fetchone()
    if row is None:
        return None
    found = (db.loads(row[0], {}) or {}).get("language")
    if found:
        return found
    texts = [r[0] for r in conn.execute("SELECT text FROM dataset_rows WHERE dataset_id = ? AND split = 'train' "
                                        "ORDER BY row_id LIMIT 2000", [int(dataset_id)])]
    return languages.detect(texts) if texts else None


def language(conn, run: dict) -> dict | None:
    """The main language of the texts a run was trained on (recorded when queued; for older runs, its dataset's)."""
    config = db.loads(run.get("config_json"), {}) if "config" not in run else run.get("config") or {}
    return config.get("language") or dataset_language(conn, run.get("dataset_id"))


def finished_runs(conn, task: str | None = None) -> list[dict]:
    """Every succeeded training run (of ``task`` when given), newest first, with its dataset's name and version."""
    return list(conn.query(
        """SELECT jobs.*, datasets.name AS dataset_name, datasets.version AS dataset_version
           FROM jobs LEFT JOIN datasets ON datasets.id = jobs.dataset_id
           WHERE jobs.kind = 'train' AND jobs.status = 'succeeded'
             AND (? IS NULL OR COALESCE(jobs.task, 'text-classification') = ?)
           ORDER BY jobs.id DESC""", [task, task]))


def title(run: dict) -> str:
    """'#12 my-run · default · fpb v1' — how a run is named in pickers, tables and chart captions."""
    parts = [f"#{run['id']}"]
    if run.get("name"):
        parts.append(str(run["name"]))
    if run.get("base_model"):
        parts.append(f"· {Path(str(run['base_model'])).name or run['base_model']}")
    if run.get("dataset_name"):
        version = f" v{run['dataset_version']}" if run.get("dataset_version") else ""
        parts.append(f"· {run['dataset_name']}{version}")
    return " ".join(parts)


def task(run: dict) -> str:
    return TOKENS if run.get("task") == TOKENS else TEXT


def labels(run: dict) -> list[str]:
    """The run's labels in the model's own order (config.id2label), read without loading the model."""
    model_dir = Path(run.get("model_dir") or "")
    found = config_labels(model_dir) if run.get("model_dir") else None
    if found is None:
        raise UserError(_("Run {run_id} has no saved model (looked in {path}). It may have been deleted; train it "
                          "again.", run_id=run["id"], path=model_dir))
    return found



def summary(conn, job: dict) -> dict:
    """A run in a line: what `runs list/show --format json` prints and the Runs page tabulates."""
    ds = None
    if job.get("dataset_id"):
        row = conn.execute("SELECT name, version FROM datasets WHERE id = ?", [job["dataset_id"]]).fetchone()
        ds = f"{row[0]}:{row[1]}" if row else None
    metrics = job.get("metrics") or {}
    return {
        "id": job["id"],
        "kind": job["kind"],
        "name": job.get("name"),
        "status": job["status"],
        "task": job.get("task"),
        "purpose": purpose(job) if job.get("kind") == "train" else None,
        "dataset": ds or (job.get("config") or {}).get("dataset"),
        "base_model": job.get("base_model"),
        "created_at": job["created_at"],
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "key_metric": key_metric(job),
        "key_value": metrics.get(key_metric(job)),
        KEY_METRIC: metrics.get(KEY_METRIC),
        "accuracy": metrics.get("accuracy"),
        GENERATION_KEY_METRIC: metrics.get(GENERATION_KEY_METRIC) if job.get("task") == "generation" else None,
        "error": job.get("error"),
        "device": job.get("device") or {},
        "model_dir": job.get("model_dir"),
    }


def soup_position(progress_row: dict | None) -> tuple[int, int] | None:
    """(run, runs) of a model soup's progress row (its runs train one after another), else None."""
    which = db.loads((progress_row or {}).get("extra_json"), {}) or {}
    if not isinstance(which, dict) or not which.get("soup_runs"):
        return None
    return int(which["soup_run"]), int(which["soup_runs"])


def soup_words(metrics: dict | None) -> str | None:
    """A finished model soup in a sentence (its runs, their seeds, the soup's and each run's validation macro-F1), in
    the reader's language; None for an ordinary run."""
    soup = (metrics or {}).get("soup")
    if not soup:
        return None
    f1, each, n_validation = soup.get("validation_macro_f1") or 0, soup.get("member_validation_macro_f1") or [], \
        (metrics or {}).get("n_validation")
    said = _("A model soup: {n} runs (seeds {seeds}) averaged into this one model. Validation macro-F1 {f1}; the runs "
             "alone {each}.", n=soup["runs"], seeds=", ".join(str(x) for x in soup["seeds"]), f1=f"{f1:.3f}",
             each=", ".join(f"{x:.3f}" for x in each))
    if each and n_validation and f1 < min(each):
        # Measured on fpb: seed 47's soup scored 0.799 on validation against its runs' 0.831-0.838, and 0.837 on the
        # held-out dev.csv, the best of its set (docs/benchmarks.md, "Thorough as a model soup").
        said += " " + _("The soup scores below each of its runs on the validation split, which has only {n} rows: too "
                        "few to tell such models apart. Judge it on the test split (Reports) or on a held-out file "
                        "you evaluate; on Financial PhraseBank soups did as well as their runs on held-out data.",
                        n=n_validation)
    return said
