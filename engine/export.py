"""CSV and XLSX exports that a spreadsheet opens safely.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a formula by Excel or
LibreOffice; such a cell is prefixed with a single quote (OWASP's advice for CSV injection).
"""

from __future__ import annotations

import io

import pandas as pd

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value):
    if isinstance(value, str) and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(escape_cell)
    out.columns = [escape_cell(str(c)) for c in out.columns]
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 with a BOM, so that Excel shows accents and Chinese correctly."""
    # CRLF line ends (RFC 4180): then a cell holding a bare carriage return is quoted rather than splitting the row.
    return escape_frame(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")


def to_xlsx_bytes(sheets: dict[str, pd.DataFrame]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            escape_frame(frame).to_excel(writer, sheet_name=name[:31] or "Sheet1", index=False)
    return buffer.getvalue()
