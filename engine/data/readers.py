"""Read an uploaded file into a table of strings: CSV (encoding detected), XLSX (a chosen sheet) or JSONL.

Used by dataset and feed imports alike. Anything unreadable raises :class:`UserError` with a plain message; rows that
cannot be parsed are collected (line number and content) rather than dropped in silence.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.errors import UserError

ENCODING_NAMES = {"utf_8": "utf-8", "utf-8": "utf-8", "utf_8_sig": "utf-8-sig", "gb18030": "gb18030", "gbk": "gb18030", "cp1252": "cp1252", "windows-1252": "cp1252"}
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".conll": "conll", ".rss": "rss", ".xml": "rss", ".atom": "rss"}


@dataclass
class Table:
    frame: pd.DataFrame  # every cell a string ("" when empty)
    format: str
    encoding: str | None = None
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, raw content)


def guess_format(file_name: str, data: bytes) -> str:
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    ext = Path(file_name).suffix.lower()
    if ext in FORMATS:
        return FORMATS[ext]
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return "jsonl"
    if head.startswith(b"<"):
        return "rss"
    return "csv"


def check_not_empty_or_binary(data: bytes, file_name: str) -> None:
    if not data or not data.strip():
        raise UserError(f"{file_name} is empty. Export the sheet again and upload the file that has the rows.")
    if b"\x00" in data[:8192] and data[:4] != b"PK\x03\x04":
        raise UserError(
            f"{file_name} is not a text file (it looks like a binary file with a .csv or similar name). "
            "Upload a CSV, XLSX or JSONL export."
        )


def detect_encoding(data: bytes) -> str:
    """utf-8 (with or without BOM), gb18030 or cp1252."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Not UTF-8: Chinese GB18030/GBK or Windows-1252. GB18030 accepts most byte strings, so decide by shape: Chinese
    # text is mostly bytes above 0x7F, Western text has a few, isolated ones (curly quotes, accents, the euro sign).
    sample = data[:1_000_000]
    high = sum(1 for b in sample if b > 0x7F)
    letters = sum(1 for b in sample if b > 0x20)
    if letters and high / letters > 0.2:
        try:
            sample.decode("gb18030", errors="strict") if len(sample) == len(data) else data.decode("gb18030")
            return "gb18030"
        except UnicodeDecodeError:
            pass
    return "cp1252"


def decode(data: bytes, encoding: str | None, file_name: str = "the file") -> tuple[str, str]:
    encoding = encoding or detect_encoding(data)
    try:
        return data.decode(encoding), encoding
    except LookupError:
        raise UserError(f"'{encoding}' is not an encoding this machine knows. Try utf-8, gb18030 or cp1252.") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{file_name} is not valid {encoding} text (byte {exc.start} cannot be read). "
            "Choose another encoding, such as utf-8, gb18030 (Chinese) or cp1252 (Windows)."
        ) from None


def _read_csv(text: str, file_name: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    sample = text[:20_000]
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0] + "\n", delimiters=",;\t|")
        sep = dialect.delimiter
    except csv.Error:
        sep = ","
    # index_col=False: a row with extra fields is a broken row, never a reason to turn the first columns into an index.
    options = dict(sep=sep, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True, index_col=False)
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
        return frame, []
    except pd.errors.EmptyDataError:
        raise UserError(f"{file_name} has no rows and no header. Upload the file that has the data.") from None
    except pd.errors.ParserError:
        pass
    return _read_csv_row_by_row(text, sep)


def _read_csv_row_by_row(text: str, sep: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The careful path for a file pandas refuses: keep each well-formed record, report each broken one by line."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, delimiter=sep, strict=True)
    header: list[str] | None = None
    records: list[list[str]] = []
    bad: list[tuple[int, str]] = []
    start_line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:  # an unterminated quote swallows the rest of the file: report it from where it began
            bad.append((start_line, "".join(lines[start_line - 1 : start_line + 2]).strip()[:300]))
            break
        first, start_line = start_line, reader.line_num + 1
        if not any(field.strip() for field in record):
            continue
        if header is None:
            header = record
        elif len(record) == len(header):
            records.append(record)
        else:
            bad.append((first, "".join(lines[first - 1 : reader.line_num]).strip()[:300]))
    if header is None:
        raise UserError("The file has no header row. The first line should name the columns, e.g. text,label.")
    return pd.DataFrame(records, columns=header, dtype=str), bad


def _read_xlsx(data: bytes, sheet: str | None, file_name: str) -> tuple[pd.DataFrame, str, list[str]]:
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")  # parsed once: the sheet names and the chosen sheet
    except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise UserError(f"{file_name} is not a readable Excel workbook (.xlsx). Save it again from Excel and retry.") from None
    sheets = list(book.sheet_names)
    if not sheets:
        raise UserError(f"{file_name} has no sheets.")
    sheet = sheet or sheets[0]
    if sheet not in sheets:
        raise UserError(f"{file_name} has no sheet called '{sheet}'. Its sheets are: {', '.join(sheets)}.")
    frame = book.parse(sheet, dtype=str).fillna("")
    return frame, sheet, sheets


def _read_jsonl(text: str, file_name: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"{file_name} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
        bad = [(i + 1, json.dumps(r)[:200]) for i, r in enumerate(records) if not isinstance(r, dict)]
        records = [r for r in records if isinstance(r, dict)]
    else:
        records, bad = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                bad.append((number, line[:200]))
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                bad.append((number, line[:200]))
    if not records:
        raise UserError(f"{file_name} has no JSON objects, one per line, to read. Each line should look like {{\"text\": ..., \"label\": ...}}.")
    frame = pd.DataFrame.from_records(records)
    frame = frame.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
    return frame, bad


def read_table(
    data: bytes,
    file_name: str,
    format: str = "auto",
    encoding: str | None = None,
    sheet: str | None = None,
) -> Table:
    """Read CSV, XLSX or JSONL bytes into a Table of strings."""
    check_not_empty_or_binary(data, file_name)
    fmt = guess_format(file_name, data) if format in (None, "", "auto") else format
    if fmt == "xlsx":
        frame, sheet, sheets = _read_xlsx(data, sheet, file_name)
        table = Table(frame, "xlsx", sheet=sheet, sheets=sheets)
    elif fmt in ("csv", "jsonl"):
        text, used = decode(data, encoding, file_name)
        text = text.lstrip("\ufeff")
        frame, bad = _read_csv(text, file_name) if fmt == "csv" else _read_jsonl(text, file_name)
        table = Table(frame, fmt, encoding=used, bad_rows=bad)
    else:
        raise UserError(f"{file_name}: the format '{fmt}' cannot be read as a table. Use CSV, XLSX or JSONL.")
    table.frame.columns = [str(c).strip() for c in table.frame.columns]
    if table.frame.empty:
        raise UserError(f"{file_name} has a header but no rows. Upload the file that has the data.")
    return table
