"""Bounded inputs: hostile or huge files get a plain refusal naming the limit (or are read within it), read in a child
process with a memory cap, and the dashboard's process stays small while they are read.

Every file is made here, in tmp_path, never committed. The memory checks run the dashboard's own read path
(ingest.read_file_guarded, feeds.preview_guarded / import_file_guarded, validate.build: what views/data.py and
views/feeds.py call) in a fresh Python process and read that process's peak resident memory (VmHWM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from engine.data import ingest, limits, readers
from engine.errors import UserError
from tests.conftest import ROOT

GB = 1024 * 1024  # VmHWM is in kB


def _dashboard_path(home, script: str) -> dict:
    """Run ``script`` (which sets ``out``) in a new process as the dashboard would; its output and peak memory."""
    code = textwrap.dedent("""
        import json, sys
        from engine.errors import UserError
        out = {}
        try:
    """) + textwrap.indent(textwrap.dedent(script), "    ") + textwrap.dedent("""
        except UserError as exc:
            out["error"] = str(exc)
        out["vmhwm_kb"] = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
        print(json.dumps(out))
    """)
    env = {**os.environ, "BELLWETHER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _xfd_workbook(path, row: int) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet["A1"], sheet["B1"] = "text", "label"
    sheet["A2"], sheet["B2"] = "Profits rise", "positive"
    sheet.cell(row=row, column=16384, value="x")  # XFD<row>
    book.save(path)


@pytest.mark.process
def test_workbook_with_a_cell_at_xfd100000_is_refused_and_the_dashboard_stays_small(tmp_path, home):
    path = tmp_path / "far.xlsx"
    _xfd_workbook(path, 100_000)
    assert path.stat().st_size < 20_000  # a few KB on disk
    out = _dashboard_path(home, f"""
        from engine.data import ingest
        ingest.read_file_guarded(open({str(path)!r}, "rb").read(), "far.xlsx")
    """)
    assert "far.xlsx has 16,384 columns" in out["error"] and "up to 500 columns" in out["error"]
    assert out["vmhwm_kb"] < GB, out


def test_workbook_read_streams_and_keeps_its_rows(tmp_path):
    """A cell far away at XFD2000 (once 961 MB and 8 s) is refused at once; an ordinary workbook still reads."""
    path = tmp_path / "far.xlsx"
    _xfd_workbook(path, 2000)
    with pytest.raises(UserError, match="16,384 columns"):
        ingest.read_file(path.read_bytes(), "far.xlsx")
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["text", "label", "n"])
    for i in range(30):
        book.active.append([f"headline {i}", "positive" if i % 2 else "negative", i])
    book.active.append([None, None, None])
    book.save(tmp_path / "ok.xlsx")
    candidate = ingest.read_file((tmp_path / "ok.xlsx").read_bytes(), "ok.xlsx")
    assert candidate.columns == ["text", "label", "n"] and len(candidate.frame) == 30
    assert candidate.frame.iloc[3].tolist() == ["headline 3", "positive", "3"]


@pytest.mark.process
def test_million_column_csv_is_refused_and_the_dashboard_stays_small(tmp_path, home):
    path = tmp_path / "wide.csv"
    header = ",".join(f"c{i}" for i in range(1_000_000))
    path.write_text(header + "\n" + ",".join("1" for _ in range(1_000_000)) + "\n")
    assert path.stat().st_size > 8_000_000
    out = _dashboard_path(home, f"""
        from engine.data import ingest
        ingest.read_file_guarded(open({str(path)!r}, "rb").read(), "wide.csv")
    """)
    assert "wide.csv has 1,000,000 columns" in out["error"] and "up to 500 columns" in out["error"], out
    assert out["vmhwm_kb"] < GB, out


@pytest.mark.process
def test_50_mb_line_is_read_cut_and_checked_within_memory(tmp_path, home):
    """A 50 MB single-line text: read, cut to 1,000,000 characters (said in the report), and the length check
    tokenizes only what a model can use, so the check takes seconds and the dashboard stays small."""
    path = tmp_path / "line.csv"
    rows = [f"Headline {i} about profits,{'positive' if i % 2 else 'negative'}" for i in range(40)]
    with open(path, "w") as handle:
        handle.write("text,label\n" + "\n".join(rows) + "\n")
        handle.write("word " * 10_000_000 + ",negative\n")
    assert path.stat().st_size > 50_000_000
    out = _dashboard_path(home, f"""
        import time
        from engine.data import ingest, validate
        data = open({str(path)!r}, "rb").read()
        candidate = ingest.read_file_guarded(data, "line.csv")
        started = time.perf_counter()
        report = validate.build(candidate, {{"text": "text", "label": "label"}}).report
        out["seconds"] = time.perf_counter() - started
        out["notes"] = report.notes
        out["n_rows"] = report.n_rows
        out["longest_kept"] = max(len(t) for t in candidate.frame["text"])
        out["too_long"] = [p.message for p in report.problems if p.code == "too_long"]
    """)
    assert "error" not in out, out
    assert out["n_rows"] == 41 and out["longest_kept"] == limits.MAX_CELL_CHARS
    assert any("1 cell(s) longer than 1,000,000 characters were cut" in n for n in out["notes"]), out
    assert out["too_long"] and out["too_long"][0].startswith("1 texts"), out
    assert out["seconds"] < 20, out
    assert out["vmhwm_kb"] < GB, out


def test_long_cell_keeps_every_row(tmp_path):
    """A 200,000-character cell once ended Python's CSV reader silently (1 of 1,002 rows kept)."""
    lines = ["text,label"] + [f"Headline number {i},{'positive' if i % 2 else 'negative'}" for i in range(1000)]
    lines.insert(500, f"\"{'long ' * 40_000}\",negative")
    lines.insert(700, "a,broken,row,with,extra,fields")  # pandas refuses the file: the careful reader runs
    table = readers.read_table("\n".join(lines).encode(), "long.csv")
    assert len(table.frame) == 1001
    assert [n for n, _ in table.bad_rows] == [701]
    assert table.frame["text"].str.len().max() == 200_000


def test_row_and_file_limits_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ROWS", 100)
    data = ("text,label\n" + "\n".join(f"t{i},x" for i in range(101))).encode()
    with pytest.raises(UserError, match="more than 100 rows"):
        readers.read_table(data, "many.csv")
    wide = "{" + ",".join(f'"k{i}": 1' for i in range(600)) + "}\n"
    with pytest.raises(UserError, match="more than 500 columns"):
        readers.read_table(wide.encode(), "wide.jsonl")
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UserError, match="up to 200 MB"):
        ingest.read_file(b"text,label\n" + b"x,y\n" * 400, "big.csv")


@pytest.mark.process
def test_guarded_child_reports_running_out_of_memory(tmp_path, home, monkeypatch):
    """The cap holds: a read that needs more memory than allowed is a plain message, never a dead dashboard."""
    monkeypatch.setenv("BELLWETHER_READ_MEMORY_MB", "256")
    rows = "\n".join(f"Headline {i} {'x' * 200},positive" for i in range(300_000))
    with pytest.raises(UserError, match="needs more than the 256 MB of memory"):
        ingest.read_file_guarded(("text,label\n" + rows).encode(), "big.csv")


@pytest.mark.slow
@pytest.mark.process
def test_a_200_mb_feed_upload_is_imported_while_the_dashboard_stays_small(tmp_path, home):
    """A news export just under the 200 MB limit: previewed and imported through the Feeds page's path (a capped
    child each time), while the dashboard's own process stays under 1 GB (it held 2.45 GB after such an import)."""
    path = tmp_path / "year.csv"
    body = "Shares in the group moved after the announcement, analysts said, " * 6
    with open(path, "w") as handle:
        handle.write("time,title,body,source,url\n")
        i = 0
        while handle.tell() < limits.MAX_FILE_BYTES - 1_000_000:
            handle.write(f"2020-{1 + i % 12:02d}-{1 + i % 28:02d} 10:{i % 60:02d},Headline number {i},{body},"
                         f"Wire {i % 7},https://news.example/{i}\n")
            i += 1
    n_rows = i
    out = _dashboard_path(home, f"""
        import time
        from engine.monitor import feeds
        data = open({str(path)!r}, "rb").read()
        preview = feeds.preview_guarded(data, "year.csv")
        out["columns"], out["n_rows"] = preview.columns, preview.n_rows
        started = time.perf_counter()
        result = feeds.import_file_guarded(data, "year.csv", "markets")
        out["seconds"], out["n_new"] = time.perf_counter() - started, result.n_new
    """)
    assert "error" not in out, out
    assert out["columns"] == ["time", "title", "body", "source", "url"] and out["n_rows"] == n_rows
    assert out["n_new"] == n_rows
    assert out["vmhwm_kb"] < GB, out


@pytest.mark.process
def test_evaluating_a_hostile_file_on_reports_is_refused_in_a_child_and_the_dashboard_stays_small(tmp_path, home,
                                                                                                 tiny_text_model):
    """The Reports page's 'evaluate on a file' reads the upload in the capped child too (its preview and the
    evaluation itself), so the workbook with a cell at XFD100000 and the million-column CSV are refused in plain words
    while the dashboard's process stays under 1 GB."""
    from tests.helpers import make_finished_run

    from engine import db

    run_id = make_finished_run(db.connect(), tiny_text_model)
    _xfd_workbook(tmp_path / "far.xlsx", 100_000)
    (tmp_path / "wide.csv").write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n" + "1," * 999_999 + "1\n")
    for name in ["far.xlsx", "wide.csv"]:
        out = _dashboard_path(home, f"""
            from engine import db
            from engine.data.readers import read_table_guarded
            from engine.reports import reporting
            data = open({str(tmp_path / name)!r}, "rb").read()
            try:
                read_table_guarded(data, {name!r}, head=reporting.PREVIEW_ROWS)
            except UserError as exc:
                out["preview"] = str(exc)
            reporting.evaluate_file(db.connect(), {run_id}, data, {name!r}, name="hostile")
        """)
        assert "columns" in out["preview"] and "up to 500 columns" in out["preview"], out
        assert out["error"] == out["preview"], out
        assert out["vmhwm_kb"] < GB, out
