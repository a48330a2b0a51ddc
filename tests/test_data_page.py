"""The Data page: upload through the page, read the report, save; a bad file gets a plain message; view and delete."""

from __future__ import annotations

import pytest

from engine import db
from engine.data import datasets
from tests.conftest import file_snapshot
from tests.helpers import open_page, texts

SAMPLE = (
    "headline,sentiment\n"
    + "".join(f"Profit rose in quarter {i},positive\n" for i in range(10))
    + "".join(f"Sales fell in region {i},negative\n" for i in range(10))
    + "".join(f"The board met on day {i},neutral\n" for i in range(9))
    + "Sales fell in region 3,negative\n"  # an exact duplicate: reported as merged
).encode()


@pytest.fixture
def page(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    return open_page("data")


def test_upload_check_and_save_through_the_page(page, home):
    at = page
    assert "No dataset saved yet" in texts(at)
    at.file_uploader[0].set_value(("labelled.csv", SAMPLE, "text/csv")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key=next(s.key for s in at.selectbox if s.label == "Text column")).value == "headline"
    assert next(s for s in at.selectbox if s.label == "Label column").value == "sentiment"
    assert next(s for s in at.selectbox if s.label == "Split column (optional)").value == "(none)"
    shown = texts(at)
    assert "1 problem(s) found" in shown
    assert "**Will be merged.** 1 row repeats a text already in the file with the same label" in shown
    assert "- 'Sales fell in region 3' x2" in shown
    assert "stratified by label, seed 42" in shown
    assert [m.value for m in at.metric] == ["30", "29", "3"]
    conn = db.connect()
    assert conn["datasets"].count == 0  # nothing is saved before the analyst accepts

    next(t for t in at.text_input if t.label == "Dataset name").set_value("headlines")
    next(b for b in at.button if b.label == "Accept & save").click().run()
    assert not at.exception
    assert "Saved dataset headlines version 1 (29 rows)." in [s.value for s in at.success]
    saved = datasets.get(conn, "headlines")
    assert saved["n_rows"] == 29 and saved["created_by"] == "ana"
    assert saved["mapping"]["text"] == "headline" and saved["mapping"]["label"] == "sentiment"
    assert datasets.source_path(saved).read_bytes() == SAMPLE
    # The uploader is empty again and the new dataset is shown, with its charts.
    assert at.file_uploader[0].value is None
    assert at.selectbox(key="show_dataset").value == "headlines:1"
    assert "**headlines:1** — text-classification, 29 rows" in texts(at)
    preview = at.dataframe[-1].value
    assert len(preview) == 29 and list(preview.columns) == ["row_id", "split", "text", "label"]
    assert len(at.get("plotly_chart")) == 2
    conn.close()


def test_a_bad_file_gets_a_plain_error_and_nothing_is_saved(page, home):
    at = page
    conn = db.connect()
    before, files = db.table_counts(conn), file_snapshot(home)
    at.file_uploader[0].set_value(("photo.csv", bytes(range(256)) * 40, "text/csv")).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "photo.csv is not a text file (it looks like a binary file with a .csv or similar name). "
        "Upload a CSV, XLSX or JSONL export."
    ]
    assert not [b for b in at.button if b.label == "Accept & save"]
    # A readable file whose label column holds one class is refused with its reason, too.
    one_class = b"text,label\nProfit rose,positive\nSales rose,positive\n"
    at.file_uploader[0].set_value(("one.csv", one_class, "text/csv")).run()
    assert any("same label, 'positive'" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Accept & save"]
    assert db.table_counts(conn) == before and file_snapshot(home) == files
    conn.close()


def test_gb18030_encoding_is_detected_and_can_be_overridden(page):
    at = page
    data = "文本,标签\n利润大幅增长,正面\n亏损扩大,负面\n销售平稳,中性\n".encode("gb18030")
    at.file_uploader[0].set_value(("zh.csv", data, "text/csv")).run()
    assert not at.error
    assert next(t for t in at.text_input if t.label == "Encoding used").value == "gb18030"
    assert next(s for s in at.selectbox if s.label == "Text column").value == "文本"
    next(s for s in at.selectbox if s.label == "Encoding").set_value("utf-8").run()
    assert any("not valid utf-8 text" in e.value for e in at.error)


def test_delete_asks_for_confirmation_first(page, home):
    conn = db.connect()
    datasets.import_file(conn, SAMPLE, "s.csv", "old")
    at = page
    at.run()
    next(b for b in at.button if b.label == "Delete old:1…").click().run()
    assert any("This cannot be undone" in w.value for w in at.warning)
    assert conn["datasets"].count == 1
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert "Deleted dataset old:1." in [s.value for s in at.success]
    assert conn["datasets"].count == 0 and conn["dataset_rows"].count == 0
    assert not [f for f in file_snapshot(home) if f.startswith("uploads/datasets/")]
    conn.close()


def test_xlsx_sheet_picker_and_a_conll_upload(page):
    import io

    import pandas as pd

    at = page
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        pd.DataFrame({"note": ["read me"]}).to_excel(writer, sheet_name="About", index=False)
        pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": ["up", "down", "flat"] * 4}).to_excel(
            writer, sheet_name="Labelled", index=False
        )
    at.file_uploader[0].set_value(("book.xlsx", buffer.getvalue(), "application/vnd.ms-excel")).run()
    # the sheet with the most rows opens first, and the report names the other sheets
    assert next(s for s in at.selectbox if s.label == "Sheet").value == "Labelled"
    assert not at.error
    assert [m.value for m in at.metric] == ["12", "12", "3"]
    assert "Read the sheet 'Labelled'; the workbook's other sheets: About." in texts(at)
    next(s for s in at.selectbox if s.label == "Sheet").set_value("About").run()
    assert any("could not tell which column holds the label" in e.value and "the workbook also has: Labelled"
               in e.value for e in at.error)
    next(s for s in at.selectbox if s.label == "Sheet").set_value("Labelled").run()
    assert not at.error

    conll = b"Nokia I-ORG\nrose O\n\nShares O\nof O\nSiemens I-ORG\nAG I-ORG\n"
    at.file_uploader[0].set_value(("tags.conll", conll, "text/plain")).run()
    assert not at.error
    assert "tags written in **IO**, stored as BIO" in texts(at)
    next(b for b in at.button if b.label == "Accept & save").click().run()
    assert any(s.value.startswith("Saved dataset tags version 1 (2 sentences)") for s in at.success)
    assert "**tags:1** — token-classification, 2 sentences" in texts(at)
    assert list(at.dataframe[-1].value.columns) == ["row_id", "split", "text", "tags"]
