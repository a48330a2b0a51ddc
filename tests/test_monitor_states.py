"""The Monitor's states that stay true (issue 14): the page's filters reach the drill-down, weekly charts tick once a
week and show an empty week as a gap, every chart goes through views._shared.chart_style (legend and colour bar under
the plot, clear of Plotly's toolbar), times are written in the feed's zone; and the page, the notify command and the
alert messages speak 简体中文 when that is the language."""

from __future__ import annotations

import ast
import json
import re

import pandas as pd
import pytest

from engine import db, i18n
from engine.monitor import alerts, feeds, notify, trends
from tests.conftest import ROOT
from tests.helpers import feed_csv, make_finished_run, open_page, texts
from tests.test_monitor_pages import _surge_feed

WEEK_MS = 7 * 86_400_000


@pytest.fixture(autouse=True)
def _language_back():
    """The CLI's --lang and a page's run set this thread's language: back to the default after each test."""
    yield
    i18n.use(None)


@pytest.fixture
def app(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    return open_page


def _gap_feed(store, run_id, tz: str = "UTC") -> int:
    """Articles in the weeks of Monday 1 June and Monday 15 June 2020, none in the week of 8 June; two sources,
    a 'Banks' topic. Titles with 'loss' are negative, 'gain' positive, the rest neutral."""
    rows = []
    for day in ("2020-06-01", "2020-06-03", "2020-06-05", "2020-06-15", "2020-06-16", "2020-06-18"):
        rows += [(f"{day}T10:00:00Z", f"Bank loss {day}", "Wire"), (f"{day}T11:00:00Z", f"Oil gain {day}", "Post"),
                 (f"{day}T12:00:00Z", f"Bank gain {day}", "Post"), (f"{day}T13:00:00Z", f"Tea calm {day}", "Wire")]
    data = ("time,title,source\n" + "\n".join(f"{t},{title},{source}" for t, title, source in rows)).encode()
    result = feeds.import_file(store, data, "gap.csv", "gap", tz=tz)
    feeds.set_topic_rule(store, "gap", "Banks", "bank")
    for article_id, title in store.execute("SELECT id, title FROM articles WHERE feed_id = ?", [result.feed_id]):
        label = "negative" if "loss" in title else "positive" if "gain" in title else "neutral"
        store["scores"].insert({"article_id": article_id, "run_id": run_id, "label": label, "confidence": 0.9,
                                "negative": 0.9 if label == "negative" else 0.05, "probs_json": "{}",
                                "scored_at": db.now()})
    return result.feed_id


def _specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# ---- filters flow into the drill-down ----------------------------------------------------------------------------


def test_the_drill_down_keeps_the_page_topic_source_and_dates(store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    feed_id = _gap_feed(store, run_id)
    everything = trends.Filters(feed_id, run_id)
    assert len(trends.drilldown(store, everything, "2020-06-01")) == 4
    # The page's source and topic hold; a drill-down topic narrows within them, never widens past them.
    wire = trends.Filters(feed_id, run_id, source="Wire")
    assert set(trends.drilldown(store, wire, "2020-06-01")["source"]) == {"Wire"}
    banks = trends.Filters(feed_id, run_id, topic="Banks")
    assert sorted(trends.drilldown(store, banks, "2020-06-01")["title"]) == ["Bank gain 2020-06-01",
                                                                              "Bank loss 2020-06-01"]
    feeds.set_topic_rule(store, "gap", "Oil", "oil")
    assert trends.drilldown(store, banks, "2020-06-01", topic="Oil").empty  # no article is both Banks and Oil
    assert len(trends.drilldown(store, everything, "2020-06-01", topic="Oil")) == 1
    # A day outside the page's dates has nothing behind it.
    june_15_on = trends.Filters(feed_id, run_id, start="2020-06-15")
    assert trends.drilldown(store, june_15_on, "2020-06-01").empty
    assert len(trends.drilldown(store, june_15_on, "2020-06-15")) == 4


def test_on_the_page_the_drill_down_follows_the_topic_and_source_filters(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    feed_id = _gap_feed(store, run_id)
    feeds.set_topic_rule(store, "gap", "Oil", "oil")
    at = app("views/monitor.py")

    def drill() -> pd.DataFrame:
        return next(d.value for d in at.dataframe if "published_at" in d.value.columns)

    assert len(drill()) == 4
    # Before: a drill-down topic chosen, then the page's topic changed; the drill-down must follow the page.
    at.selectbox(key=f"drill_topic_{feed_id}").set_value("Banks").run()
    assert sorted(drill()["title"]) == ["Bank gain 2020-06-18", "Bank loss 2020-06-18"]
    at.selectbox(key=f"mon_source_{feed_id}").set_value("Wire").run()
    assert drill()["title"].tolist() == ["Bank loss 2020-06-18"]  # topic and source both hold
    at.selectbox(key=f"mon_source_{feed_id}").set_value("(all)").run()
    at.selectbox(key=f"mon_topic_{feed_id}").set_value("Oil").run()  # the page now says Oil: so does the drill-down
    assert not at.exception
    assert drill()["title"].tolist() == ["Oil gain 2020-06-18"]
    at.selectbox(key=f"mon_topic_{feed_id}").set_value("Banks").run()
    shown = next(s for s in at.selectbox if s.key and s.key.startswith(f"drill_topic_{feed_id}_"))
    assert shown.value == "Banks" and shown.disabled
    assert set(drill()["title"].str[:4]) == {"Bank"}
    # The page's dates: the drill-down offers only their days, and opens on the newest of them.
    at.date_input(key=f"mon_dates_{feed_id}").set_value((pd.Timestamp("2020-06-01").date(),
                                                         pd.Timestamp("2020-06-05").date())).run()
    assert not at.exception
    day = at.selectbox(key=f"drill_day_{feed_id}")
    assert day.value == "2020-06-05" and set(day.options) == {"2020-06-01", "2020-06-03", "2020-06-05"}
    assert drill()["title"].str.endswith("2020-06-05").all()


# ---- weekly charts: a tick a week, an empty week is a gap --------------------------------------------------------


def test_weekly_charts_tick_each_monday_and_leave_the_empty_week_empty(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    _gap_feed(store, run_id)
    at = app("views/monitor.py")
    at.radio(key="mon_freq").set_value("W").run()
    assert not at.exception
    volume, net, heat = _specs(at)
    weeks = ["2020-06-01", "2020-06-08", "2020-06-15"]
    for spec in (volume, net, heat):
        axis = spec["layout"]["xaxis"]
        assert (axis["tickmode"], axis["dtick"], axis["tick0"], axis["type"]) == ("linear", WEEK_MS, "2020-06-01", "date")
    bars = [t for t in volume["data"] if t["type"] == "bar"]
    assert bars and all(t["x"] == weeks and t["y"][1] is None and t["y"][0] and t["y"][2] for t in bars)
    lines = {t["name"]: t for t in net["data"] if t["type"] == "scatter" and t.get("mode") != "markers"}
    assert set(lines) == {"net index", "rolling mean"}
    for trace in lines.values():  # no line across the empty week
        assert trace["x"] == weeks and trace["y"][1] is None and trace["y"][0] is not None
        assert trace["y"][2] is not None and trace.get("connectgaps") is False
    [cells] = [t for t in heat["data"] if t["type"] == "heatmap"]
    assert cells["x"] == weeks and all(row[1] is None for row in cells["z"]) and cells["z"][0][0] is not None
    # Daily: every day on the axis, the days without articles empty too.
    at.radio(key="mon_freq").set_value("D").run()
    daily = _specs(at)[1]
    index = next(t for t in daily["data"] if t["name"] == "net index")
    assert len(index["x"]) == 18 and index["y"][index["x"].index("2020-06-10")] is None


# ---- one chart style ---------------------------------------------------------------------------------------------


def test_every_monitor_chart_has_its_legend_under_the_plot_clear_of_the_toolbar(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    _surge_feed(store, run_id)
    at = app("views/monitor.py")
    specs = _specs(at)
    assert len(specs) == 3
    for spec in specs:
        layout = spec["layout"]
        assert layout["meta"] == {"chart_style": 1}
        legend = layout["legend"]
        assert legend["orientation"] == "h" and legend["yanchor"] == "bottom" and legend["y"] == 0
        assert legend["yref"] == "container"  # under the axis, not in the top right where the toolbar is
        assert layout["margin"]["t"] >= 30  # room above the data for the toolbar
        assert "bgcolor" not in legend and "font" not in layout  # no fixed colours: light and dark themes both read
        for trace in spec["data"]:
            if "colorbar" in trace:
                assert trace["colorbar"]["orientation"] == "h" and trace["colorbar"]["y"] == 0


def test_every_chart_the_monitor_draws_goes_through_chart_style():
    tree = ast.parse((ROOT / "views" / "monitor.py").read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "plotly_chart"]
    assert len(calls) == 3
    for call in calls:
        figure = call.args[0]
        assert isinstance(figure, ast.Call) and getattr(figure.func, "id", None) == "chart_style", ast.unparse(call)


# ---- times in the feed's zone ------------------------------------------------------------------------------------


def test_monitor_times_are_written_in_the_feeds_zone(app, store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    feed_id = _gap_feed(store, run_id, tz="Asia/Shanghai")
    store["jobs"].insert({"kind": "score", "status": "succeeded", "feed_id": feed_id, "model_run_id": run_id,
                          "config_json": "{}", "created_at": "2020-06-19T01:00:00+00:00",
                          "finished_at": "2020-06-19T01:30:00+00:00"})
    alerts.set_rule(store, feed_id, abs_threshold=0.2, min_articles=1)
    alerts.evaluate(store, feed_id, run_id)
    at = app("views/monitor.py")
    shown = texts(at)
    assert "last scored " + i18n.when("2020-06-19T01:30:00+00:00", "Asia/Shanghai") in shown
    assert "9:30:00" in i18n.when("2020-06-19T01:30:00+00:00", "Asia/Shanghai")
    drill = next(d.value for d in at.dataframe if "published_at" in d.value.columns)
    raw = trends.drilldown(store, trends.Filters(feed_id, run_id), "2020-06-18")
    assert sorted(drill["published_at"]) == sorted(i18n.when(v, "Asia/Shanghai") for v in raw["published_at"])
    table = next(d.value for d in at.dataframe if "window_end" in d.value.columns)
    created = alerts.list_alerts(store, feed_id, run_id)[0]["created_at"]
    assert table["created_at"].iloc[0] == i18n.when(created, "Asia/Shanghai")


# ---- 简体中文 ------------------------------------------------------------------------------------------------------

_DATA_WORDS = re.compile(r"(Bank|Firm) story [\d-]+|Banks|daily|negative|positive|neutral|tiny|ana|`[^`]*`")
_SENTENCE = re.compile(r"[A-Za-z]{2,}(?:[ ,.'’:;-]+[A-Za-z]{2,}){2,}")  # three English words in a row


def _english_left(text: str) -> list[str]:
    return _SENTENCE.findall(_DATA_WORDS.sub(" ", text))


def test_the_monitor_speaks_chinese(app, store, tiny_text_model, monkeypatch):
    monkeypatch.setenv("BELLWETHER_LANGUAGE", "zh_CN")
    run_id = make_finished_run(store, tiny_text_model, metrics={"macro_f1": 0.812})
    feed_id = _surge_feed(store, run_id)
    at = app("views/monitor.py")
    assert not at.exception
    assert [t.value for t in at.title][-1] == "舆情监控"
    assert {"按情绪统计的文章数量", "净情绪指数", "按主题和周统计的负面占比", "明细", "警报", "导出"} <= {
        h.value for h in at.subheader}
    assert [m.label for m in at.metric] == ["文章", "警报", "未处理警报"]
    assert at.selectbox(key="mon_feed").label == "新闻源" and at.radio(key="mon_freq").label == "周期"
    shown = texts(at)
    assert "模型：运行" in shown and "测试集宏平均 F1 0.812" in shown and "实时：" in shown
    assert "当最近 1 日的负面占比" in shown
    volume, net, heat = _specs(at)
    assert volume["layout"]["xaxis"]["title"]["text"] == "日" and volume["layout"]["yaxis"]["title"]["text"] == "文章数"
    assert {t["name"] for t in net["data"]} >= {"净指数", "滚动均值", "警报"}
    assert "这一周" in heat["data"][0]["hovertemplate"]
    alerts_table = next(d for d in at.dataframe if "window_end" in d.value.columns)
    assert alerts_table.value["topic"].tolist() == ["（全部文章）"]
    # Everything the page writes, labels and chart words included: no English sentence left (data values aside).
    widgets = [w.label for kind in ("selectbox", "radio", "date_input", "number_input", "button", "expander")
               for w in getattr(at, kind)] + [m.label for m in at.metric]
    alert_choice = at.selectbox(key="alert_pick")
    widgets.append(alert_choice.format_func(alert_choice.value))
    charts = [json.dumps(spec["layout"].get(axis, {}).get("title", {}), ensure_ascii=False)
              for spec in (volume, net, heat) for axis in ("xaxis", "yaxis")]
    charts += [t.get("name") or "" for spec in (volume, net, heat) for t in spec["data"]]
    charts.append(heat["data"][0]["hovertemplate"].replace("%{", "{"))
    left = _english_left("\n".join([shown, *map(str, widgets), *charts]))
    assert not left, left
    # The acknowledge flash and the rule's message too.
    next(b for b in at.button if b.label == "确认").click().run()
    assert "警报 #" in texts(at) and "已确认" in texts(at)
    assert alerts.list_alerts(store, feed_id, run_id)[0]["acknowledged_by"] == "ana"


def test_alert_notifications_are_stored_in_english_and_sent_in_the_senders_language(store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    feed_id = _surge_feed(store, run_id)
    alert = [a for a in alerts.list_alerts(store, feed_id) if a["topic"] is None][0]
    with i18n.using("zh_CN"):
        payload = notify.alert_payload(store, alert)
        assert payload["title"] == "Negative-news surge in daily (all articles)"  # stored: English and the facts
        assert payload["topic"] == "all articles" and payload["all_articles"] is True
        sent = notify.localized(payload)
        assert sent["title"] == "daily 负面新闻激增（全部文章）"
        assert sent["text"].startswith("2020-06-21 至 2020-06-21 的 20 篇文章中负面占 60%，基线为 20%")
        assert "个标准差" in sent["text"] and "打开舆情监控" in notify._plain(sent)
        stored = notify.RETRYING.format(error="The webhook at h.example answered HTTP 500.", attempt=1, tries=6)
        assert i18n.shown(stored) == "h.example 上的 webhook 返回了 HTTP 500。（第 1 次，共 6 次；将重试）"
    assert notify.localized(payload)["title"] == payload["title"]
    assert i18n.shown(stored) == stored
    old = {"event": "alert", "title": "t", "text": "x", "link": "l", "headlines": []}  # stored before: kept as it is
    # A failed run's message: its reason is stored in English (jobs.error) and sent in the sender's language too.
    from engine.jobs import queue
    failed = notify.run_payload({"id": 7, "status": "failed", "name": None, "metrics_json": None,
                                 "error": queue.KILLED.format(signal=9)})
    assert failed["text"] == queue.KILLED.format(signal=9)
    with i18n.using("zh_CN"):
        assert notify.localized(failed)["text"] == (
            "引擎意外停止：训练进程被终止（信号 9）。继续该运行即可从最近的检查点接着进行。")
    assert notify.localized(old) == old
    with i18n.using("zh_CN"), pytest.raises(Exception, match="没有警报 999"):
        alerts.acknowledge(store, 999)


def test_the_notify_command_speaks_chinese(home, capsys):
    from engine.cli.main import main

    assert main(["--lang", "zh_CN", "notify", "channel", "list"]) == 0
    assert "没有通知渠道" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--lang", "zh_CN", "notify", "channel", "add", "--help"])
    help_text = capsys.readouterr().out
    assert "电子邮件：发件人地址" in help_text and "From address" not in help_text


# ---- live dates ------------------------------------------------------------------------------------------------


def test_the_dates_follow_new_days_unless_the_reader_ended_them_earlier(store, app):
    from datetime import date

    def add(day: int) -> None:
        feeds.import_file(store, feed_csv([(f"2020-06-0{day}", f"Story of day {day}")]), f"day{day}.csv", "live")

    add(1), add(2)
    feed_id = feeds.get_feed(store, "live")["id"]
    key = f"mon_dates_{feed_id}"
    at = app("monitor")
    assert at.date_input(key=key).value == (date(2020, 6, 1), date(2020, 6, 2))
    add(3)
    at.run()
    assert at.date_input(key=key).value == (date(2020, 6, 1), date(2020, 6, 3))
    # A redraw stopped by the next one after it had noted the new newest day, while the browser still sends the old
    # dates: the next redraw must still follow (it did not, and the open Monitor never showed the new day's alert).
    add(4)
    at.session_state[f"mon_newest_{feed_id}"] = date(2020, 6, 4)
    at.run()
    assert at.date_input(key=key).value == (date(2020, 6, 1), date(2020, 6, 4))
    assert "4" in [m.value for m in at.metric if m.label == "Articles"]
    # The reader ends the range earlier: new days do not move it.
    at.date_input(key=key).set_value((date(2020, 6, 1), date(2020, 6, 2))).run()
    add(5)
    at.run()
    assert at.date_input(key=key).value == (date(2020, 6, 1), date(2020, 6, 2))
    # Back to the newest day: following again.
    at.date_input(key=key).set_value((date(2020, 6, 2), date(2020, 6, 5))).run()
    add(6)
    at.run()
    assert at.date_input(key=key).value == (date(2020, 6, 2), date(2020, 6, 6))
    assert not at.exception
