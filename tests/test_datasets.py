"""Saved datasets: immutable versions, rows by split, deletion rules, refused uploads leave nothing, and the CLI."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pandas as pd
import pytest

from engine import db
from engine.data import datasets
from engine.cli.main import main as cli
from engine.errors import NotFound, UserError
from tests.conftest import ROOT, file_snapshot

SAMPLE = (
    "text,label\n"
    + "".join(f"Profit rose in quarter {i},positive\n" for i in range(10))
    + "".join(f"Sales fell in region {i},negative\n" for i in range(10))
    + "".join(f"The board met on day {i},neutral\n" for i in range(10))
).encode()
PROBLEMS = SAMPLE + b"Profit rose in quarter 1,positive\n ,neutral\n"  # a duplicate and an empty text

CONLL = b"""-DOCSTART- -X- O O

Nokia NNP I-ORG
rose VBD O

Shares NNS O
of IN O
Siemens NNP I-ORG
AG NNP I-ORG
fell VBD O
in IN O
Munich NNP I-LOC
"""


def test_fpb_import_saves_a_version_with_rows_per_split_and_a_copy_of_the_file(store, home, shared):
    data = shared("fpb", "train.csv").read_bytes()
    saved, report = datasets.import_file(store, data, "train.csv", "fpb", created_by="ana")
    assert (saved["name"], saved["version"], saved["ref"]) == ("fpb", 1, "fpb:1")
    assert saved["task"] == "text-classification" and saved["n_rows"] == 2956
    assert saved["source_file"] == "train.csv" and saved["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert saved["source_format"] == "csv" and saved["encoding"] == "utf-8" and saved["created_by"] == "ana"
    assert saved["mapping"] == {"text": "text", "label": "label", "split": None, "sheet": None}
    assert saved["labels"] == ["negative", "neutral", "positive"]
    assert saved["counts"]["train"] == {"negative": 282, "neutral": 1403, "positive": 679}
    assert saved["split_sizes"] == {"train": 2364, "validation": 296, "test": 296}
    assert saved["report"]["n_rows"] == 2956 and saved["report"]["problems"] == []
    assert saved["created_at"].endswith("+00:00")
    copy = datasets.source_path(saved)
    assert copy is not None and copy.read_bytes() == data and copy.is_relative_to(home / "uploads")

    every = datasets.rows(store, saved["id"])
    assert [r["row_id"] for r in every] == list(range(1, 2957))
    assert every[0]["text"].startswith("The international electronic industry company Elcoteq")
    assert every[0]["label"] == "negative" and every[0]["tokens"] is None and every[0]["tags"] is None
    test_rows = datasets.rows(store, saved["id"], split="test")
    assert len(test_rows) == 296 and {r["split"] for r in test_rows} == {"test"}
    with pytest.raises(UserError, match="not a split"):
        datasets.rows(store, saved["id"], split="dev")

    # The same name again is a new version; the old one is untouched.
    again, _ = datasets.import_file(store, SAMPLE, "more.csv", "fpb", created_by="bo")
    assert again["version"] == 2 and datasets.get(store, "fpb")["id"] == again["id"]
    assert datasets.get(store, "fpb:1")["n_rows"] == 2956 and datasets.get(store, "fpb:v2")["n_rows"] == 30
    assert [d["ref"] for d in datasets.list_datasets(store)] == ["fpb:2", "fpb:1"]
    assert store["dataset_rows"].count == 2956 + 30


def test_chinese_gb18030_and_xlsx_copies_import_with_the_same_counts(store, shared, tmp_path):
    utf8 = shared("finfe-zh", "train.csv").read_bytes()
    gb_path = tmp_path / "finfe-gb18030.csv"
    gb_path.write_bytes(utf8.decode("utf-8").encode("gb18030"))
    frame = pd.read_csv(io.BytesIO(utf8), dtype=str, keep_default_na=False)
    xlsx_path = tmp_path / "finfe.xlsx"
    frame.to_excel(xlsx_path, index=False, sheet_name="posts")
    a, _ = datasets.import_file(store, utf8, "train.csv", "zh")
    b, _ = datasets.import_file(store, gb_path.read_bytes(), gb_path.name, "zh")
    c, _ = datasets.import_file(store, xlsx_path.read_bytes(), xlsx_path.name, "zh", sheet="posts")
    assert (a["encoding"], b["encoding"], c["encoding"], c["mapping"]["sheet"]) == ("utf-8", "gb18030", None, "posts")
    assert a["n_rows"] == b["n_rows"] == c["n_rows"] == 7145
    assert a["counts"] == b["counts"] == c["counts"]
    assert a["counts"]["train"] == {"negative": 1374, "neutral": 1208, "positive": 3134}
    texts = [[r["text"] for r in datasets.rows(store, d["id"])] for d in (a, b, c)]
    assert texts[0] == texts[1] == texts[2]


def test_conll_rows_carry_tokens_and_bio_tags(store):
    saved, report = datasets.import_file(store, CONLL, "tiny.conll", "ner")
    assert saved["task"] == "token-classification" and saved["n_rows"] == 2
    assert saved["labels"] == ["B-LOC", "B-ORG", "I-LOC", "I-ORG", "O"]
    got = {tuple(r["tokens"]): r for r in datasets.rows(store, saved["id"])}
    row = got[("Shares", "of", "Siemens", "AG", "fell", "in", "Munich")]
    assert row["tags"] == ["O", "O", "B-ORG", "I-ORG", "O", "O", "B-LOC"]
    assert row["text"] == "Shares of Siemens AG fell in Munich" and row["label"] is None


def test_finer_imports_from_the_shared_io_file(store, shared):
    saved, report = datasets.import_file(store, shared("finer", "FIN5.txt").read_bytes(), "FIN5.txt", "finer")
    assert saved["n_rows"] == 1141 and saved["mapping"]["tag_scheme"] == "IO"
    assert sum(saved["split_sizes"].values()) == 40849
    rows = datasets.rows(store, saved["id"])
    assert all(t.startswith(("B-", "I-", "O")) for r in rows for t in r["tags"])
    assert not any(a == "O" and b.startswith("I-") for r in rows for a, b in zip(["O"] + r["tags"], r["tags"]))


def test_get_refs_and_not_found(store):
    assert datasets.parse_ref("fpb") == ("fpb", None) and datasets.parse_ref("fpb:3") == ("fpb", 3)
    with pytest.raises(NotFound, match="No dataset has been saved yet"):
        datasets.get(store, "fpb")
    datasets.import_file(store, SAMPLE, "s.csv", "s")
    with pytest.raises(NotFound, match="no dataset 's' version 9. Saved datasets: s."):
        datasets.get(store, "s:9")
    with pytest.raises(UserError, match="write NAME or NAME:VERSION"):
        datasets.get(store, "s:latest")


def test_delete_needs_confirmation_and_is_refused_while_a_job_uses_the_dataset(store, home):
    saved, _ = datasets.import_file(store, SAMPLE, "s.csv", "s")
    other, _ = datasets.import_file(store, SAMPLE, "s.csv", "s")
    with pytest.raises(UserError, match="cannot be undone. Confirm"):
        datasets.delete(store, "s:1")
    job = store["jobs"].insert({"kind": "train", "status": "running", "dataset_id": saved["id"], "created_at": db.now()}).last_pk
    before, files = db.table_counts(store), file_snapshot(home)
    with pytest.raises(UserError, match=rf"used by a job that has not finished: #{job} \(running\)"):
        datasets.delete(store, "s:1", confirm=True)
    assert db.table_counts(store) == before and file_snapshot(home) == files
    store["jobs"].update(job, {"status": "succeeded"})
    datasets.delete(store, "s:1", confirm=True)
    assert [d["ref"] for d in datasets.list_datasets(store)] == ["s:2"]
    assert store["dataset_rows"].count == 30 and datasets.source_path(other) is not None
    assert len([f for f in file_snapshot(home) if f.startswith("uploads/")]) == 1


# ---- refused uploads change nothing -----------------------------------------------------------------------------


def _xlsx_one_class() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"headline": ["a", "b", "c"], "sentiment": ["up", "up", "up"]}).to_excel(buffer, index=False)
    return buffer.getvalue()


REFUSED = [
    ("empty file", b"", "x.csv", {}, "x.csv is empty"),
    ("binary file renamed .csv", bytes(range(256)) * 40, "export.csv", {}, "not a text file"),
    ("wrong encoding forced", "文本,标签\n利润增长,正面\n亏损,负面\n".encode("gb18030"), "zh.csv", {"encoding": "utf-8"},
     "not valid utf-8 text"),
    ("missing column", SAMPLE, "s.csv", {"mapping": {"text": "headline"}}, "has no column 'headline' for the text"),
    ("no label column", b"text\nProfit rose\nSales fell\n", "t.csv", {}, "could not tell which column holds the label"),
    ("a single class", _xlsx_one_class(), "one.xlsx", {}, "same label, 'up'"),
    ("only blank texts", b"text,label\n ,positive\n\t,negative\n", "b.csv", {}, "No usable rows are left"),
    ("damaged workbook", b"PK\x03\x04broken", "book.xlsx", {}, "not a readable Excel workbook"),
    ("not JSON lines", b"{not json}\n", "d.jsonl", {}, "has no JSON objects"),
    ("CoNLL without entities", b"Shares O\nrose O\n", "n.conll", {}, "has no entities"),
    ("bad name", SAMPLE, "s.csv", {"name": "fpb:2"}, "cannot be a dataset name"),
    ("bad ratios", SAMPLE, "s.csv", {"ratios": (50, 50, 50)}, "must add up to 100"),
]


@pytest.mark.parametrize("what, data, file_name, kwargs, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_upload_changes_nothing(store, home, what, data, file_name, kwargs, message):
    datasets.import_file(store, SAMPLE, "first.csv", "existing")  # something already there, to be left alone
    before, files = db.table_counts(store), file_snapshot(home)
    kwargs = dict(kwargs)
    name = kwargs.pop("name", "new")
    with pytest.raises(UserError, match=message):
        datasets.import_file(store, data, file_name, name, **kwargs)
    assert db.table_counts(store) == before
    assert file_snapshot(home) == files


def test_a_failure_while_saving_rolls_back_rows_and_file(store, home, monkeypatch):
    from engine.data import ingest
    from engine.data import validate

    candidate = ingest.read_file(SAMPLE, "s.csv")
    prepared = validate.build(candidate)
    prepared.rows[-1]["row_id"] = prepared.rows[0]["row_id"]  # a clash makes the last insert fail
    before, files = db.table_counts(store), file_snapshot(home)
    with pytest.raises(Exception):
        datasets.save(store, candidate, prepared, "s", "ana")
    assert db.table_counts(store) == before and file_snapshot(home) == files


# ---- command line --------------------------------------------------------------------------------------------


def test_cli_import_prints_the_report_and_the_new_version(home, tmp_path, capsys):
    path = tmp_path / "labelled.csv"
    path.write_bytes(SAMPLE)
    assert cli(["dataset", "import", str(path), "--name", "demo", "--user", "ana"]) == 0
    out = capsys.readouterr().out
    assert "File: labelled.csv (CSV, utf-8), 30 rows read." in out and "No problems found." in out
    assert "train: 24 rows (negative 8, neutral 8, positive 8)" in out
    assert out.strip().endswith("Saved dataset demo version 1 (30 rows).")
    assert cli(["dataset", "import", str(path), "--name", "demo", "--ratios", "60/20/20", "--seed", "1"]) == 0
    assert "Saved dataset demo version 2" in capsys.readouterr().out
    assert cli(["dataset", "list"]) == 0
    listing = capsys.readouterr().out
    assert "demo:2" in listing and "demo:1" in listing and "by ana" in listing
    assert cli(["dataset", "show", "demo:2", "--format", "json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["counts"]["test"] == {"negative": 2, "neutral": 2, "positive": 2}
    assert shown["report"]["split"]["ratios"] == pytest.approx([0.6, 0.2, 0.2])
    assert cli(["dataset", "show", "demo"]) == 0
    assert "Dataset demo:2 (text-classification), 30 rows" in capsys.readouterr().out


def test_cli_import_with_problems_needs_yes_when_nobody_can_confirm(home, tmp_path, capsys):
    path = tmp_path / "problems.csv"
    path.write_bytes(PROBLEMS)
    conn = db.connect()
    before, files = db.table_counts(conn), file_snapshot(home)
    assert cli(["dataset", "import", str(path), "--name", "p", "--label-col", "label"]) == 2
    captured = capsys.readouterr()
    assert "[merged] 1 row repeats a text" in captured.out and "[dropped] 1 row has an empty" in captured.out
    assert "Pass --yes to accept the report" in captured.err and "nothing was saved" in captured.err
    assert db.table_counts(conn) == before and file_snapshot(home) == files
    assert cli(["dataset", "import", str(path), "--name", "p", "--yes"]) == 0
    assert "Saved dataset p version 1 (30 rows)." in capsys.readouterr().out
    conn.close()


@pytest.mark.process
def test_cli_delete_and_unusable_file_exit_2_with_the_plain_message(home, tmp_path):
    bad = tmp_path / "photo.csv"
    bad.write_bytes(bytes(range(256)) * 40)
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine", "dataset", *a], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    result = run("import", str(bad), "--name", "x")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: photo.csv is not a text file (it looks like a binary file with a .csv or similar name). "
        "Upload a CSV, XLSX or JSONL export."
    )
    assert "Traceback" not in result.stderr
    assert cli(["dataset", "import", str(tmp_path / "missing.csv"), "--name", "x"]) == 2
    good = tmp_path / "good.csv"
    good.write_bytes(SAMPLE)
    assert cli(["dataset", "import", str(good), "--name", "g"]) == 0
    assert cli(["dataset", "delete", "g"]) == 2
    assert cli(["dataset", "delete", "g:1", "--yes"]) == 0
    assert cli(["dataset", "show", "g"]) == 2
