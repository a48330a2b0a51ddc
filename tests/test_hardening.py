"""Hardening: per-row date refusal, racing first imports, long cells, unsafe URLs, invisible characters in names,
hash-shortened file names, base models on an allow-list, a full disk, and data shown as plain text on the pages."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from engine import db
from engine.data import datasets
from engine.errors import UserError
from engine.models import catalog
from engine.monitor import feeds
from engine.text import clean_name
from tests.helpers import make_finished_run, markdown_sources, open_page, texts

# A dataset name may not hold '/' or ':' (so no http://); a relative link, an image and an entity are enough.
NAME_PAYLOAD = "[Session expired - sign in again](evil.example) ![x](evil.png) &#91;y&#93; www.evil.example"
PAYLOAD = "[Session expired - sign in again](http://evil.example/login) ![x](http://evil.example/p.png) &#91;y&#93;"


def test_a_year_9999_row_is_rejected_alone(store):
    data = ("time,title\n2020-07-01,Profits rise\n9999-01-01,Typo year\n1600-03-02,Old typo\n"
            "9999999999,Far epoch\n2020-07-02,Shares fall\n").encode()
    result = feeds.import_file(store, data, "n.csv", "news")
    assert (result.n_new, result.n_bad_time) == (2, 3)
    assert [e["value"] for e in result.examples["time"]] == ["9999-01-01", "1600-03-02", "9999999999"]
    assert "3 without a readable time or with a year outside 1900-2100" in result.summary()


def test_long_cell_in_a_news_file_keeps_every_row(store):
    rows = [f"2020-07-01,Headline {i}" for i in range(1000)]
    rows.insert(10, f"2020-07-01,\"{'x' * 200_000}\"")
    rows.insert(20, "2020-07-01,a,broken,row")  # the careful row-by-row reader runs (it once stopped at 131,072)
    result = feeds.import_file(store, ("time,title\n" + "\n".join(rows)).encode(), "long.csv", "news")
    assert result.n_new == 1001
    assert store.execute("SELECT max(length(title)) FROM articles").fetchone()[0] == 200_000


def test_two_first_imports_into_a_new_feed_both_land(home):
    first = ("time,title\n" + "\n".join(f"2020-07-01,Alpha {i}" for i in range(3000))).encode()
    second = ("time,title\n" + "\n".join(f"2020-07-02,Beta {i}" for i in range(3000))).encode()
    errors, results = [], []
    barrier = threading.Barrier(2)

    def run(data, name):
        conn = None
        try:
            barrier.wait(timeout=60)  # both open the brand-new store at once too (that race once said "locked")
            conn = db.connect()
            results.append(feeds.import_file(conn, data, name, "brand-new"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()  # the other thread stops waiting rather than hanging the suite
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=run, args=(d, n)) for d, n in ((first, "a.csv"), (second, "b.csv"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    conn = db.connect()
    assert conn.execute("SELECT count(*) FROM feeds").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM articles").fetchone()[0] == 6000
    assert sorted(r.n_new for r in results) == [3000, 3000]
    conn.close()


def test_only_http_urls_are_stored(store):
    data = ("time,title,url\n2020-07-01,A,javascript:alert(1)\n2020-07-01,B,https://example.com/b\n"
            "2020-07-01,C,\"data:text/html;base64,xx\"\n").encode()
    result = feeds.import_file(store, data, "u.csv", "news")
    assert result.n_new == 3 and result.n_url_dropped == 2
    urls = dict(store.execute("SELECT title, url FROM articles").fetchall())
    assert urls == {"A": None, "B": "https://example.com/b", "C": None}
    assert "2 URLs that were not http(s) links were left out" in result.summary()


def test_invisible_characters_are_stripped_from_names_labels_and_articles(store):
    assert clean_name("fp\u200bb") == "fpb"
    assert clean_name("evil\u202egnp.exe\x1b[31m\x00") == "evilgnp.exe[31m"
    data = "text,label\n" + "".join(f"Profit rose {i},posi\u200btive\nSales fell {i},negative\n" for i in range(6))
    datasets.import_file(store, data.encode(), "x.csv", "fpb", created_by="t")
    saved = datasets.import_file(store, data.encode(), "x.csv", "fp\u200bb", created_by="t")[0]
    assert (saved["name"], saved["version"]) == ("fpb", 2)  # one dataset, not two identical-looking ones
    assert sorted(datasets.get(store, "fpb")["labels"]) == ["negative", "positive"]
    news = "time,title,source\n2020-07-01,Shares\u200b fall\u202e,Reu\x1bters\n".encode()
    feeds.import_file(store, news, "n.csv", "mark\u200bets")
    assert store.execute("SELECT name FROM feeds").fetchone()[0] == "markets"
    assert store.execute("SELECT title, source FROM articles").fetchone() == ("Shares fall", "Reuters")


def test_long_chinese_file_name_is_stored_hash_shortened(store):
    name = "银行" * 20 + ".csv"  # 40 characters, 123 bytes: the stored name once failed with ENAMETOOLONG
    data = "text,label\n" + "".join(f"利润 {i},positive\n销售 {i},negative\n" for i in range(6))
    saved = datasets.import_file(store, data.encode(), name, "银行" * 40, created_by="t")[0]
    stored = datasets.source_path(datasets.get(store, saved["ref"]))
    assert stored.read_bytes() == data.encode() and len(stored.name.encode()) < 255


def test_base_models_need_the_allow_list_and_never_tell_which_paths_exist(home, tiny_text_model, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    messages = set()
    for spec in ["/root/.ssh", "/nowhere/at/all", str(tmp_path / "not-a-model"), str(tiny_text_model),
                 "someone/model"]:
        with pytest.raises(UserError) as err:
            catalog.resolve(spec, allow_list=True)
        messages.add(str(err.value).replace(spec, "SPEC"))
    assert messages == {"'SPEC' is not one of the base models allowed on this server. Use 'default', or ask an "
                        "administrator to allow it (python -m engine models allow NAME)."}
    catalog.allow_model(str(tiny_text_model))
    assert catalog.resolve(str(tiny_text_model), allow_list=True).model_type == "bert"
    assert catalog.resolve("default", allow_list=True).model_type  # always allowed
    catalog.allow_model("someone/model")
    with pytest.raises(UserError, match="works offline"):  # allowed, not downloaded, downloads off (the default)
        catalog.resolve("someone/model", allow_list=True)
    assert catalog.disallow_model("someone/model") == [str(tiny_text_model)]


def test_models_cli_lists_allows_and_disallows(home, tiny_text_model):
    from engine.cli.main import main

    assert main(["models", "allow", str(tiny_text_model), "--check"]) == 0
    assert catalog.allowed_models() == [str(tiny_text_model)]
    assert main(["models", "disallow", str(tiny_text_model)]) == 0
    assert main(["models", "disallow", str(tiny_text_model)]) == 2
    assert catalog.allowed_models() == []


def test_a_full_disk_is_reported_as_such(store):
    class Full:
        in_transaction = False

        def execute(self, sql, *args):
            if sql == "BEGIN IMMEDIATE":
                self.in_transaction = True
                return None
            if sql == "ROLLBACK" and not self.in_transaction:
                raise sqlite3.OperationalError("cannot rollback - no transaction is active")
            self.in_transaction = False
            raise sqlite3.OperationalError("database or disk is full")

    class Db:
        conn = Full()

    with pytest.raises(UserError, match="is full, so this was not saved and nothing stored was changed"):
        with db.transaction(Db()):
            Db.conn.execute("INSERT ...")


# ---- data never becomes markup on the pages ----------------------------------------------------------------------


@pytest.fixture
def signed_in(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)


def _no_live_markup(source: str) -> None:
    """No unescaped link, image or entity: each '[', '!', '&' and '://' of the payload is backslash-escaped."""
    import re

    assert "[Session expired" not in source.replace("\\[Session expired", "")
    assert not re.search(r"(?<!\\)\]\(", source)  # a link or image needs '](' with nothing escaped
    assert not re.search(r"(?<!\\)!\\?\[", source) and not re.search(r"(?<!\\)&#", source)
    assert not re.search(r"(?<!\\)://", source)


def test_a_markdown_payload_in_a_dataset_name_and_label_shows_as_plain_text(store, signed_in):
    label = "pos <a href='http://evil.example'>here</a>"
    data = "text,label\n" + "".join(f"Profit rose {i},{label}\nSales fell {i},negative\n" for i in range(6))
    datasets.import_file(store, data.encode(), "x.csv", NAME_PAYLOAD, created_by="ana")
    at = open_page("data")
    source = markdown_sources(at)
    assert "\\[Session expired - sign in again\\](evil.example) \\!\\[x\\](evil.png) \\&\\#91;y" in source
    assert "www\\.evil.example" in source  # no autolink
    _no_live_markup(source)
    assert f"**{NAME_PAYLOAD}:1**" in texts(at)  # what the analyst reads: the name as typed
    chart = at.get("plotly_chart")[0].proto.spec
    assert "pos &lt;a href=" in chart and "&gt;here&lt;" in chart  # shown as text in the chart's labels
    assert "\\u003ca" not in chart and "<a" not in chart


def test_a_markdown_payload_in_topics_sources_and_run_names_shows_as_plain_text(store, signed_in, tiny_text_model):
    news = (f"time,title,source,topic\n2020-07-01,Shares fall,\"{PAYLOAD}\",\"<a href='http://evil.example'>x</a>\"\n"
            ).encode()
    feeds.import_file(store, news, "n.csv", "markets")
    run_id = make_finished_run(store, tiny_text_model)
    store.execute("UPDATE jobs SET name = ? WHERE id = ?", [PAYLOAD, run_id])
    at = open_page("runs", run=str(run_id))
    source = markdown_sources(at)
    assert "\\[Session expired - sign in again\\](http\\://evil.example/login)" in source
    _no_live_markup(source)
    with pytest.raises(UserError) as err:  # a UserError quoting data is escaped by plain_errors too
        feeds.set_topic_rule(store, "markets", "", "x")
    assert "Give the topic a name" in str(err.value)


def test_a_large_import_commits_in_chunks_and_a_failure_part_way_removes_them(store, monkeypatch):
    monkeypatch.setattr(feeds, "IMPORT_CHUNK", 1000)
    data = ("time,title,topic\n" + "\n".join(f"2020-07-{1 + i % 28:02d},Headline {i},Banks" for i in range(3500))).encode()
    calls = []
    real = feeds._store_chunk

    def store_chunk(conn, *args):
        calls.append(conn.conn.in_transaction)  # each chunk in a transaction of its own
        if len(calls) == 3 and fail:
            raise sqlite3.OperationalError("database or disk is full")
        return real(conn, *args)

    monkeypatch.setattr(feeds, "_store_chunk", store_chunk)
    fail = True
    with pytest.raises(UserError, match="is full, so this was not saved"):
        feeds.import_file(store, data, "n.csv", "news")
    assert store.execute("SELECT count(*) FROM articles").fetchone()[0] == 0  # the two stored chunks were removed
    assert store.execute("SELECT count(*) FROM feeds").fetchone()[0] == 0
    assert store.execute("SELECT count(*) FROM feed_imports").fetchone()[0] == 0
    assert store.execute("SELECT coalesce(sum(n), 0) FROM day_counts").fetchone()[0] == 0
    fail, calls[:] = False, []
    result = feeds.import_file(store, data, "n.csv", "news")
    assert result.n_new == 3500 and len(calls) == 4 and all(calls)
    before = store.execute("SELECT * FROM day_counts ORDER BY 1, 2, 3, 4").fetchall()
    db.rebuild_rollups(store)
    assert store.execute("SELECT * FROM day_counts ORDER BY 1, 2, 3, 4").fetchall() == before
    assert feeds.import_file(store, data, "n.csv", "news").n_duplicate_in_feed == 3500


def test_a_javascript_url_stored_before_imports_refused_it_is_never_shown_or_exported(store):
    """Articles imported before URLs were checked may hold javascript:/data: links: the Monitor's drill-down and its
    export give them no link (the title still shows)."""
    from engine.monitor import trends

    feeds.import_file(store, b"time,title,url\n2020-07-01,A,https://example.com/a\n2020-07-01,B,\n", "u.csv", "news")
    store.execute("UPDATE articles SET url = 'JavaScript:alert(1)' WHERE title = 'B'")  # as an older import left it
    f = trends.Filters(feed_id=store.execute("SELECT id FROM feeds").fetchone()[0])
    links = lambda frame: {t: (u if isinstance(u, str) else None) for t, u in zip(frame["title"], frame["url"])}  # noqa: E731
    assert links(trends.drilldown(store, f, "2020-07-01")) == {"A": "https://example.com/a", "B": None}
    assert links(trends.articles(store, f)) == {"A": "https://example.com/a", "B": None}
    assert {a["title"]: a["url"] for a in feeds.search(store, f.feed_id, "B")} == {"B": None}
