"""简体中文 on the Data and Train pages, in the dataset/train command line and in the data engine's messages; and a
file that is not a table (a PDF, a Word document ...) refused inline, in plain words, with what to do instead."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from engine import i18n
from engine.data import ingest, readers, validate
from engine.data.wording import english, shown
from engine.errors import UserError
from tests.conftest import ROOT
from tests.helpers import open_page, texts

from tests.test_data_page import SAMPLE  # the same small labelled file, in Chinese this time
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
PDF_REFUSAL = ("report.pdf is a PDF; Bellwether reads CSV, XLSX, JSONL or CoNLL: export the table as CSV and upload "
               "that.")

# Three or more English words in a row (data values and names excepted): a sentence left in English.
ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,'-]+[A-Za-z]{2,}){2,}\b")


def english_left(text: str, allowed: list[str]) -> list[str]:
    for value in allowed:
        text = text.replace(value, " ")
    text = re.sub(r"\S*/\S+", " ", text)  # paths (the data directory)
    return ENGLISH_RUN.findall(text)


def page_words(at) -> str:
    """What a page says, widget labels and choices included."""
    parts = [texts(at)]
    for widget in [*at.selectbox, *at.radio, *at.text_input, *at.number_input, *at.checkbox, *at.button,
                   *at.file_uploader]:
        parts.append(widget.label or "")
        parts.append(widget.help or "")
    for widget in [*at.selectbox, *at.radio]:
        parts.extend(str(o) for o in widget.options)
    parts += [m.label for m in at.metric] + [t.label for t in at.tabs] + [e.label for e in at.expander]
    return "\n".join(parts)


# ---- a file that is not a table ------------------------------------------------------------------------------


def test_a_pdf_a_word_document_and_an_image_are_refused_with_what_to_do():
    with pytest.raises(UserError) as refused:
        ingest.read_file(PDF, "report.pdf")
    assert str(refused.value) == PDF_REFUSAL
    # Known by its bytes, whatever its name; a .docx (a zip, as an .xlsx is) by its name.
    with pytest.raises(UserError, match=r"^data\.csv is a PDF; .* export the table as CSV"):
        ingest.read_file(PDF, "data.csv")
    with pytest.raises(UserError, match=r"notes\.docx is a Word document; .* save it as XLSX or CSV"):
        ingest.read_file(b"PK\x03\x04" + b"\x00" * 64, "notes.docx")
    with pytest.raises(UserError, match=r"chart\.png is an image; .*not a picture of it"):
        ingest.read_file(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "chart.png")
    with pytest.raises(UserError, match=r"old\.xls is an old Excel workbook"):
        ingest.read_file(b"\xd0\xcf\x11\xe0" + b"\x00" * 64, "old.xls")
    assert readers.not_a_table(SAMPLE, "labelled.csv") is None  # a table is read as before
    with i18n.using("zh_CN"):
        with pytest.raises(UserError) as refused:
            ingest.read_file(PDF, "report.pdf")
    assert str(refused.value) == ("report.pdf 是 PDF 文件；Bellwether 读取 CSV、XLSX、JSONL 或 CoNLL：请把表格导出为 "
                                  "CSV 后上传。")


def test_the_data_page_takes_any_file_and_says_inline_why_a_pdf_is_refused(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    at = open_page("data")
    # No type list: Streamlit would refuse a PDF itself, with a tooltip only.
    assert list(at.file_uploader[0].proto.type) == []
    at.file_uploader[0].set_value(("report.pdf", PDF, "application/pdf")).run()
    assert not at.exception
    assert len(at.error) == 1 and PDF_REFUSAL in texts(at)
    assert "Validation report" not in texts(at)  # nothing else is offered for it
    # The page function that renders a refusal, in Chinese too.
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    at = open_page("data")
    at.file_uploader[0].set_value(("report.pdf", PDF, "application/pdf")).run()
    assert "report.pdf 是 PDF 文件" in texts(at) and "请把表格导出为 CSV 后上传" in texts(at)


def test_a_guarded_read_answers_in_the_callers_language(home, monkeypatch):
    """The dashboard reads uploads in a child process: a person's chosen language (not only BELLWETHER_LANGUAGE)
    goes with the request, so the child's plain message comes back in it."""
    monkeypatch.delenv("BELLWETHER_LANGUAGE", raising=False)
    with i18n.using("zh_CN"):
        with pytest.raises(UserError, match="^empty.csv 是空文件。"):
            ingest.read_file_guarded(b"  \n", "empty.csv")
    with pytest.raises(UserError, match="^empty.csv is empty."):
        ingest.read_file_guarded(b"  \n", "empty.csv")


# ---- the pages in 简体中文 -----------------------------------------------------------------------------------


def test_the_data_page_speaks_chinese_from_upload_to_saved_dataset(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    at = open_page("data")
    said = page_words(at)
    assert at.title[0].value == "数据"
    assert "上传带标签的数据" in said and "已保存的数据集" in said and "尚未保存任何数据集" in said
    at.file_uploader[0].set_value(("labelled.csv", SAMPLE, "text/csv")).run()
    assert not at.exception and not at.error
    said = page_words(at)
    for words in ("验证报告", "文本列", "标签列", "划分列（可选）", "数据集名称", "接受并保存", "发现 1 个问题",
                  "**将被合并。** 1 行重复了文件中已有且标签相同的文本", "按标签分层", "随机种子 42", "读取的行"):
        assert words in said, words
    data_values = ["labelled.csv", "labelled", "headline", "sentiment", "Sales fell in region", "Profit rose in quarter",
                   "The board met on day", "positive", "negative", "neutral", "CSV", "UTF-8", "GB18030/GBK",
                   "Windows-1252", "Excel", "JSON lines", "CoNLL", "Bellwether"]
    assert not english_left(said, data_values), english_left(said, data_values)
    next(t for t in at.text_input if t.label == "数据集名称").set_value("headlines")
    next(b for b in at.button if b.label == "接受并保存").click().run()
    assert not at.exception
    assert "已保存数据集 headlines 版本 1（29 行）。" in [s.value for s in at.success]
    said = page_words(at)
    assert "**headlines:1** — 文本分类，29 行" in said
    assert at.tabs[0].label == "预览" and "共 29 行中的前 29 行。" in said
    preview = at.dataframe[-1].value
    assert list(preview.columns) == ["行编号", "数据划分", "文本", "标签"] and set(preview["数据划分"]) <= {"训练集", "验证集",
                                                                                           "测试集"}
    assert not english_left(said, data_values + ["headlines"]), english_left(said, data_values)


def test_the_train_page_speaks_chinese(home, monkeypatch):
    from engine import db
    from engine.data import datasets
    from engine.jobs import supervisor

    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    at = open_page("train")
    assert "还没有数据集。请先在数据页面导入带标签的文件。" in texts(at)
    conn = db.connect()
    datasets.import_file(conn, SAMPLE, "labelled.csv", "headlines", created_by="ana")
    conn.close()
    at = open_page("train")
    said = page_words(at)
    assert at.title[0].value == "训练模型"
    for words in ("训练强度", "快速", "均衡", "精细", "基础模型", "高级选项", "学习率", "批大小", "随机种子",
                  "这个模型用来做什么？", "情绪（正面 / 中性 / 负面）", "训练"):
        assert words in said, words
    assert "初步试探：把数据过一遍。" in said or "适合大多数数据集" in said
    # Data names and model ids stay as they are; nothing else is left in English.
    allowed = ["all-MiniLM-L6-v2", "Hugging Face", "ProsusAI/finbert", "LoRA", "python -m engine models allow NAME",
               "fp32", "bf16", "bfloat16", "float32"]
    assert not english_left(said, allowed), english_left(said, allowed)
    # A bad option is refused next to its field, in Chinese.
    next(n for n in at.number_input if n.label == "学习率").set_value(2.0)
    next(b for b in at.button if b.label == "训练").click().run()
    assert "未排队：请修改下方标出的字段。" in texts(at)
    assert any("必须大于 0 且不超过 1（常用：0.00002 到 0.0001）；实际为 2。" in e.value for e in at.error)


# ---- the engine's report and the command line --------------------------------------------------------------


def test_a_report_is_kept_in_english_and_shown_in_the_readers_language():
    data = b"text,label\nProfit rose,positive\n,negative\nSales fell,negative\nOK,neutral\nFine,neutral\nUp,positive\n"
    candidate = ingest.read_file(data, "small.csv")
    report = validate.build(candidate).report
    problem = report.problem("empty_text")
    assert problem.message == "1 row has an empty or blank text in 'text'. They will be dropped."
    stored = report.to_dict()  # what is saved with the dataset: English, and the said form to translate it
    assert stored["problems"][0]["said"]["msgid"].startswith("{n:,} row has an empty")
    with i18n.using("zh_CN"):
        assert problem.text() == "1 行在“text”中的文本为空或只有空白。这些行将被删除。"
        assert shown(stored["problems"][0]["said"]) == problem.text()
        assert problem.example_texts() == ["第 3 行"]
        text = report.to_text()
        assert "发现的问题（" in text and "[删除] 1 行在“text”中的文本为空" in text and "由 Bellwether 划分" in text
        assert english(stored["split"]["said"]).startswith("made by Bellwether")
    assert "[dropped] 1 row has an empty or blank text in 'text'." in report.to_text()


def _cli(*args, home):
    import os

    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_USER": "ana"}
    env.pop("BELLWETHER_LANGUAGE", None)
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


@pytest.mark.process
def test_the_command_line_refuses_an_empty_or_broken_file_in_chinese(home, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    done = _cli("--lang", "zh_CN", "dataset", "import", str(empty), "--name", "x", home=home)
    assert done.returncode == 2
    assert done.stderr.strip() == "错误：empty.csv 是空文件。请重新导出表格，上传包含数据行的文件。"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(PDF)
    done = _cli("--lang", "zh_CN", "dataset", "import", str(pdf), "--name", "x", home=home)
    assert done.returncode == 2 and "report.pdf 是 PDF 文件" in done.stderr
    one = tmp_path / "one.csv"
    one.write_text("text,label\nProfit rose,positive\nSales rose,positive\n")
    done = _cli("--lang", "zh_CN", "dataset", "import", str(one), "--name", "x", home=home)
    assert done.returncode == 2 and "所有可用行的标签都相同，都是“positive”" in done.stderr
    # English unless asked; the same refusal word for word as the page's.
    done = _cli("dataset", "import", str(pdf), "--name", "x", home=home)
    assert done.stderr.strip() == f"error: {PDF_REFUSAL}"
    helped = _cli("--lang", "zh_CN", "dataset", "import", "--help", home=home)
    assert "数据集名称；再次导入同名数据集会生成新版本" in helped.stdout
