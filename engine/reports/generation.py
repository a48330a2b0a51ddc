"""The generation report: base model against fine-tuned model on the same held-out rows.

- Loss and perplexity (exp of the mean cross-entropy per learnt token) of both models on the validation and test
  rows, measured by the run (:mod:`engine.training.generation`).
- ROUGE-1/2/L (rouge-score) and BLEU (sacrebleu) of both models' greedy outputs against the references.
- The table of held-out prompts: reference, base output, fine-tuned output (filterable; CSV/XLSX formula-escaped).
- Evaluate on a new file: prompts and references from an uploaded file, both models generate, the same scores.
- Compare runs: the figures side by side.
"""

from __future__ import annotations

import pandas as pd

from engine import db, export
from engine.data import generation as gen_data
from engine.data import ingest
from engine.data import validate
from engine.errors import UserError
from engine.i18n import N_, _
from engine.models import generate

FIGURES = [  # (key, words)
    ("validation_loss", N_("validation loss")),
    ("validation_perplexity", N_("validation perplexity")),
    ("test_loss", N_("test loss")),
    ("test_perplexity", N_("test perplexity")),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("bleu", "BLEU"),
]
EVAL_FILE_LIMIT = 200  # rows of an uploaded file generated at most (each is a model call per model)


def _metrics(run: dict) -> dict:
    return run.get("metrics") or db.loads(run.get("metrics_json"), {}) or {}


def is_generation(run: dict) -> bool:
    return run.get("task") == gen_data.TASK


def base_source(run: dict) -> str | None:
    """Where the run's base model was loaded from (its bellwether.json), for side-by-side answers."""
    import json
    from pathlib import Path

    record = Path(run["model_dir"]) / "bellwether.json"
    return json.loads(record.read_text()).get("base_model_source") if record.is_file() else None


def build(conn, run: dict, split: str = "test", contains: str | None = None) -> dict:
    """The report of a finished generation run (``split`` 'test' or 'eval:<name>'); ``contains`` filters the table."""
    metrics = _metrics(run)
    rows = []
    for r in conn.query(
        "SELECT row_id, text, true_label, pred_label, base_output FROM predictions WHERE run_id = ? AND split = ? "
        "ORDER BY row_id", [run["id"], split],
    ):
        rows.append({"row_id": r["row_id"], "prompt": r["text"], "reference": r["true_label"] or "",
                     "base_output": r["base_output"] or "", "fine_tuned_output": r["pred_label"] or ""})
    if split != "test":  # an evaluated file: the overlap scores from its stored outputs (no losses measured)
        refs = [r["reference"] for r in rows]
        metrics = {**generate.overlap_scores(refs, [r["fine_tuned_output"] for r in rows]),
                   **{f"base_{k}": v for k, v in generate.overlap_scores(refs, [r["base_output"] for r in rows]).items()},
                   "n_generated": len(rows)}
    base = {key: metrics.get(f"base_{key}") for key, _words in FIGURES}
    tuned = {key: metrics.get(key) for key, _ in FIGURES}
    if contains:
        needle = contains.lower()
        rows = [r for r in rows if any(needle in str(r[k]).lower() for k in ("prompt", "reference", "base_output",
                                                                             "fine_tuned_output"))]
    return {"run_id": run["id"], "split": split, "base": base, "fine_tuned": tuned, "rows": rows,
            "n_generated": metrics.get("n_generated", len(rows))}


def model_zip(run: dict) -> bytes:
    """The trained model folder (weights, tokenizer, bellwether.json, README.md model card) as a zip file."""
    import io
    import zipfile
    from pathlib import Path

    folder = Path(run["model_dir"])
    if not folder.is_dir():
        raise UserError(_("The model folder of run {run_id} is no longer on the server ({folder}).", run_id=run["id"],
                          folder=folder))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"run-{run['id']}-model/{path.relative_to(folder)}")
    return buffer.getvalue()


def figures_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame([
        {"figure": _(words), "base model": report["base"].get(key), "fine-tuned": report["fine_tuned"].get(key)}
        for key, words in FIGURES if report["base"].get(key) is not None or report["fine_tuned"].get(key) is not None
    ])


def rows_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report["rows"], columns=["row_id", "prompt", "reference", "base_output", "fine_tuned_output"])


def rows_csv(report: dict) -> bytes:
    return export.to_csv_bytes(rows_frame(report))


def xlsx(report: dict) -> bytes:
    return export.to_xlsx_bytes({"figures": figures_frame(report), "outputs": rows_frame(report)})


def to_text(report: dict) -> str:
    def fmt(value):
        return _("n/a") if value is None else f"{value:,.4f}"

    lines = [_("Generation report for run {run_id} ({split}, {n} prompts generated)", run_id=report["run_id"],
               split=report["split"], n=report["n_generated"]),
             f"{'':24} {_('base model'):>14} {_('fine-tuned'):>14}"]
    for key, words in FIGURES:
        lines.append(f"{_(words):24} {fmt(report['base'].get(key)):>14} {fmt(report['fine_tuned'].get(key)):>14}")
    for r in report["rows"][:5]:
        lines += ["", _("prompt:     {text}", text=r["prompt"][:200]), _("reference:  {text}", text=r["reference"]),
                  _("base:       {text}", text=r["base_output"]),
                  _("fine-tuned: {text}", text=r["fine_tuned_output"])]
    return "\n".join(lines)


def compare(runs: list[dict]) -> pd.DataFrame:
    """Compare generation runs: one column per run, a row per figure (fine-tuned, with the base model's alongside);
    the figure's name is the ``figure`` column."""
    table = {}
    for run in runs:
        m = _metrics(run)
        table[f"run #{run['id']}"] = {_(words): m.get(key) for key, words in FIGURES}
        table[f"run #{run['id']} base"] = {_(words): m.get(f"base_{key}") for key, words in FIGURES}
    return pd.DataFrame(table).rename_axis("figure").reset_index()


def splits(conn, run_id: int) -> list[str]:
    """The held-out sets a run has outputs for: 'test' (its own held-out rows) and each evaluated file ('eval:NAME')."""
    found = [r["split"] for r in conn.query("SELECT DISTINCT split FROM predictions WHERE run_id = ? ORDER BY split",
                                            [run_id])]
    return sorted(found, key=lambda s: (s != "test", s))


def common_splits(conn, run_ids: list[int]) -> list[str]:
    """The held-out sets every one of ``run_ids`` has outputs for, 'test' first."""
    sets = [set(splits(conn, i)) for i in run_ids]
    shared = set.intersection(*sets) if sets else set()
    return sorted(shared, key=lambda s: (s != "test", s))


def compare_outputs(conn, runs: list[dict], split: str = "test") -> pd.DataFrame:
    """The outputs of several runs side by side on the same prompts: the prompts (with their reference) that every
    run generated for in ``split``, matched by the prompt's text, one output column per run (``run #ID``)."""
    by_run = []
    for run in runs:
        outputs = {}
        for r in conn.query("SELECT text, true_label, pred_label FROM predictions WHERE run_id = ? AND split = ? "
                            "ORDER BY row_id", [run["id"], split]):
            outputs.setdefault((r["text"], r["true_label"] or ""), r["pred_label"] or "")
        by_run.append(outputs)
    columns = ["prompt", "reference"] + [f"run #{run['id']}" for run in runs]
    if not by_run:
        return pd.DataFrame(columns=columns)
    keys = [k for k in by_run[0] if all(k in other for other in by_run[1:])]
    return pd.DataFrame([[prompt, ref] + [outputs[(prompt, ref)] for outputs in by_run] for prompt, ref in keys],
                        columns=columns)


def evaluate_file(conn, run: dict, data: bytes, file_name: str, name: str, mapping: dict | None = None,
                  encoding: str | None = None, sheet: str | None = None) -> dict:
    """Generate with the base and fine-tuned models for the prompts of an uploaded file and score both against its
    references; kept with the run as ``eval:<name>``."""
    import json
    from pathlib import Path

    candidate = ingest.read_file(data, file_name, encoding=encoding, sheet=sheet)
    candidate.task = gen_data.TASK
    prepared = gen_data.build(candidate, mapping, ratios=(1.0, 0.0, 0.0))
    rows = [r for r in prepared.rows if r["label"] is not None][:EVAL_FILE_LIMIT]
    if not rows:
        raise UserError(_("{file} has no prompt with a reference response to evaluate on.", file=file_name))
    record = json.loads((Path(run["model_dir"]) / "bellwether.json").read_text())
    outputs = {}
    for which, source in (("fine_tuned", run["model_dir"]), ("base", record.get("base_model_source"))):
        tokenizer, model = generate.load(source)
        sampling = generate.Sampling(greedy=True, max_new_tokens=48)
        outputs[which] = [generate.generate(tokenizer, model, generate.prompt_text(
            tokenizer, r["text"], r["tokens"][:-1] if r.get("tokens") else None), sampling) for r in rows]
    split = f"eval:{validate._clip(name, 60)}"
    with db.transaction(conn):
        conn.execute("DELETE FROM predictions WHERE run_id = ? AND split = ?", [run["id"], split])
        conn["predictions"].insert_all([{
            "run_id": run["id"], "split": split, "row_id": r["row_id"], "text": r["text"], "true_label": r["label"],
            "pred_label": out, "base_output": base_out,
        } for r, out, base_out in zip(rows, outputs["fine_tuned"], outputs["base"])])
    return build(conn, run, split)
