"""The validation report: what is wrong with a candidate dataset and what will happen to it, before anything is saved.

:func:`guess_columns` proposes the text / label / split columns; :func:`build` checks a candidate read by
:mod:`engine.ingest` under a column mapping and returns a :class:`Prepared` dataset: the rows as they will be saved
(cleaned, each with its split) and the :class:`CheckReport` the analyst accepts or cancels. Problems that make the file
unusable (a missing column, a single class, nothing left) raise :class:`UserError` instead.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.data.columns import LABEL_NAMES, SPLIT_NAMES, TEXT_NAMES  # noqa: F401 (the one vocabulary)
from engine.data.columns import by_name as _by_name
from engine.data.wording import english, said, shown
from engine.errors import UserError
from engine.i18n import N_, _, number
from engine.text import strip_invisible
from engine.data import language
from engine.data import limits
from engine.data import readers
from engine.data.ingest import Candidate
from engine.models import catalog

SPLITS = ("train", "validation", "test")
SPLIT_WORDS = {"train": N_("train"), "validation": N_("validation"), "test": N_("test")}  # shown with _()
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 42
FEW_EXAMPLES = 5  # a class with fewer rows than this is reported
LABEL_SUSPECT = "label_suspect"  # the problem code of a label column that does not look like labels
MANY_CLASSES = 10  # from this many classes, fewer than FEW_EXAMPLES rows per class on average is too many classes
SMALL_CODES = 10  # integer labels from -SMALL_CODES to SMALL_CODES (at most that many) are class codes, not numbers
_DATE = re.compile(
    r"^\s*(\d{4}[-/]\d{1,2}([-/]\d{1,2})?|\d{4}\.\d{1,2}\.\d{1,2}|\d{4}年\d{1,2}月|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}:\d{2}"
    r"|\d{1,2}\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{2,4}"
    r"|(mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+\d{1,2}\s+[a-z]{3}"
    r"|(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4})",
    re.IGNORECASE,
)
N_EXAMPLES = 3  # examples shown per problem

SPLIT_VALUES = {
    "train": "train", "training": "train", "trn": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "development": "validation", "eval": "validation", "evaluation": "validation",
    "test": "test", "testing": "test", "tst": "test", "holdout": "test",
}


@dataclass
class Problem:
    code: str  # empty_text | missing_label | label_variants | conflicting_labels | duplicates | few_examples | ...
    message: str  # plain words: what is wrong and what will happen
    count: int  # rows (or sentences, lines, classes) affected
    action: str  # dropped | merged | kept | confirm (nothing is saved until the analyst confirms or changes a choice)
    examples: list[str] = field(default_factory=list)
    said: dict | None = None  # the message as a said sentence (engine.data.wording): shown in the reader's language
    examples_said: list = field(default_factory=list)  # the examples likewise, when they hold words

    def __post_init__(self):
        # Built as said(N_("..."), ...): kept as said, and in English as ``message`` (what is stored and printed as JSON).
        if isinstance(self.message, dict):
            self.said, self.message = self.message, english(self.message)
        if any(isinstance(e, dict) for e in self.examples):
            self.examples_said, self.examples = list(self.examples), [english(e) for e in self.examples]

    def text(self) -> str:
        """The message in the reader's language."""
        return shown(self.said or self.message)

    def example_texts(self) -> list[str]:
        if self.examples_said and len(self.examples_said) == len(self.examples):
            return [shown(e) for e in self.examples_said]
        return list(self.examples)


ACTION_WORDS = {"dropped": N_("Will be dropped"), "merged": N_("Will be merged"), "kept": N_("Kept"),
                "confirm": N_("Needs your choice")}  # what happens to a problem's rows, shown with _()
ACTION_CODES = {"dropped": N_("dropped"), "merged": N_("merged"), "kept": N_("kept"), "confirm": N_("confirm")}


@dataclass
class CheckReport:
    file_name: str
    format: str
    encoding: str | None
    sheet: str | None
    task: str
    mapping: dict[str, Any]
    n_input_rows: int
    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things done that are not problems (tag scheme converted, ...)
    notes_said: list = field(default_factory=list)  # the notes as said sentences, shown in the reader's language
    labels: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # method, ratios, seed, note
    length: dict[str, Any] = field(default_factory=dict)  # max_length, n_truncated, share_truncated
    language: dict[str, Any] = field(default_factory=dict)  # engine.data.language.detect of the texts kept

    @property
    def has_problems(self) -> bool:
        return bool(self.problems)

    @property
    def needs_label_choice(self) -> bool:
        """The label column looks like dates, numbers or free text, or has too many classes: saving needs the
        analyst to confirm it is the label (or to choose another column)."""
        return self.problem(LABEL_SUSPECT) is not None

    def problem(self, code: str) -> Problem | None:
        return next((p for p in self.problems if p.code == code), None)

    def to_dict(self) -> dict:
        return asdict(self)

    def unit(self) -> str:
        return "sentences" if self.task == "token-classification" else "rows"

    def note(self, message) -> None:
        """Add a note (a said sentence, or plain English) to the report."""
        self.notes_said.append(message)
        self.notes.append(english(message))

    def note_texts(self) -> list[str]:
        """The notes in the reader's language."""
        if len(self.notes_said) == len(self.notes):
            return [shown(n) for n in self.notes_said]
        return [shown(n) for n in self.notes]

    def split_text(self) -> str:
        """How the rows were split, in the reader's language."""
        return shown(self.split.get("said") or self.split.get("description", ""))

    def length_text(self) -> str:
        """What the length check found, in the reader's language."""
        return shown(self.length.get("said") or self.length.get("description", "")) if self.length else ""

    def summary_lines(self) -> list[str]:
        """The report in plain words, a line each, in the reader's language (the CLI prints these)."""
        tagging = self.task == "token-classification"
        n_read = number(self.n_input_rows)
        if self.sheet:
            fmt = _("{format}, {encoding}, sheet '{sheet}'", format=self.format.upper(), encoding=self.encoding,
                    sheet=self.sheet) if self.encoding else _("{format}, sheet '{sheet}'", format=self.format.upper(),
                                                              sheet=self.sheet)
        else:
            fmt = self.format.upper() + (f", {self.encoding}" if self.encoding else "")
        if tagging:
            lines = [_("File: {file_name} ({format}), {n} sentences read.", file_name=self.file_name, format=fmt,
                       n=n_read)]
        else:
            lines = [_("File: {file_name} ({format}), {n} rows read.", file_name=self.file_name, format=fmt, n=n_read)]
        lines.extend(self._task_lines())
        lines.append(_("Split: {description}", description=self.split_text()))
        if self.language:
            lines.append(_("Language: {language}.", language=language.describe(self.language)))
        lines.extend(self.note_texts())
        if self.problems:
            lines.append(_("Problems found ({n}):", n=len(self.problems)))
            for p in self.problems:
                action = _(ACTION_CODES[p.action]) if p.action in ACTION_CODES else p.action
                lines.append(f"  - [{action}] {p.text()}")
                for example in p.example_texts():
                    lines.append("      " + _("e.g. {example}", example=example))
        else:
            lines.append(_("No problems found."))
        if self.length:
            lines.append(self.length_text())
        lines.extend(self._saved_lines())
        return lines

    def _task_lines(self) -> list[str]:
        if self.task == "token-classification":
            return [_("Task: entity tagging (tags stored as BIO).")]
        return [_("Columns: text = '{text}', label = '{label}'.", text=self.mapping.get("text"),
                  label=self.mapping.get("label"))]

    def _saved_lines(self) -> list[str]:
        tagging = self.task == "token-classification"
        n_saved = number(self.n_rows)
        if tagging:
            lines = [_("To be saved: {n} sentences, {labels} tags.", n=n_saved, labels=len(self.labels))]
        else:
            lines = [_("To be saved: {n} rows, {labels} labels.", n=n_saved, labels=len(self.labels))]
        for split in SPLITS:
            counts = self.counts.get(split, {})
            total = number(sum(counts.values()))
            detail = ", ".join(f"{label} {number(n)}" for label, n in sorted(counts.items()))
            line = (_("{split}: {n} tokens", split=_(SPLIT_WORDS[split]), n=total) if tagging
                    else _("{split}: {n} rows", split=_(SPLIT_WORDS[split]), n=total))
            lines.append("  " + line + (f" ({detail})" if detail else ""))
        return lines

    def to_text(self) -> str:
        return "\n".join(self.summary_lines())


@dataclass
class Prepared:
    report: CheckReport
    rows: list[dict]  # row_id, split, text, label, tokens, tags


# ---------------------------------------------------------------------------------------------------------------
# Column guessing


def guess_columns(candidate_or_columns, frame=None) -> dict[str, str | None]:
    """Guess the text, label and split columns by name, then by content (longest text, fewest distinct values)."""
    if isinstance(candidate_or_columns, Candidate):
        frame = candidate_or_columns.frame
        columns = candidate_or_columns.columns
    else:
        columns = list(candidate_or_columns)
    taken: set[str] = set()
    text = _by_name(columns, TEXT_NAMES, taken)
    if text:
        taken.add(text)
    label = _by_name(columns, LABEL_NAMES, taken)
    if label:
        taken.add(label)
    split = _by_name(columns, SPLIT_NAMES, taken)
    if split and frame is not None and not _looks_like_split(frame[split], share=0.5):
        split = None
    if split is None and frame is not None:  # a column whose values are all train / validation / test
        for col in columns:
            if col not in taken and _looks_like_split(frame[col]):
                split = col
                break
    if split:
        taken.add(split)
    if frame is not None and len(frame):
        sample = frame.head(2000)
        if text is None:
            free = [c for c in columns if c not in taken]
            if free:
                text = max(free, key=lambda c: sample[c].str.len().mean())
                taken.add(text)
        if label is None:
            free = [c for c in columns if c not in taken]
            # a column of dates, numbers or free text is never guessed as the label: the analyst must choose it
            small = [c for c in free if 2 <= sample[c].str.strip().replace("", np.nan).nunique() <= 50
                     and label_concern(sample[c].tolist()) is None]
            if small:
                label = min(small, key=lambda c: sample[c].nunique())
    return {"text": text, "label": label, "split": split}


def _as_number(value: str) -> float | None:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return None


def label_concern(values: list[str], share: float = 0.8) -> str | None:
    """:func:`label_concern_said` in the reader's language."""
    concern = label_concern_said(values, share)
    return shown(concern) if concern else None


def label_concern_said(values: list[str], share: float = 0.8) -> dict | None:
    """Why a column's values do not look like class labels, in words that finish "The column 'X' ...", or None.

    Dates (most values written as a date or a time), numbers (most values numbers, other than a few small whole
    numbers such as 0/1/2 or -1/0/1, which are class codes), free text (values of several words or long), or too many
    classes for the rows (at least MANY_CLASSES, with fewer than FEW_EXAMPLES rows each on average)."""
    values = [str(v).strip() for v in values if str(v).strip()]
    if not values:
        return None
    n = len(values)
    distinct = set(values)
    dates = sum(1 for v in values if _DATE.match(v))
    if dates >= share * n:
        return said(N_("looks like dates or times ({values}), not labels"),
                    values=", ".join(repr(v) for v in sorted(distinct)[:3]))
    numbers = [x for x in (_as_number(v) for v in values) if x is not None]
    if len(numbers) >= share * n:
        codes = all(float(x).is_integer() and abs(x) <= SMALL_CODES for x in numbers) and len(set(numbers)) <= SMALL_CODES
        if not codes:
            return said(N_("holds numbers ({values}), such as prices or counts, not labels"),
                        values=", ".join(repr(v) for v in sorted(distinct)[:3]))
    words = statistics.median(len(v.split()) for v in values)
    chars = statistics.median(len(v) for v in values)
    if words >= 5 or chars > 40:
        return said(N_("looks like free text (values of about {n} words), not labels"), n=int(words))
    if len(distinct) >= MANY_CLASSES and n / len(distinct) < FEW_EXAMPLES:
        return said(N_("has {distinct:,} different values in {n:,} rows: too many classes for so few rows to learn "
                       "each (fewer than {few} rows a class on average)"), distinct=len(distinct), n=n, few=FEW_EXAMPLES)
    return None


def _looks_like_split(series, share: float = 1.0) -> bool:
    """Its values are train / validation / test (or their synonyms), in at least ``share`` of the rows."""
    values = series.head(5000).astype(str).str.strip().str.lower()
    known = values.map(lambda v: SPLIT_VALUES.get(v))
    return bool(len(values)) and known.notna().mean() >= share and (known == "train").any()


# ---------------------------------------------------------------------------------------------------------------
# Length check with the default model's tokenizer


@functools.lru_cache(maxsize=2)
def _tokenizer_and_limit(model: str = "default"):
    from transformers import AutoTokenizer


    base = catalog.resolve(model)
    return AutoTokenizer.from_pretrained(base.source, trust_remote_code=False), base.max_length


def _length_check(texts: list[str] | None, token_lists: list[list[str]] | None, max_length: int | None,
                  model: str = "default") -> tuple[dict, Problem | None, list[int]]:
    tokenizer, limit = _tokenizer_and_limit(model)
    limit = int(max_length or limit)
    lengths: list[int] = []
    items = texts if texts is not None else token_lists
    # Tokenize only what can be used: the first limit x 32 characters of a text (a token covers at least one
    # character, so a longer text is over the limit anyway) or the first limit + 1 words of a sentence. A 50 MB text
    # costs what a 16 KB one does.
    budget = limits.TOKENIZE_CHARS_PER_TOKEN * limit
    cut = {i for i, item in enumerate(items) if len(item) > (budget if texts is not None else limit + 1)}
    if cut:
        items = [item[:budget] if texts is not None else item[: limit + 1] for item in items]
    for start in range(0, len(items), 1000):
        chunk = items[start : start + 1000]
        if texts is not None:
            enc = tokenizer(chunk, add_special_tokens=True, truncation=False, verbose=False)
        else:
            enc = tokenizer(chunk, is_split_into_words=True, add_special_tokens=True, truncation=False, verbose=False)
        lengths.extend(len(ids) for ids in enc["input_ids"])
    lengths = [max(n, limit + 1) if i in cut else n for i, n in enumerate(lengths)]
    long = [i for i, n in enumerate(lengths) if n > limit]
    share = len(long) / len(lengths) if lengths else 0.0
    values = dict(share=f"{share:.1%}", n=len(long), total=len(lengths), limit=limit,
                  longest=max(lengths) if lengths else 0)
    if texts is None:
        description = said(N_("Length: {share} of sentences ({n:,} of {total:,}) are longer than the model's maximum "
                              "of {limit} tokens and would be truncated (longest: {longest} tokens)."), **values)
    else:
        description = said(N_("Length: {share} of texts ({n:,} of {total:,}) are longer than the model's maximum of "
                              "{limit} tokens and would be truncated (longest: {longest} tokens)."), **values)
    info = {
        "max_length": limit,
        "n_truncated": len(long),
        "share_truncated": share,
        "longest": max(lengths) if lengths else 0,
        "description": english(description),
        "said": description,
    }
    problem = None
    if long:
        problem = Problem(
            code="too_long",
            message=said(N_("{n:,} texts ({share}) are longer than the model's maximum of {limit} tokens. They will "
                            "be kept and truncated to the first {limit} tokens when training.")
                         if texts is not None else
                         N_("{n:,} sentences ({share}) are longer than the model's maximum of {limit} tokens. They "
                            "will be kept and truncated to the first {limit} tokens when training."),
                         n=len(long), share=f"{share:.1%}", limit=limit),
            count=len(long),
            action="kept",
        )
    return info, problem, long


# ---------------------------------------------------------------------------------------------------------------
# Splits


def normalise_ratios(ratios) -> tuple[float, float, float]:
    if ratios is None:
        return DEFAULT_RATIOS
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise UserError(_("The split ratios must be three numbers for train, validation and test, such as 80/10/10.")
                        ) from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise UserError(_("The split ratios must be three numbers for train, validation and test, such as 80/10/10."))
    total = sum(values)
    if abs(total - 1) > 1e-6 and abs(total - 100) > 1e-3:
        raise UserError(_("The split ratios add up to {total}; they must add up to 100 (or 1), such as 80/10/10.",
                          total=f"{total:g}"))
    values = [v / total for v in values]
    if values[0] <= 0:
        raise UserError(_("The train share must be above zero: the model needs rows to learn from."))
    return tuple(values)  # type: ignore[return-value]


def _group_rare(y: np.ndarray, share: float) -> np.ndarray | None:
    """Labels too small to spread over both sides are folded into one stratum (or into the largest label)."""
    counts = Counter(y.tolist())
    need = max(2, int(np.ceil(2 / max(min(share, 1 - share), 1e-9))))
    rare = {label for label, c in counts.items() if c < need}
    if not rare or len(rare) == len(counts):
        return None
    bucket = "\x00rare" if sum(counts[label] for label in rare) >= 2 else max(counts, key=counts.get)
    return np.array([bucket if label in rare else label for label in y.tolist()], dtype=object)


def _two_way(idx: np.ndarray, y: np.ndarray | None, share: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Split ``idx`` into (1 - share, share): stratified by ``y`` (level 0), with rare labels grouped (1), at random
    (2); level 3 when there are too few rows to split at all (everything stays on the first side)."""
    from sklearn.model_selection import train_test_split

    if share <= 0:
        return idx, idx[:0], 0
    if share >= 1:
        return idx[:0], idx, 0
    strata = [(0, y)] if y is not None else []
    if y is not None:
        grouped = _group_rare(y, share)
        if grouped is not None:
            strata.append((1, grouped))
    strata.append((2, None))
    for level, key in strata:
        try:
            a, b = train_test_split(idx, test_size=share, random_state=seed, shuffle=True, stratify=key)
            return a, b, level
        except ValueError:
            continue
    return idx, idx[:0], 3


def assign_splits(labels: list[str], ratios, seed: int = DEFAULT_SEED, stratify: bool = True) -> tuple[list[str], dict]:
    """A split per row: stratified by label where possible, with a fixed seed. Falls back, and says so, when a label
    is too small to spread over the splits (labels that small are grouped together; failing that, a random split)."""
    r_train, r_val, r_test = normalise_ratios(ratios)
    n = len(labels)
    y_all = np.array(labels, dtype=object) if stratify else None
    idx = np.arange(n)
    train, rest, level1 = _two_way(idx, y_all, r_val + r_test, seed)
    share = r_test / (r_val + r_test) if (r_val + r_test) > 0 else 0.0
    pos = {int(i): k for k, i in enumerate(idx)}
    rest_y = None if y_all is None else y_all[[pos[int(i)] for i in rest]]
    val, test, level2 = _two_way(rest, rest_y, share, seed)
    level = max(level1, level2 if len(rest) else 0)
    words = {
        0: N_("stratified by label") if stratify else N_("random"),
        1: N_("stratified by label, with the labels too small to spread over three splits grouped together"),
        2: N_("random (a label is too small to stratify)") if stratify else N_("random"),
        3: N_("as far as the few rows allow (too few rows to fill every split)"),
    }[level]
    method = {0: "stratified" if stratify else "random", 1: "stratified-grouped", 2: "random", 3: "partial"}[level]
    out = [""] * n
    for name, part in (("train", train), ("validation", val), ("test", test)):
        for i in part:
            out[int(i)] = name
    pct = "/".join(f"{round(r * 100):g}" for r in (r_train, r_val, r_test))
    description = said(N_("made by Bellwether: {ratios} (train/validation/test), {how}, seed {seed}."), ratios=pct,
                       how=said(words), seed=seed)
    info = {
        "method": method,
        "ratios": [r_train, r_val, r_test],
        "seed": seed,
        "description": english(description),
        "said": description,
    }
    return out, info


# ---------------------------------------------------------------------------------------------------------------
# Building the report


def _n(count: int, singular: str, plural: str) -> str:
    """'1 row has' / '3 rows have'."""
    return f"{count:,} {singular if count == 1 else plural}"


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _sheets_hint(candidate: Candidate) -> str:
    others = [s for s in (candidate.sheets or []) if s != candidate.sheet]
    if not others:
        return ""
    return " " + _("These are the columns of the sheet '{sheet}'; the workbook also has: {others}.",
                   sheet=candidate.sheet, others=", ".join(others))


ROLE_WORDS = {"text": N_("text"), "label": N_("label"), "split": N_("split"), "prompt": N_("prompt"),
              "response": N_("response"), "messages": N_("messages")}  # a column's role, shown with _()


def _resolve_column(candidate: Candidate, name: str | None, role: str, required: bool) -> str | None:
    role_words = _(ROLE_WORDS[role]) if role in ROLE_WORDS else role
    if name in (None, "", "(none)"):
        if required:
            raise UserError(_(
                "Bellwether could not tell which column holds the {role}. The file's columns are: "
                "{columns}. Choose the {role} column.", role=role_words, columns=", ".join(candidate.columns))
                + _sheets_hint(candidate))
        return None
    if name not in candidate.columns:
        raise UserError(_(
            "{file_name} has no column '{name}' for the {role}. Its columns are: "
            "{columns}. Choose one of these.", file_name=candidate.file_name, name=name, role=role_words,
            columns=", ".join(candidate.columns)) + _sheets_hint(candidate))
    return name


def build(
    candidate: Candidate,
    mapping: dict | None = None,
    ratios=DEFAULT_RATIOS,
    seed: int = DEFAULT_SEED,
    max_length: int | None = None,
) -> Prepared:
    """Check a candidate under a column mapping and prepare the rows to save. Raises UserError when unusable."""
    if candidate.task == "token-classification":
        return _build_tagging(candidate, ratios, seed, max_length)
    return _build_text(candidate, mapping or {}, ratios, seed, max_length)


def _bad_rows_problem(candidate: Candidate, unit: str = "rows") -> Problem | None:
    if not candidate.bad_rows:
        return None
    if candidate.format == "conll":
        message = N_("{n:,} lines could not be read (wrong number of fields or no tag). The sentences they belong to "
                     "will be dropped.")
    else:
        message = N_("{n:,} rows could not be read (wrong number of fields or no tag). They will be dropped.")
    return Problem(
        code="broken_rows",
        message=said(message, n=len(candidate.bad_rows)),
        count=len(candidate.bad_rows),
        action="dropped",
        examples=[said(N_("line {line}: {content}"), line=n, content=_clip(raw))
                  for n, raw in candidate.bad_rows[:N_EXAMPLES]],
    )


FIRST_LINE = 2  # a data row's number as the analyst sees it: the header is line/row 1


def _drop_empty_and_unlabelled(report, texts: list[str], raw_labels: list[str], alive: list[bool], text_col: str,
                               label_col: str) -> None:
    first_line = FIRST_LINE
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        report.problems.append(Problem(
            code="empty_text",
            message=said(N_("{n:,} row has an empty or blank text in '{column}'. They will be dropped."),
                         N_("{n:,} rows have an empty or blank text in '{column}'. They will be dropped."),
                         n=len(empty), column=text_col),
            count=len(empty), action="dropped",
            examples=[said(N_("row {row}"), row=i + first_line) for i in empty[:N_EXAMPLES]],
        ))
        for i in empty:
            alive[i] = False
    missing = [i for i, v in enumerate(raw_labels) if alive[i] and not v.strip()]
    if missing:
        report.problems.append(Problem(
            code="missing_label",
            message=said(N_("{n:,} row has no label in '{column}'. They will be dropped."),
                         N_("{n:,} rows have no label in '{column}'. They will be dropped."),
                         n=len(missing), column=label_col),
            count=len(missing), action="dropped",
            examples=[said(N_("row {row}: {content}"), row=i + first_line, content=_clip(texts[i]))
                      for i in missing[:N_EXAMPLES]],
        ))
        for i in missing:
            alive[i] = False



def _merge_label_spellings(report, raw_labels: list[str], alive: list[bool]) -> list[str]:
    """Label variants that differ only in case or spaces: merged into the most frequent spelling."""
    raw_spellings: dict[str, Counter] = defaultdict(Counter)
    for i, v in enumerate(raw_labels):
        if alive[i]:
            raw_spellings[" ".join(v.split()).casefold()][v] += 1
    canonical: dict[str, str] = {}
    merged_rows = 0
    examples = []
    for key, raws in raw_spellings.items():
        forms = Counter()
        for raw, c in raws.items():
            forms[" ".join(raw.split())] += c
        best = max(forms, key=lambda f: (forms[f], -list(forms).index(f)))
        canonical[key] = best
        if len(raws) > 1:
            changed = sum(c for raw, c in raws.items() if raw != best)
            merged_rows += changed
            examples.append(" + ".join(f"'{raw}' ({c:,})" for raw, c in raws.most_common()) + f" -> '{best}'")
    if examples:
        report.problems.append(Problem(
            code="label_variants",
            message=said(N_("{n:,} label is written in more than one way (differing only in case or spaces); "
                            "{rows:,} rows will be merged into the most common spelling."),
                         N_("{n:,} labels are written in more than one way (differing only in case or spaces); "
                            "{rows:,} rows will be merged into the most common spelling."),
                         n=len(examples), rows=merged_rows),
            count=merged_rows, action="merged", examples=examples[:N_EXAMPLES],
        ))
    return [canonical.get(" ".join(v.split()).casefold(), v) if alive[i] else "" for i, v in enumerate(raw_labels)]



def _read_split_column(report, splits_raw: list[str], alive: list[bool], split_col: str) -> list[str | None]:
    """Each row's split from the split column; rows with another value are dropped (all of them: not a split column)."""
    first_line = FIRST_LINE
    row_split: list[str | None] = [None] * len(splits_raw)
    unknown = []
    for i, v in enumerate(splits_raw):
        if not alive[i]:
            continue
        value = SPLIT_VALUES.get(v.lower())
        if value is None:
            unknown.append(i)
        row_split[i] = value
    if unknown and len(unknown) == sum(alive):
        values = sorted({splits_raw[i] for i in unknown})[:5]
        raise UserError(_(
            "The column '{column}' does not hold splits: its values ({values}) are "
            "not train, validation or test. Choose another split column, or none to let Bellwether split.",
            column=split_col, values=", ".join(repr(v) for v in values)))
    if unknown:
        report.problems.append(Problem(
            code="unknown_split",
            message=said(N_("{n:,} row has a split in '{column}' that is not train, validation or test. "
                            "They will be dropped."),
                         N_("{n:,} rows have a split in '{column}' that is not train, validation or test. "
                            "They will be dropped."), n=len(unknown), column=split_col),
            count=len(unknown), action="dropped",
            examples=[said(N_("row {row}: '{content}'"), row=i + first_line, content=splits_raw[i])
                      for i in unknown[:N_EXAMPLES]],
        ))
        for i in unknown:
            alive[i] = False
    return row_split


def _drop_conflicts_merge_duplicates(report, texts: list[str], labels: list[str], alive: list[bool]) -> None:
    # The same text with different labels: dropped, all copies (which label is right cannot be told).
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        if alive[i]:
            by_text[t].append(i)
    conflicts = [(t, idx) for t, idx in by_text.items() if len({labels[i] for i in idx}) > 1]
    if conflicts:
        n_conf = sum(len(idx) for _skip, idx in conflicts)
        report.problems.append(Problem(
            code="conflicting_labels",
            message=said(N_("{n:,} text appears with different labels ({rows:,} rows). Which label is right cannot "
                            "be told, so all of these rows will be dropped."),
                         N_("{n:,} texts appear with different labels ({rows:,} rows). Which label is right cannot "
                            "be told, so all of these rows will be dropped."), n=len(conflicts), rows=n_conf),
            count=n_conf, action="dropped",
            examples=[f"'{_clip(t, 60)}': " + " / ".join(sorted({labels[i] for i in idx})) for t, idx in conflicts[:N_EXAMPLES]],
        ))
        for _skip, idx in conflicts:
            for i in idx:
                alive[i] = False
    # Exact duplicates (same text, same label): merged into the first.
    dupes = [(t, idx) for t, idx in by_text.items() if len(idx) > 1 and alive[idx[0]]]
    if dupes:
        n_extra = sum(len(idx) - 1 for _skip, idx in dupes)
        report.problems.append(Problem(
            code="duplicates",
            message=said(N_("{n:,} row repeats a text already in the file with the same label ({texts:,} texts). "
                            "They will be merged: each text is kept once."),
                         N_("{n:,} rows repeat a text already in the file with the same label ({texts:,} texts). "
                            "They will be merged: each text is kept once."), n=n_extra, texts=len(dupes)),
            count=n_extra, action="merged",
            examples=[f"'{_clip(t, 60)}' x{len(idx)}" for t, idx in dupes[:N_EXAMPLES]],
        ))
        for _skip, idx in dupes:
            for i in idx[1:]:
                alive[i] = False



def _check_labels(report, file_name: str, kept_labels: list[str], text_col: str, label_col: str) -> Counter:
    """The labels left: at least two, not one per row (then it is no label column); rare ones reported."""
    if not kept_labels:
        raise UserError(_(
            "No usable rows are left in {file_name}: every row has an empty text or no label. "
            "Check that '{text_col}' holds the text and '{label_col}' the label.", file_name=file_name,
            text_col=text_col, label_col=label_col))
    label_counts = Counter(kept_labels)
    if len(label_counts) < 2:
        only = next(iter(label_counts))
        raise UserError(_(
            "Every usable row has the same label, '{only}'. A model needs at least two labels to learn to tell them "
            "apart: add rows with other labels, or check that '{label_col}' is the label column.", only=only,
            label_col=label_col))
    if concern := label_concern_said(kept_labels):
        report.problems.append(Problem(
            code=LABEL_SUSPECT,
            message=said(N_("The label column '{column}' {concern}. A model trained on it would learn nothing useful. "
                            "Choose the column that holds the label (such as positive / neutral / negative), or "
                            "confirm that '{column}' is the label."), column=label_col, concern=concern),
            count=len(label_counts), action="confirm",
            examples=[said(N_("'{label}': {n:,} row"), N_("'{label}': {n:,} rows"), label=label, n=c)
                      for label, c in label_counts.most_common(N_EXAMPLES)],
        ))
    few = sorted((c, label) for label, c in label_counts.items() if c < FEW_EXAMPLES)
    if few:
        report.problems.append(Problem(
            code="few_examples",
            message=said(N_("{n:,} label has fewer than {few} examples, too few for a model to learn them well. "
                            "They will be kept; consider labelling more."),
                         N_("{n:,} labels have fewer than {few} examples, too few for a model to learn them well. "
                            "They will be kept; consider labelling more."), n=len(few), few=FEW_EXAMPLES),
            count=len(few), action="kept",
            examples=[said(N_("'{label}': {n} rows"), label=label, n=c) for c, label in few[:N_EXAMPLES]],
        ))

    return label_counts


def _language_note(report, texts: list[str]) -> None:
    """The texts' main language on the report, and a note when the default base model does not cover it."""
    report.language = language.detect(texts)
    if warning := language.model_warning_said(catalog.DEFAULT, report.language):
        report.note(said(N_("{warning} The base model is chosen on the Train page."), warning=warning))


def _splits_from_column(report, split_of: list[str | None], split_col: str) -> list[str | None]:
    present = Counter(split_of)
    description = said(N_("from the column '{column}' (train {train:,}, validation {validation:,}, test {test:,})."),
                       column=split_col, **{s: present.get(s, 0) for s in SPLITS})
    report.split = {
        "method": "column", "column": split_col, "ratios": None, "seed": None,
        "description": english(description), "said": description,
    }
    if not present.get("train"):
        raise UserError(_(
            "The split column '{column}' marks no row as train, so there is nothing to learn from. "
            "Mark the training rows as 'train', or choose no split column.", column=split_col))
    for s in ("validation", "test"):
        if not present.get(s):
            report.problems.append(Problem(
                code=f"no_{s}",
                message=said(N_("No row is marked 'validation' in '{column}'. The validation split will be empty.")
                             if s == "validation" else
                             N_("No row is marked 'test' in '{column}'. The test split will be empty."), column=split_col),
                count=0, action="kept",
            ))
    return split_of


def _build_text(candidate: Candidate, mapping: dict, ratios, seed: int, max_length: int | None) -> Prepared:
    """A labelled text file's checks, in the order the report lists them: columns, unreadable rows, empty texts and
    missing labels, label spellings, the split column, conflicting labels and duplicates, the labels left, text
    lengths, then the splits. Each phase drops rows by clearing ``alive`` and adds its Problem to the report."""
    frame = candidate.frame
    guessed = guess_columns(candidate)
    text_col = _resolve_column(candidate, mapping.get("text", guessed["text"]), "text", True)
    label_col = _resolve_column(candidate, mapping.get("label", guessed["label"]), "label", True)
    split_col = _resolve_column(candidate, mapping.get("split", guessed["split"]), "split", False)
    if text_col == label_col:
        raise UserError(_("The text and the label cannot both be the column '{column}'. Choose two different columns.",
                          column=text_col))
    if split_col in (text_col, label_col):
        raise UserError(_("The split column '{column}' is already used for the text or the label. Choose another, or "
                          "none.", column=split_col))
    ratios = normalise_ratios(ratios)
    report = CheckReport(
        file_name=candidate.file_name, format=candidate.format, encoding=candidate.encoding, sheet=candidate.sheet,
        task=candidate.task, mapping={"text": text_col, "label": label_col, "split": split_col, "sheet": candidate.sheet},
        n_input_rows=len(frame),
    )
    if candidate.n_long_cells:
        report.note(limits.long_cells_said(candidate.n_long_cells))
    if note := readers.other_sheets_note(candidate.sheet, candidate.sheets):
        report.note(note)
    problem = _bad_rows_problem(candidate)
    if problem:
        report.problems.append(problem)

    texts = [strip_invisible(str(t)).strip() for t in frame[text_col].tolist()]
    raw_labels = [strip_invisible(str(v)) for v in frame[label_col].tolist()]  # no control, bidi, zero-width
    splits_raw = [str(v).strip() for v in frame[split_col].tolist()] if split_col else None
    alive = [True] * len(frame)

    _drop_empty_and_unlabelled(report, texts, raw_labels, alive, text_col, label_col)
    labels = _merge_label_spellings(report, raw_labels, alive)
    row_split = _read_split_column(report, splits_raw, alive, split_col) if split_col else [None] * len(frame)
    _drop_conflicts_merge_duplicates(report, texts, labels, alive)
    keep = [i for i in range(len(frame)) if alive[i]]
    label_counts = _check_labels(report, candidate.file_name, [labels[i] for i in keep], text_col, label_col)

    kept_texts = [texts[i] for i in keep]
    _language_note(report, kept_texts)
    report.length, problem, long = _length_check(kept_texts, None, max_length)
    if problem:
        problem.examples = [f"'{_clip(kept_texts[j], 60)}'" for j in long[:N_EXAMPLES]]
        report.problems.append(problem)

    if split_col:
        split_of = _splits_from_column(report, [row_split[i] for i in keep], split_col)
    else:
        split_of, report.split = assign_splits([labels[i] for i in keep], ratios, seed)

    rows = []
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    for row_id, (i, split) in enumerate(zip(keep, split_of), start=1):
        rows.append({"row_id": row_id, "split": split, "text": texts[i], "label": labels[i], "tokens": None, "tags": None})
        counts[split][labels[i]] += 1
    report.n_rows = len(rows)
    report.labels = sorted(label_counts)
    report.counts = {s: dict(sorted(counts[s].items())) for s in SPLITS}
    return Prepared(report=report, rows=rows)


def _build_tagging(candidate: Candidate, ratios, seed: int, max_length: int | None) -> Prepared:
    ratios = normalise_ratios(ratios)
    report = CheckReport(
        file_name=candidate.file_name, format=candidate.format, encoding=candidate.encoding, sheet=None,
        task=candidate.task, mapping={"text": "tokens", "label": "tags (last column)", "split": None, "sheet": None,
                                      "tag_scheme": candidate.tag_scheme},
        n_input_rows=len(candidate.sentences),
    )
    if candidate.tag_scheme and candidate.tag_scheme != "BIO":
        report.note(said(
            N_("Tags are written in {scheme}; {n:,} tags were rewritten so that every entity starts with B- (stored as "
               "BIO)."), scheme=candidate.tag_scheme, n=candidate.n_tags_rewritten))
    problem = _bad_rows_problem(candidate)
    if problem:
        report.problems.append(problem)
    sentences = candidate.sentences
    alive = [True] * len(sentences)
    by_tokens: dict[tuple, list[int]] = defaultdict(list)
    for i, (tokens, _tags) in enumerate(sentences):
        by_tokens[tuple(tokens)].append(i)
    conflicts = [(k, idx) for k, idx in by_tokens.items() if len({tuple(sentences[i][1]) for i in idx}) > 1]
    if conflicts:
        n_conf = sum(len(idx) for _skip, idx in conflicts)
        report.problems.append(Problem(
            code="conflicting_labels",
            message=said(N_("{n:,} sentence appears more than once with different tags ({copies:,} copies). Which "
                            "tags are right cannot be told, so all of these copies will be dropped."),
                         N_("{n:,} sentences appear more than once with different tags ({copies:,} copies). Which "
                            "tags are right cannot be told, so all of these copies will be dropped."),
                         n=len(conflicts), copies=n_conf),
            count=n_conf, action="dropped", examples=[f"'{_clip(' '.join(k), 60)}'" for k, _skip in conflicts[:N_EXAMPLES]],
        ))
        for _skip, idx in conflicts:
            for i in idx:
                alive[i] = False
    dupes = [(k, idx) for k, idx in by_tokens.items() if len(idx) > 1 and alive[idx[0]]]
    if dupes:
        n_extra = sum(len(idx) - 1 for _skip, idx in dupes)
        report.problems.append(Problem(
            code="duplicates",
            message=said(N_("{n:,} sentence repeats one already in the file with the same tags ({sentences:,} "
                            "sentences). They will be merged: each sentence is kept once."),
                         N_("{n:,} sentences repeat one already in the file with the same tags ({sentences:,} "
                            "sentences). They will be merged: each sentence is kept once."),
                         n=n_extra, sentences=len(dupes)),
            count=n_extra, action="merged", examples=[f"'{_clip(' '.join(k), 60)}' x{len(idx)}" for k, idx in dupes[:N_EXAMPLES]],
        ))
        for _skip, idx in dupes:
            for i in idx[1:]:
                alive[i] = False
    keep = [i for i in range(len(sentences)) if alive[i]]
    if not keep:
        raise UserError(_("No usable sentences are left in {file_name}.", file_name=candidate.file_name))
    entity_counts = Counter(t[2:] for i in keep for t in sentences[i][1] if t.startswith("B-"))
    if not entity_counts:
        raise UserError(_(
            "{file_name} has no entities: every tag is O. Tag the entities (B-ORG, I-ORG, ...) before "
            "uploading, or check that the tag is in the last column.", file_name=candidate.file_name))
    few = sorted((c, kind) for kind, c in entity_counts.items() if c < FEW_EXAMPLES)
    if few:
        report.problems.append(Problem(
            code="few_examples",
            message=said(N_("{n:,} entity type has fewer than {few} examples, too few for a model to learn them "
                            "well. They will be kept; consider tagging more."),
                         N_("{n:,} entity types have fewer than {few} examples, too few for a model to learn them "
                            "well. They will be kept; consider tagging more."), n=len(few), few=FEW_EXAMPLES),
            count=len(few), action="kept",
            examples=[said(N_("'{kind}': {n} entities"), kind=kind, n=c) for c, kind in few[:N_EXAMPLES]],
        ))
    token_lists = [sentences[i][0] for i in keep]
    _language_note(report, [" ".join(tokens) for tokens in token_lists])
    report.length, problem, long = _length_check(None, token_lists, max_length)
    if problem:
        problem.examples = [f"'{_clip(' '.join(token_lists[j]), 60)}'" for j in long[:N_EXAMPLES]]
        report.problems.append(problem)
    # Sentences are split at random with the fixed seed (a sentence has many tags, so there is no label to stratify on).
    split_of, report.split = assign_splits(["s"] * len(keep), ratios, seed, stratify=False)
    report.split["said"]["values"]["how"] = said(N_("random by sentence"))
    report.split["description"] = english(report.split["said"])
    rows = []
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    tags_seen: set[str] = set()
    for row_id, (i, split) in enumerate(zip(keep, split_of), start=1):
        tokens, tags = sentences[i]
        rows.append({"row_id": row_id, "split": split, "text": " ".join(tokens), "label": None,
                     "tokens": list(tokens), "tags": list(tags)})
        counts[split].update(tags)
        tags_seen.update(tags)
    report.n_rows = len(rows)
    kinds = {t[2:] for t in tags_seen if t != "O"}
    report.labels = sorted({"O"} | {f"{p}-{k}" for k in kinds for p in ("B", "I")})  # the full BIO set
    report.counts = {s: dict(sorted(counts[s].items())) for s in SPLITS}
    return Prepared(report=report, rows=rows)
