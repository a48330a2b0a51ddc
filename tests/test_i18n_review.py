"""简体中文 on the Playground and Review pages and in the accounts / review / generate / models commands: what a person
reads there comes from the catalogue, and no English sentence is left (English stays the default: the other tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from engine import db
from engine.monitor import feeds
from engine.review import items
from tests.conftest import ROOT
from tests.helpers import build_tiny_gpt2, feed_csv, make_finished_run, open_page, texts
from tests.test_review import eval_run, probs

CODE = re.compile(r"`[^`]*`")
ENGLISH = re.compile(r"[A-Za-z]{3,}(?:[\s,;:'()-]+[A-Za-z]{3,}){2,}")  # three English words in a row: a sentence


def english_left(shown: list[str], data: list[str]) -> list[str]:
    """The English word runs in ``shown`` once the data values a test put there (texts, names) and code spans are
    taken out."""
    left = []
    for text in shown:
        text = CODE.sub(" ", str(text))
        for value in data:
            text = text.replace(value, " ")
        left += ENGLISH.findall(text)
    return left


def everything_read(at) -> list[str]:
    """What the page says plus the words on its widgets: titles, labels, help, tabs, expanders, table headings."""
    shown = [texts(at)] + [t.value for t in at.title]
    for kind in ("button", "selectbox", "checkbox", "number_input", "slider", "text_input", "radio", "chat_input"):
        for widget in getattr(at, kind):
            shown += [getattr(widget, "label", None) or "", getattr(widget, "help", None) or "",
                      getattr(widget, "placeholder", None) or ""]
    shown += [t.label for t in at.tabs] + [e.label for e in at.expander]
    shown += [str(c) for frame in at.dataframe for c in frame.value.columns]
    return shown


@pytest.fixture
def chinese(monkeypatch):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")


@pytest.fixture(autouse=True)
def back_to_the_default_language():
    """`main(["--lang", ...])` sets this context's language; the next test starts from the default again."""
    from engine import i18n

    yield
    i18n.use(None)


ROWS = [("Operating loss widened", "negative", "positive", probs(0.3, 0.2, 0.5)),
        ("Net sales fell 5 %", "negative", "neutral", probs(0.3, 0.45, 0.25)),
        ("The plant opened", "neutral", "neutral", probs(0.2, 0.5, 0.3))]


def test_the_review_page_speaks_chinese(store, tiny_text_model, chinese):
    run_id = eval_run(store, tiny_text_model, ROWS)
    queue = items.queue_predictions(store, run_id, "eval:file")["queue"]
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    at = open_page("review")
    assert at.title[0].value == "复核"
    assert {"复核", "加入数据集并重新训练", "启用为模型", "新闻源的文章", "运行的预测"} <= {t.label for t in at.tabs}
    labels = [b.label for b in at.button]
    assert labels[:5] == ["1 · negative", "2 · neutral", "3 · positive", "接受（Enter）", "跳过（S）"]
    page = texts(at)
    assert "已完成 **0** · 剩余 **3** · 复核人：" in page
    assert "按键：1-3 选择标签，Enter 接受模型的标签，S 跳过。" in page
    assert f"{queue}（剩余 3）" == at.selectbox(key="rv-queue").format_func(queue)
    assert at.selectbox(key="rv-queue").format_func("(every queue)") == "（所有队列）"
    assert at.radio(key="rv-order").format_func("margin") == "置信差"
    data = [r[0] for r in ROWS] + [queue, "negative", "neutral", "positive", "news"]
    assert not english_left(everything_read(at), data), english_left(everything_read(at), data)
    next(b for b in at.button if b.label == "接受（Enter）").click().run()  # the translated button still answers
    assert items.counts(store, queue)["done"] == 1
    assert "已完成 **1** · 剩余 **2**" in texts(at)
    for item in items.list_items(store, queue, "open"):
        items.skip(store, item["id"])
    at.run()
    assert "这里没有待复核的条目了。" in texts(at) and "所有队列中共有 **1** 条已标注条目。" in texts(at)
    assert not english_left(everything_read(at), data), english_left(everything_read(at), data)


def test_the_review_keys_find_the_translated_buttons():
    """The keyboard's script looks the Accept and Skip buttons up by the text they show in the reader's language."""
    source = (ROOT / "views" / "review.py").read_text(encoding="utf-8")
    assert "json.dumps(_(ACCEPT)), json.dumps(_(SKIP))" in source and "prefix = 'Accept'" not in source


def test_a_refusal_and_a_review_error_read_in_chinese(store, tiny_text_model, chinese):
    from engine.access import Actor, Forbidden, authorize
    from engine.errors import UserError

    with pytest.raises(Forbidden, match="您的角色（查看者）不能复核模型的预测：只有分析师或管理员可以。"):
        authorize(store, Actor("vic", "viewer"), "review.label")
    run_id = eval_run(store, tiny_text_model, ROWS)
    queue = items.queue_predictions(store, run_id, "eval:file")["queue"]
    item = items.list_items(store, queue)[0]
    with pytest.raises(UserError, match="“maybe”不是此模型的标签。请使用以下之一：negative, neutral, positive。"):
        items.label(store, item["id"], "maybe")


def test_the_playground_speaks_chinese(home, chinese, tmp_path):
    model = build_tiny_gpt2(tmp_path / "gpt2")
    (model / "bellwether.json").write_text(json.dumps({"base_model_source": str(model)}))
    conn = db.connect()
    run_id = make_finished_run(conn, model, task="generation", metrics={
        "validation_perplexity": 812.5, "base_validation_perplexity": 30100.0, "rougeL": 0.21, "base_rougeL": 0.01})
    other = make_finished_run(conn, model, task="generation", metrics={"validation_perplexity": 700.0})
    for rid in (run_id, other):
        conn["predictions"].insert({"run_id": rid, "split": "test", "row_id": 1, "text": "Bank results beat forecasts",
                                    "true_label": "Bank beats", "pred_label": "Bank up", "base_output": "zebra"})
    at = open_page("playground", run=str(run_id), compare=str(other))
    assert at.title[0].value == "试用场"
    assert {"试用场", "评估报告", "对比运行"} <= {t.label for t in at.tabs}
    labels = {w.label for w in [*at.slider, *at.number_input, *at.checkbox]}
    assert {"温度", "Top-p（核采样比例）", "Top-k（候选词数）", "重复惩罚", "最大新词元数", "随机种子",
            "贪心（总是取最可能的词）", "在旁边显示基础模型的回答"} <= labels
    figures = at.dataframe[0].value
    assert list(figures.columns) == ["指标", "基础模型", "微调后"] and "验证集困惑度" in list(figures["指标"])
    assert list(at.dataframe[1].value.columns) == ["行编号", "提示词", "参考答案", "基础模型的输出", "微调模型的输出"]
    compared = next(d.value for d in at.dataframe if f"运行 #{other}" in d.value.columns)
    assert f"运行 #{other} 基础模型" in compared.columns
    assert "两次运行都回答了的 1 个提示词（贪心生成），附参考答案。" in texts(at)
    assert at.chat_input[0].placeholder == "输入提示词，例如要改写成标题的文章摘要"
    data = ["Bank results beat forecasts", "Bank beats", "Bank up", "ROUGE-L", "ROUGE and BLEU", "ROUGE 和 BLEU"]
    assert not english_left(everything_read(at), data), english_left(everything_read(at), data)


def _engine(*args, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_LANGUAGE": ""}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.process
def test_the_command_line_answers_in_chinese_when_asked(home):
    done = _engine("--lang", "zh_CN", "users", "set-role", "nobody", "viewer", home=home)
    assert done.returncode == 2
    assert "没有用户“nobody”。`python -m engine users list` 可列出全部用户。" in done.stderr
    assert not english_left([done.stderr], ["nobody", "python -m engine users list"]), done.stderr
    english = _engine("users", "set-role", "nobody", "viewer", home=home)
    assert "There is no user 'nobody'." in english.stderr and english.returncode == 2
    helped = _engine("--lang", "zh_CN", "--help", home=home)
    assert helped.returncode == 0
    assert "账户与角色" in helped.stdout and "复核模型拿不准的判断" in helped.stdout
    assert "用已完成的文本生成运行为提示词写出回答" in helped.stdout
    assert helped.stdout.startswith("用法：python -m engine") and "显示此帮助信息并退出" in helped.stdout  # argparse's words
    wrong = _engine("--lang", "zh_CN", "users", "set-role", "nobody", "boss", home=home)
    assert "错误：参数 role：无效的选项：'boss'" in wrong.stderr and wrong.returncode == 2


def test_the_commands_help_and_messages_in_chinese(home, capsys):
    from engine.cli.main import main

    with pytest.raises(SystemExit):
        main(["--lang", "zh_CN", "review", "queue", "--help"])
    shown = capsys.readouterr().out
    assert "按前两类之间的置信差（默认）或按熵选出置信度最低的" in shown and "复核人（默认" in shown
    with pytest.raises(SystemExit):
        main(["--lang", "zh_CN", "generate", "--help"])
    assert "相同的随机种子给出相同的回答" in capsys.readouterr().out
    assert main(["--lang", "zh_CN", "review", "list"]) == 0
    assert "尚无复核条目。" in capsys.readouterr().out
    assert main(["--lang", "zh_CN", "users", "list"]) == 0
    assert "尚无账户。" in capsys.readouterr().out
    assert main(["--lang", "zh_CN", "review", "next"]) == 1
    assert "没有待复核的条目了。" in capsys.readouterr().err
    assert main(["--lang", "zh_CN", "models", "allow", "someorg/model"]) == 0
    assert "已允许：someorg/model" in capsys.readouterr().out


def test_adding_to_a_dataset_promoting_and_the_comparison_in_chinese(store, tiny_text_model, shared, chinese):
    from engine.review import corrections
    from tests.test_training import insert_text_dataset

    run_id = eval_run(store, tiny_text_model, ROWS)
    queue = items.queue_predictions(store, run_id, "eval:file")["queue"]
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    for item in items.list_items(store, queue):
        items.label(store, item["id"], item["true_label"])
    at = open_page("review")
    assert at.button(key="rv-add").label == "加入数据集（3 条）"
    at.button(key="rv-add").click().run()
    assert "已保存 fpb:2：3 行复核结果加入训练集；验证集和测试集的行不变。" in texts(at)
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    at.run()
    at.checkbox(key="rv-rescore").uncheck()
    at.button(key="rv-promote").click().run()
    assert f"运行 {run_id} 现在是新闻源“news”的模型。" in texts(at)
    assert list(at.dataframe[-1].value.columns)[:2] == ["启用时间", "运行编号"]

    new_ds = corrections.reviewed_versions(store)[0]
    preds = [{"row_id": 1, "text": "loss widened", "true_label": "negative", "pred_label": "positive",
              "confidence": 0.5, "probs": {}}]
    old = make_finished_run(store, tiny_text_model, predictions=preds)
    new = make_finished_run(store, tiny_text_model, dataset_id=new_ds["id"],
                            predictions=[{**preds[0], "pred_label": "negative"}])
    store.execute("UPDATE jobs SET config_json = ?, status = 'running' WHERE id = ?",
                  [db.dumps({"corrects": old}), new])
    at.run()
    assert f"运行 {new}（纠正运行 {old}）运行中；完成后对比会显示在这里。" in texts(at)
    store.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [new])
    at.run()
    table = at.dataframe[-2].value if "行集" not in at.dataframe[-1].value.columns else at.dataframe[-1].value
    assert list(table.columns)[:4] == ["行集", "行数", "旧准确率", "新准确率"]
    assert table["行集"].tolist() == ["测试集", "复核条目（新运行在训练中见过）"]
    data = [r[0] for r in ROWS] + [queue, "negative", "neutral", "positive", "news", "fpb"]
    assert not english_left(everything_read(at), data), english_left(everything_read(at), data)
