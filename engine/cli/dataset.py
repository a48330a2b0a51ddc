"""``python -m engine dataset import|list|show|add-reviewed|delete``: the Data page, headless."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine import db, paths
from engine.data import datasets
from engine.data import ingest
from engine.data import validate
from engine.errors import UserError
from engine.i18n import _


def register(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help=_("import, list, show and delete labelled datasets"))
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("import", help=_("read a labelled file, print the validation report, and save it as a new version"))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", required=True, help=_("dataset name; importing the same name again makes a new version"))
    p.add_argument("--text-col", help=_("column holding the text (guessed when omitted)"))
    p.add_argument("--label-col", help=_("column holding the label (guessed when omitted)"))
    p.add_argument("--split-col", help=_("column holding train / validation / test (optional)"))
    p.add_argument("--task", default="auto", choices=["auto", "text-classification", "token-classification", "generation"],
                   help=_("generation: text to generate (plain text, prompt/response pairs or chat messages); "
                        "auto: classification or entity tagging, as the file says"))
    p.add_argument("--prompt-col", help=_("generation: column holding the prompt (guessed when omitted)"))
    p.add_argument("--response-col", help=_("generation: column holding the response to learn (guessed when omitted)"))
    p.add_argument("--messages-col", help=_("generation: JSON lines column holding OpenAI-style chat messages"))
    p.add_argument("--format", default="auto", choices=ingest.FORMAT_CHOICES)
    p.add_argument("--encoding", default="auto", help=_("auto, utf-8, utf-8-sig, gb18030, cp1252, ..."))
    p.add_argument("--sheet", help=_("XLSX: the sheet to read (the first when omitted)"))
    shares = "/".join(f"{r * 100:g}" for r in validate.DEFAULT_RATIOS)
    p.add_argument("--ratios", default=shares, help=_("train/validation/test shares when no split column ({shares})",
                                                      shares=shares))
    p.add_argument("--seed", type=int, default=validate.DEFAULT_SEED, help=_("seed of the split (42)"))
    p.add_argument("--yes", action="store_true", help=_("accept the report's problems without asking"))
    p.add_argument("--label-column-ok", action="store_true",
                   help=_("save even though the label column looks like dates, numbers or free text, or has too many "
                        "classes for its rows (--yes does not cover this)"))
    p.add_argument("--user", help=_("who is importing (default: $BELLWETHER_USER or $USER)"))
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("list", help=_("list saved datasets and their versions"))
    p.add_argument("--format", default="text", choices=["text", "json"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help=_("show one dataset version"))
    p.add_argument("ref", metavar="NAME[:VERSION]")
    p.add_argument("--format", default="text", choices=["text", "json"])
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("add-reviewed", help=_("a new version with reviewed items added to the training split "
                                            "(validation and test rows unchanged)"))
    p.add_argument("ref", metavar="NAME[:VERSION]", help=_("the version to extend (the new one is NAME:latest+1)"))
    p.add_argument("--queue", help=_("the review queue whose labelled items to add (default: every labelled item)"))
    p.add_argument("--items", help=_("or these item ids, separated by commas"))
    p.set_defaults(func=cmd_add_reviewed)

    p = sub.add_parser("delete", help=_("delete one dataset version"))
    p.add_argument("ref", metavar="NAME[:VERSION]")
    p.add_argument("--yes", action="store_true", help=_("confirm the deletion"))
    p.set_defaults(func=cmd_delete)


def _ratios(text: str) -> list[float]:
    parts = [p for p in text.replace(",", "/").replace(":", "/").split("/") if p.strip()]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise UserError(_("--ratios '{text}' is not three numbers such as 80/10/10.", text=text)) from None


def _user(args) -> str:
    return getattr(args, "user", None) or paths.default_user()


def cmd_import(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(_("There is no file {file}. Check the path.", file=args.file))
    name = datasets.check_name(args.name)
    candidate = ingest.read_file(path.read_bytes(), path.name, format=args.format, encoding=args.encoding, sheet=args.sheet)
    # Columns not named are guessed (a split column only when its values are train / validation / test).
    mapping = {key: value for key, value in (("text", args.text_col), ("label", args.label_col), ("split", args.split_col),
                                             ("prompt", args.prompt_col), ("response", args.response_col),
                                             ("messages", args.messages_col)) if value}
    task = "generation" if args.task == "generation" or args.prompt_col or args.response_col or args.messages_col else args.task
    prepared = datasets.build(candidate, mapping, ratios=_ratios(args.ratios), seed=args.seed, task=task)
    report = prepared.report
    print(report.to_text())
    label_ok = bool(args.label_column_ok)
    if report.needs_label_choice and not label_ok:
        column = report.mapping.get("label")
        if sys.stdin.isatty() and sys.stdout.isatty():
            answer = input(_("Is '{column}' really the label column? [y/N] ", column=column)).strip().lower()
            label_ok = answer in ("y", "yes")
        if not label_ok:
            raise UserError(_(
                "Nothing was saved: the label column '{column}' does not look like labels (see above). Name the "
                "label column with --label-col, or add --label-column-ok if '{column}' is the label.", column=column))
    others = [p for p in report.problems if p.code != validate.LABEL_SUSPECT]  # the label was answered above
    if others and not args.yes:
        if sys.stdin.isatty() and sys.stdout.isatty():
            answer = input(_("Save with the problems handled as above? [y/N] ")).strip().lower()
            if answer not in ("y", "yes"):
                print(_("Cancelled: nothing was saved."))
                return 1
        else:
            raise UserError(_(
                "The report lists problems and nobody is here to confirm them; nothing was saved. "
                "Pass --yes to accept the report as it is."))
    conn = db.connect()
    try:
        saved = datasets.save(conn, candidate, prepared, name, _user(args), label_confirmed=label_ok)
    finally:
        conn.close()
    if report.unit() == "sentences":
        print(_("Saved dataset {name} version {version} ({n:,} sentences).", name=saved["name"],
                version=saved["version"], n=saved["n_rows"]))
    else:
        print(_("Saved dataset {name} version {version} ({n:,} rows).", name=saved["name"], version=saved["version"],
                n=saved["n_rows"]))
    return 0


def _summary(d: dict) -> dict:
    return {
        "name": d["name"], "version": d["version"], "id": d["id"], "task": d["task"], "n_rows": d["n_rows"],
        "labels": d["labels"], "counts": d["counts"], "mapping": d["mapping"], "source_file": d["source_file"],
        "source_sha256": d["source_sha256"], "source_format": d["source_format"], "encoding": d["encoding"],
        "created_at": d["created_at"], "created_by": d["created_by"],
    }


def cmd_list(args) -> int:
    conn = db.connect()
    try:
        found = datasets.list_datasets(conn)
    finally:
        conn.close()
    if args.format == "json":
        print(json.dumps([_summary(d) for d in found], ensure_ascii=False, indent=2))
        return 0
    if not found:
        print(_("No datasets saved yet. Import one with: python -m engine dataset import FILE --name NAME"))
        return 0
    print(f"{_('NAME:VERSION'):30} {_('TASK'):22} {_('ROWS'):>8}  {_('LABELS'):6}  " + _("CREATED"))
    for d in found:
        print(f"{d['ref'][:30]:30} {d['task']:22} {d['n_rows']:>8,}  {len(d['labels']):6}  "
              + _("{created} by {by}", created=d["created_at"], by=d["created_by"]))
    return 0


def cmd_show(args) -> int:
    conn = db.connect()
    try:
        d = datasets.get(conn, args.ref)
    finally:
        conn.close()
    if args.format == "json":
        out = _summary(d)
        out["report"] = d["report"]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    print(_("Dataset {ref} ({task}), {n:,} rows, created {created} by {by}", ref=d["ref"], task=d["task"],
            n=d["n_rows"], created=d["created_at"], by=d["created_by"]))
    print(_("Source: {file} ({format}, {encoding}), sha256 {sha}", file=d["source_file"], format=d["source_format"],
            encoding=d["encoding"] or _("n/a"), sha=d["source_sha256"]))
    mapping = {k: v for k, v in d["mapping"].items() if v}
    print(_("Mapping: {mapping}", mapping=", ".join(f"{k} = {v}" for k, v in mapping.items())))
    if d["labels"]:
        print(_("Labels: {labels}", labels=", ".join(d["labels"])))
    for split in validate.SPLITS:
        counts = d["counts"].get(split, {})
        detail = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        print(f"  {_(validate.SPLIT_WORDS[split])}: {sum(counts.values()):,}" + (f" ({detail})" if detail else ""))
    return 0


def cmd_add_reviewed(args) -> int:
    from engine.review import corrections  # the review loop sits above datasets; only this command needs it

    ids = None
    if args.items:
        try:
            ids = [int(x) for x in args.items.replace(" ", "").split(",") if x]
        except ValueError:
            raise UserError(_("--items '{items}' is not a list of item ids such as 4,5,9.", items=args.items)) from None
    conn = db.connect()
    try:
        result = corrections.add_to_dataset(conn, args.ref, queue=args.queue, item_ids=ids)
    finally:
        conn.close()
    d = result["dataset"]
    print(_("Saved dataset {ref}: {n} reviewed rows added to train; validation and test rows unchanged.",
            ref=d["ref"], n=result["added"]))
    for entry in result["conflicts"]:
        print("  " + _("not added (in the dataset as {dataset_label} in {split}, reviewed as {label}): {text}",
                       dataset_label=entry["dataset_label"], split=entry["split"], label=entry["label"],
                       text=entry["text"][:80]))
    if result["already"]:
        print("  " + _("{n} already in the dataset with the same label: not added again.", n=len(result["already"])))
    for entry in result["unknown_label"]:
        print("  " + _("not added (label '{label}' is not one of the dataset's): {text}", label=entry["label"],
                       text=entry["text"][:80]))
    return 0


def cmd_delete(args) -> int:
    conn = db.connect()
    try:
        d = datasets.delete(conn, args.ref, confirm=args.yes)
    finally:
        conn.close()
    print(_("Deleted dataset {ref}.", ref=d["ref"]))
    return 0
