"""Feeds in 简体中文 and the issue-14 additions to the Feeds page and the feed CLI: a topic rule's preview (the same
matching as saving), times in the feed's zone, a non-news upload refused in words, and stored English messages shown
in the reader's language."""

from __future__ import annotations

import re

import pytest

from engine import db, i18n
from engine.cli import main as cli_main
from engine.errors import UserError
from engine.jobs import supervisor
from engine.monitor import feeds, poller, scoring, sources
from tests.helpers import make_finished_run, open_page, texts

# 01:30 UTC is 09:30 in Shanghai: the page and the CLI must show 09:30.
ROWS = [("2024-01-02T01:30:00Z", "Bank profits rise"), ("2024-01-02T02:00:00Z", "Banks slump on rates"),
        ("2024-01-03T03:00:00Z", "Big lenders merge"), ("2024-01-03T04:00:00Z", "银行板块下跌"),
        ("2024-01-04T05:00:00Z", "Bankruptcy filed by retailer")]
TITLES = [t for _, t in ROWS]


def main(argv: list[str]) -> int:
    """The command line as a call; the language a --lang sets ends with the call (as it does with the process)."""
    with i18n.using(None):
        return cli_main.main(argv)


def _csv(rows) -> bytes:
    return ("time,title\n" + "\n".join(f"{d},{t}" for d, t in rows)).encode()


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 1)
    return open_page


@pytest.fixture
def shanghai(store):
    """A feed whose zone is Asia/Shanghai, with five articles."""
    feeds.import_file(store, _csv(ROWS), "sh.csv", "sh", tz="Asia/Shanghai")
    return feeds.get_feed(store, "sh")


def _frame(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _english_runs(text: str, allowed: list[str]) -> list[str]:
    """Runs of three or more English words left in ``text`` once the data values in ``allowed`` are taken out."""
    for value in sorted(allowed, key=len, reverse=True):
        text = text.replace(value, " ")
    return re.findall(r"[A-Za-z]{2,}(?:[ ,;:'’-]+[A-Za-z]{2,}){2,}", text)


# ---------------------------------------------------------------------------------------------------------------
# The Feeds page in Chinese


def test_the_feeds_page_speaks_chinese_with_times_in_the_feeds_zone(app, home, store, shanghai, tiny_text_model,
                                                                     monkeypatch):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    run_id = make_finished_run(store, tiny_text_model)
    feeds.set_topic_rule(store, "sh", "Banks", "bank")
    # A source whose last poll failed: the worker keeps the reason in English, the page shows it in Chinese.
    store["feed_sources"].insert({"feed_id": shanghai["id"], "kind": "rss", "location": "https://news.example/rss",
                                  "interval_s": 300, "enabled": 1, "error_count": 2, "n_imported": 0,
                                  "last_poll_at": "2024-01-05T01:00:00+00:00", "next_poll_at": "2024-01-05T02:00:00+00:00",
                                  "last_error": "news.example did not answer within 30 seconds.",
                                  "created_at": db.now(), "created_by": "ana"})
    job_id = scoring.enqueue(store, "sh", run_id)
    at = app("views/feeds.py")
    shown = texts(at)
    assert at.title[0].value == "新闻源"
    assert {"导入新闻", "主题", "搜索", "用训练好的模型评分", "来源"} <= {h.value for h in at.subheader}
    assert "**5** 篇文章，来自 1 次导入 · 时区 Asia/Shanghai" in shown
    assert "来源 1（news.example）：news.example 在 30 秒内没有响应。 下次尝试：2024年1月5日 10:00:00。" in shown
    assert f"有 5 篇文章尚未被运行 {run_id} 评分。" in shown
    labels = [w.label for kind in ("selectbox", "text_input", "button", "number_input") for w in getattr(at, kind)]
    assert {"新闻源", "主题名称", "保存主题", "精度", "添加来源", "立即轮询"} <= set(labels)
    assert list(_frame(at, "关键词").columns) == ["主题", "关键词", "文章数", "出处"]
    sources_table = _frame(at, "上次轮询")
    assert sources_table["上次轮询"].tolist() == ["2024年1月5日 09:00:00"]  # 01:00 UTC in Shanghai
    assert sources_table["状态"].tolist() == ["错误：news.example 在 30 秒内没有响应。"]
    assert any(f"评分任务 1 · 运行 {run_id} · **排队中**" in str(p.proto) for p in at.get("progress"))
    at.text_input(key="feed_search").set_value("profits").run()
    hits = _frame(at, "标题")
    assert hits["发布时间"].tolist() == ["2024年1月2日 09:30:00"]  # 01:30 UTC, in the feed's zone
    # No English sentence left: what the page says and every widget's label, less the data put there.
    everything = "\n".join([texts(at), *labels, *[str(c) for d in at.dataframe for c in d.value.columns],
                            *[e.label for e in at.expander], *[str(o) for w in at.selectbox for o in w.options]])
    data = [str(home), *TITLES, "Banks", "bank", "sh", "news.example", "https://news.example/rss", "Asia/Shanghai", "ana",
            "negative, neutral, positive", "wirecard belarus", "markets-daily"]
    assert _english_runs(everything, data) == []
    assert "articles" not in everything and "Import news" not in everything


def test_the_feeds_page_in_english_keeps_its_words_and_shows_times_in_the_feeds_zone(app, store, shanghai):
    at = app("views/feeds.py")
    assert "**5** articles from 1 imports · time zone Asia/Shanghai" in texts(at)
    at.text_input(key="feed_search").set_value("profits").run()
    assert _frame(at, "title")["published"].str.replace("\u202f", " ").tolist() == ["Jan 2, 2024, 9:30:00 AM"]


# ---------------------------------------------------------------------------------------------------------------
# A topic rule's preview: what saving will tag, before saving


def test_the_preview_counts_exactly_what_saving_then_tags(store, shanghai):
    preview = feeds.preview_topic_rule(store, "sh", "bank, 银行")
    assert preview["keywords"] == ["bank", "银行"] and preview["total"] == 5
    assert preview["matches"] == 3  # Bank, Banks (a plural), 银行; not Bankruptcy, not lenders
    assert [a["title"] for a in preview["sample"]] == ["银行板块下跌", "Banks slump on rates", "Bank profits rise"]
    assert store["topic_rules"].count == 0  # a preview saves nothing
    saved = feeds.set_topic_rule(store, "sh", "Banks", "bank, 银行")
    assert saved["matches"] == preview["matches"]
    tagged = {r[0] for r in store.execute("SELECT a.title FROM article_topics t JOIN articles a ON a.id = t.article_id "
                                          "WHERE t.topic = 'Banks'")}
    assert tagged == {a["title"] for a in preview["sample"]}
    assert feeds.preview_topic_rule(store, "sh", " , ")["matches"] == 0


def test_the_feeds_page_previews_a_rule_before_saving_it(app, store, shanghai):
    at = app("views/feeds.py")
    name = next(t for t in at.text_input if t.label == "Topic name")
    name.set_value("Banks")
    next(t for t in at.text_input if t.label.startswith("Keywords")).set_value("bank, 银行").run()
    assert "Preview: these keywords catch **3** of the feed's 5 articles (saving tags exactly these)." in texts(at)
    sample = _frame(at, "headline")
    assert sample["headline"].tolist() == ["银行板块下跌", "Banks slump on rates", "Bank profits rise"]
    assert sample["published"].str.replace("\u202f", " ").tolist()[-1] == "Jan 2, 2024, 9:30:00 AM"
    assert store["topic_rules"].count == 0
    next(b for b in at.button if b.label == "Save topic").click().run()
    assert "Topic 'Banks' saved: 3 articles tagged." in texts(at)
    assert all(t.value == "" for t in at.text_input if t.label in ("Topic name", "Keywords or tickers, comma-separated"))


def test_the_cli_previews_a_rule_in_the_feeds_zone_and_saves_nothing(store, shanghai, capsys):
    assert main(["topics", "set", "--feed", "sh", "--name", "Banks", "--keywords", "bank, 银行", "--preview"]) == 0
    out = capsys.readouterr().out.replace("\u202f", " ")
    assert "Preview of topic 'Banks' (bank, 银行): 3 of the 5 articles in feed 'sh' would be tagged." in out
    assert "Jan 2, 2024, 9:30:00 AM  Bank profits rise" in out and "Bankruptcy" not in out
    assert store["topic_rules"].count == 0
    assert main(["--lang", "zh_CN", "topics", "set", "--feed", "sh", "--name", "Banks", "--keywords", "bank, 银行",
                 "--preview"]) == 0
    out = capsys.readouterr().out
    assert "主题“Banks”（bank, 银行）的预览：新闻源“sh”的 5 篇文章中有 3 篇会被标注。未保存任何内容。" in out
    assert "2024年1月2日 09:30:00  Bank profits rise" in out
    assert main(["topics", "set", "--feed", "sh", "--name", "Banks", "--keywords", "bank, 银行"]) == 0
    assert "3 articles tagged by rules" in capsys.readouterr().out


def test_cli_search_and_listings_show_times_in_the_feeds_zone(store, shanghai, capsys):
    assert main(["feed", "search", "--feed", "sh", "profits"]) == 0
    assert "Jan 2, 2024, 9:30:00 AM  Bank profits rise" in capsys.readouterr().out.replace("\u202f", " ")
    assert main(["--lang", "zh_CN", "feed", "search", "--feed", "sh", "profits"]) == 0
    assert "2024年1月2日 09:30:00  Bank profits rise" in capsys.readouterr().out
    assert main(["--lang", "zh_CN", "feed", "list"]) == 0
    assert "5 篇文章" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# A file that is not news: refused in words, the same on the page and on the command line


def test_a_pdf_is_refused_in_words_on_the_page_and_in_the_cli(app, store, tmp_path, capsys):
    refusal = ("report.pdf is a PDF file; news is read from CSV, Excel (.xlsx), JSON lines and RSS or Atom XML files. "
               "Export the news in one of those formats and upload that file.")
    at = app("views/feeds.py")
    at.text_input(key="new_feed_name").set_value("f").run()
    at.file_uploader[0].set_value(("report.pdf", b"%PDF-1.7\n%binary", "application/pdf")).run()
    assert not at.exception
    assert [e.value for e in at.error] == [refusal]
    assert not [b for b in at.button if b.label == "Import into feed"]
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%binary")
    assert main(["feed", "import", str(pdf), "--feed", "f"]) == 2
    assert refusal in capsys.readouterr().err
    assert store["articles"].count == 0
    with i18n.using("zh_CN"), pytest.raises(UserError, match="report.pdf 是 PDF 文件"):
        feeds.check_news_file_name("report.pdf")
    feeds.check_news_file_name("news.CSV")  # any case; a name without an ending is told by its content
    feeds.check_news_file_name("export")


# ---------------------------------------------------------------------------------------------------------------
# Messages kept in the store in English, shown in the reader's language


def test_stored_english_messages_are_translated_when_shown():
    stored = "news.example answered HTTP 503 (Service Unavailable)."
    assert i18n.shown(stored) == stored
    with i18n.using("zh_CN"):
        assert i18n.shown(stored) == "news.example 返回 HTTP 503（Service Unavailable）。"
        assert i18n.shown("A source's host 'x.example' could not be found. Check the address.") == (
            "找不到来源的主机“x.example”。请检查地址。")
        assert i18n.shown("no title") == "没有标题"
        assert i18n.shown("Something nobody wrote down.") == "Something nobody wrote down."
        assert i18n.shown(None) == ""


def test_the_worker_keeps_errors_in_english_whatever_the_servers_language(store, tmp_path, monkeypatch):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    feeds.import_file(store, _csv(ROWS[:1]), "a.csv", "f")
    folder = tmp_path / "drop"
    folder.mkdir()
    row = sources.add_source(store, "f", str(folder), interval_s=60)
    folder.rmdir()
    [result] = poller.poll_due(store)
    assert result.status == "error" and result.error.startswith("The folder ") and "no longer exists" in result.error
    assert sources.get_source(store, row["id"])["last_error"] == result.error
    assert i18n.shown(result.error).startswith("文件夹 ")  # the reader's language: zh_CN here
