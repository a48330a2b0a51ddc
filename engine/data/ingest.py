"""Read an uploaded file into a candidate dataset, before anything is checked or saved.

Tables (CSV, XLSX, JSONL) go through :mod:`engine.readers`. CoNLL files for entity tagging go through
:mod:`engine.data.conll` (the reader evaluation uses too): a token per line, the tag in the last column, a blank line
between sentences, ``-DOCSTART-`` lines ignored. Tags written in IOB1, BIO or IO (only ``I-`` tags) — and BIOES — are
all accepted and converted to BIO.

Nothing here writes anything; :mod:`engine.validate` checks the candidate and :mod:`engine.datasets` saves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.data import guarded, limits, readers
from engine.data.conll import looks_like_conll, parse_conll
from engine.errors import UserError
from engine.i18n import _

FORMAT_CHOICES = ["auto", "csv", "xlsx", "jsonl", "conll"]
ENCODING_CHOICES = ["auto", "utf-8", "utf-8-sig", "gb18030", "cp1252"]
CONLL_EXTENSIONS = {".conll", ".conllu", ".bio", ".iob", ".iob1", ".iob2", ".ner", ".txt"}


@dataclass
class Candidate:
    """What was read from a file: a table of strings, or tagged sentences."""

    file_name: str
    data: bytes
    sha256: str
    format: str  # csv | xlsx | jsonl | conll
    task: str  # text-classification | token-classification
    encoding: str | None = None
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    frame: pd.DataFrame | None = None  # tables: every cell a string
    sentences: list[tuple[list[str], list[str]]] = field(default_factory=list)  # conll: (tokens, BIO tags)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number or index, raw content)
    tag_scheme: str | None = None  # conll: BIO | IOB1 | IO | BIOES, as written in the file
    n_tags_rewritten: int = 0  # conll: tags changed to make valid BIO
    n_long_cells: int = 0  # tables: cells cut to limits.MAX_CELL_CHARS

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns) if self.frame is not None else []

    @property
    def n_input_rows(self) -> int:
        if self.task == "token-classification":
            return len(self.sentences)
        return len(self.frame) if self.frame is not None else 0


# ---------------------------------------------------------------------------------------------------------------


def read_file(
    data: bytes,
    file_name: str,
    format: str | None = "auto",
    encoding: str | None = None,
    sheet: str | None = None,
) -> Candidate:
    """Read an uploaded file. Raises UserError with a plain message when it cannot be read at all."""
    file_name = Path(file_name or "upload").name
    fmt = (format or "auto").lower()
    if fmt not in FORMAT_CHOICES:
        raise UserError(_("'{format}' is not a format Bellwether reads. Choose one of: {choices}.", format=format,
                          choices=", ".join(FORMAT_CHOICES)))
    enc = None if encoding in (None, "", "auto") else readers.ENCODING_NAMES.get(encoding.lower(), encoding)
    limits.check_file_size(len(data), file_name)
    readers.refuse_other_formats(data, file_name)  # a PDF, a Word document ...: what it is and what to do instead
    readers.check_not_empty_or_binary(data, file_name)
    sha = hashlib.sha256(data).hexdigest()
    text = used = None
    if fmt == "auto":
        fmt = readers.guess_format(file_name, data)
        if fmt == "csv" and Path(file_name).suffix.lower() in CONLL_EXTENSIONS:
            text, used = readers.decode(data, enc, file_name)
            if looks_like_conll(text.lstrip("\ufeff")):
                fmt = "conll"
        if fmt == "rss":
            raise UserError(_(
                "{file_name} looks like a news feed (RSS/Atom), not labelled data. Upload it on the Feeds page, or "
                "upload a CSV, XLSX, JSONL or CoNLL file here.", file_name=file_name))
    if fmt == "conll":
        if text is None:  # not decoded yet to sniff the format
            text, used = readers.decode(data, enc, file_name)
        sentences, bad, scheme, rewritten = parse_conll(text.lstrip("\ufeff"), file_name)
        return Candidate(
            file_name=file_name, data=data, sha256=sha, format="conll", task="token-classification", encoding=used,
            sentences=sentences, bad_rows=bad, tag_scheme=scheme, n_tags_rewritten=rewritten,
        )
    table = readers.read_table(data, file_name, fmt, enc, sheet)
    frame = table.frame
    frame.columns = _unique_columns(list(frame.columns))
    return Candidate(
        file_name=file_name, data=data, sha256=sha, format=table.format, task="text-classification",
        encoding=table.encoding, sheet=table.sheet, sheets=list(table.sheets), frame=frame, bad_rows=list(table.bad_rows),
        n_long_cells=table.n_long_cells,
    )


def _unique_columns(columns: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(columns):
        name = name or f"column {i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        out.append(name)
    return out


def read_file_in_child(data: bytes, file_name: str, **kwargs) -> Candidate:
    """:func:`read_file` as the guarded child runs it: the bytes are not sent back (the caller has them)."""
    candidate = read_file(data, file_name, **kwargs)
    candidate.data = b""
    return candidate


def read_file_guarded(data: bytes, file_name: str, format: str | None = "auto", encoding: str | None = None,
                      sheet: str | None = None) -> Candidate:
    """:func:`read_file` in a child process with a memory cap (the dashboard's path: no upload can exhaust the
    dashboard's memory). Same result, same plain errors."""
    candidate = guarded.call("engine.data.ingest:read_file_in_child", data, file_name, format=format,
                             encoding=encoding, sheet=sheet)
    candidate.data = data
    return candidate
