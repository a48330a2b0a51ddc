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

from engine.data import guarded, limits
from engine.data.wording import said
from engine.errors import UserError
from engine.i18n import N_, _, number

csv.field_size_limit(limits.CSV_FIELD_LIMIT)  # the default (131,072 characters) silently ends reading at a long cell

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
    n_long_cells: int = 0  # cells cut to limits.MAX_CELL_CHARS


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


# Files people upload by mistake (a report as a PDF, a table pasted into Word): what they are, and what to do instead.
# Known by their first bytes, or by their name's ending when the bytes do not tell (a .docx is a zip, as an .xlsx is).
_NOT_TABLES = {
    "pdf": N_("{file_name} is a PDF; Bellwether reads CSV, XLSX, JSONL or CoNLL: export the table as CSV and upload "
              "that."),
    "word": N_("{file_name} is a Word document; Bellwether reads CSV, XLSX, JSONL or CoNLL: copy the table into a "
               "spreadsheet, save it as XLSX or CSV and upload that."),
    "powerpoint": N_("{file_name} is a PowerPoint file; Bellwether reads CSV, XLSX, JSONL or CoNLL: copy the table "
                     "into a spreadsheet, save it as XLSX or CSV and upload that."),
    "xls": N_("{file_name} is an old Excel workbook (.xls); Bellwether reads CSV, XLSX, JSONL or CoNLL: open it in "
              "Excel, save it as .xlsx (or CSV) and upload that."),
    "image": N_("{file_name} is an image; Bellwether reads CSV, XLSX, JSONL or CoNLL: upload the table itself, as CSV "
                "or XLSX, not a picture of it."),
    "archive": N_("{file_name} is a compressed archive; Bellwether reads CSV, XLSX, JSONL or CoNLL: unpack it and "
                  "upload the file inside."),
}
_NOT_TABLE_ENDINGS = {".pdf": "pdf", ".doc": "word", ".docx": "word", ".rtf": "word", ".odt": "word",
                      ".ppt": "powerpoint", ".pptx": "powerpoint", ".xls": "xls", ".png": "image", ".jpg": "image",
                      ".jpeg": "image", ".gif": "image", ".webp": "image", ".bmp": "image", ".tif": "image",
                      ".tiff": "image", ".zip": "archive", ".gz": "archive", ".7z": "archive", ".rar": "archive",
                      ".tar": "archive"}
_NOT_TABLE_STARTS = ((b"%PDF", "pdf"), (b"\x89PNG", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"),
                     (b"\x1f\x8b", "archive"), (b"7z\xbc\xaf", "archive"), (b"Rar!", "archive"))


def not_a_table(data: bytes, file_name: str) -> str | None:
    """What kind of non-table file this is ("pdf", "word", ...), or None when it may be a table."""
    for start, kind in _NOT_TABLE_STARTS:
        if data.startswith(start):
            return kind
    kind = _NOT_TABLE_ENDINGS.get(Path(file_name).suffix.lower())
    if kind == "xls" and data[:4] == b"PK\x03\x04":
        return None  # an .xlsx named .xls: readable
    return kind


def refuse_other_formats(data: bytes, file_name: str) -> None:
    """A PDF, Word document, image, archive ... is refused in plain words: what it is, what is read, what to do."""
    if kind := not_a_table(data, file_name):
        raise UserError(_(_NOT_TABLES[kind], file_name=file_name))


def check_not_empty_or_binary(data: bytes, file_name: str) -> None:
    if not data or not data.strip():
        raise UserError(_("{file_name} is empty. Export the sheet again and upload the file that has the rows.",
                          file_name=file_name))
    if b"\x00" in data[:8192] and data[:4] != b"PK\x03\x04":
        raise UserError(_(
            "{file_name} is not a text file (it looks like a binary file with a .csv or similar name). "
            "Upload a CSV, XLSX or JSONL export.", file_name=file_name))


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


def decode(data: bytes, encoding: str | None, file_name: str | None = None) -> tuple[str, str]:
    encoding = encoding or detect_encoding(data)
    file_name = file_name or _("the file")
    try:
        return data.decode(encoding), encoding
    except LookupError:
        raise UserError(_("'{encoding}' is not an encoding this machine knows. Try utf-8, gb18030 or cp1252.",
                          encoding=encoding)) from None
    except UnicodeDecodeError as exc:
        raise UserError(_(
            "{file_name} is not valid {encoding} text (byte {start} cannot be read). "
            "Choose another encoding, such as utf-8, gb18030 (Chinese) or cp1252 (Windows).",
            file_name=file_name, encoding=encoding, start=exc.start)) from None


def _read_csv(text: str, file_name: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    first_line = text[: text.find("\n") if "\n" in text else len(text)]
    try:
        dialect = csv.Sniffer().sniff(first_line[:20_000] + "\n", delimiters=",;\t|")
        sep = dialect.delimiter
    except csv.Error:
        sep = ","
    # The header names the columns: count them before pandas builds a table that wide (a million columns).
    if first_line.count(sep) >= limits.MAX_COLUMNS:
        n = len(next(csv.reader([first_line], delimiter=sep), []))
        if n > limits.MAX_COLUMNS:
            raise limits.too_many_columns(file_name, n)
    # index_col=False: a row with extra fields is a broken row, never a reason to turn the first columns into an index.
    options = dict(sep=sep, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True, index_col=False,
                   nrows=limits.MAX_ROWS + 1)
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
        if len(frame) > limits.MAX_ROWS:
            raise limits.too_many_rows(file_name)
        return frame, []
    except pd.errors.EmptyDataError:
        raise UserError(_("{file_name} has no rows and no header. Upload the file that has the data.",
                          file_name=file_name)) from None
    except pd.errors.ParserError:
        pass
    return _read_csv_row_by_row(text, sep, file_name)


def _read_csv_row_by_row(text: str, sep: str, file_name: str = "") -> tuple[pd.DataFrame, list[tuple[int, str]]]:
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
            if len(records) > limits.MAX_ROWS:
                raise limits.too_many_rows(file_name)
        else:
            bad.append((first, "".join(lines[first - 1 : reader.line_num]).strip()[:300]))
    if header is None:
        raise UserError(_("The file has no header row. The first line should name the columns, e.g. text,label."))
    return pd.DataFrame(records, columns=header, dtype=str), bad


def _check_zip(data: bytes, file_name: str) -> None:
    """An .xlsx is a zip: refuse one that unpacks to more than the limit before anything is unpacked."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise UserError(_("{file_name} is not a readable Excel workbook (.xlsx). Save it again from Excel and retry.",
                          file_name=file_name)) from None
    if unpacked > limits.MAX_XLSX_UNZIPPED_BYTES:
        raise UserError(_(
            "{file_name} unpacks to {size} MB; Bellwether reads workbooks that unpack to up to "
            "{limit} MB. Keep the sheet you need, or export it as CSV.", file_name=file_name,
            size=number(unpacked / 1024 / 1024), limit=number(limits.MAX_XLSX_UNZIPPED_MB)))


def _read_xlsx(data: bytes, sheet: str | None, file_name: str) -> tuple[pd.DataFrame, str, list[str]]:
    """Stream the chosen sheet row by row (openpyxl read-only): a cell far away (XFD100000) costs one cell, not a
    table of every cell before it. Empty rows are skipped; rows and columns are counted against the limits as read."""
    import openpyxl

    _check_zip(data, file_name)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise UserError(_("{file_name} is not a readable Excel workbook (.xlsx). Save it again from Excel and retry.",
                          file_name=file_name)) from None
    try:
        sheets = list(book.sheetnames)
        if not sheets:
            raise UserError(_("{file_name} has no sheets.", file_name=file_name))
        if sheet is None and len(sheets) > 1:  # the sheet with the most rows, not a README or notes sheet
            sheet = max(sheets, key=lambda name: (_count_rows(book[name]), -sheets.index(name)))
        sheet = sheet or sheets[0]
        if sheet not in sheets:
            raise UserError(_("{file_name} has no sheet called '{sheet}'. Its sheets are: {sheets}.",
                              file_name=file_name, sheet=sheet, sheets=", ".join(sheets)))
        records: list[list[str]] = []
        width = 0
        worksheet = book[sheet]
        worksheet.reset_dimensions()  # rows as long as their last cell, not padded to the stated width (XFD)
        for row in worksheet.iter_rows(values_only=True):
            last = len(row)
            while last and (row[last - 1] is None or row[last - 1] == ""):
                last -= 1
            if not last:
                continue  # an empty row (openpyxl yields one for every gap)
            if last > limits.MAX_COLUMNS:
                raise limits.too_many_columns(file_name, last)
            width = max(width, last)
            records.append(["" if v is None else _cell_text(v) for v in row[:last]])
            if len(records) > limits.MAX_ROWS + 1:
                raise limits.too_many_rows(file_name)
    finally:
        book.close()
    if not records:
        raise UserError(_("{file_name}: the sheet '{sheet}' is empty. Choose the sheet that has the data.",
                          file_name=file_name, sheet=sheet))
    header = records[0] + [""] * (width - len(records[0]))
    header = [h or f"Unnamed: {i}" for i, h in enumerate(header)]
    body = [r + [""] * (width - len(r)) for r in records[1:]]
    return pd.DataFrame(body, columns=header, dtype=str), sheet, sheets


def _count_rows(worksheet) -> int:
    """Rows with something in them (at most the row limit + 2: enough to tell which sheet is the data)."""
    worksheet.reset_dimensions()
    n = 0
    for row in worksheet.iter_rows(values_only=True):
        if any(v not in (None, "") for v in row):
            n += 1
            if n > limits.MAX_ROWS + 1:
                break
    return n


def other_sheets_note(sheet: str | None, sheets: list[str]) -> dict | None:
    """'Read the sheet 'Q3 labels' (the one with the most rows); the workbook's other sheets: Notes.' or None (a
    sentence kept with the report, shown with engine.data.wording.shown)."""
    others = [s for s in sheets if s != sheet]
    if not sheet or not others:
        return None
    return said(N_("Read the sheet '{sheet}'; the workbook's other sheets: {others}. Unless you chose it, it is "
                   "the sheet with the most rows; choose another sheet if the data is there."),
                sheet=sheet, others=", ".join(others))


def _cell_text(value) -> str:
    """A cell as pandas' ExcelFile(dtype=str) wrote it: whole floats without '.0', dates as ISO text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value)
    return str(value)


def _read_jsonl(text: str, file_name: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(_("{file_name} is not valid JSON (line {line}: {error}).", file_name=file_name,
                              line=exc.lineno, error=exc.msg)) from None
        bad = [(i + 1, json.dumps(r)[:200]) for i, r in enumerate(records) if not isinstance(r, dict)]
        records = [r for r in records if isinstance(r, dict)]
    else:
        records, bad = [], []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                bad.append((line_no, line[:200]))
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                bad.append((line_no, line[:200]))
    if len(records) > limits.MAX_ROWS:
        raise limits.too_many_rows(file_name)
    keys: dict = {}
    for record in records:  # count the columns before pandas builds a table that wide
        keys.update(dict.fromkeys(record))
        if len(keys) > limits.MAX_COLUMNS:
            raise limits.too_many_columns(file_name)
    if not records:
        raise UserError(_("{file_name} has no JSON objects, one per line, to read. Each line should look like "
                          "{example}.", file_name=file_name, example='{"text": ..., "label": ...}'))
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
    """Read CSV, XLSX or JSONL bytes into a Table of strings, within :mod:`engine.data.limits`."""
    limits.check_file_size(len(data), file_name)
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
        raise UserError(_("{file_name}: the format '{format}' cannot be read as a table. Use CSV, XLSX or JSONL.",
                          file_name=file_name, format=fmt))
    table.frame.columns = [str(c).strip() for c in table.frame.columns]
    table.n_long_cells = cut_long_cells(table.frame)
    if table.frame.empty:
        raise UserError(_("{file_name} has a header but no rows. Upload the file that has the data.",
                          file_name=file_name))
    return table


def cut_long_cells(frame: pd.DataFrame) -> int:
    """Cut cells longer than limits.MAX_CELL_CHARS (in place); how many were cut."""
    n = 0
    for position in range(frame.shape[1]):
        values = frame.iloc[:, position].astype(str)
        long = (values.str.len() > limits.MAX_CELL_CHARS).to_numpy()
        if long.any():
            n += int(long.sum())
            cut = values.copy()
            cut[long] = values[long].str.slice(0, limits.MAX_CELL_CHARS)
            frame.iloc[:, position] = cut
    return n


def read_table_in_child(data: bytes, file_name: str, head: int | None = None, columns: list[str] | None = None,
                        **kwargs) -> Table:
    """:func:`read_table` as the guarded child runs it, sending back only what the caller needs: the first ``head``
    rows (a preview) and/or only ``columns`` (those that exist)."""
    table = read_table(data, file_name, **kwargs)
    if columns:
        table.frame = table.frame[[c for c in dict.fromkeys(columns) if c in table.frame.columns]]
    if head:
        table.frame = table.frame.head(head)
    return table


def read_table_guarded(data: bytes, file_name: str, head: int | None = None, columns: list[str] | None = None,
                       **kwargs) -> Table:
    """:func:`read_table` in a memory-capped child process (engine.data.guarded): the dashboard's path, so no uploaded
    table can exhaust the dashboard's memory. Same result and plain errors."""
    return guarded.call("engine.data.readers:read_table_in_child", data, file_name, head=head, columns=columns,
                        **kwargs)
