"""How large an uploaded file may be, checked while it is read (before a table is built), and what is said when not.

The numbers are the product's limits, stated in the README. ``.streamlit/config.toml``'s ``server.maxUploadSize``
matches ``MAX_FILE_MB``.
"""

from __future__ import annotations

from engine.errors import UserError

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
        raise UserError(
            f"{file_name} is {n_bytes / 1024 / 1024:,.0f} MB; Bellwether reads files up to {MAX_FILE_MB} MB. "
            "Split it into smaller files (for news, e.g. one per month) and upload them one by one."
        )


def too_many_rows(file_name: str) -> UserError:
    return UserError(
        f"{file_name} has more than {MAX_ROWS:,} rows; Bellwether reads up to {MAX_ROWS:,} rows from one file. "
        "Split it into smaller files and upload them one by one."
    )


def too_many_columns(file_name: str, n: int | None = None) -> UserError:
    has = f"{n:,} columns" if n else f"more than {MAX_COLUMNS:,} columns"
    return UserError(
        f"{file_name} has {has}; Bellwether reads tables of up to {MAX_COLUMNS:,} columns. Keep the columns you "
        "need (text, label, time, title ...) and save the file again."
    )


def long_cells_note(n: int) -> str:
    return (f"{n:,} cell(s) longer than {MAX_CELL_CHARS:,} characters were cut to their first "
            f"{MAX_CELL_CHARS:,} characters.")
