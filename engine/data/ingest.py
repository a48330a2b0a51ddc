"""Read an uploaded file into a candidate dataset, before anything is checked or saved.

Tables (CSV, XLSX, JSONL) go through :mod:`engine.readers`. CoNLL files for entity tagging are parsed here: a token
per line, the tag in the last column, a blank line between sentences, ``-DOCSTART-`` lines ignored. Tags written in
IOB1, BIO or IO (only ``I-`` tags) — and BIOES — are all accepted and converted to BIO.

Nothing here writes anything; :mod:`engine.validate` checks the candidate and :mod:`engine.datasets` saves it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.data import readers
from engine.errors import UserError

FORMAT_CHOICES = ["auto", "csv", "xlsx", "jsonl", "conll"]
ENCODING_CHOICES = ["auto", "utf-8", "utf-8-sig", "gb18030", "cp1252"]
CONLL_EXTENSIONS = {".conll", ".conllu", ".bio", ".iob", ".iob1", ".iob2", ".ner", ".txt"}
TAG_RE = re.compile(r"^(O|[BIES]-\S+)$")


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

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns) if self.frame is not None else []

    @property
    def n_input_rows(self) -> int:
        if self.task == "token-classification":
            return len(self.sentences)
        return len(self.frame) if self.frame is not None else 0


# ---------------------------------------------------------------------------------------------------------------
# CoNLL


def looks_like_conll(text: str) -> bool:
    """Most non-blank lines are whitespace-separated columns whose last column is a tag (O, B-X, I-X)."""
    lines = [ln for ln in text.splitlines()[:400] if ln.strip() and not ln.startswith("-DOCSTART-")]
    if len(lines) < 2:
        return False
    tagged = sum(1 for ln in lines if len(ln.split()) >= 2 and TAG_RE.match(ln.split()[-1]))
    return tagged / len(lines) >= 0.9


def detect_scheme(sentences_tags: list[list[str]]) -> str:
    """How the file writes its tags: BIO, IOB1, IO or BIOES."""
    has_b = has_es = i_opens = False
    for tags in sentences_tags:
        prev = "O"
        for tag in tags:
            if tag[:2] in ("E-", "S-"):
                has_es = True
            elif tag.startswith("B-"):
                has_b = True
            elif tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
                i_opens = True  # an I- tag that opens an entity: IOB1 or IO, never valid BIO
            prev = tag
    if has_es:
        return "BIOES"
    if has_b:
        return "IOB1" if i_opens else "BIO"
    return "IO" if i_opens else "BIO"


def to_bio(tags: list[str]) -> list[str]:
    """Convert IOB1 / IO / BIOES / (repair) BIO tags to BIO.

    An ``I-X`` that does not continue an entity of type X opens one (``B-X``); ``S-X`` becomes ``B-X`` and ``E-X``
    becomes ``I-X``. Valid BIO passes through unchanged.
    """
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag == "O":
            new = "O"
        else:
            prefix, kind = tag[0], tag[2:]
            if prefix in ("B", "S"):
                new = "B-" + kind
            elif prev != "O" and prev[2:] == kind:  # I- or E- continuing the same type
                new = "I-" + kind
            else:
                new = "B-" + kind
        out.append(new)
        prev = new
    return out


def parse_conll(text: str, file_name: str) -> tuple[list[tuple[list[str], list[str]]], list[tuple[int, str]], str, int]:
    """Sentences as (tokens, BIO tags), the lines that could not be read, the scheme found, and tags rewritten.

    A sentence with a line that has no tag, or a tag that is not O / B-X / I-X, is left out whole (its tags could
    not be trusted) and the line is reported.
    """
    raw: list[tuple[list[str], list[str]]] = []
    bad: list[tuple[int, str]] = []
    tokens: list[str] = []
    tags: list[str] = []
    broken = False

    def flush():
        nonlocal tokens, tags, broken
        if tokens and not broken:
            raw.append((tokens, tags))
        tokens, tags, broken = [], [], False

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        if stripped.startswith("-DOCSTART-"):
            flush()
            continue
        parts = stripped.split()
        if len(parts) < 2 or not TAG_RE.match(parts[-1]):
            bad.append((number, line[:200]))
            broken = True
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    flush()
    if not raw:
        if bad:
            raise UserError(
                f"{file_name} does not look like a CoNLL file: no line has a token followed by a tag such as O, "
                f"B-ORG or I-PER (line {bad[0][0]}: '{bad[0][1][:60]}'). Put one token per line with its tag in "
                "the last column and a blank line between sentences."
            )
        raise UserError(f"{file_name} has no sentences. Put one token per line with its tag in the last column.")
    scheme = detect_scheme([t for _, t in raw])
    sentences = []
    rewritten = 0
    for toks, tg in raw:
        bio = to_bio(tg)
        rewritten += sum(1 for a, b in zip(tg, bio) if a != b)
        sentences.append((toks, bio))
    return sentences, bad, scheme, rewritten


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
        raise UserError(f"'{format}' is not a format Bellwether reads. Choose one of: {', '.join(FORMAT_CHOICES)}.")
    enc = None if encoding in (None, "", "auto") else readers.ENCODING_NAMES.get(encoding.lower(), encoding)
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
            raise UserError(
                f"{file_name} looks like a news feed (RSS/Atom), not labelled data. Upload it on the Feeds page, or "
                "upload a CSV, XLSX, JSONL or CoNLL file here."
            )
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
