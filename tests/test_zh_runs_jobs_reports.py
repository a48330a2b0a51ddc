"""Issue 14: the Runs, Jobs and Reports pages, the jobs command and the plain-words verdict in 简体中文.

What the pages render is read as a person reads it; apart from the data put there (run and dataset names, class
labels, the model's name) and a few names that read the same in Chinese (F1, CSV, CPU ...), no English word is left.
"""

from __future__ import annotations

import json
import re

import pytest

from engine import db, i18n
from engine.cli.main import main
from engine.jobs import queue, supervisor
from engine.monitor import feeds, scoring
from engine.reports import plain
from tests.helpers import feed_csv, make_finished_run, open_page, texts
from tests.test_plain_report import MATRIX
from tests.test_reports import text_predictions

# Words that may stay Latin: the data this test puts there, and names that read the same in Chinese.
DATA = {"negative", "neutral", "positive", "tiny", "sentence", "wire", "text", "classification", "sentiment", "cpu",
        "default", "fpb", "ana"}
NAMES = {"F1", "CSV", "XLSX", "CPU", "GPU", "ROUGE", "BLEU", "FP32", "fp32", "id", "python", "engine", "worker",
         "torch", "transformers", "peft", "Python", "CoNLL", "Bellwether"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def english_left(shown: str) -> list[str]:
    """Latin words of three letters or more in ``shown`` that are neither data nor names."""
    shown = re.sub(r"`[^`]*`|:material/[a-z_]+:|:[a-z]+-badge\[|https?://\S+|\d{4}-\d\d-\d\dT[\d:+]+", " ", shown)
    words = re.findall(r"[A-Za-z][A-Za-z_-]{2,}", shown)
    return sorted({w for w in words if w.lower() not in DATA and w not in NAMES
                   and not all(part.lower() in DATA or part in NAMES for part in re.split(r"[-_]", w) if part)})


def everything(at) -> str:
    """What a page says: its texts, titles, tab and widget labels, metrics, and the headings of its tables."""
    parts = [texts(at)] + [t.value for t in at.title] + [t.label for t in at.tabs]
    parts += [w.label for kind in ("button", "selectbox", "radio", "checkbox", "number_input", "text_input",
                                   "multiselect", "slider") for w in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [" ".join(headings(d)) for d in at.dataframe]
    return "\n".join(str(p) for p in parts)


def headings(table) -> list[str]:
    """A table's column headings as shown: the column_config label where the page gives one, else the column's name."""
    config = json.loads(table.proto.columns or "{}")
    return [str((config.get(str(c)) or {}).get("label") or c) for c in table.value.columns]


@pytest.fixture
def chinese(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    monkeypatch.setattr(supervisor, "check_running", lambda conn: None)


@pytest.fixture
def populated(store, tiny_text_model):
    """A finished run with test predictions, a scoring job that ran with it, and a run queued behind a running one."""
    run = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.6})
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts")]), "a.csv", "wire")
    job = scoring.enqueue(store, "wire", run)
    store.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?, device_slot = 'cpu' WHERE id = ?",
                  [db.now(), job])
    busy = queue.enqueue(store, "train", base_model="tiny", config={"epochs": 1}, device_slot="cpu")
    store.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", [db.now(), busy])
    waiting = queue.enqueue(store, "train", base_model="tiny", config={"epochs": 1}, device_slot="cpu")
    return {"run": run, "job": job, "busy": busy, "waiting": waiting}


def test_runs_jobs_and_reports_pages_speak_chinese(chinese, populated):
    at = open_page("runs", run=str(populated["run"]))
    shown = everything(at)
    assert at.title[0].value == "运行记录" and "全部运行" in shown and "宏平均 F1（测试集）" in shown
    assert "打开评估报告" in [p.label for p in at.get("page_link")] or "打开评估报告" in str(at.get("page_link"))
    assert english_left(shown) == [], english_left(shown)

    at = open_page("jobs")
    shown = everything(at)
    assert at.title[0].value == "任务队列" and "等待中和运行中" in shown and "全部任务" in shown
    assert f"排在运行 {populated['busy']}（运行中，CPU）之后" in shown  # why the queued run waits
    table = next(d.value for d in at.dataframe if "类型" in d.value.columns)
    assert {"评分任务 1", f"运行 {populated['run']}"} <= set(table["任务"]) and set(table["类型"]) == {"训练", "评分"}
    assert english_left(shown) == [], english_left(shown)

    at = open_page("reports")
    shown = everything(at)
    assert at.title[0].value == "评估报告"
    assert [t.label for t in at.tabs] == ["评估报告", "混淆矩阵", "错误", "置信度", "在新数据上评估", "对比运行", "试一试"]
    assert "在检查的 10 条文本中，正确率为 60%。" in shown and "模型明显优于这种猜测。" in shown
    report = next(d.value for d in at.dataframe if "类别" in d.value.columns)
    assert list(report.columns) == ["类别", "判为该类时的正确率（精确率）", "找到的比例（召回率）", "F1", "行数"]
    assert {"negative", "neutral", "positive"} <= set(report["类别"])  # label values from data stay as they are
    assert english_left(shown) == [], english_left(shown)


def test_the_jobs_command_speaks_chinese(chinese, populated, capsys):
    assert main(["jobs"]) == 0  # BELLWETHER_LANGUAGE=zh_CN (main(["--lang", ...]) would stay set for the process)
    out = capsys.readouterr().out
    assert "任务" in out and "评分" in out and "scoring-1" in out  # the reference to type stays as typed
    assert main(["jobs", "delete", "S1"]) == 2
    assert "删除评分任务 1及其文件后无法恢复" in capsys.readouterr().err
    assert main(["jobs", "delete", "S1", "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "已删除评分任务 1及其文件。"


def test_a_job_that_fails_in_a_chinese_speaking_worker_keeps_english_and_is_shown_in_chinese(chinese, populated, store,
                                                                                             capsys):
    from engine.cli.job import run_job

    job = scoring.enqueue(store, "wire", populated["run"])
    store.execute("UPDATE jobs SET feed_id = 999 WHERE id = ?", [job])  # its feed is gone: the runner's UserError
    assert run_job(job) == 1  # the worker speaks Chinese here (BELLWETHER_LANGUAGE=zh_CN)
    assert queue.get(store, job)["error"] == "Feed 999 no longer exists."  # English, whatever the worker speaks
    assert main(["jobs"]) == 0
    assert "新闻源 999 已不存在。" in capsys.readouterr().out
    table = next(d.value for d in open_page("jobs").dataframe if "类型" in d.value.columns)
    assert "新闻源 999 已不存在。" in set(table["停止原因"])
    with i18n.using("en"):
        assert main(["jobs"]) == 0
    assert "Feed 999 no longer exists." in capsys.readouterr().out


def test_the_verdict_in_chinese_from_a_known_confusion_matrix():
    with i18n.using("zh_CN"):
        said = plain.verdict(MATRIX)
        table = plain.table(plain.pd.DataFrame({"class": ["positive", "macro avg"], "precision": [0.71, 0.7],
                                                "recall": [0.48, 0.68], "f1-score": [0.57, 0.69],
                                                "support": [100, 400]}))
    assert said.headline == (
        "在检查的 400 条文本中，正确率为 76%。总是回答“neutral”（最常见的类别）的正确率为 60%，宏平均 F1 为 0.25，而模型为 "
        "0.69。模型明显优于这种猜测。")
    assert said.classes[2] == ("positive：找到了 48% 的 positive 文本（100 条中 48 条）；它判为 positive 时，正确率为 71%"
                               "（68 条中 48 条）。")
    assert all(CHINESE.search(line) for line in said.lines())
    assert list(table.columns) == ["类别", "判为该类时的正确率（精确率）", "找到的比例（召回率）", "F1", "行数"]
    assert list(table["类别"]) == ["positive", "各类别平均（宏平均）"]
    assert plain.verdict(MATRIX).headline.startswith("Right on 76% of the 400 texts checked.")  # English otherwise


def test_why_a_job_stopped_is_stored_in_english_and_shown_in_chinese():
    stored = queue.KILLED.format(signal=9)
    assert stored.startswith(queue.VANISHED)  # what the poller and the tests read stays English
    with i18n.using("zh_CN"):
        assert i18n.shown(stored) == "引擎意外停止：训练进程被终止（信号 9）。继续该运行即可从最近的检查点接着进行。"
        assert i18n.shown(queue.CANCELLED_ON_REQUEST) == "已按请求取消。"
        assert i18n.shown("CUDA error: device-side assert") == "CUDA error: device-side assert"  # not ours
        assert queue.label({"id": queue.ID_BASE["topics"] + 3, "kind": "score",
                            "config_json": db.dumps({"purpose": "topics"})}) == "主题任务 3"
    assert i18n.shown(stored) == stored


def test_the_report_command_speaks_chinese_and_keeps_json_as_it_is(chinese, store, tiny_text_model, capsys):
    run = make_finished_run(store, tiny_text_model, text_predictions(), {"accuracy": 0.6, "macro_f1": 0.6})
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"运行 {run} · 测试集\n已评分 10 行，共 10 行。")
    assert "在检查的 10 条文本中，正确率为 60%。" in out and "精确率" in out and "宏平均" in out
    assert english_left(out) == [], english_left(out)
    assert main(["report", str(run), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "macro avg" in data["report"] and data["verdict"]["headline"].startswith("在检查的")
