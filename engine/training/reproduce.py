"""Run again: repeat a finished run with the same settings on the same dataset version, and compare the two.

:func:`rerun` queues a copy of a finished run (its preset and every setting, the exact dataset version it trained
on, the same base model), optionally with another seed, recording ``rerun_of`` in the new run's config.
:func:`compare_predictions` says whether two runs predicted the same on the test split (rows matched by the
dataset's ``row_id``); :func:`rerun_comparison` is what the Runs page and ``runs show`` print for a re-run.

On the CPU the same seed gives the same predictions; on a GPU kernels may differ unless the run had
``full_determinism`` on (see ``finetune.seed_everything``).
"""

from __future__ import annotations

import json
from typing import Any

from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue
from engine.training import finetune

# metrics shown side by side: (key in metrics_json, words)
COMPARED_METRICS = (
    ("macro_f1", "Test macro-F1"),
    ("accuracy", "Test accuracy"),
    ("validation_macro_f1", "Validation macro-F1"),
    ("validation_accuracy", "Validation accuracy"),
)


def same_settings(job: dict, seed: int | None = None) -> dict:
    """The overrides that repeat a run's settings exactly (every option of its config, the max length it asked for)."""
    config = job.get("config") or {}
    overrides = {key: config[key] for key in finetune.DEFAULTS if key in config}
    if config.get("max_length_requested"):  # the base model capped it; ask for the same again
        overrides["max_length"] = config["max_length_requested"]
    used = (job.get("device") or {}).get("precision")
    if used in ("fp32", "bf16") and overrides.get("precision", "auto") == "auto":
        # what 'auto' chose then (it picks bf16 on more CPUs now than it did): the same arithmetic, the same predictions
        overrides["precision"] = used
    if "fast_dropout" not in config:  # trained before dropout drew cheaper masks: torch's masks again, the same draws
        overrides["fast_dropout"] = False
    if "freeze_embeddings" not in config:  # trained before word embeddings were frozen: trained again, as then
        overrides["freeze_embeddings"] = False
    if "soup" not in config:  # trained before model soups (Thorough is one now): one run again, as then
        overrides["soup"] = 1
    if seed is not None:
        overrides["seed"] = seed
    return overrides


def _finished_train_run(conn, run_id: int) -> dict:
    job = queue.get(conn, run_id)
    if job["kind"] != "train":
        raise UserError(_("Job {run_id} is not a training run; only training runs can be run again.", run_id=run_id))
    if job["status"] not in queue.FINISHED:
        if job["status"] == "queued":
            raise UserError(_("Run {run_id} is queued; run it again once it has finished.", run_id=run_id))
        raise UserError(_("Run {run_id} is running; run it again once it has finished.", run_id=run_id))
    return job


def rerun(conn, run_id: int, seed: int | None = None, created_by: str | None = None, name: str | None = None,
          actor=None) -> int:
    """Queue run ``run_id`` again (same settings, same dataset version, same base model); returns the new run's id.
    ``seed`` replaces the run's seed. Only a finished (succeeded, failed or cancelled) training run can be re-run."""
    job = _finished_train_run(conn, run_id)
    config = job.get("config") or {}
    row = conn.execute("SELECT name, version FROM datasets WHERE id = ?", [job.get("dataset_id")]).fetchone()
    if not row:
        raise UserError(_("The dataset run {run_id} was trained on no longer exists, so it cannot be run again.",
                          run_id=run_id))
    dataset = f"{row[0]}:{row[1]}"  # pinned: the version the run used, never the latest
    source_name = job.get("name") or f"run {run_id}"
    seed_words = f" · seed {int(seed)}" if seed is not None and int(seed) != int(config.get("seed", -1)) else ""
    return _submit_same(conn, job, dataset, seed, name or f"{source_name} · re-run of #{run_id}{seed_words}", actor,
                        created_by=created_by, rerun_of=int(run_id))


def _submit_same(conn, job: dict, dataset: str, seed: int | None, name: str, actor, **recorded) -> int:
    """Queue ``job``'s exact settings, preset, base model and purpose on ``dataset``; ``recorded``: what the new run
    records about its origin (rerun_of, corrects, created_by)."""
    return finetune.submit(conn, dataset, task=job.get("task"), base_model=job.get("base_model") or "default",
                           preset=(job.get("config") or {}).get("preset"), overrides=same_settings(job, seed),
                           name=name, purpose=job.get("purpose"), actor=actor, **recorded)


def retrain_on(conn, run_id: int, dataset: str, seed: int | None = None, name: str | None = None, actor=None) -> int:
    """Queue run ``run_id``'s exact settings and base model on another dataset version (``dataset``, pinned as
    NAME:VERSION by the caller), recording ``corrects`` = ``run_id`` in the new run's config; returns its id."""
    job = _finished_train_run(conn, run_id)
    return _submit_same(conn, job, dataset, seed, name or f"{job.get('name') or f'run {run_id}'} · retrained on {dataset}",
                        actor, corrects=int(run_id))


def _prediction_map(conn, run_id: int) -> dict[int, tuple]:
    rows = conn.execute(
        "SELECT row_id, pred_label, pred_tags_json, probs_json FROM predictions WHERE run_id = ? AND split = 'test'",
        [int(run_id)],
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def compare_predictions(conn, run_a: int, run_b: int) -> dict[str, Any]:
    """How the test predictions of two runs compare, row by row (matched by ``row_id``).

    Returns ``n_rows`` (rows both runs predicted), ``n_only_one`` (rows only one run has), ``n_different`` (a different
    label or tag sequence), ``identical`` (same labels on the same rows, and at least one row), ``max_prob_diff``
    (largest difference in any class probability, text classifiers; 0.0 means bit-for-bit equal probabilities)."""
    a, b = _prediction_map(conn, run_a), _prediction_map(conn, run_b)
    common = sorted(set(a) & set(b))
    different = 0
    max_diff = 0.0 if common else None
    for row_id in common:
        (label_a, tags_a, probs_a), (label_b, tags_b, probs_b) = a[row_id], b[row_id]
        if label_a != label_b or tags_a != tags_b:
            different += 1
        if probs_a and probs_b and max_diff is not None:
            pa, pb = json.loads(probs_a), json.loads(probs_b)
            for key in set(pa) | set(pb):
                max_diff = max(max_diff, abs(float(pa.get(key, 0.0)) - float(pb.get(key, 0.0))))
    only_one = len(set(a) ^ set(b))
    return {
        "n_rows": len(common),
        "n_only_one": only_one,
        "n_different": different,
        "identical": bool(common) and different == 0 and only_one == 0,
        "max_prob_diff": max_diff,
    }


def rerun_comparison(conn, run_id: int) -> dict[str, Any] | None:
    """For a re-run (``config.rerun_of``): its source, both seeds, the metrics side by side and whether the test
    predictions are identical (once both succeeded). None when ``run_id`` is not a re-run."""
    job = queue.get(conn, run_id)
    source_id = (job.get("config") or {}).get("rerun_of")
    if not source_id:
        return None
    try:
        source = queue.get(conn, int(source_id))
    except UserError:
        return {"source_id": int(source_id), "source_missing": True, "finished": False}
    finished = job["status"] == "succeeded" and source["status"] == "succeeded"
    out: dict[str, Any] = {
        "source_id": source["id"],
        "source_missing": False,
        "finished": finished,
        "status": job["status"],
        "source_status": source["status"],
        "seed": (job.get("config") or {}).get("seed"),
        "source_seed": (source.get("config") or {}).get("seed"),
        "metrics": [
            {"metric": words, "key": key, "source": (source.get("metrics") or {}).get(key),
             "rerun": (job.get("metrics") or {}).get(key)}
            for key, words in COMPARED_METRICS
        ],
        "predictions": compare_predictions(conn, source["id"], job["id"]) if finished else None,
    }
    env_a = (source.get("device") or {}).get("environment") or {}
    env_b = (job.get("device") or {}).get("environment") or {}
    keys = sorted(set(env_a) | set(env_b))
    out["environment_differs"] = {k: [env_a.get(k), env_b.get(k)] for k in keys if env_a.get(k) != env_b.get(k)}
    device_a, device_b = (source.get("device") or {}).get("device"), (job.get("device") or {}).get("device")
    if device_a != device_b:
        out["environment_differs"]["device"] = [device_a, device_b]
    return out


def comparison_words(comparison: dict[str, Any]) -> str:
    """One plain sentence about a finished re-run's predictions, for the page and the command line (in the reader's
    language)."""
    preds = comparison.get("predictions")
    if not preds:
        return _("The comparison appears when both runs have succeeded.")
    same_seed = comparison.get("seed") == comparison.get("source_seed")
    if preds["identical"]:
        if preds.get("max_prob_diff") == 0.0:
            return _("Identical test predictions on all {n} rows with bit-for-bit the same probabilities.",
                     n=preds["n_rows"])
        return _("Identical test predictions on all {n} rows.", n=preds["n_rows"])
    if not same_seed:
        return _("Test predictions differ on {n} of {total} rows (another seed).", n=preds["n_different"],
                 total=preds["n_rows"])
    differ = _("Test predictions differ on {n} of {total} rows.", n=preds["n_different"], total=preds["n_rows"])
    if comparison.get("environment_differs"):
        return differ + " " + _("The runs differ in {what}.", what=", ".join(comparison["environment_differs"]))
    return differ + " " + _("Same seed, data and settings: on a GPU without full determinism this can happen.")
