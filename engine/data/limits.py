"""How large an uploaded file may be, checked while it is read (before a table is built), and what is said when not.

The numbers are the product's limits, stated in the README. ``.streamlit/config.toml``'s ``server.maxUploadSize``
matches ``MAX_FILE_MB``.
"""

from __future__ import annotations

from engine.data.wording import said
from engine.errors import UserError
from engine.i18n import N_, _, number

MAX_FILE_MB = 200  # an uploaded or imported file
MAX_FILE_BYTES = MAX_FILE_MB * 1024 * 1024
MAX_ROWS = 2_000_000  # data rows of a table (a year of a busy news export is under 1 million)
MAX_COLUMNS = 500  # columns of a table
MAX_CELL_CHARS = 1_000_000  # characters of one cell; longer cells are cut there and counted in the report
MAX_XLSX_UNZIPPED_MB = 1024  # an .xlsx is a zip: the size of what it unpacks to
MAX_XLSX_UNZIPPED_BYTES = MAX_XLSX_UNZIPPED_MB * 1024 * 1024
CSV_FIELD_LIMIT = MAX_FILE_BYTES + 1  # Python's csv module stops at 131,072 characters per field by default
TOKENIZE_CHARS_PER_TOKEN = 32  # the length check tokenizes at most this many characters per allowed token


def check_file_size(n_bytes: int, file_name: str) -> None:
    if n_bytes > MAX_FILE_BYTES:
        raise UserError(_(
            "{file_name} is {size} MB; Bellwether reads files up to {limit} MB. "
            "Split it into smaller files (for news, e.g. one per month) and upload them one by one.",
            file_name=file_name, size=number(n_bytes / 1024 / 1024), limit=MAX_FILE_MB))


def too_many_rows(file_name: str) -> UserError:
    return UserError(_(
        "{file_name} has more than {limit} rows; Bellwether reads up to {limit} rows from one file. "
        "Split it into smaller files and upload them one by one.", file_name=file_name, limit=number(MAX_ROWS)))


def too_many_columns(file_name: str, n: int | None = None) -> UserError:
    if n:
        return UserError(_(
            "{file_name} has {n} columns; Bellwether reads tables of up to {limit} columns. Keep the columns you "
            "need (text, label, time, title ...) and save the file again.", file_name=file_name, n=number(n),
            limit=number(MAX_COLUMNS)))
    return UserError(_(
        "{file_name} has more than {limit} columns; Bellwether reads tables of up to {limit} columns. Keep the "
        "columns you need (text, label, time, title ...) and save the file again.", file_name=file_name,
        limit=number(MAX_COLUMNS)))


LONG_CELLS = N_("{n} cell(s) longer than {limit} characters were cut to their first {limit} characters.")


def long_cells_said(n: int) -> dict:
    """The note on cells cut to the limit, kept with a report and shown in the reader's language."""
    return said(LONG_CELLS, n=number(n), limit=number(MAX_CELL_CHARS))


def long_cells_note(n: int) -> str:
    return _(LONG_CELLS, n=number(n), limit=number(MAX_CELL_CHARS))
