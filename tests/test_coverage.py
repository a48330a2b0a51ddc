"""The vocabulary check (engine.models.coverage): a base model whose vocabulary has no token for most of the texts'
words is warned about on the Train page, by `train` and when scoring a feed, even when Bellwether does not know the
model's languages; the language warning, when it fires, stays the only message."""

from __future__ import annotations

import csv
import re

import pytest

from engine import i18n
from engine.cli.main import main
from engine.data import datasets, language
from engine.jobs import supervisor
from engine.models import catalog, coverage
from engine.monitor import feeds, scoring
from engine.training import finetune
from tests.helpers import build_english_vocab_model, feed_csv, make_finished_run, open_page, texts

CHINESE = [("银行股大跌，市场担忧坏账", "负面"), ("公司利润大幅增长，超出预期", "正面"), ("央行维持利率不变", "中性"),
           ("券商板块全线飘红", "正面"), ("房地产债务危机加深", "负面"), ("今天成交量和昨天差不多", "中性")] * 4
ENGLISH = [("The company said that profits rose in quarter {i}", "positive"),
           ("The shares of the bank fell on day {i}", "negative")] * 10
# The Chinese rows end in their number (which this vocabulary knows): 86% of their tokens are unknown.
BLIND = "does not know 86% of the words in these texts (its vocabulary has no token for them)"


def _csv(rows) -> bytes:
    return ("text,label\n" + "".join(f"{t.format(i=i)}{i},{label}\n" for i, (t, label) in enumerate(rows))).encode()


@pytest.fixture(scope="module")
def english_model(tmp_path_factory):
    """A tiny BERT that knows a few English words and no Chinese character; its folder name says nothing."""
    return build_english_vocab_model(tmp_path_factory.mktemp("m") / "my-model", ["negative", "positive"])


def test_the_share_of_unknown_tokens(english_model):
    assert coverage.unknown_share(str(english_model), [t for t, _ in CHINESE]) == 1.0
    assert coverage.unknown_share(str(english_model), [t.format(i=3) for t, _ in ENGLISH]) == 0.0
    assert coverage.unknown_share(str(english_model.parent / "absent"), ["银行"]) is None
    assert coverage.unknown_share("someone/not-downloaded", ["银行"]) is None  # never downloads
    assert coverage.unknown_share(str(english_model), ["", "  "]) is None  # nothing to tell


def _train_page_with(store, monkeypatch, model, rows, name: str):
    """The Train page (an analyst signed in, no worker started) on dataset ``name`` of ``rows``, ``model`` typed in."""
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    datasets.import_file(store, _csv(rows), f"{name}.csv", name)
    catalog.allow_model(str(model))
    at = open_page("train")
    at.text_input(key="train_base_model").set_value(str(model)).run()
    assert not at.exception
    return at


def test_the_train_page_warns_about_an_unknown_model_blind_to_chinese(store, monkeypatch, english_model):
    assert language.covers(str(english_model), "zh") is None  # the catalogue cannot tell: the old check said nothing
    at = _train_page_with(store, monkeypatch, english_model, CHINESE, "zh-news")
    said = texts(at)
    assert f"Base model {english_model} {BLIND}, so it cannot learn from them: expect poor results." in said
    assert "Choose a base model whose vocabulary covers these texts' language." in said
    assert "The texts are mostly Chinese" not in said  # one message


def test_the_train_page_says_it_in_chinese(store, monkeypatch, english_model):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    at = _train_page_with(store, monkeypatch, english_model, CHINESE, "zh-news")
    warning = next(w.value for w in at.warning if "不认识" in w.value)
    assert "的词（其词表中没有对应的词元），因此无法从中学习：结果可能很差。请选择词表覆盖这些文本语言的基础模型。" in warning
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,} [A-Za-z]{3,}", warning)  # no English sentence left


def test_the_train_page_is_quiet_for_english_texts(store, monkeypatch, english_model):
    at = _train_page_with(store, monkeypatch, english_model, ENGLISH, "en-news")
    said = texts(at)
    assert "does not know" not in said and "expect poor results" not in said


def test_train_prints_the_vocabulary_warning(store, capsys, english_model):
    datasets.import_file(store, _csv(CHINESE), "zh.csv", "zh-news")
    datasets.import_file(store, _csv(ENGLISH), "en.csv", "en-news")
    capsys.readouterr()
    assert main(["train", "--dataset", "zh-news", "--base-model", str(english_model), "--preset", "quick",
                 "--no-worker"]) == 0
    assert f"WARNING: Base model {english_model} {BLIND}" in capsys.readouterr().err
    assert main(["train", "--dataset", "en-news", "--base-model", str(english_model), "--preset", "quick",
                 "--no-worker"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    with i18n.using("zh_CN"):
        assert finetune.language_warning(store, "zh-news", str(english_model)) == (
            f"基础模型 {english_model} 不认识这些文本中 86% 的词（其词表中没有对应的词元），因此无法从中学习：结果可能很差。"
            "请选择词表覆盖这些文本语言的基础模型。")


def test_the_default_model_on_chinese_gets_the_language_warning_only(store):
    datasets.import_file(store, _csv(CHINESE), "zh.csv", "zh-news")
    assert language.vocabulary_warning("default", [t for t, _ in CHINESE])  # it would fire on its own...
    warning = finetune.language_warning(store, "zh-news", "default")
    assert warning.startswith("The texts are mostly Chinese")  # ...but the language warning says it, once
    assert "does not know" not in warning


def test_real_shares_with_the_default_model(shared):
    """The measurements THRESHOLD rests on (engine.models.coverage's docstring)."""
    def read(name):
        with open(shared(name, "train.csv"), encoding="utf-8") as f:
            return [row["text"] for row in csv.DictReader(f)]

    assert coverage.unknown_share("default", read("finfe-zh")) > 0.5
    assert coverage.unknown_share("default", read("fpb")) < 0.01


def test_scoring_a_feed_warns_when_the_runs_model_is_blind_to_it(store, english_model):
    datasets.import_file(store, _csv(CHINESE), "zh.csv", "zh-news")
    # trained on Chinese texts, so the languages match, yet its vocabulary has no Chinese character
    blind = make_finished_run(store, english_model, dataset_id=datasets.get(store, "zh-news")["id"])
    unknown_language = make_finished_run(store, english_model)  # no dataset: the language it learnt cannot be told
    feeds.import_file(store, feed_csv([("2020-07-01", "银行股大跌"), ("2020-07-02", "公司利润大幅增长")]), "a.csv", "zh")
    feeds.import_file(store, feed_csv([("2020-07-01", "The bank said that profits rose")]), "b.csv", "en")
    zh, en = feeds.get_feed(store, "zh")["id"], feeds.get_feed(store, "en")["id"]
    assert scoring.language_warning(store, zh, blind) == (
        f"Run {blind}'s model does not know 100% of the words in this feed's titles (its vocabulary has no token for "
        "them), so its scores may be poor. Score with a run whose base model's vocabulary covers the feed's language.")
    assert scoring.language_warning(store, zh, unknown_language).startswith(f"Run {unknown_language}'s model does not")
    assert scoring.language_warning(store, en, unknown_language) is None
