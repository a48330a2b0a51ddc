"""Feed imports: the real news files as they are, RSS and Atom, time formats, de-duplication, topics, search, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from engine import db
from engine.monitor import feeds
from engine.errors import UserError
from tests.conftest import ROOT


def _import(store, path, feed="news", **kw):
    return feeds.import_file(store, path.read_bytes(), path.name, feed, **kw)


# ---------------------------------------------------------------------------------------------------------------
# The three real news files, byte-exact (cp1252, CRLF, ",," blank rows, newlines inside quoted cells)


def test_cnbc_file_imports_453_articles_with_eastern_times_and_blank_rows_counted(store, shared):
    path = shared("news", "cnbc_headlines.csv")
    result = _import(store, path)
    assert result.encoding == "cp1252"
    assert result.mapping["time"] == "Time" and result.mapping["title"] == "Headlines"
    assert result.mapping["body"] == "Description"
    assert (result.n_new, result.n_duplicate, result.n_bad_time, result.n_no_title) == (453, 0, 0, 0)
    assert result.n_blank == 1983  # the ",," rows
    assert result.n_rows == 453 + 1983
    first = store.execute(
        "SELECT published_at, day, title FROM articles WHERE title LIKE 'Jim Cramer: A better way%'"
    ).fetchone()
    # " 7:51  PM ET Fri, 17 July 2020": 7:51 pm in New York (EDT, UTC-4) is 23:51 UTC.
    assert first == ("2020-07-17T23:51:00Z", "2020-07-17", "Jim Cramer: A better way to invest in the Covid-19 vaccine gold rush")
    assert store.execute("SELECT MIN(day), MAX(day) FROM articles").fetchone() == ("2020-02-06", "2020-07-17")
    imp = feeds.imports(store, result.feed_id)[0]
    assert (imp["n_new"], imp["n_duplicate"], imp["n_rejected"]) == (453, 0, 0)


def test_guardian_file_keeps_embedded_newlines_in_one_article_and_a_repeated_title_on_another_day(store, shared):
    result = _import(store, shared("news", "guardian_headlines.csv"))
    assert (result.n_new, result.n_duplicate, result.n_rejected, result.n_blank) == (499, 0, 0, 17301)
    assert result.mapping["body"] is None
    # A headline written over several lines in the file is one article, its whitespace made single spaces.
    row = store.execute("SELECT title, day FROM articles WHERE title LIKE 'The Week in Patriarchy%'").fetchone()
    assert row == ("The Week in Patriarchy Bacardi's 'lady vodka': the latest in a long line of depressing gendered products", "2020-07-18")
    # cp1252 curly quotes and the pound sign decode to the right characters.
    assert store.execute("SELECT COUNT(*) FROM articles WHERE title LIKE '%£300,000%'").fetchone()[0] == 1
    # The same headline on 15 and 16 July is two articles (duplicates are the same title on the same day).
    days = [r[0] for r in store.execute(
        "SELECT day FROM articles WHERE norm_title LIKE 'treasury mulls plan%' ORDER BY day")]
    assert days == ["2020-07-15", "2020-07-16"]


def test_reuters_file_and_all_three_in_one_feed_then_reimport_is_all_duplicates(store, shared):
    totals = {}
    for name in ("cnbc", "guardian", "reuters"):
        totals[name] = _import(store, shared("news", f"{name}_headlines.csv")).n_new
    assert totals == {"cnbc": 453, "guardian": 499, "reuters": 499}
    assert store["articles"].count == 1451
    reuters = store.execute("SELECT published_at, day FROM articles WHERE title LIKE 'TikTok considers London%'").fetchone()
    assert reuters == ("2020-07-18T00:00:00Z", "2020-07-18")
    again = _import(store, shared("news", "reuters_headlines.csv"))
    assert (again.n_new, again.n_duplicate, again.n_duplicate_in_feed, again.n_rejected) == (0, 499, 499, 0)
    assert store["articles"].count == 1451
    assert [i["n_new"] for i in feeds.imports(store, again.feed_id)] == [0, 499, 499, 453]


def test_feed_time_zone_sets_the_day_of_date_only_and_eastern_times(store, shared):
    result = _import(store, shared("news", "cnbc_headlines.csv"), feed="ny", tz="ET")
    assert result.tz == "America/New_York"
    first = store.execute("SELECT published_at, day FROM articles WHERE title LIKE 'Jim Cramer: A better way%'").fetchone()
    assert first == ("2020-07-17T23:51:00Z", "2020-07-17")
    london = _import(store, shared("news", "guardian_headlines.csv"), feed="uk", tz="Europe/London")
    row = store.execute("SELECT published_at, day FROM articles WHERE feed_id = ? AND title LIKE 'Johnson is asking Santa%'",
                        [london.feed_id]).fetchone()
    assert row == ("2020-07-17T23:00:00Z", "2020-07-18")  # midnight in London (BST) is 23:00 UTC the day before


# ---------------------------------------------------------------------------------------------------------------
# Times


def test_real_world_time_formats_parse_with_the_feed_zone():
    values = [
        " 7:51  PM ET Fri, 17 July 2020",
        "18-Jul-20",
        "Jul 18 2020",
        "2020-07-18T10:00:00+02:00",
        "2020-07-18T10:00:00Z",
        "2020-07-18 10:00",
        "1595030400",
        "Fri, 17 Jul 2020 19:51:00 +0100",
        "Sat, 18 July 2020 9:00 AM EDT",
        "2020年7月18日 10:30",
        "yesterday",
        "",
        "31-Feb-20",
    ]
    got = feeds.parse_times(values, "Asia/Shanghai")
    text = [None if pd.isna(t) else t.strftime("%Y-%m-%dT%H:%M") for t in got]
    assert text == [
        "2020-07-17T23:51",  # ET in the text wins over the feed zone
        "2020-07-17T16:00",  # midnight in Shanghai
        "2020-07-17T16:00",
        "2020-07-18T08:00",
        "2020-07-18T10:00",
        "2020-07-18T02:00",
        "2020-07-18T00:00",  # epoch seconds are UTC
        "2020-07-17T18:51",
        "2020-07-18T13:00",
        "2020-07-18T02:30",
        None,
        None,
        None,
    ]


def test_unknown_time_zone_is_refused_in_plain_words(store):
    with pytest.raises(UserError, match="not a time zone"):
        feeds.import_file(store, b"time,title\n2020-01-01,a\n", "a.csv", "f", tz="Mars/Olympus")
    assert store["feeds"].count == 0


def test_rows_with_unreadable_times_are_rejected_with_examples_and_blank_rows_counted(store):
    data = (
        "published,headline,source\r\n"
        "2020-07-01 09:00,Banks rally,Wire\r\n"
        ",,\r\n"
        "soon,Shares slump,Wire\r\n"
        "2020-07-02 10:00,,Wire\r\n"
        "sometime,Oil falls,Wire\r\n"
        ",,\r\n"
    ).encode()
    result = feeds.import_file(store, data, "x.csv", "f")
    assert (result.n_new, result.n_bad_time, result.n_no_title, result.n_rejected, result.n_blank) == (1, 2, 1, 3, 2)
    assert [(e["row"], e["value"]) for e in result.examples["time"]] == [(4, "soon"), (6, "sometime")]
    assert result.examples["title"][0]["row"] == 5
    report = feeds.imports(store, result.feed_id)[0]["report"]
    assert report["n_bad_time"] == 2 and report["examples"]["time"][0]["value"] == "soon"


def test_a_million_times_parse_quickly_because_each_distinct_string_is_parsed_once():
    import time

    values = pd.Series([" 7:51  PM ET Fri, 17 July 2020", "18-Jul-20", "Jul 18 2020"] * 100_000)
    start = time.perf_counter()
    got = feeds.parse_times(values, "UTC")
    assert got.notna().all()
    assert time.perf_counter() - start < 10


# ---------------------------------------------------------------------------------------------------------------
# Duplicates, mapping, formats


def test_duplicates_by_url_else_title_and_day_within_the_file_and_against_the_feed(store):
    first = (
        "time,title,url\n"
        "2020-07-01 09:00,Banks rally,https://x.com/a\n"
        "2020-07-01 10:00,Banks rally again,https://X.com/a/\n"  # same URL (host case, trailing slash)
        "2020-07-01 11:00,Oil falls!,\n"
        "2020-07-01 12:00,oil  FALLS,\n"  # same normalised title, same day
        "2020-07-02 12:00,Oil falls,\n"  # another day: kept
    ).encode()
    r1 = feeds.import_file(store, first, "a.csv", "f")
    assert (r1.n_new, r1.n_duplicate_in_file, r1.n_duplicate_in_feed) == (3, 2, 0)
    second = (
        "time,title,url\n"
        "2020-07-05 09:00,Different title,https://x.com/a\n"  # URL already in the feed
        "2020-07-02 18:00,OIL FALLS,\n"  # title+day already in the feed
        "2020-07-03 18:00,Oil falls,\n"  # new day
    ).encode()
    r2 = feeds.import_file(store, second, "b.csv", "f")
    assert (r2.n_new, r2.n_duplicate, r2.n_duplicate_in_feed) == (1, 2, 2)
    assert "1 new articles" in r2.summary() and "2 duplicates" in r2.summary()


def test_mapping_is_guessed_and_overridable_and_a_missing_column_is_a_plain_error(store):
    data = "when,story,ticker,site\n2020-07-01,Apple beats,AAPL,Wire\n".encode()
    with pytest.raises(UserError, match="Cannot tell which column .* published time"):
        feeds.import_file(store, data, "x.csv", "f", mapping={"title": "story"})
    with pytest.raises(UserError, match="no column called 'nope'"):
        feeds.import_file(store, data, "x.csv", "f", mapping={"time": "nope"})
    assert db.table_counts(store)["articles"] == 0 and store["feeds"].count == 0
    result = feeds.import_file(store, data, "x.csv", "f", mapping={"time": "when", "title": "story"})
    assert result.mapping == {"time": "when", "title": "story", "body": None, "source": "site", "url": None, "topic": "ticker"}
    assert store.execute("SELECT source, topic FROM articles").fetchone() == ("Wire", "AAPL")
    assert feeds.topics(store, result.feed_id) == [{"topic": "AAPL", "n_articles": 1}]
    # The feed remembers the mapping: the next file with the same columns needs no overrides.
    again = feeds.import_file(store, "when,story,ticker,site\n2020-07-02,MSFT dips,\"MSFT, AAPL\",Wire\n".encode(), "y.csv", "f")
    assert again.n_new == 1
    assert {t["topic"]: t["n_articles"] for t in feeds.topics(store, result.feed_id)} == {"AAPL": 2, "MSFT": 1}


def test_unusable_files_are_refused_and_change_nothing(store):
    before = db.table_counts(store)
    for data, name, message in [
        (b"", "empty.csv", "empty"),
        (b"\x00\x01\x02binary", "x.csv", "not a text file"),
        (b"<rss><channel></channel></rss>", "x.xml", "no RSS items"),
    ]:
        with pytest.raises(UserError, match=message):
            feeds.import_file(store, data, name, "f")
    assert db.table_counts(store) == before


def test_xlsx_and_jsonl_imports(store):
    frame = pd.DataFrame({"Date": ["2020-07-01", "2020-07-02"], "Headline": ["A up", "B down"], "Summary": ["x", "y"]})
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    r = feeds.import_file(store, buffer.getvalue(), "news.xlsx", "f")
    assert (r.format, r.n_new, r.mapping["body"]) == ("xlsx", 2, "Summary")
    lines = "\n".join(json.dumps({"published_at": f"2020-07-0{i}T08:00:00Z", "title": f"T{i}", "link": f"https://e/{i}"})
                      for i in range(1, 4))
    r = feeds.import_file(store, lines.encode(), "news.jsonl", "g")
    assert (r.format, r.n_new, r.mapping["url"]) == ("jsonl", 3, "link")


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Markets Wire</title><link>https://wire.example</link><description>d</description>
<item><title>Banks rally on rate hopes</title><link>https://wire.example/1</link>
  <description>&lt;p&gt;Shares of &lt;b&gt;banks&lt;/b&gt; rose.&lt;/p&gt;</description>
  <pubDate>Fri, 17 Jul 2020 19:51:00 -0400</pubDate><category>Banks</category></item>
<item><title>Oil slumps</title><link>https://wire.example/2</link><description>Crude fell.</description>
  <pubDate>Sat, 18 Jul 2020 08:00:00 GMT</pubDate></item>
<item><title>No date here</title><link>https://wire.example/3</link><description>x</description></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom News</title><id>urn:x</id><updated>2020-07-18T10:00:00Z</updated>
<entry><title>Tech stocks climb</title><link href="https://atom.example/a"/><id>urn:a</id>
  <updated>2020-07-18T10:00:00+02:00</updated><summary>Nasdaq up.</summary></entry>
<entry><title>Retailers warn</title><link href="https://atom.example/b"/><id>urn:b</id>
  <published>2020-07-19T09:30:00Z</published><updated>2020-07-19T09:30:00Z</updated><summary>Sales down.</summary></entry>
</feed>"""


def test_rss_file_imports_items_with_times_links_sources_and_categories(store):
    result = feeds.import_file(store, RSS.encode(), "wire.xml", "rss")
    assert result.format == "rss"
    assert (result.n_new, result.n_bad_time) == (2, 1)
    rows = store.execute("SELECT title, body, published_at, url, source, topic FROM articles ORDER BY id").fetchall()
    assert rows[0] == ("Banks rally on rate hopes", "Shares of banks rose.", "2020-07-17T23:51:00Z",
                       "https://wire.example/1", "Markets Wire", "Banks")
    assert rows[1][2] == "2020-07-18T08:00:00Z"
    # Appending the same RSS file later adds nothing (same links).
    again = feeds.import_file(store, RSS.encode(), "wire.xml", "rss")
    assert (again.n_new, again.n_duplicate) == (0, 2)


def test_atom_file_imports_entries(store):
    result = feeds.import_file(store, ATOM.encode(), "news.atom", "atom", format="rss")
    assert (result.n_new, result.n_rejected) == (2, 0)
    rows = store.execute("SELECT title, published_at, url, source FROM articles ORDER BY published_at").fetchall()
    assert rows == [
        ("Tech stocks climb", "2020-07-18T08:00:00Z", "https://atom.example/a", "Atom News"),
        ("Retailers warn", "2020-07-19T09:30:00Z", "https://atom.example/b", "Atom News"),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Topic rules and search


def test_topic_rules_match_words_case_insensitively_on_word_boundaries_and_chinese_substrings(store):
    data = (
        "time,title\n"
        "2020-07-01,Apple shares jump\n"
        "2020-07-01,Pineapple prices soar\n"  # 'apple' inside a word: no match
        "2020-07-01,AAPL falls after results\n"
        "2020-07-01,贵州茅台股价大涨\n"
        "2020-07-01,银行板块下跌\n"
    ).encode()
    result = feeds.import_file(store, data, "x.csv", "f")
    feeds.set_topic_rule(store, "f", "Apple", "apple, AAPL")
    info = feeds.set_topic_rule(store, "f", "Moutai", "茅台")
    assert info["keywords"] == ["茅台"]

    def titles(topic):
        return sorted(r[0] for r in store.execute(
            "SELECT a.title FROM article_topics t JOIN articles a ON a.id = t.article_id WHERE t.topic = ?", [topic]))

    assert titles("Apple") == ["AAPL falls after results", "Apple shares jump"]
    assert titles("Moutai") == ["贵州茅台股价大涨"]
    # New articles are tagged by the existing rules as they are imported.
    feeds.import_file(store, "time,title\n2020-07-02,apple's new phone\n".encode(), "y.csv", "f")
    assert "apple's new phone" in titles("Apple")
    # Replacing a rule re-tags the feed.
    feeds.set_topic_rule(store, "f", "Apple", "AAPL")
    assert titles("Apple") == ["AAPL falls after results"]
    with pytest.raises(UserError, match="at least one keyword"):
        feeds.set_topic_rule(store, "f", "Empty", " , ")
    assert result.feed_id


def test_full_text_search_over_the_feed(store, shared):
    result = _import(store, shared("news", "reuters_headlines.csv"))
    hits = feeds.search(store, result.feed_id, "wirecard belarus")
    assert [h["title"] for h in hits] == ["Trail of missing Wirecard executive leads to Belarus, Der Spiegel reports"]
    assert feeds.search(store, result.feed_id, 'quote" OR (') == []  # FTS syntax in the box is harmless
    feeds.import_file(store, "time,title\n2020-07-01,银行板块下跌\n".encode(), "z.csv", "zh")
    zh = feeds.get_feed(store, "zh")
    assert [h["title"] for h in feeds.search(store, zh["id"], "板块")] == ["银行板块下跌"]


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _cli(*args, home):
    import os

    env = {**os.environ, "BELLWETHER_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.mark.process
def test_cli_feed_import_topics_set_and_unusable_file(home, tmp_path, shared):
    path = shared("news", "guardian_headlines.csv")
    out = _cli("feed", "import", str(path), "--feed", "uk", "--tz", "Europe/London", home=home)
    assert out.returncode == 0, out.stderr
    assert "499 new articles" in out.stdout and "17301 blank rows" in out.stdout
    out = _cli("topics", "set", "--feed", "uk", "--name", "Brexit", "--keywords", "brexit,no-deal", home=home)
    assert out.returncode == 0, out.stderr
    assert "Brexit" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    out = _cli("feed", "import", str(bad), "--feed", "uk", home=home)
    assert out.returncode == 2 and "empty" in out.stderr and "Traceback" not in out.stderr
    out = _cli("feed", "import", str(path), "--feed", "uk", "--time-col", "When", home=home)
    assert out.returncode == 2 and "no column called 'When'" in out.stderr


def test_a_large_import_is_searchable_and_later_small_imports_are_too(store):
    rows = "\n".join(f"2020-07-01 09:{i % 60:02d},Company {i} reports results" for i in range(feeds.BULK_FTS_FROM + 500))
    result = feeds.import_file(store, f"time,title\n{rows}\n".encode(), "big.csv", "f")
    assert result.n_new == feeds.BULK_FTS_FROM + 500
    assert [h["title"] for h in feeds.search(store, result.feed_id, "company 2345")] == ["Company 2345 reports results"]
    # The search trigger is back in place: a small import is indexed one row at a time as usual.
    assert store.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'articles_ai'").fetchone()[0] == 1
    feeds.import_file(store, b"time,title\n2020-07-02,Zebra merger talks\n", "small.csv", "f")
    assert [h["title"] for h in feeds.search(store, result.feed_id, "zebra")] == ["Zebra merger talks"]
