"""``python -m engine report | evaluate | predict``: a finished run's report, its evaluation on a new labelled file,
and predictions on typed text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from engine import db, export
from engine.jobs import runs
from engine.reports import generation as generation_report
from engine.reports import plain
from engine.reports import reporting
from engine.errors import UserError
from engine.i18n import _

FORMATS = ["text", "json", "csv"]


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help=_("a finished run's classification report on its test split"))
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--split", default=reporting.TEST,
                   help=_("'test' (default) or 'eval:<name>' for a file evaluated earlier"))
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("evaluate", help=_("evaluate a finished run on another labelled file"))
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("file", metavar="FILE",
                   help=_("CSV, XLSX or JSONL with text and label columns (CoNLL for tagging)"))
    p.add_argument("--text-col", help=_("the column with the text (guessed when not given)"))
    p.add_argument("--label-col", help=_("the column with the gold label (guessed when not given)"))
    p.add_argument("--prompt-col", help=_("generation runs: the column with the prompt (guessed when not given)"))
    p.add_argument("--response-col", help=_("generation runs: the column with the reference response"))
    p.add_argument("--encoding", help=_("the file's encoding (detected when not given: utf-8, gb18030, cp1252)"))
    p.add_argument("--sheet", help=_("the XLSX sheet (the first when not given)"))
    p.add_argument("--name", help=_("a name for this evaluation (default: the file name)"))
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("predict", help=_("predict labels (or entities) for texts with a finished run"))
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("texts", metavar="TEXT", nargs="+")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_predict)


def _quiet_model_loading() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _print_report(report: reporting.Report, fmt: str, header: str, extra: dict | None = None) -> None:
    said = plain.verdict(reporting.confusion(report)) if report.task != reporting.TOKENS else None
    if fmt == "json":
        out = report.to_json()
        if said is not None:
            out["verdict"] = {"headline": said.headline, "classes": said.classes, "baseline": said.baseline}
        out.update(extra or {})
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        frame = report.frame
        if report.token_report is not None:
            frame = pd.concat([frame.assign(level="entity"), report.token_frame.assign(level="token")],
                              ignore_index=True)
        sys.stdout.write(export.escape_frame(frame).to_csv(index=False))
        for note in report.notes():
            print(_("note: {note}", note=note), file=sys.stderr)
        return
    print(header)
    print(_("{scored} of {rows} rows scored.", scored=report.n_scored, rows=report.n_rows))
    for note in report.notes():
        print(_("Note: {note}", note=note))
    if said is not None:
        print()
        for line in said.lines():
            print(line)
    print()
    if report.task == reporting.TOKENS:
        print(_("Entity level (seqeval)"))
        print(reporting.format_text(report.frame))
        print()
        print(_("Token level (per tag)"))
        print(reporting.format_text(report.token_frame))
    else:
        print(reporting.format_text(report.frame))


def _generation_run(conn, run_id) -> dict | None:
    try:
        run = runs.finished(conn, run_id)
    except UserError:
        return None  # the classification path says why in its own words
    return run if generation_report.is_generation(run) else None


def _print_generation(report: dict, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        sys.stdout.write(generation_report.rows_csv(report).decode("utf-8-sig"))
    else:
        print(generation_report.to_text(report))


def cmd_report(args) -> int:
    conn = db.connect()
    try:
        run = _generation_run(conn, args.run_id)
        if run is not None:
            _print_generation(generation_report.build(conn, run, args.split), args.format)
            return 0
        report = reporting.run_report(conn, args.run_id, args.split)
        _print_report(report, args.format, _("Run {run_id} · {split}", run_id=report.run_id,
                                             split=reporting.split_title(report.split)))
    finally:
        conn.close()
    return 0


def cmd_evaluate(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(_("There is no file {path}. Check the path.", path=args.file))
    _quiet_model_loading()
    conn = db.connect()
    try:
        run = _generation_run(conn, args.run_id)
        if run is not None:
            mapping = {k: v for k, v in (("prompt", args.prompt_col), ("response", args.response_col),
                                         ("text", args.text_col)) if v}
            report = generation_report.evaluate_file(conn, run, path.read_bytes(), path.name, args.name or path.stem,
                                                     mapping, encoding=args.encoding, sheet=args.sheet)
            _print_generation(report, args.format)
            return 0
        evaluation = reporting.evaluate_file(conn, args.run_id, path.read_bytes(), path.name, name=args.name,
                                           text_col=args.text_col, label_col=args.label_col, encoding=args.encoding,
                                           sheet=args.sheet)
        values = {"run_id": evaluation.report.run_id, "file": evaluation.file_name, "split": evaluation.split,
                  "encoding": evaluation.encoding}
        if evaluation.text_column:
            header = _("Run {run_id} on {file} (stored as '{split}'; encoding {encoding}; text column '{text}', label "
                       "column '{label}')", text=evaluation.text_column, label=evaluation.label_column, **values)
        else:
            header = _("Run {run_id} on {file} (stored as '{split}'; encoding {encoding})", **values)
        if evaluation.renamed and args.format == "text":
            header += "\n" + _("Labels matched by name: {pairs}",
                               pairs=", ".join(f"'{a}' -> '{b}'" for a, b in evaluation.renamed.items()))
        extra = {"file": evaluation.file_name, "encoding": evaluation.encoding, "text_column": evaluation.text_column,
                 "label_column": evaluation.label_column, "renamed_labels": evaluation.renamed}
        _print_report(evaluation.report, args.format, header, extra)
    finally:
        conn.close()
    return 0


def cmd_predict(args) -> int:
    _quiet_model_loading()
    conn = db.connect()
    try:
        results = reporting.try_it(conn, args.run_id, args.texts)
    finally:
        conn.close()
    if args.format == "json":
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    for result in results:
        if "entities" in result:
            found = "; ".join(f"{e['text']} [{e['type']}]" for e in result["entities"]) or _("(no entities)")
            print(f"{found}\t{result['text']}")
        else:
            print(f"{result['label']}\t{result['confidence']:.3f}\t{result['text']}")
    return 0
