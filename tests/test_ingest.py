"""Reading uploaded files and the validation report: counts on the real data, encodings, XLSX, JSONL, CoNLL schemes."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from engine.data import conll, ingest
from engine.data import validate
from engine.errors import UserError

FPB_COUNTS = {
    "train": {"negative": 282, "neutral": 1403, "positive": 679},
    "validation": {"negative": 35, "neutral": 176, "positive": 85},
    "test": {"negative": 36, "neutral": 175, "positive": 85},
}
ZH_COUNTS = {
    "train": {"negative": 1374, "neutral": 1208, "positive": 3134},
    "validation": {"negative": 171, "neutral": 151, "positive": 392},
    "test": {"negative": 172, "neutral": 151, "positive": 392},
}


def build(data: bytes, name: str, mapping=None, **kw):
    read_kw = {k: kw.pop(k) for k in ("format", "encoding", "sheet") if k in kw}
    candidate = ingest.read_file(data, name, **read_kw)
    return candidate, validate.build(candidate, mapping, **kw)


def csv_bytes(rows: list[tuple], header=("text", "label"), encoding="utf-8") -> bytes:
    frame = pd.DataFrame(rows, columns=list(header))
    return frame.to_csv(index=False).encode(encoding)


# ---- real data ------------------------------------------------------------------------------------------------


def test_fpb_train_is_read_with_its_counts_and_a_stratified_80_10_10_split(shared):
    candidate, prepared = build(shared("fpb", "train.csv").read_bytes(), "train.csv")
    report = prepared.report
    assert (candidate.format, candidate.encoding) == ("csv", "utf-8")
    assert validate.guess_columns(candidate) == {"text": "text", "label": "label", "split": None}
    assert report.n_input_rows == 2956 and report.n_rows == 2956
    assert report.labels == ["negative", "neutral", "positive"]
    assert report.problems == []
    assert report.counts == FPB_COUNTS
    assert report.split["method"] == "stratified" and report.split["seed"] == 42
    assert report.length["max_length"] == 512 and report.length["n_truncated"] == 0
    text = report.to_text()
    assert "2,956 rows read" in text and "No problems found." in text
    assert "train: 2,364 rows (negative 282, neutral 1,403, positive 679)" in text
    assert "0.0% of texts (0 of 2,956)" in text


def test_fpb_as_an_xlsx_with_two_sheets_reads_the_longest_sheet_or_the_chosen_one(shared):
    frame = pd.read_csv(shared("fpb", "train.csv"), dtype=str, keep_default_na=False)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        pd.DataFrame({"note": ["read me first"]}).to_excel(writer, sheet_name="About", index=False)
        frame.to_excel(writer, sheet_name="Labelled", index=False)
    data = buffer.getvalue()
    first = ingest.read_file(data, "fpb.xlsx")
    # the sheet with the most rows is read first, not the README-like sheet before it; the other is named
    assert first.sheets == ["About", "Labelled"] and first.sheet == "Labelled"
    assert ("Read the sheet 'Labelled'; the workbook's other sheets: About." in validate.build(first).report.notes[0])
    about = ingest.read_file(data, "fpb.xlsx", sheet="About")  # the analyst's choice wins
    with pytest.raises(UserError, match="could not tell which column holds the label.*These are the columns of the "
                                        "sheet 'About'; the workbook also has: Labelled"):
        validate.build(about)
    candidate, prepared = build(data, "fpb.xlsx", sheet="Labelled")
    assert candidate.format == "xlsx" and candidate.sheet == "Labelled"
    assert prepared.report.n_rows == 2956
    assert prepared.report.counts == FPB_COUNTS  # the same rows as the CSV, so the same split
    assert prepared.report.mapping["sheet"] == "Labelled"


def test_chinese_finfe_in_utf8_and_as_a_gb18030_copy_give_the_same_dataset(shared):
    utf8 = shared("finfe-zh", "train.csv").read_bytes()
    gb = utf8.decode("utf-8").encode("gb18030")
    c1, p1 = build(utf8, "train.csv")
    c2, p2 = build(gb, "train-gb.csv")
    assert c1.encoding == "utf-8" and c2.encoding == "gb18030"
    assert p1.report.n_rows == p2.report.n_rows == 7145
    assert p1.report.counts == p2.report.counts == ZH_COUNTS
    assert [r["text"] for r in p1.rows] == [r["text"] for r in p2.rows]
    assert p2.rows[0]["text"] == ".3.29增发价是原始股，你们知道吗最少要十倍"
    # Forcing the right encoding works too; forcing a wrong one is a plain error, not mojibake.
    assert ingest.read_file(gb, "train-gb.csv", encoding="gb18030").encoding == "gb18030"
    with pytest.raises(UserError, match=r"not valid utf-8 text .* gb18030 \(Chinese\)"):
        ingest.read_file(gb, "train-gb.csv", encoding="utf-8")


def test_finer_io_file_is_read_as_tagging_and_stored_as_bio(shared):
    candidate, prepared = build(shared("finer", "FIN5.txt").read_bytes(), "FIN5.txt")
    assert candidate.format == "conll" and candidate.task == "token-classification"
    assert candidate.tag_scheme == "IO"
    assert len(candidate.sentences) == 1164
    assert sum(len(tokens) for tokens, _ in candidate.sentences) == 41010
    assert candidate.n_tags_rewritten == 1168  # every entity's first I- became B-
    first_tokens, first_tags = candidate.sentences[0]
    assert first_tokens[12:15] == ["SILICON", "VALLEY", "BANK"] and first_tags[12:15] == ["B-ORG", "I-ORG", "I-ORG"]
    report = prepared.report
    assert report.labels == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]
    assert report.problem("duplicates").count == 21 and report.problem("duplicates").action == "merged"
    assert report.problem("conflicting_labels").count == 2 and report.problem("conflicting_labels").action == "dropped"
    assert report.n_rows == 1164 - 21 - 2 == 1141
    assert sum(sum(c.values()) for c in report.counts.values()) == sum(len(r["tokens"]) for r in prepared.rows) == 40849
    assert {s: sum(c.values()) for s, c in report.counts.items()} == {"train": 33169, "validation": 3134, "test": 4546}
    assert "Tags are written in IO; 1,168 tags were rewritten" in report.to_text()
    for row in prepared.rows:
        assert row["label"] is None and len(row["tokens"]) == len(row["tags"])
        assert row["text"] == " ".join(row["tokens"])


IOB1 = """-DOCSTART- -X- O O

Shares NNS I-NP O
of IN I-PP O
Nokia NNP I-NP I-ORG
Oyj NNP I-NP I-ORG
rose VBD I-VP O
in IN I-PP O
Helsinki NNP I-NP I-LOC
. . O O

Deutsche NNP I-NP I-ORG
Bank NNP I-NP I-ORG
Siemens NNP I-NP B-ORG
AG NNP I-NP I-ORG
Frankfurt NNP I-NP I-LOC
"""

BIO = """Shares O
of O
Nokia B-ORG
Oyj I-ORG
rose O
in O
Helsinki B-LOC
. O

Deutsche B-ORG
Bank I-ORG
Siemens B-ORG
AG I-ORG
Frankfurt B-LOC
"""


def test_iob1_and_bio_conll_samples_are_stored_as_the_same_bio_tags():
    iob1 = ingest.read_file(IOB1.encode(), "sample.conll")
    bio = ingest.read_file(BIO.encode(), "sample.bio", format="conll")
    assert iob1.tag_scheme == "IOB1" and bio.tag_scheme == "BIO"
    assert bio.n_tags_rewritten == 0 and iob1.n_tags_rewritten == 4
    assert iob1.sentences == bio.sentences
    assert bio.sentences[1] == (
        ["Deutsche", "Bank", "Siemens", "AG", "Frankfurt"],
        ["B-ORG", "I-ORG", "B-ORG", "I-ORG", "B-LOC"],
    )
    prepared = validate.build(iob1, max_length=512)
    assert prepared.report.labels == ["B-LOC", "B-ORG", "I-LOC", "I-ORG", "O"]
    assert prepared.report.n_rows == 2


def test_conll_lines_without_a_tag_drop_their_sentence_and_are_reported():
    text = BIO + "\nBroken line-without-a-tag-column\nAcme B-ORG\n"
    candidate = ingest.read_file(text.replace("Broken line-without-a-tag-column", "Broken").encode(), "s.conll")
    assert len(candidate.sentences) == 2 and candidate.bad_rows == [(16, "Broken")]
    report = validate.build(candidate).report
    problem = report.problem("broken_rows")
    assert problem.action == "dropped" and problem.examples == ["line 16: Broken"]


def test_to_bio_converts_iob1_io_and_bioes_and_leaves_bio_alone():
    assert conll.to_bio(["I-PER", "I-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert conll.to_bio(["I-ORG", "B-ORG", "I-ORG"]) == ["B-ORG", "B-ORG", "I-ORG"]
    assert conll.to_bio(["S-ORG", "B-PER", "E-PER"]) == ["B-ORG", "B-PER", "I-PER"]
    bio = ["B-ORG", "I-ORG", "O", "B-LOC", "B-LOC"]
    assert conll.to_bio(bio) == bio


# ---- formats and encodings -------------------------------------------------------------------------------------


def test_utf8_bom_cp1252_and_jsonl_are_read():
    rows = [("Profit rose 5 % in café sales – €12m", "positive"), ("Sales fell", "negative")] * 3
    bom = b"\xef\xbb\xbf" + csv_bytes(rows)
    assert ingest.read_file(bom, "bom.csv").encoding == "utf-8-sig"
    cp = csv_bytes(rows, encoding="cp1252")
    candidate = ingest.read_file(cp, "win.csv")
    assert candidate.encoding == "cp1252"
    assert candidate.frame["text"][0] == "Profit rose 5 % in café sales – €12m"
    jsonl = "\n".join(json.dumps({"sentence": t, "sentiment": l}, ensure_ascii=False) for t, l in rows).encode()
    candidate = ingest.read_file(jsonl, "d.jsonl")
    assert candidate.format == "jsonl"
    assert validate.guess_columns(candidate) == {"text": "sentence", "label": "sentiment", "split": None}


def test_columns_are_guessed_by_name_and_by_content():
    assert validate.guess_columns(["id", "Headline", "Sentiment ", "set"]) == {
        "text": "Headline", "label": "Sentiment ", "split": "set"
    }
    assert validate.guess_columns(["文本", "标签"]) == {"text": "文本", "label": "标签", "split": None}
    frame = pd.DataFrame({
        "a": ["x", "y", "x", "y"],
        "b": ["a long sentence about profits", "another long sentence", "more words here", "and more"],
        "c": ["train", "train", "test", "validation"],
    })
    candidate = ingest.read_file(frame.to_csv(index=False).encode(), "x.csv")
    assert validate.guess_columns(candidate) == {"text": "b", "label": "a", "split": "c"}


# ---- the report's problems -------------------------------------------------------------------------------------


def test_each_problem_is_counted_with_examples_and_what_will_happen():
    rows = [
        ("Profit rose sharply", "positive"),
        ("Profit rose sharply", "positive"),  # exact duplicate -> merged
        ("Sales fell", "Negative"),  # label variant -> merged into 'negative'
        ("Costs were cut", "negative "),
        ("Margins shrank", "negative"),
        ("Margins shrank", "positive"),  # conflicting -> both dropped
        ("   ", "neutral"),  # blank text -> dropped
        ("The board met", ""),  # missing label -> dropped
        ("Shares moved", "neutral"),
    ] + [(f"Revenue grew in quarter {i}", "positive") for i in range(6)] + [
        (f"Loss widened in region {i}", "negative") for i in range(4)
    ] + [("word " * 40, "negative")]
    _, prepared = build(csv_bytes(rows), "problems.csv", max_length=32)
    report = prepared.report
    by_code = {p.code: p for p in report.problems}
    assert (by_code["empty_text"].count, by_code["empty_text"].action) == (1, "dropped")
    assert by_code["empty_text"].examples == ["row 8"]
    assert (by_code["missing_label"].count, by_code["missing_label"].action) == (1, "dropped")
    assert by_code["missing_label"].examples == ["row 9: The board met"]
    assert (by_code["label_variants"].count, by_code["label_variants"].action) == (2, "merged")
    assert "'Negative' (1)" in by_code["label_variants"].examples[0]
    assert by_code["label_variants"].examples[0].endswith("-> 'negative'")
    assert (by_code["conflicting_labels"].count, by_code["conflicting_labels"].action) == (2, "dropped")
    assert by_code["conflicting_labels"].examples == ["'Margins shrank': negative / positive"]
    assert (by_code["duplicates"].count, by_code["duplicates"].action) == (1, "merged")
    assert (by_code["few_examples"].action, by_code["few_examples"].examples) == ("kept", ["'neutral': 1 rows"])
    assert (by_code["too_long"].count, by_code["too_long"].action) == (1, "kept")
    assert report.length["n_truncated"] == 1 and report.length["share_truncated"] == pytest.approx(1 / 15)
    assert report.n_input_rows == 20 and report.n_rows == 15
    assert report.labels == ["negative", "neutral", "positive"]
    assert sum(sum(c.values()) for c in report.counts.values()) == 15
    assert {r["label"] for r in prepared.rows} == {"negative", "neutral", "positive"}
    text = report.to_text()
    assert "[dropped] 1 row has an empty or blank text in 'text'. They will be dropped." in text
    assert "[merged] 1 label is written in more than one way" in text
    assert "1 of 15) are longer than the model's maximum of 32 tokens and would be truncated" in text


def test_broken_csv_rows_are_reported_and_dropped():
    data = b"text,label\nProfit rose,positive\nSales fell,negative,extra,fields\nCosts rose,negative\nOK,neutral\n"
    candidate, prepared = build(data, "broken.csv")
    problem = prepared.report.problem("broken_rows")
    assert problem.count == 1 and problem.action == "dropped"
    assert problem.examples == ["line 3: Sales fell,negative,extra,fields"]
    assert prepared.report.n_rows == 3


def test_a_split_column_is_honoured_and_its_synonyms_understood():
    rows = [(f"text {i}", "pos" if i % 2 else "neg", ["train", "Dev", "TEST", "training", "holdout?"][i % 5]) for i in range(20)]
    _, prepared = build(csv_bytes(rows, header=("text", "label", "split")), "s.csv")
    report = prepared.report
    assert report.mapping["split"] == "split" and report.split["method"] == "column"
    problem = report.problem("unknown_split")
    assert problem.count == 4 and problem.action == "dropped" and problem.examples[0] == "row 6: 'holdout?'"
    sizes = {s: sum(c.values()) for s, c in report.counts.items()}
    assert sizes == {"train": 8, "validation": 4, "test": 4}
    # The analyst may turn the split column off: Bellwether then splits itself.
    _, prepared = build(csv_bytes(rows, header=("text", "label", "split")), "s.csv", {"split": None})
    assert prepared.report.split["method"] == "stratified" and prepared.report.n_rows == 20


def test_split_is_reproducible_honours_ratios_and_falls_back_when_a_class_is_tiny():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    s1, info = validate.assign_splits(labels, (70, 15, 15), seed=7)
    s2, _ = validate.assign_splits(labels, (0.7, 0.15, 0.15), seed=7)
    assert s1 == s2 and info["method"] == "stratified"
    assert (s1.count("train"), s1.count("validation"), s1.count("test")) == (70, 15, 15)
    assert sum(1 for s, l in zip(s1, labels) if s == "test" and l == "c") in (1, 2)
    s3, _ = validate.assign_splits(labels, (70, 15, 15), seed=8)
    assert s3 != s1
    tiny = ["a"] * 20 + ["b"] * 20 + ["rare"]  # one row of 'rare': cannot be stratified on its own
    splits, info = validate.assign_splits(tiny, None, seed=42)
    assert info["method"] == "stratified-grouped" and "grouped together" in info["description"]
    assert all(splits) and splits.count("train") == 32
    two_rare = ["a"] * 5 + ["b"]
    splits, info = validate.assign_splits(two_rare, None, seed=42)
    assert info["method"] in ("random", "partial") and all(splits)
    with pytest.raises(UserError, match="add up to 100"):
        validate.assign_splits(labels, (50, 10, 10))
    with pytest.raises(UserError, match="train share must be above zero"):
        validate.assign_splits(labels, (0, 50, 50))


@pytest.mark.parametrize(
    "data, name, kwargs, message",
    [
        (b"", "empty.csv", {}, "empty.csv is empty"),
        (b"  \n\n ", "blank.csv", {}, "blank.csv is empty"),
        (bytes(range(256)) * 20, "photo.csv", {}, "not a text file"),
        (b"PK\x03\x04 not really a workbook", "book.xlsx", {}, "not a readable Excel workbook"),
        (b"text,label\n", "header.csv", {}, "has a header but no rows"),
        ("名字,标签\n利润,正面\n".encode("gb18030"), "gb.csv", {"encoding": "utf-8"}, "not valid utf-8 text"),
        (b"text,label\na,b\n", "x.csv", {"encoding": "klingon"}, "not an encoding this machine knows"),
        (b"this is not json\nnor this\n", "d.jsonl", {}, "has no JSON objects"),
        (b"just words\nno tags here\n", "x.conll", {}, "does not look like a CoNLL file"),
        (b"text,label\na,b\n", "x.csv", {"format": "parquet"}, "not a format Bellwether reads"),
    ],
)
def test_unreadable_files_get_one_plain_message(data, name, kwargs, message):
    with pytest.raises(UserError, match=message):
        ingest.read_file(data, name, **kwargs)


@pytest.mark.parametrize(
    "rows, header, mapping, message",
    [
        ([("a", "pos"), ("b", "neg")], ("text", "label"), {"label": "sentiment"}, "has no column 'sentiment' for the label"),
        ([("a",), ("b",)], ("text",), None, "could not tell which column holds the label"),
        ([("a", "pos"), ("b", "pos"), ("c", " Pos")], ("text", "label"), None, "same label, 'pos'"),
        ([(" ", "pos"), ("", "neg")], ("text", "label"), None, "No usable rows are left"),
        ([("a", "pos"), ("b", "neg")], ("text", "label"), {"label": "text"}, "cannot both be the column 'text'"),
        ([("a", "pos", "test"), ("b", "neg", "test")], ("text", "label", "split"), {"split": "split"}, "marks no row as train"),
        ([("a", "pos", "x"), ("b", "neg", "y")], ("text", "label", "grp"), {"split": "grp"}, "does not hold splits"),
    ],
)
def test_unusable_tables_are_refused_with_a_plain_message(rows, header, mapping, message):
    candidate = ingest.read_file(csv_bytes(rows, header=header), "bad.csv")
    with pytest.raises(UserError, match=message):
        validate.build(candidate, mapping)


def test_conll_with_no_entities_is_refused():
    candidate = ingest.read_file(b"Shares O\nrose O\n\nSales O\n", "none.conll")
    with pytest.raises(UserError, match="has no entities: every tag is O"):
        validate.build(candidate)


def test_an_unterminated_quote_is_reported_with_its_line_not_dropped_in_silence():
    data = b'text,label\nProfit rose,positive\nCosts rose,negative\nOK,neutral\n"Sales fell,negative\n'
    candidate, prepared = build(data, "unterminated.csv")
    problem = prepared.report.problem("broken_rows")
    assert problem.count == 1 and problem.examples == ['line 5: "Sales fell,negative']
    assert prepared.report.n_rows == 3
