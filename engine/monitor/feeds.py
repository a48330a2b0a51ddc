"""News feeds: import CSV / XLSX / JSONL exports and RSS or Atom files into a named feed, with topics and search.

An import reads the file (tables through :mod:`engine.readers`, XML through feedparser), maps its columns (guessed,
overridable), parses the publication times (many real-world formats, a feed-level time zone), sets aside blank rows,
rejects rows without a readable time or a title (with examples), removes duplicates (same URL, else same normalised
title on the same day; within the file and against the feed), and stores the new articles, their topics (from a
mapped column and the feed's topic rules) and an import report, all in one transaction.

Everything that touches every row is vectorised (pandas string methods, times parsed once per distinct string), so
a million-row export imports in well under a minute.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from engine import access, db
from engine.data import guarded, limits, readers
from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine.text import INVISIBLE, clean_name

FORMAT_CHOICES = ["auto", "csv", "xlsx", "jsonl", "rss"]
FIELDS = ["time", "title", "body", "source", "url", "topic"]
FIELD_NAMES = {  # shown translated: _(FIELD_NAMES[field])
    "time": N_("published time"),
    "title": N_("title or headline"),
    "body": N_("body or description"),
    "source": N_("source"),
    "url": N_("URL"),
    "topic": N_("topic or ticker"),
}

# Column names recognised for each field, in order of preference (compared lower-case, without spaces/_/-).
GUESSES: dict[str, list[str]] = {
    "time": ["publishedat", "published", "pubdate", "publishdate", "publishtime", "publicationdate", "datetime",
             "timestamp", "time", "date", "createdat", "created", "updated", "发布时间", "时间", "日期"],
    "title": ["title", "headline", "headlines", "heading", "标题", "新闻标题"],
    "body": ["body", "description", "summary", "content", "text", "article", "snippet", "内容", "摘要", "正文"],
    "source": ["source", "publisher", "outlet", "site", "provider", "author", "来源", "媒体"],
    "url": ["url", "link", "href", "permalink", "链接", "网址"],
    "topic": ["topic", "topics", "ticker", "tickers", "symbol", "symbols", "category", "tags", "主题", "股票代码", "代码"],
}

# Time-zone words seen in news timestamps and typed by analysts, mapped to IANA zones.
TZ_ALIASES = {
    "ET": "America/New_York", "EST": "America/New_York", "EDT": "America/New_York",
    "CT": "America/Chicago", "CST": "America/Chicago", "CDT": "America/Chicago",
    "MT": "America/Denver", "MST": "America/Denver", "MDT": "America/Denver",
    "PT": "America/Los_Angeles", "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles",
    "GMT": "UTC", "UTC": "UTC", "Z": "UTC",
    "BST": "Europe/London", "UK": "Europe/London", "LONDON": "Europe/London",
    "CET": "Europe/Paris", "CEST": "Europe/Paris",
    "HKT": "Asia/Hong_Kong", "SGT": "Asia/Singapore", "JST": "Asia/Tokyo", "KST": "Asia/Seoul",
    "CHINA": "Asia/Shanghai", "BEIJING": "Asia/Shanghai", "北京时间": "Asia/Shanghai",
}
_TZ_WORDS = [w for w in TZ_ALIASES if w.isascii() and len(w) > 1]
_TZ_TOKEN_RE = r"(?:^|\s)(" + "|".join(sorted(_TZ_WORDS, key=len, reverse=True)) + r"|北京时间)(?=\s|,|$)"
_WEEKDAY_RE = r"\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?\b\.?,?"
# Formats tried, in order, on what is left once weekday and zone words are removed. Ambiguous d/m orders last.
TIME_FORMATS = [
    "%I:%M %p %d %B %Y", "%I:%M %p %d %b %Y", "%d-%b-%y", "%d-%b-%Y", "%b %d %Y", "%B %d %Y",
    "%d %b %Y", "%d %B %Y", "%d %b %Y %H:%M:%S", "%d %b %Y %H:%M", "%b %d %Y %H:%M:%S", "%b %d %Y %I:%M %p",
    "%B %d %Y %I:%M %p", "%d %B %Y %I:%M %p", "%d %b %Y %I:%M %p", "%d %B %Y %H:%M", "%B %d %Y %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m/%d/%Y", "%Y%m%d",
]
EXAMPLES = 5  # examples kept per kind of rejected row
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


# ---------------------------------------------------------------------------------------------------------------
# Time zones and times


def resolve_tz(name: str | None) -> str:
    """An IANA zone name for what the analyst typed ('ET', 'UTC', 'Europe/London', ...), or a plain error."""
    if name is None or not str(name).strip():
        return "UTC"
    text = str(name).strip()
    if text.upper() in TZ_ALIASES:
        return TZ_ALIASES[text.upper()]
    if text in TZ_ALIASES:
        return TZ_ALIASES[text]
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(_("'{text}' is not a time zone this machine knows. Use a name such as UTC, ET, Europe/London "
                          "or Asia/Shanghai.", text=text)) from None
    return text


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    """Wall-clock times in ``zone`` to UTC (an hour that happens twice is read as the first; a skipped one moves on)."""
    if zone == "UTC":
        return naive.dt.tz_localize("UTC")
    return naive.dt.tz_localize(zone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward").dt.tz_convert("UTC")


def _parse_unique(values: pd.Series, tz: str) -> pd.Series:
    """Distinct time strings -> UTC timestamps (NaT where unreadable)."""
    clean = values.astype(str).str.replace(r"\s+", " ", regex=True).str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    todo = clean != ""
    # A year outside 1900-2100 is a typo (9999, 1600) and outside what a nanosecond timestamp holds: that one row is
    # unreadable, never the whole file.
    years = clean.str.extract(r"(?<!\d)(\d{4})(?!\d)", expand=False)
    far = todo & years.notna() & ~clean.str.fullmatch(r"\d{9,13}(?:\.\d+)?") & (
        (pd.to_numeric(years, errors="coerce") < 1900) | (pd.to_numeric(years, errors="coerce") > 2100))
    todo &= ~far

    # Epoch seconds (or milliseconds).
    secs = todo & clean.str.fullmatch(r"\d{9,10}(?:\.\d+)?")
    secs &= pd.to_numeric(clean.where(secs, "0"), errors="coerce").fillna(0) <= EPOCH_MAX_S
    if secs.any():
        out[secs] = pd.to_datetime(clean[secs].astype(float), unit="s", utc=True)
    millis = todo & clean.str.fullmatch(r"\d{12,13}")
    millis &= pd.to_numeric(clean.where(millis, "0"), errors="coerce").fillna(0) <= EPOCH_MAX_S * 1000
    if millis.any():
        out[millis] = pd.to_datetime(clean[millis].astype("int64"), unit="ms", utc=True)
    todo &= ~(secs | millis)

    # ISO 8601, with an offset (read as given) or without (read in the feed's zone).
    iso = todo & clean.str.match(r"\d{4}-\d{2}-\d{2}")
    if iso.any():
        aware = iso & clean.str.contains(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", regex=True)
        if aware.any():
            out[aware] = pd.to_datetime(clean[aware], format="ISO8601", utc=True, errors="coerce")
        naive = iso & ~aware
        if naive.any():
            parsed = pd.to_datetime(clean[naive], format="ISO8601", errors="coerce")
            out[naive] = _localize(parsed, tz)
        todo &= ~iso

    if todo.any():
        rest = clean[todo]
        zone_word = rest.str.extract(_TZ_TOKEN_RE, flags=re.IGNORECASE, expand=False)
        zones = zone_word.str.upper().map(lambda w: TZ_ALIASES.get(w, TZ_ALIASES.get("北京时间")) if isinstance(w, str) else tz)
        stripped = (
            rest.str.replace(_WEEKDAY_RE, " ", regex=True, flags=re.IGNORECASE)
            .str.replace(_TZ_TOKEN_RE, " ", regex=True, flags=re.IGNORECASE)
            .str.replace(r"(?<=\d)(?:st|nd|rd|th)\b", "", regex=True)
            .str.replace(r"\s*,\s*|\s+at\s+", " ", regex=True)
            .str.replace(r"\s+", " ", regex=True)
            .str.strip()
            .str.replace(r"(?i)\b(am|pm)\b", lambda m: m.group(1).upper(), regex=True)
        )
        naive = pd.Series(pd.NaT, index=rest.index, dtype="datetime64[ns]")
        for fmt in TIME_FORMATS:
            pending = naive.isna()
            if not pending.any():
                break
            parsed = pd.to_datetime(stripped[pending], format=fmt, errors="coerce")
            naive[pending] = parsed
        for zone in pd.unique(zones[naive.notna()]):
            sel = naive.notna() & (zones == zone)
            out[sel[sel].index] = _localize(naive[sel], zone)
        # Last resort, one distinct string at a time: dateutil (handles '+0000' offsets, odd orders).
        left = rest.index[naive.isna()]
        if len(left):
            out[left] = [_dateutil(clean[i], zones[i]) for i in left]

    # Nothing before 1900 or after 2100: those are typos or numbers that only look like times.
    bad = out.notna() & ((out.dt.year < 1900) | (out.dt.year > 2100))
    out[bad] = pd.NaT
    return out


EPOCH_MAX_S = 4_102_444_800  # 2100-01-01: a larger epoch number is not a publication time


def _dateutil(text: str, zone: str):
    import warnings

    from dateutil import parser as dateparser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zone words dateutil does not know were already read by us
            value = dateparser.parse(text, default=datetime(1, 1, 1), fuzzy=False)
    except (ValueError, OverflowError, TypeError):
        return pd.NaT
    if value.year == 1 or not 1900 <= value.year <= 2100:  # no year in the text, or a typo
        return pd.NaT
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        try:
            stamp = stamp.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        except Exception:  # noqa: BLE001
            return pd.NaT
    return stamp.tz_convert("UTC")


def parse_times(values: Iterable[str], tz: str = "UTC") -> pd.Series:
    """Parse time strings to UTC timestamps (NaT where unreadable). Each distinct string is parsed once."""
    series = pd.Series(values, dtype=object).fillna("").astype(str)
    codes, uniques = pd.factorize(series, sort=False)
    parsed = _parse_unique(pd.Series(uniques, dtype=object), resolve_tz(tz))
    result = parsed.take(codes)
    result.index = series.index
    return result


def _iso_utc(stamps: pd.Series) -> np.ndarray:
    arr = stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    return np.char.add(np.datetime_as_string(arr, unit="s"), "Z")


def _local_day(stamps: pd.Series, zone: str) -> np.ndarray:
    arr = stamps.dt.tz_convert(zone).dt.tz_localize(None).to_numpy(dtype="datetime64[D]")
    return np.datetime_as_string(arr, unit="D")


# ---------------------------------------------------------------------------------------------------------------
# Normalisation


def normalise_title(series: pd.Series) -> pd.Series:
    return (
        series.astype(str)
        .str.normalize("NFKC")
        .str.lower()
        .str.replace(r"[\W_]+", " ", regex=True)
        .str.strip()
    )


def normalise_url(series: pd.Series) -> pd.Series:
    s = series.astype(str).str.strip()
    s = s.str.replace(r"#.*$", "", regex=True).str.replace(r"/+$", "", regex=True)
    return s.str.replace(r"^(https?://[^/]+)", lambda m: m.group(1).lower(), regex=True)


# Whitespace written as a character class (not \\s) so that pandas runs it in pyarrow rather than in Python.
WHITESPACE = "[ \t\r\n\x0b\x0c\xa0\u2028\u2029\u3000]+"


def _clean_text(series: pd.Series) -> pd.Series:
    """Cell text with runs of whitespace (embedded newlines included) made single spaces, control and invisible
    characters (bidi overrides, zero-width) removed."""
    return (series.astype(str).str.replace(INVISIBLE, "", regex=True).str.replace(WHITESPACE, " ", regex=True)
            .str.strip())


# ---------------------------------------------------------------------------------------------------------------
# Reading files


@dataclass
class FeedFile:
    frame: pd.DataFrame  # every cell a string
    format: str
    encoding: str | None = None
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    n_long_cells: int = 0  # cells cut to limits.MAX_CELL_CHARS
    n_rows: int = 0  # rows read (a preview's frame holds only the first few)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)


def _strip_html(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text or ""))


class NoEntries(UserError):
    """An RSS/Atom document with no items: an error for an upload, a quiet moment for a polled source."""


def check_xml_is_safe(data: bytes, file_name: str) -> None:
    """Refuse XML that declares entities or reaches outside itself (billion laughs, external entities), in plain words.

    defusedxml parses the bytes first with entity declarations and external references forbidden; only then does
    feedparser read them. XML that is merely malformed is left to feedparser, which reads what it can."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    try:
        fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise UserError(_("{file_name} declares XML entities or refers to outside files, which news feeds never need; "
                          "it was refused and nothing was read from it.", file_name=file_name)) from None
    except (ParseError, ValueError):
        pass


def _read_xml(data: bytes, file_name: str) -> FeedFile:
    import feedparser

    check_xml_is_safe(data, file_name)
    parsed = feedparser.parse(data)
    entries = parsed.get("entries") or []
    if not entries:
        raise NoEntries(_("{file_name} has no RSS items or Atom entries to read. Upload the feed's XML file as saved "
                          "from the site, or a CSV/XLSX/JSONL export.", file_name=file_name))
    feed_title = (parsed.get("feed") or {}).get("title", "")
    records = []
    for entry in entries:
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        if stamp:
            when = datetime.utcfromtimestamp(calendar.timegm(stamp)).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            when = entry.get("published") or entry.get("updated") or ""
        source = (entry.get("source") or {}).get("title") or feed_title or ""
        tags = ",".join(t.get("term", "") for t in entry.get("tags") or [] if t.get("term"))
        records.append(
            {
                "published": when,
                "title": _strip_html(entry.get("title", "")),
                "summary": _strip_html(entry.get("summary", "")),
                "link": entry.get("link", "") or "",
                "source": source,
                "tags": tags,
            }
        )
    return FeedFile(pd.DataFrame.from_records(records).fillna("").astype(str), "rss", "utf-8")


# What a news file may be called: the Feeds page's uploader takes any file and refuses others in these words, so the
# page and the command line say the same thing (a PDF, a Word file, an image ...).
NEWS_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".jsonl", ".ndjson", ".json", ".xml", ".rss", ".atom")


def check_news_file_name(file_name: str) -> None:
    """Refuse, in plain words, a file whose name says it is not a news export (``news.pdf``); a name without an
    ending is left to the reader, which tells the format from the content."""
    suffix = PurePath(file_name or "").suffix.lower()
    if suffix and suffix not in NEWS_SUFFIXES:
        raise UserError(_("{file_name} is a {kind} file; news is read from CSV, Excel (.xlsx), JSON lines and RSS or "
                          "Atom XML files. Export the news in one of those formats and upload that file.",
                          file_name=file_name, kind=suffix[1:].upper()))


def read_feed_file(data: bytes, file_name: str, format: str = "auto", encoding: str | None = None,
                   sheet: str | None = None) -> FeedFile:
    """Read an uploaded news file into a frame of strings (raises UserError for an unusable file)."""
    if format not in FORMAT_CHOICES and format not in (None, ""):
        raise UserError(_("'{format}' is not a feed format. Choose one of: {choices}.", format=format,
                          choices=", ".join(FORMAT_CHOICES)))
    if format in (None, "", "auto"):  # a chosen format reads the file whatever its name (a source's "feed.php")
        check_news_file_name(file_name)
    limits.check_file_size(len(data), file_name)
    readers.check_not_empty_or_binary(data, file_name)
    fmt = readers.guess_format(file_name, data) if format in (None, "", "auto") else format
    if fmt == "conll":
        fmt = "csv"
    if fmt == "rss":
        parsed = _read_xml(data, file_name)
        parsed.n_long_cells = readers.cut_long_cells(parsed.frame)
    else:
        table = readers.read_table(data, file_name, fmt, encoding=encoding, sheet=sheet)
        parsed = FeedFile(table.frame, table.format, table.encoding, table.bad_rows, table.n_long_cells)
    parsed.n_rows = len(parsed.frame)
    return parsed


PREVIEW_ROWS = 20


def preview_in_child(data: bytes, file_name: str, **kwargs) -> FeedFile:
    """The guarded child's read for the Feeds page: the columns and the first rows, not the whole table."""
    parsed = read_feed_file(data, file_name, **kwargs)
    parsed.frame = parsed.frame.head(PREVIEW_ROWS).copy()
    parsed.bad_rows = parsed.bad_rows[:EXAMPLES]
    return parsed


def preview_guarded(data: bytes, file_name: str, format: str = "auto", encoding: str | None = None,
                    sheet: str | None = None) -> FeedFile:
    """:func:`read_feed_file` in a child process with a memory cap, returning its columns and first rows."""
    return guarded.call("engine.monitor.feeds:preview_in_child", data, file_name, format=format, encoding=encoding,
                        sheet=sheet)


def import_in_child(data: bytes, file_name: str, **kwargs) -> ImportResult:
    conn = db.connect()
    try:
        return import_file(conn, data, file_name, **kwargs)
    finally:
        conn.close()


def import_file_guarded(data: bytes, file_name: str, feed: str, **kwargs) -> ImportResult:
    """:func:`import_file` in a child process with a memory cap (the dashboard's path: a 200 MB export is read and
    stored there, and the dashboard keeps only the report)."""
    return guarded.call("engine.monitor.feeds:import_in_child", data, file_name, feed=feed, **kwargs)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name).lower())


def guess_mapping(columns: list[str]) -> dict[str, str | None]:
    """The column that most likely holds each field (None where none does)."""
    keyed = {_key(c): c for c in columns}
    mapping: dict[str, str | None] = {}
    used: set[str] = set()
    for fld in FIELDS:
        found = None
        for candidate in GUESSES[fld]:
            if candidate in keyed and keyed[candidate] not in used:
                found = keyed[candidate]
                break
        if found is None:  # a column whose name contains a known word, e.g. "Publish Time (ET)"
            for candidate in GUESSES[fld]:
                hits = [c for k, c in keyed.items() if len(candidate) >= 4 and candidate in k and c not in used]
                if hits:
                    found = hits[0]
                    break
        mapping[fld] = found
        if found:
            used.add(found)
    return mapping


def default_mapping(columns: list[str], stored: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """The guessed mapping, with the feed's stored mapping wherever its columns exist in this file."""
    mapping = guess_mapping(columns)
    for fld, col in (stored or {}).items():
        if fld in FIELDS and col and col in columns:
            mapping[fld] = col
    return mapping


def resolve_mapping(columns: list[str], overrides: dict[str, str | None] | None = None,
                    stored: dict[str, str | None] | None = None, file_name: str = "the file") -> dict[str, str | None]:
    """Guessed mapping, then the feed's stored mapping where its columns exist, then explicit overrides."""
    mapping = default_mapping(columns, stored)
    for fld, col in (overrides or {}).items():
        if fld not in FIELDS or col is None:
            continue
        if col == "":
            mapping[fld] = None
            continue
        if col not in columns:
            raise UserError(_("{file_name} has no column called '{column}' (for the {field}). Its columns are: "
                              "{columns}.", file_name=file_name, column=col, field=_(FIELD_NAMES[fld]),
                              columns=", ".join(columns)))
        mapping[fld] = col
    for fld in ("time", "title"):
        if not mapping.get(fld):
            flag = "--time-col" if fld == "time" else "--title-col"
            raise UserError(_("Cannot tell which column of {file_name} holds the {field}. Its columns are: {columns}. "
                              "Choose it (on the page, or with {flag}).", file_name=file_name,
                              field=_(FIELD_NAMES[fld]), columns=", ".join(columns), flag=flag))
    return mapping


# ---------------------------------------------------------------------------------------------------------------
# Feeds


def get_feed(conn, name_or_id: str | int) -> dict:
    if isinstance(name_or_id, int):
        rows = list(conn.query("SELECT * FROM feeds WHERE id = ?", [int(name_or_id)]))
    else:
        rows = list(conn.query("SELECT * FROM feeds WHERE name = ?", [str(name_or_id).strip()]))
    if not rows:
        raise NotFound(_("There is no feed called '{name}'. Import a file into it first (Feeds page, or "
                         "python -m engine feed import FILE --feed NAME).", name=name_or_id))
    feed = rows[0]
    feed["mapping"] = db.loads(feed.get("mapping_json"), {})
    return feed


def list_feeds(conn) -> list[dict]:
    return list(
        conn.query(
            "SELECT f.id, f.name, f.tz, f.created_at, f.created_by, "
            "(SELECT COUNT(*) FROM articles a WHERE a.feed_id = f.id) AS n_articles, "
            "(SELECT COUNT(*) FROM feed_imports i WHERE i.feed_id = f.id) AS n_imports "
            "FROM feeds f ORDER BY f.name"
        )
    )


def imports(conn, feed_id: int) -> list[dict]:
    rows = list(conn.query("SELECT * FROM feed_imports WHERE feed_id = ? ORDER BY id DESC", [feed_id]))
    for row in rows:
        row["report"] = db.loads(row.get("report_json"), {})
    return rows


def _check_feed_name(name: str) -> str:
    name = clean_name(name or "")
    if not name:
        raise UserError(_("Give the feed a name (for example 'markets-daily')."))
    if len(name) > 100:
        raise UserError(_("A feed name is at most 100 characters."))
    return name


# ---------------------------------------------------------------------------------------------------------------
# Topic rules


@dataclass
class TopicRule:
    name: str
    keywords: list[str]

    def pattern(self) -> re.Pattern:
        parts = []
        for word in self.keywords:
            # Chinese (and Japanese/Korean) text has no spaces between words: match the keyword anywhere.
            parts.append(re.escape(word) if CJK_RE.search(word) else rf"(?<!\w){_with_plural(word)}(?!\w)")
        return re.compile("|".join(parts), re.IGNORECASE)

    def stems(self) -> list[str]:
        """What every match contains (lower-cased): the keyword, or its stem when the plural changes its end."""
        return [_stem(word).lower() for word in self.keywords]


def _stem(word: str) -> str:
    """'company' -> 'compan' (companies), any other word as it is."""
    if len(word) > 2 and word[-1] in "yY" and word[-2].lower() not in "aeiou" and word[-2].isalpha():
        return word[:-1]
    return word


def _with_plural(word: str) -> str:
    """A keyword's regex matching its simple English plural too: bank/banks, tax/taxes, company/companies. A keyword
    that does not end in a letter (a ticker with a dot, a number) matches as written."""
    if not word[-1:].isalpha() or not word.isascii():
        return re.escape(word)
    stem = _stem(word)
    if stem != word:
        return rf"{re.escape(stem)}(?:{re.escape(word[-1])}|ies)"
    return rf"{re.escape(word)}(?:s|es)?"


def parse_keywords(text: str | Iterable[str]) -> list[str]:
    items = re.split(r"[,，;；\n]", text) if isinstance(text, str) else list(text)
    seen, out = set(), []
    for item in items:
        word = " ".join(str(item).split())
        if word and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out


def topic_rules(conn, feed_id: int) -> list[TopicRule]:
    return [
        TopicRule(r["name"], db.loads(r["keywords_json"], []))
        for r in conn.query("SELECT name, keywords_json FROM topic_rules WHERE feed_id = ? ORDER BY name", [feed_id])
    ]


def _rule_matches(rules: list[TopicRule], ids: np.ndarray, text: pd.Series) -> list[tuple[int, str, str]]:
    """(article id, rule name, 'rule') for every text a rule's pattern matches.

    The pattern (word boundaries, any case) is a Python regex run row by row, so it only runs on the candidates: an
    ASCII text can only match an all-ASCII rule if it contains one of the keywords, lower-cased, as a substring, and
    that test runs vectorised in Arrow. Texts with other characters (where case rules are wider) always run the
    regex, so the result is exactly the regex's own.
    """
    out: list[tuple[int, str, str]] = []
    rules = [r for r in rules if r.keywords]
    if not rules or not len(text):
        return out
    values = text.fillna("").astype(str).to_numpy(dtype=object)
    prefilter = None
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = pa.array(values, type=pa.large_string())
        ascii_ = pc.string_is_ascii(arrow).to_numpy(zero_copy_only=False)
        lowered = pc.utf8_lower(arrow)

        def prefilter(words: list[str]) -> np.ndarray:
            hit = ~ascii_
            for word in words:
                hit = hit | pc.match_substring(lowered, word.lower()).to_numpy(zero_copy_only=False)
            return hit
    except ImportError:  # no Arrow: the regex runs on every row
        pass
    for rule in rules:
        pattern = rule.pattern()
        if prefilter is not None and all(w.isascii() for w in rule.keywords):
            rows = np.flatnonzero(prefilter(rule.stems()))
        else:
            rows = np.arange(len(values))
        search = pattern.search
        hit = [i for i in rows.tolist() if search(values[i])]
        out.extend((int(i), rule.name, "rule") for i in ids[hit])
    return out


def _feed_matches(conn, feed_id: int, rules: list[TopicRule], chunk: int = 50_000) -> Iterable[list[tuple[int, str, str]]]:
    """The (article id, rule name, 'rule') matches of ``rules`` in the feed's articles, a chunk of articles at a time:
    what a saved rule tags (:func:`apply_topic_rules`) and what its preview counts (:func:`preview_topic_rule`)."""
    last = 0
    while True:
        rows = conn.execute(
            "SELECT id, COALESCE(title, '') || char(10) || COALESCE(body, '') FROM articles "
            "WHERE feed_id = ? AND id > ? ORDER BY id LIMIT ?",
            [feed_id, last, chunk],
        ).fetchall()
        if not rows:
            return
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        text = pd.Series([r[1] for r in rows], dtype=object)
        yield _rule_matches(rules, ids, text)
        last = rows[-1][0]


PREVIEW_HEADLINES = 8


def preview_topic_rule(conn, feed: str | int, keywords: str | Iterable[str], sample: int = PREVIEW_HEADLINES) -> dict:
    """What a topic rule with these keywords would tag, before it is saved: ``matches`` (how many of the feed's
    articles; the same matching as saving, so saving then tags exactly this many), the parsed ``keywords`` and a
    ``sample`` of the newest matching headlines (title, published_at, day), and the feed's ``total`` articles.
    Reads only."""
    feed_row = get_feed(conn, feed)
    total = conn.execute("SELECT COUNT(*) FROM articles WHERE feed_id = ?", [feed_row["id"]]).fetchone()[0]
    words = parse_keywords(keywords or "")
    if not words:
        return {"keywords": [], "matches": 0, "total": total, "sample": []}
    rule = TopicRule("preview", words)
    ids = [article for found in _feed_matches(conn, feed_row["id"], [rule]) for article, _name, _origin in found]
    shown: list[dict] = []
    if ids and sample:
        conn.execute("DROP TABLE IF EXISTS temp.preview_ids")
        conn.execute("CREATE TEMP TABLE preview_ids (id INTEGER PRIMARY KEY)")
        try:
            db.executemany(conn, "INSERT INTO temp.preview_ids VALUES (?)", [(int(i),) for i in ids])
            shown = list(conn.query(
                "SELECT a.id, a.title, a.published_at, a.day FROM articles a JOIN temp.preview_ids p ON p.id = a.id "
                "ORDER BY a.published_at DESC, a.id DESC LIMIT ?", [int(sample)]))
        finally:
            conn.execute("DROP TABLE IF EXISTS temp.preview_ids")
    return {"keywords": words, "matches": len(ids), "total": total, "sample": shown}


def apply_topic_rules(conn, feed_id: int, only: str | None = None, chunk: int = 50_000) -> int:
    """Recompute the rule topics of every article in the feed (only topic ``only`` when given). Returns matches."""
    rules = [r for r in topic_rules(conn, feed_id) if only is None or r.name == only]
    total = 0
    with db.transaction(conn):
        sql = "DELETE FROM article_topics WHERE origin = 'rule' AND article_id IN (SELECT id FROM articles WHERE feed_id = ?)"
        params: list[Any] = [feed_id]
        if only is not None:
            sql += " AND topic = ?"
            params.append(only)
        conn.execute(sql, params)
        if not rules:
            return 0
        for matches in _feed_matches(conn, feed_id, rules, chunk):
            db.executemany(conn, "INSERT OR IGNORE INTO article_topics (article_id, topic, origin) VALUES (?, ?, ?)", matches)
            total += len(matches)
    return total


def set_topic_rule(conn, feed: str | int, name: str, keywords: str | Iterable[str], actor=None) -> dict:
    """Create or replace a topic rule (a name and its keywords or tickers) and re-tag the feed's articles. An analyst
    changes the rules of feeds they created; an admin anyone's."""
    feed_row = get_feed(conn, feed)
    name = clean_name(name or "")
    if not name:
        raise UserError(_("Give the topic a name (for example 'Banks')."))
    words = parse_keywords(keywords)
    if not words:
        raise UserError(_("Give at least one keyword or ticker for the topic '{name}', separated by commas.", name=name))
    obj = f"feed:{feed_row['name']}:topic:{name}"
    who = access.check(conn, actor, "topics.set", obj, owner=feed_row.get("created_by"))
    with db.transaction(conn):
        access.record(conn, who, "topics.set", obj, {"keywords": words})
        conn.execute("DELETE FROM topic_rules WHERE feed_id = ? AND name = ?", [feed_row["id"], name])
        conn["topic_rules"].insert(
            {"feed_id": feed_row["id"], "name": name, "keywords_json": db.dumps(words), "created_at": db.now()}
        )
        n = apply_topic_rules(conn, feed_row["id"], only=name)
    return {"name": name, "keywords": words, "matches": n}


def delete_topic_rule(conn, feed: str | int, name: str, actor=None) -> None:
    feed_row = get_feed(conn, feed)
    obj = f"feed:{feed_row['name']}:topic:{name}"
    who = access.check(conn, actor, "topics.delete", obj, owner=feed_row.get("created_by"))
    with db.transaction(conn):
        access.record(conn, who, "topics.delete", obj)
        conn.execute("DELETE FROM topic_rules WHERE feed_id = ? AND name = ?", [feed_row["id"], name])
        apply_topic_rules(conn, feed_row["id"], only=name)


def topics(conn, feed_id: int) -> list[dict]:
    """Topics of the feed with their article counts."""
    return list(
        conn.query(
            "SELECT t.topic, COUNT(*) AS n_articles FROM article_topics t JOIN articles a ON a.id = t.article_id "
            "WHERE a.feed_id = ? GROUP BY t.topic ORDER BY n_articles DESC, t.topic",
            [feed_id],
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# Import


@dataclass
class ImportResult:
    feed_id: int
    feed_name: str
    import_id: int | None
    n_rows: int
    n_blank: int
    n_new: int
    n_duplicate: int
    n_duplicate_in_file: int
    n_duplicate_in_feed: int
    n_rejected: int
    n_bad_time: int
    n_no_title: int
    n_topics: int
    mapping: dict
    tz: str
    examples: dict[str, list[dict]]
    format: str
    encoding: str | None
    seconds: float = 0.0
    n_url_dropped: int = 0
    n_long_cells: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        """The import in one paragraph, in the current language (built when shown, from the counts)."""
        return import_summary(self.as_dict())


def import_summary(report: dict) -> str:
    """An import's counts (an ImportResult's ``as_dict()``, as kept in ``feed_imports.report_json``) in plain words,
    in the current language."""
    counts = {k: int(report.get(k) or 0) for k in
              ("n_new", "n_duplicate", "n_rejected", "n_bad_time", "n_no_title", "n_blank", "n_url_dropped")}
    if report.get("n_rejected"):
        text = _("{n_new} new articles in '{feed}', {n_duplicate} duplicates skipped, {n_rejected} rows rejected "
                 "({n_bad_time} without a readable time or with a year outside 1900-2100, {n_no_title} without a "
                 "title), {n_blank} blank rows ignored.", feed=report.get("feed_name", ""), **counts)
    else:
        text = _("{n_new} new articles in '{feed}', {n_duplicate} duplicates skipped, {n_rejected} rows rejected, "
                 "{n_blank} blank rows ignored.", feed=report.get("feed_name", ""), **counts)
    if report.get("n_url_dropped"):
        text += " " + _("{n_url_dropped} URLs that were not http(s) links were left out (the articles kept).",
                        **counts)
    if report.get("n_long_cells"):
        text += " " + limits.long_cells_note(report["n_long_cells"])
    return text


# Why a row was kept out, stored in English with the import's report and translated where shown (i18n.shown).
REASONS = (N_("time not readable"), N_("no title"), N_("could not be split into columns"), N_("URL not http(s): left out"))


def _example(rows: pd.DataFrame, col: str | None, row_numbers: pd.Series, reason: str) -> list[dict]:
    out = []
    for i in rows.index[:EXAMPLES]:
        value = rows.at[i, col] if col else ""
        out.append({"row": int(row_numbers[i]), "value": str(value)[:200], "reason": reason})
    return out


@dataclass
class _Rows:
    """A news file's rows after the checks, before anything is stored (the first phase of an import)."""
    n_rows: int
    n_blank: int
    title: pd.Series
    body: pd.Series
    source: pd.Series
    url: pd.Series
    topic: pd.Series
    norm: pd.Series
    published: np.ndarray
    day: np.ndarray
    dup_file: np.ndarray  # the same article earlier in this file
    bad_time: np.ndarray  # rejected: no readable time (of all non-blank rows)
    no_title: np.ndarray  # rejected: no title
    examples: dict
    n_url_dropped: int = 0  # URLs that were not http(s), left out


def _check_rows(parsed, cols: dict, read_tz, feed_tz) -> _Rows:
    """Drop blank rows, reject rows without a readable time or a title (with examples by spreadsheet row number),
    clean the columns, compute publication times, days in the feed's zone, and the duplicate keys."""
    frame = parsed.frame
    n_rows = len(frame)
    # Data row numbers as the analyst sees them in a spreadsheet: the header is row 1.
    row_numbers = pd.Series(np.arange(2, n_rows + 2), index=frame.index)
    blank = np.ones(n_rows, dtype=bool)
    for c in frame.columns:
        blank &= (frame[c].astype(str).str.strip() == "").to_numpy()
    frame = frame.loc[~blank]
    row_numbers = row_numbers.loc[~blank]

    def column(fld: str) -> pd.Series:
        col = cols.get(fld)
        if not col:
            return pd.Series("", index=frame.index, dtype=object)
        return _clean_text(frame[col])

    title = column("title")
    no_title = (title == "").to_numpy()
    stamps = parse_times(frame[cols["time"]], read_tz)
    bad_time = stamps.isna().to_numpy() & ~no_title
    examples = {
        "time": _example(frame.loc[bad_time], cols["time"], row_numbers, "time not readable"),
        "title": _example(frame.loc[no_title], cols["time"], row_numbers, "no title"),
        "unreadable_rows": [{"row": n, "value": raw[:200], "reason": "could not be split into columns"}
                            for n, raw in parsed.bad_rows[:EXAMPLES]],
    }
    keep = ~(bad_time | no_title)
    frame = frame.loc[keep]
    title = title.loc[keep]
    stamps = stamps.loc[keep]
    url = normalise_url(column("url"))
    unsafe = (url != "") & ~url.str.match(r"(?i)https?://[^\s/]")
    if unsafe.any():  # javascript:, data:, file: ... would become links: the article is kept without its URL
        examples["url"] = _example(frame.loc[unsafe.to_numpy()], cols.get("url"), row_numbers,
                                   "URL not http(s): left out")
        url = url.where(~unsafe, "")
    day = _local_day(stamps, feed_tz) if len(stamps) else np.array([], dtype=str)
    norm = normalise_title(title)
    key = np.where(url.to_numpy() != "", "u:" + url.to_numpy(dtype=object),
                   "t:" + norm.to_numpy(dtype=object) + "|" + day.astype(object))
    return _Rows(
        n_rows=n_rows, n_blank=int(blank.sum()), title=title, body=column("body"), source=column("source"), url=url,
        topic=column("topic"), norm=norm, published=_iso_utc(stamps) if len(stamps) else np.array([], dtype=str),
        day=day, dup_file=pd.Series(key, index=frame.index).duplicated(keep="first").to_numpy(),
        bad_time=bad_time, no_title=no_title, examples=examples, n_url_dropped=int(unsafe.sum()),
    )


def _new_topics(conn, feed_id: int, cols: dict, ids: np.ndarray, topic_v, title_v, body_v) -> list[tuple[int, str, str]]:
    """(article id, topic, origin) for new articles: the mapped column (several separated by , ; or |) and the
    feed's keyword rules."""
    topic_rows: list[tuple[int, str, str]] = []
    if cols.get("topic") and len(ids):
        split = pd.Series(topic_v, index=ids).str.split(r"\s*[,;|，；]\s*", regex=True).explode()
        split = split[split.notna() & (split.str.strip() != "")]
        topic_rows.extend(zip(split.index.astype(int).tolist(), split.str.strip().tolist(), ["column"] * len(split)))
    rules = topic_rules(conn, feed_id)
    if rules and len(ids):
        text = pd.Series(title_v, dtype=object) + "\n" + pd.Series(body_v, dtype=object)
        topic_rows.extend(_rule_matches(rules, ids, text))
    return topic_rows


def import_file(
    conn,
    data: bytes,
    file_name: str,
    feed: str,
    mapping: dict[str, str | None] | None = None,
    tz: str | None = None,
    format: str = "auto",
    encoding: str | None = None,
    sheet: str | None = None,
    created_by: str | None = None,
    actor=None,
    keep_empty: bool = True,
    remember_mapping: bool = True,
) -> ImportResult:
    """Import a news file into the feed named ``feed`` (created when new). All of it lands, or nothing does.

    Phases: read the file and resolve its columns (nothing stored), check the rows (:func:`_check_rows`); then a short
    transaction creates or updates the feed and records the import; then chunks of ``IMPORT_CHUNK`` new articles, a
    transaction each, drop articles the feed already has and insert the rest with their topics (:func:`_new_topics`)
    and rollup counts (:func:`_store_chunk`), so other writers wait seconds, not minutes; a last one stores the
    report. A failure part-way removes what the import had stored (:func:`_undo_import`): all or nothing, as before,
    though a reader may see a large import's articles arrive chunk by chunk.
    ``keep_empty=False`` (a source's poll) records no import when nothing was new; ``remember_mapping=False`` (an
    RSS source, whose columns are always the same) leaves the feed's remembered column mapping as it was."""
    started = time.perf_counter()
    feed = _check_feed_name(feed)
    who = access.check(conn, actor, "feed.import", f"feed:{feed}")
    created_by = created_by or who.name
    existing = list(conn.query("SELECT * FROM feeds WHERE name = ?", [feed]))
    feed_row = existing[0] if existing else None
    read_tz = resolve_tz(tz if tz else (feed_row["tz"] if feed_row else None))
    feed_tz = feed_row["tz"] if feed_row and feed_row.get("tz") else read_tz
    parsed = read_feed_file(data, file_name, format, encoding=encoding, sheet=sheet)
    stored = db.loads(feed_row["mapping_json"], {}) if feed_row else {}
    cols = resolve_mapping(parsed.columns, mapping, stored, file_name)
    rows = _check_rows(parsed, cols, read_tz, feed_tz)
    title, norm, url, day, dup_file = rows.title, rows.norm, rows.url, rows.day, rows.dup_file

    created_feed = False
    with db.transaction(conn):  # short: the feed and the import's row (its report stays empty until the end)
        if feed_row is None:  # looked again inside the write lock: another import may have just created it
            again = list(conn.query("SELECT * FROM feeds WHERE name = ?", [feed]))
            feed_row = again[0] if again else None
        if feed_row is None:
            feed_id = conn["feeds"].insert(
                {"name": feed, "tz": feed_tz, "mapping_json": db.dumps(cols), "created_at": db.now(),
                 "created_by": created_by}
            ).last_pk
            created_feed = True
        else:
            feed_id = feed_row["id"]
            # Anyone who may import adds news to a feed; only its creator or an admin changes how it reads files.
            if remember_mapping and access.can(who, "feed.sources", owner=feed_row.get("created_by")):
                conn.execute("UPDATE feeds SET mapping_json = ? WHERE id = ?", [db.dumps(cols), feed_id])
        import_id = conn["feed_imports"].insert(
            {"feed_id": feed_id, "file_name": file_name, "sha256": hashlib.sha256(data).hexdigest(),
             "created_at": db.now()}
        ).last_pk
    try:
        dup_feed = np.zeros(len(title), dtype=bool)
        n_new = n_topics = 0
        candidates = np.flatnonzero(~dup_file)
        url_all, norm_all = url.to_numpy(dtype=object), norm.to_numpy(dtype=object)
        # Each chunk is one short write transaction, so that other writers (a score job, another import, a topic
        # rule) wait seconds, not the minutes a large file takes.
        for begin in range(0, max(len(candidates), 1), IMPORT_CHUNK):
            chunk = candidates[begin : begin + IMPORT_CHUNK]
            with db.transaction(conn):
                if len(chunk) and conn.execute("SELECT 1 FROM articles WHERE feed_id = ? LIMIT 1", [feed_id]).fetchone():
                    dup_feed[chunk[_in_feed(conn, feed_id, np.arange(len(chunk)), url_all[chunk], norm_all[chunk],
                                            day[chunk])]] = True
                sel = chunk[~dup_feed[chunk]]
                n_topics += _store_chunk(conn, feed_id, import_id, cols, rows, sel)
                n_new += len(sel)
        result = ImportResult(
            feed_id=feed_id,
            feed_name=feed,
            import_id=import_id,
            n_rows=rows.n_rows,
            n_blank=rows.n_blank,
            n_new=n_new,
            n_duplicate=int(dup_file.sum() + dup_feed.sum()),
            n_duplicate_in_file=int(dup_file.sum()),
            n_duplicate_in_feed=int(dup_feed.sum()),
            n_rejected=int(rows.bad_time.sum() + rows.no_title.sum()),
            n_bad_time=int(rows.bad_time.sum()),
            n_no_title=int(rows.no_title.sum()),
            n_topics=n_topics,
            mapping=cols,
            tz=feed_tz,
            examples=rows.examples,
            format=parsed.format,
            encoding=parsed.encoding,
            n_url_dropped=rows.n_url_dropped,
            n_long_cells=parsed.n_long_cells,
        )
        result.seconds = round(time.perf_counter() - started, 3)
        with db.transaction(conn):
            conn.execute(
                "UPDATE feed_imports SET n_new = ?, n_duplicate = ?, n_rejected = ?, report_json = ? WHERE id = ?",
                [result.n_new, result.n_duplicate, result.n_rejected, db.dumps(result.as_dict()), import_id],
            )
            access.record(conn, who, "feed.import", f"feed:{feed}",
                          {"file": file_name, "new": n_new, "import_id": import_id})
            if not keep_empty and not n_new:
                conn.execute("DELETE FROM feed_imports WHERE id = ?", [import_id])
                result.import_id = None
    except BaseException:
        _undo_import(conn, import_id, feed_id if created_feed else None)
        raise
    return result


IMPORT_CHUNK = 50_000  # new articles per write transaction of an import


def _store_chunk(conn, feed_id: int, import_id: int, cols: dict, rows: _Rows, sel: np.ndarray) -> int:
    """Insert the articles at positions ``sel`` with their topics and rollup counts, inside the caller's transaction;
    how many topic rows were added."""
    n_new = len(sel)
    if not n_new:
        return 0
    first_id = (conn.execute("SELECT COALESCE(MAX(id), 0) FROM articles").fetchone()[0]) + 1
    ids = np.arange(first_id, first_id + n_new, dtype=np.int64)
    url_v = rows.url.to_numpy(dtype=object)[sel]
    topic_v = rows.topic.to_numpy(dtype=object)[sel]
    body_v = rows.body.to_numpy(dtype=object)[sel]
    source_v = rows.source.to_numpy(dtype=object)[sel]
    title_v = rows.title.to_numpy(dtype=object)[sel]
    article_rows = zip(
        ids.tolist(),
        [feed_id] * n_new,
        rows.published[sel].tolist(),
        rows.day[sel].tolist(),
        title_v.tolist(),
        [b or None for b in body_v.tolist()],
        [s or None for s in source_v.tolist()],
        [u or None for u in url_v.tolist()],
        [t or None for t in topic_v.tolist()],
        rows.norm.to_numpy(dtype=object)[sel].tolist(),
        [import_id] * n_new,
    )
    bulk = _rollup_triggers_aside(conn, n_new)
    _insert_articles(conn, article_rows, n_new, first_id)
    topic_rows = _new_topics(conn, feed_id, cols, ids, topic_v, title_v, body_v)
    db.executemany(conn, "INSERT OR IGNORE INTO article_topics (article_id, topic, origin) VALUES (?, ?, ?)", topic_rows)
    if bulk:  # the new articles and their topics counted into the Monitor's rollups together
        db.add_to_rollups(conn, first_id, first_id + n_new)
        for sql in bulk:
            conn.execute(sql)
    return len(topic_rows)


def _undo_import(conn, import_id: int, created_feed_id: int | None) -> None:
    """An import that failed part-way: remove the chunks it had stored (their topics, scores, rollup counts and
    search entries go with them through the triggers), its import row, and the feed when it created it."""
    if conn.conn.in_transaction:
        conn.execute("ROLLBACK")
    with db.transaction(conn):
        inner = "SELECT id FROM articles WHERE import_id = ?"
        conn.execute(f"DELETE FROM article_topics WHERE article_id IN ({inner})", [import_id])
        conn.execute(f"DELETE FROM scores WHERE article_id IN ({inner})", [import_id])
        conn.execute("DELETE FROM articles WHERE import_id = ?", [import_id])
        conn.execute("DELETE FROM feed_imports WHERE id = ?", [import_id])
        if created_feed_id is not None and not conn.execute(
                "SELECT 1 FROM feed_imports WHERE feed_id = ? LIMIT 1", [created_feed_id]).fetchone():
            conn.execute("DELETE FROM feeds WHERE id = ?", [created_feed_id])


INSERT_ARTICLE = (
    "INSERT INTO articles (id, feed_id, published_at, day, title, body, source, url, topic, norm_title, import_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
BULK_FTS_FROM = 2000  # above this many new articles, fill the search index in one statement


def _insert_articles(conn, rows, n_new: int, first_id: int) -> None:
    """Insert the new articles and index them for search, inside the caller's transaction.

    The search index is normally kept by the ``articles_ai`` trigger, one row at a time; for a large import that is
    ten times slower than indexing the new rows in one statement. So, within this same write transaction (no other
    writer can insert meanwhile, and a failure rolls the whole thing back), the trigger is set aside, the rows are
    inserted, indexed together, and the trigger is put back exactly as it was.
    """
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'articles_ai'").fetchone()
    if n_new < BULK_FTS_FROM or trigger is None:
        db.executemany(conn, INSERT_ARTICLE, rows)
        return
    conn.execute("DROP TRIGGER articles_ai")
    db.executemany(conn, INSERT_ARTICLE, rows)
    conn.execute(
        "INSERT INTO articles_fts (rowid, title, body) SELECT id, title, body FROM articles WHERE id >= ? AND id < ?",
        [first_id, first_id + n_new],
    )
    conn.execute(trigger[0])


ROLLUP_TRIGGERS = ("articles_rollup_ai", "article_topics_rollup_ai")


def _rollup_triggers_aside(conn, n_new: int) -> list[str]:
    """For a large import, drop the per-row rollup triggers of new articles and topics (inside the import's
    transaction: a failure rolls the drop back too) and return their SQL, to count the new rows in one go
    (:func:`engine.db.add_to_rollups`) and put the triggers back. Small imports keep the triggers."""
    if n_new < BULK_FTS_FROM:
        return []
    saved = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?)", list(ROLLUP_TRIGGERS)
    ).fetchall()
    if len(saved) != len(ROLLUP_TRIGGERS):
        return []
    for name, _sql in saved:
        conn.execute(f"DROP TRIGGER {name}")
    return [sql for _name, sql in saved]


def _in_feed(conn, feed_id: int, candidates: np.ndarray, url: np.ndarray, norm: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Positions (among ``candidates``) whose URL, or title and day when there is no URL, the feed already has."""
    conn.execute("DROP TABLE IF EXISTS temp.incoming_keys")
    conn.execute("CREATE TEMP TABLE incoming_keys (pos INTEGER PRIMARY KEY, url TEXT, norm_title TEXT, day TEXT)")
    try:
        db.executemany(
            conn,
            "INSERT INTO temp.incoming_keys VALUES (?, ?, ?, ?)",
            zip(candidates.tolist(), [u or None for u in url[candidates].tolist()], norm[candidates].tolist(),
                day[candidates].tolist()),
        )
        hits = conn.execute(
            "SELECT i.pos FROM temp.incoming_keys i WHERE i.url IS NOT NULL AND EXISTS ("
            " SELECT 1 FROM articles a WHERE a.feed_id = ? AND a.url = i.url) "
            "UNION ALL "
            "SELECT i.pos FROM temp.incoming_keys i WHERE i.url IS NULL AND EXISTS ("
            " SELECT 1 FROM articles a WHERE a.feed_id = ? AND a.norm_title = i.norm_title AND a.day = i.day)",
            [feed_id, feed_id],
        ).fetchall()
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.incoming_keys")
    return np.array([h[0] for h in hits], dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Search


# An article's link only when it is http(s): imports refuse other schemes, and this keeps a javascript: or data: URL
# stored before they did from ever being shown as a link or exported.
SAFE_URL = ("CASE WHEN lower(substr(a.url, 1, 7)) = 'http://' OR lower(substr(a.url, 1, 8)) = 'https://' "
            "THEN a.url END")


def search(conn, feed_id: int, query: str, limit: int = 50) -> list[dict]:
    """Articles of the feed matching every word of ``query`` (FTS5; Chinese words matched as substrings)."""
    words = [w for w in (query or "").split() if w.strip()]
    if not words:
        return []
    cols = f"a.id, a.day, a.published_at, a.title, a.body, a.source, {SAFE_URL} AS url"
    if any(CJK_RE.search(w) for w in words):
        # unicode61 does not split Chinese into words, so FTS would only find whole runs: use substrings instead.
        where = " AND ".join(["(COALESCE(a.title,'') || ' ' || COALESCE(a.body,'')) LIKE ?"] * len(words))
        params: list[Any] = [feed_id] + [f"%{w}%" for w in words] + [limit]
        return list(conn.query(f"SELECT {cols} FROM articles a WHERE a.feed_id = ? AND {where} "
                               "ORDER BY a.published_at DESC LIMIT ?", params))
    match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    return list(
        conn.query(
            f"SELECT {cols} FROM articles_fts f JOIN articles a ON a.id = f.rowid "
            "WHERE articles_fts MATCH ? AND a.feed_id = ? ORDER BY f.rank LIMIT ?",
            [match, feed_id, limit],
        )
    )
