"""The one CoNLL reader, for dataset import (:mod:`engine.data.ingest`) and evaluation on a file
(:func:`engine.reports.reporting.evaluate_file`).

A token per line, the tag in the last column, a blank line between sentences, ``-DOCSTART-`` lines ignored. Tags
written in IOB1, BIO or IO (only ``I-`` tags) — and BIOES — are all accepted and converted to BIO, the same way for
every file, so a file evaluated on a model is scored with the tags the model was trained on when that file (or one
tagged like it) was imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.data import guarded, readers
from engine.errors import UserError
from engine.i18n import _

TAG_RE = re.compile(r"^(O|[BIES]-\S+)$")


@dataclass
class ConllFile:
    """A decoded, parsed CoNLL file."""

    sentences: list[tuple[list[str], list[str]]]  # (tokens, BIO tags)
    bad_rows: list[tuple[int, str]]  # (line number, raw line) of lines that could not be read
    tag_scheme: str  # BIO | IOB1 | IO | BIOES, as written in the file
    n_tags_rewritten: int  # tags changed to make valid BIO
    encoding: str


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
            raise UserError(_(
                "{file_name} does not look like a CoNLL file: no line has a token followed by a tag such as O, "
                "B-ORG or I-PER (line {line}: '{content}'). Put one token per line with its tag in "
                "the last column and a blank line between sentences.", file_name=file_name, line=bad[0][0],
                content=bad[0][1][:60]))
        raise UserError(_("{file_name} has no sentences. Put one token per line with its tag in the last column.",
                          file_name=file_name))
    scheme = detect_scheme([t for _skip, t in raw])
    sentences = []
    rewritten = 0
    for toks, tg in raw:
        bio = to_bio(tg)
        rewritten += sum(1 for a, b in zip(tg, bio) if a != b)
        sentences.append((toks, bio))
    return sentences, bad, scheme, rewritten


def read_conll(data: bytes, file_name: str, encoding: str | None = None) -> ConllFile:
    """Check, decode (the encoding given, or detected) and parse a CoNLL file's bytes."""
    readers.check_not_empty_or_binary(data, file_name)
    text, used = readers.decode(data, encoding, file_name)
    sentences, bad, scheme, rewritten = parse_conll(text.lstrip("\ufeff"), file_name)
    return ConllFile(sentences=sentences, bad_rows=bad, tag_scheme=scheme, n_tags_rewritten=rewritten, encoding=used)


def read_conll_guarded(data: bytes, file_name: str, encoding: str | None = None) -> ConllFile:
    """:func:`read_conll` in a memory-capped child process (engine.data.guarded), as the dashboard reads uploads."""
    return guarded.call("engine.data.conll:read_conll", data, file_name, encoding=encoding)
