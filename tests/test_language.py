"""Language awareness (issue 14): a dataset's and a feed's main language, the base model's languages, and plain
warnings when they do not match."""

from __future__ import annotations

import pytest

from engine import db
from engine.data import datasets, language
from engine.jobs import supervisor
from engine.models import catalog
from engine.monitor import feeds, scoring
from engine.training import finetune
from tests.helpers import feed_csv, make_finished_run, open_page

CHINESE = [("银行股大跌，市场担忧坏账", "负面"), ("公司利润大幅增长，超出预期", "正面"), ("央行维持利率不变", "中性"),
           ("券商板块全线飘红", "正面"), ("房地产债务危机加深", "负面"), ("今天成交量和昨天差不多", "中性")] * 4


def _chinese_csv() -> bytes:
    return ("text,label\n" + "".join(f"{t}{i},{label}\n" for i, (t, label) in enumerate(CHINESE))).encode("utf-8")


@pytest.mark.parametrize("texts, code", [
    (["银行股大跌", "公司利润大幅增长 (600519)"], "zh"),
    (["The bank said that profits rose in the quarter", "Shares of the lender fell"], "en"),
    (["Die Bank meldet einen Gewinn und die Aktie steigt"], "de"),
    (["Les banques et les assureurs reculent dans la matinée"], "fr"),
    (["トヨタの利益が増加した"], "ja"),
    (["삼성전자 주가 상승"], "ko"),
    (["Bank profits beat forecasts", "JPMorgan beats estimates"], language.LATIN),  # no function word: not told
])
def test_main_language_from_scripts_and_function_words(texts, code):
    assert language.detect(texts)["language"] == code


def test_the_chinese_dataset_with_the_english_default_model_is_warned(store):
    saved, report = datasets.import_file(store, _chinese_csv(), "zh.csv", "zh-news")
    assert report.language["language"] == "zh" and "Language: Chinese (100% of 24 texts looked at)." in report.to_text()
    assert any("mostly Chinese" in note for note in report.notes)  # said on the Data page already
    warning = finetune.language_warning(store, "zh-news", "default")
    assert warning.startswith("The texts are mostly Chinese (100% of those looked at), but the default model "
                              "(all-MiniLM-L6-v2) was trained on English only: expect poor results.")
    assert "google-bert/bert-base-chinese" in warning
    assert finetune.language_warning(store, "zh-news", "google-bert/bert-base-chinese") is None
    assert finetune.language_warning(store, "zh-news", "/models/xlm-roberta-base") is None  # a folder named like it
    assert finetune.language_warning(store, "zh-news", "/models/something-unknown") is None  # cannot tell: quiet
    run_id = finetune.submit(store, "zh-news", preset="quick")
    assert db.loads(store.execute("SELECT config_json FROM jobs WHERE id = ?", [run_id]).fetchone()[0])[
        "language"]["language"] == "zh"


def test_real_chinese_forum_posts_are_told_chinese(shared):
    import csv

    with open(shared("finfe-zh", "dev.csv"), encoding="utf-8") as f:
        texts = [row["text"] for _, row in zip(range(50), csv.DictReader(f))]
    found = language.detect(texts)
    assert found["language"] == "zh" and found["share"] > 0.9
    assert language.model_warning("default", found)


def test_train_page_warns_and_lists_base_models_by_language(store, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    datasets.import_file(store, _chinese_csv(), "zh.csv", "zh-news")
    at = open_page("train")
    assert any("The texts are mostly Chinese" in w.value for w in at.warning)
    table = next(d for d in at.dataframe if "Languages" in d.value.columns).value
    assert {"ProsusAI/finbert", "google-bert/bert-base-chinese", "FacebookAI/xlm-roberta-base"} <= set(table["Model"])
    assert "Chinese" in table.set_index("Model").loc["google-bert/bert-base-chinese", "Languages"]
    assert any("This server cannot download models" in c.value for c in at.caption)


def test_a_feed_in_another_language_than_its_run_is_warned(store, tiny_text_model):
    datasets.import_file(store, ("text,label\n" + "".join(
        f"The company said that profits rose in quarter {i},positive\nThe shares of the bank fell on day {i},negative\n"
        for i in range(10))).encode(), "en.csv", "en-news")
    run_id = make_finished_run(store, tiny_text_model, dataset_id=datasets.get(store, "en-news")["id"])
    feeds.import_file(store, feed_csv([("2020-07-01", "银行股大跌"), ("2020-07-02", "公司利润大幅增长")]), "a.csv", "zh")
    feeds.import_file(store, feed_csv([("2020-07-01", "The bank said that profits rose")]), "b.csv", "en")
    warning = scoring.language_warning(store, feeds.get_feed(store, "zh")["id"], run_id)
    assert warning == (f"The feed's articles are mostly Chinese (100% of the titles looked at), but run {run_id} was "
                       "trained on English texts: its scores may be poor. Score with a run trained on Chinese texts.")
    assert scoring.language_warning(store, feeds.get_feed(store, "en")["id"], run_id) is None


def test_every_suggested_model_has_languages_and_a_line():
    assert catalog.languages_of("default") == ("en",)
    for s in catalog.SUGGESTIONS:
        assert s.languages and s.about.endswith(".") and len(s.about) < 120
