"""Monitor: sentiment over time for a feed, by topic; drill-down; negative-news alerts with their rule; exports."""

from __future__ import annotations

from datetime import date

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine import export, i18n, paths, settings
from engine.i18n import N_, _
from engine.jobs import queue, runs
from engine.monitor import alerts
from engine.monitor import feeds
from engine.monitor import scoring
from engine.monitor import sources
from engine.monitor import trends
from engine.review import items as review_items
from engine.review import promote
from views._shared import (can, chart_style, connect, current_user, md, plain_errors, plot_text, require_sign_in,
                           start_worker)

ALL = "(all)"
MAX_VLINES = 25
MAX_WEEK_TICKS = 26  # more weeks than this: a tick every 2, 3, ... weeks (still on Mondays)
DAY_MS = 86_400_000
COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c", "unscored": "#d9d9d9"}
PERIODS = {"D": N_("Daily"), "W": N_("Weekly")}

require_sign_in()
conn = connect()
state = st.session_state

st.title(_("Monitor"))
if state.get("monitor_flash"):
    st.success(state.pop("monitor_flash"), icon=":material/check_circle:")

all_feeds = feeds.list_feeds(conn)
if not all_feeds:
    st.info(_("No feeds yet. Import news on the Feeds page, score it with a trained model, and watch it here."),
            icon=":material/info:")
    st.stop()


@st.cache_data(ttl=900, max_entries=128, show_spinner=_("Aggregating…"))
def aggregate(what: str, home: str, version: tuple, fields: tuple, freq: str = "D"):
    """Aggregates cached per data version (new articles, scores or topics change it), so reruns are instant."""
    c = connect()
    try:
        f = trends.Filters(*fields)
        if what == "volume":
            return trends.volume(c, f, freq)
        if what == "net":
            return trends.net_sentiment(c, f, freq)
        if what == "heat":
            return trends.topic_week_negative(c, f)
        if what == "sources":
            return trends.sources(c, f.feed_id)
        if what == "topics":
            return trends.topic_names(c, f.feed_id)
        raise ValueError(what)
    finally:
        c.close()


def data_version(feed_id: int) -> tuple:
    """Cheap: the newest article of the feed, the newest score and topic rows (rowids only grow)."""
    return trends.data_version(conn, feed_id)


def shown_topic(value: str) -> str:
    return _("(all)") if value == ALL else value


# ---- filters ---------------------------------------------------------------------------------------------------

# A link from a notification: /monitor?feed=NAME&from=YYYY-MM-DD&to=YYYY-MM-DD&alert=ID opens that window.
link = dict(st.query_params)
if link.get("feed") and state.get("mon_link_seen") != link:
    state["mon_link_seen"] = link
    if link["feed"] in [f["name"] for f in all_feeds]:
        state["mon_feed"] = link["feed"]
        state["mon_link_dates"] = (link.get("from"), link.get("to"))
        if str(link.get("alert", "")).isdigit():
            state["alert_pick"] = int(link["alert"])

c1, c2, c3 = st.columns([2, 2, 1])
feed_name = c1.selectbox(_("News feed"), [f["name"] for f in all_feeds], key="mon_feed")
feed = next(f for f in all_feeds if f["name"] == feed_name)
feed_id = feed["id"]
feed_owner = feed.get("created_by")
tz = feed.get("tz") or "UTC"  # times on this page are written in the feed's zone
feed_runs = trends.runs_for_feed(conn, feed_id)
current = sources.current_model(conn, feed_id)
run_labels = {r["run_id"]: (_("{run} (the feed's model)", run=runs.title({**r, "id": r["run_id"]}))
                            if r["run_id"] == current else runs.title({**r, "id": r["run_id"]})) for r in feed_runs}
run_ids = sorted(run_labels, key=lambda i: i != current)  # the feed's current model first
run_id = c2.selectbox(_("Model"), run_ids, format_func=run_labels.get, key="mon_run") if feed_runs else None
freq = c3.radio(_("Period"), ["D", "W"], format_func=lambda p: _(PERIODS[p]), horizontal=True, key="mon_freq")

first, last = trends.date_range(conn, feed_id)
if first is None:
    st.info(_("Feed '{feed}' has no articles yet.", feed=md(feed_name)))
    st.stop()
lo, hi = date.fromisoformat(first), date.fromisoformat(last)
# Live: a selection that runs to the feed's newest day keeps following it as new days arrive; one the reader ended
# earlier stays put. Whether it follows is decided when the reader changes the dates (or opens a link), and kept, so
# a redraw interrupted by the next one cannot lose it (it once did: the dates stayed behind and the new day's
# alert never showed).
dates_key, newest_key, follow_key = f"mon_dates_{feed_id}", f"mon_newest_{feed_id}", f"mon_follow_{feed_id}"
if state.get("mon_link_dates"):
    wanted = state.pop("mon_link_dates")
    try:
        a, b = (date.fromisoformat(wanted[0]) if wanted[0] else lo), (date.fromisoformat(wanted[1]) if wanted[1] else hi)
        state[dates_key], state[follow_key] = (a, b), b >= hi  # kept within the feed's days just below
    except ValueError:
        pass  # a mangled link: the whole range
chosen_dates = state.get(dates_key)
if isinstance(chosen_dates, (tuple, list)) and len(chosen_dates) == 2:
    a, b = chosen_dates
    if state.get(follow_key, True):
        b = hi
    a, b = min(max(a, lo), hi), min(max(b, lo), hi)  # within the feed's days, also after articles were deleted
    if (a, b) != tuple(chosen_dates):
        state[dates_key] = (a, b)
state[newest_key] = hi


def dates_changed() -> None:
    """The reader picked dates: follow new days only when the range they picked runs to the newest one."""
    picked_now = state.get(dates_key)
    if isinstance(picked_now, (tuple, list)) and len(picked_now) == 2:
        state[follow_key] = picked_now[1] >= state.get(newest_key, picked_now[1])


c1, c2, c3 = st.columns([2, 1, 1])
picked = c1.date_input(_("Dates"), (lo, hi), min_value=lo, max_value=hi, key=dates_key, on_change=dates_changed)
start, end = (picked if isinstance(picked, (tuple, list)) and len(picked) == 2 else (lo, hi))
version = data_version(feed_id)
home = str(paths.home())
topic_options = [ALL] + aggregate("topics", home, version, (feed_id,))
topic = c2.selectbox(_("Topic"), topic_options, format_func=shown_topic, key=f"mon_topic_{feed_id}")
source_options = [ALL] + aggregate("sources", home, version, (feed_id,))
source = c3.selectbox(_("Source"), source_options, format_func=shown_topic, key=f"mon_source_{feed_id}")
f = trends.Filters(feed_id, run_id, start.isoformat(), end.isoformat(), None if topic == ALL else topic,
                   None if source == ALL else source)

caption = trends.model_caption(conn, run_id) + " · " + f.describe()
last_scored = trends.last_scored(conn, feed_id, run_id)
if last_scored:
    caption += " · " + _("last scored {when}", when=i18n.when(last_scored, tz))
st.caption(md(caption))
promotions = promote.history(conn, feed_id)
if promotions:
    with st.expander(_("Model history ({n} promotions)", n=len(promotions))):
        history = pd.DataFrame(promotions)[["promoted_at", "run_id", "run_name", "previous_run_id", "promoted_by", "note"]]
        history["promoted_at"] = history["promoted_at"].map(lambda v: i18n.when(v, tz))
        st.dataframe(history, hide_index=True, key="mon_promotions", column_config={
            "promoted_at": _("promoted at"), "run_id": _("run"), "run_name": _("run name"),
            "previous_run_id": _("previous run"), "promoted_by": _("promoted by"), "note": _("promotion note")})
if run_id is None:
    st.warning(_("This feed has not been scored yet: the charts show volume only. Score it on the Feeds page."))
else:
    left = scoring.count_unscored(conn, feed_id, run_id)
    total = feed.get("n_articles") or trends.count(conn, trends.Filters(feed_id, None))
    if left:
        if left >= total:
            st.warning(_("Run {run_id} has not scored this feed yet, so its sentiment charts and alerts are empty, "
                         "not calm. Score the feed with it to see them.", run_id=run_id), icon=":material/warning:")
        else:
            st.info(_("Run {run_id} has scored {done} of this feed's {total} articles; the charts and alerts leave "
                      "out the {left} it has not scored.", run_id=run_id, done=i18n.number(total - left),
                      total=i18n.number(total), left=i18n.number(left)), icon=":material/info:")
        if can("feed.score") and st.button(_("Score the {n} articles with run {run_id}", n=i18n.number(left),
                                             run_id=run_id), key="mon_score"):
            with plain_errors():
                job_id = scoring.enqueue(conn, feed_id, run_id, actor=current_user())
                why = start_worker()
                state["monitor_flash"] = _("{job} queued: follow it on the Jobs page.",
                                                     job=queue.label_of(conn, job_id, start=True)) + why
                st.rerun()

alert_rows = alerts.list_alerts(conn, feed_id, run_id, topic=f.topic, start=f.start, end=f.end) if run_id else []
open_alerts = [a for a in alert_rows if not a.get("acknowledged_at")]
n_articles = trends.count(conn, f)
m1, m2, m3 = st.columns(3)
m1.metric(_("Articles"), i18n.number(n_articles))
m2.metric(_("Alerts"), len(alert_rows))
m3.metric(_("Open alerts"), len(open_alerts))

page_version = (data_version(feed_id), alerts.version(conn, feed_id))
if sources.any_enabled(conn):
    start_worker()  # live sources are polled by the worker: make sure one runs while someone watches


page_language = i18n.language()


@st.fragment(run_every=settings.monitor_refresh_s())
def live_refresh() -> None:
    """While the page is open, look for new articles, scores and alerts; redraw the page when there are some."""
    fconn = connect()
    if (trends.data_version(fconn, feed_id), alerts.version(fconn, feed_id)) != page_version:
        st.rerun()
    with i18n.using(page_language):  # a fragment's own reruns skip the app's run that sets the reader's language
        st.caption(":material/autorenew: " + _("Live: new articles, scores and alerts appear by themselves (checked "
                                               "every {seconds} s).", seconds=f"{settings.monitor_refresh_s():g}"))


live_refresh()


# ---- charts ----------------------------------------------------------------------------------------------------


def all_periods(periods, freq: str) -> list[str]:
    """Every day (or every week's Monday) from the first to the last of ``periods``: the empty ones too, so that a
    period without articles is a gap on the chart, never a line drawn straight across it."""
    periods = list(periods)
    if not periods:
        return []
    return list(pd.date_range(min(periods), max(periods), freq="D" if freq == "D" else "7D").strftime("%Y-%m-%d"))


def time_axis(fig, periods: list[str], freq: str) -> None:
    """Weekly charts: one tick per week on its Monday (every few weeks when there are many), titled so; daily: dates."""
    if freq == "W" and periods:
        step = max(1, -(-len(periods) // MAX_WEEK_TICKS))
        fig.update_xaxes(type="date", tickmode="linear", tick0=periods[0], dtick=7 * DAY_MS * step,
                         tickformat="%Y-%m-%d", title_text=_("week (from Monday)"))
    else:
        fig.update_xaxes(type="date", title_text=_("day"))


def _marker_x(day: str) -> str:
    """An alert's window end on the chart's axis (the Monday of its week on weekly charts)."""
    if freq == "D":
        return day
    stamp = pd.Timestamp(day)
    return (stamp - pd.Timedelta(days=stamp.weekday())).strftime("%Y-%m-%d")


def alert_markers(fig, y_top: float) -> None:
    if not alert_rows:
        return
    xs = [_marker_x(a["window_end"]) for a in alert_rows]
    for x in sorted(set(xs))[-MAX_VLINES:]:  # each line is a plotly shape (slow by the hundred): the latest only
        fig.add_vline(x=x, line_dash="dot", line_color="#d62728", opacity=0.6)
    fig.add_trace(go.Scatter(x=xs, y=[y_top] * len(xs), mode="markers", name=_("alert"),
                             marker={"symbol": "triangle-down", "size": 12, "color": "#d62728"},
                             text=[_("{day} {topic}: {share} negative", day=a["window_end"],
                                     topic=plot_text(a["topic"] or _("all articles")),
                                     share=i18n.percent(a["negative_share"])) for a in alert_rows],
                             hoverinfo="text"))


def label_name(label: str) -> str:
    """A legend entry: the model's label as it is (data), 'unscored' in the reader's language."""
    return _("unscored") if label == trends.UNSCORED else plot_text(label)


def volume_figure(volume: pd.DataFrame, freq: str) -> go.Figure:
    """Stacked bars per period and label; every period on the axis (an empty one has no bar)."""
    periods = all_periods(volume["period"], freq)
    fig = go.Figure()
    for label, rows in volume.groupby("label", sort=True):
        counts = rows.set_index("period")["n"].reindex(periods)
        fig.add_trace(go.Bar(x=periods, y=[None if pd.isna(v) else int(v) for v in counts], name=label_name(label),
                             marker_color=COLORS.get(label)))
    fig.update_layout(barmode="stack", height=340, yaxis_title=_("articles"))
    time_axis(fig, periods, freq)
    return fig


def net_figure(net: pd.DataFrame, freq: str) -> go.Figure:
    """The net index and its rolling mean; a period without scored articles is a gap in both lines."""
    scored = net["n"] > 0
    periods = list(net["period"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=periods, y=[None if pd.isna(v) else float(v) for v in net["net"].where(scored)],
                             mode="lines+markers", name=_("net index"), line={"color": "#1f77b4"}, connectgaps=False))
    fig.add_trace(go.Scatter(x=periods, y=[None if pd.isna(v) else float(v) for v in net["rolling"].where(scored)],
                             mode="lines+markers", name=_("rolling mean"), line={"color": "#ff7f0e", "width": 3},
                             marker={"size": 5}, connectgaps=False))  # markers: a lone period between gaps shows
    fig.update_layout(height=320, yaxis={"range": [-1.05, 1.1], "title": {"text": _("net sentiment index")}})
    time_axis(fig, periods, freq)
    return fig


def heat_figure(heat: pd.DataFrame) -> go.Figure:
    """Negative share per topic and week; a week without scored articles is an empty column."""
    weeks = all_periods(heat["week"], "W")
    grid = heat.pivot_table(index="topic", columns="week", values="share").reindex(columns=weeks)
    counts = heat.pivot_table(index="topic", columns="week", values="n").reindex(columns=weeks)
    z = [[None if pd.isna(v) else float(v) for v in row] for row in grid.values]
    fig = go.Figure(go.Heatmap(
        z=z, x=weeks, y=[plot_text(t) for t in grid.index], zmin=0, zmax=1, colorscale="Reds",
        customdata=[[None if pd.isna(v) else int(v) for v in row] for row in counts.values],
        colorbar={"title": {"text": _("negative share")}, "tickformat": ".0%"},
        hovertemplate=_("%{y}, week of %{x}: %{z:.0%} negative of %{customdata} articles") + "<extra></extra>"))
    fig.update_layout(height=max(240, 40 * len(grid) + 140))
    time_axis(fig, weeks, "W")
    return fig


fields = (f.feed_id, f.run_id, f.start, f.end, f.topic, f.source)
volume = aggregate("volume", home, version, fields, freq)
if volume.empty:
    st.info(_("No articles match these filters."))
else:
    st.subheader(_("Volume by sentiment"))
    fig = volume_figure(volume, freq)
    totals = volume.groupby("period")["n"].sum()
    alert_markers(fig, float(totals.max()) * 1.05)
    st.plotly_chart(chart_style(fig), width="stretch", key="chart_volume")

    net = aggregate("net", home, version, fields, freq)
    if not net.empty:
        st.subheader(_("Net sentiment index"))
        st.caption(_("(positive − negative) / scored articles per period, with its rolling mean (7 days).") if freq == "D"
                   else _("(positive − negative) / scored articles per period, with its rolling mean (4 weeks)."))
        fig = net_figure(net, freq)
        alert_markers(fig, 1.05)
        st.plotly_chart(chart_style(fig), width="stretch", key="chart_net")

    heat = aggregate("heat", home, version, fields)
    if not heat.empty:
        st.subheader(_("Negative share by topic and week"))
        st.plotly_chart(chart_style(heat_figure(heat)), width="stretch", key="chart_heat")

# ---- drill-down ------------------------------------------------------------------------------------------------

st.subheader(_("Drill down"))
days = sorted(aggregate("volume", home, version, fields, "D")["period"].unique(), reverse=True)
if days:
    st.caption(_("The articles behind the charts, with the page's filters: {filters}.", filters=md(f.describe())))
    c1, c2 = st.columns(2)
    day_key = f"drill_day_{feed_id}"
    if state.get(day_key) not in days:  # the page's dates or filters changed: start from their newest day
        state.pop(day_key, None)
    day = c1.selectbox(_("Day"), days, key=day_key)
    if topic == ALL:
        drill_topic = c2.selectbox(_("Topic"), topic_options, format_func=shown_topic, key=f"drill_topic_{feed_id}")
    else:  # the page's topic holds here too; choose (all) above to look at another
        drill_topic = c2.selectbox(_("Topic"), [topic], key=f"drill_topic_{feed_id}_{topic}", disabled=True,
                                   help=_("The page's topic filter. Choose (all) at the top to pick another topic here."))
    drill = trends.drilldown(conn, f, day, None if drill_topic == ALL else drill_topic)
    st.caption(_("{n} articles on {day}, most negative first.", n=i18n.number(len(drill)), day=day))
    shown = drill.drop(columns=["id"]).assign(published_at=drill["published_at"].map(lambda v: i18n.when(v, tz)))
    st.dataframe(shown, hide_index=True, key="drill_table",
                 column_config={"published_at": _("published ({tz})", tz=tz), "title": _("headline"),
                                "source": _("source"), "label": _("sentiment"),
                                "confidence": st.column_config.NumberColumn(_("confidence"), format="%.2f"),
                                "negative": st.column_config.ProgressColumn(_("negative prob."), min_value=0.0,
                                                                            max_value=1.0),
                                "url": st.column_config.LinkColumn(_("link"))})
    if run_id and len(drill) and can("review.label"):
        with st.expander(_("Flag an article as wrongly labelled")):
            titles = dict(zip(drill["id"], drill["title"].fillna("")))
            labels_now = dict(zip(drill["id"], drill["label"].fillna("")))
            flagged = st.selectbox(_("Article"), list(titles), key=f"flag_pick_{feed_id}",
                                   format_func=lambda i: f"{labels_now[i]}: {titles[i][:120]}")
            if st.button(_("Send to Review"), key=f"flag_go_{feed_id}", icon=":material/flag:"):
                with plain_errors():
                    item = review_items.flag(conn, article_id=int(flagged), run_id=run_id, actor=current_user())
                    st.success(_("Sent to the Review page (queue 'flagged', item {item_id}).", item_id=item["id"]))
else:
    st.caption(_("No articles match these filters."))

# ---- alerts ----------------------------------------------------------------------------------------------------

st.subheader(_("Alerts"))
rule = alerts.get_rule(conn, feed_id)
rule_words = {"window": rule["window_days"], "baseline": rule["baseline_days"], "k": f"{rule['k']:g}",
              "minimum": rule["min_articles"]}
if rule["abs_threshold"] is not None:
    st.caption(_("An alert fires when the negative share over the last {window} day(s) exceeds the mean of the "
                 "{baseline} days before by {k} standard deviations, or reaches {threshold}, with at least {minimum} "
                 "scored articles. Per topic and for all articles.", threshold=i18n.percent(rule["abs_threshold"]),
                 **rule_words))
else:
    st.caption(_("An alert fires when the negative share over the last {window} day(s) exceeds the mean of the "
                 "{baseline} days before by {k} standard deviations, with at least {minimum} scored articles. Per "
                 "topic and for all articles.", **rule_words))
if not run_id:
    st.info(_("Alerts appear once the feed is scored."))
elif not alert_rows:
    st.info(_("No alerts in this period."))
else:
    frame = alerts.alerts_frame(alert_rows)
    for column in ("acknowledged_at", "created_at"):
        frame[column] = frame[column].map(lambda v: i18n.when(v, tz) if isinstance(v, str) and v else "")
    st.dataframe(frame.drop(columns=["rule", "run_id"]), hide_index=True, key="alerts_table",
                 column_config={"id": _("alert"), "window_start": _("window from"), "window_end": _("window to"),
                                "topic": _("topic"),
                                "negative_share": st.column_config.NumberColumn(_("negative share"), format="percent"),
                                "baseline_mean": st.column_config.NumberColumn(_("baseline"), format="percent"),
                                "baseline_std": st.column_config.NumberColumn(_("baseline sd"), format="%.3f"),
                                "magnitude": st.column_config.NumberColumn(_("sd above"), format="%.1f"),
                                "n_articles": _("articles"), "acknowledged_at": _("acknowledged at ({tz})", tz=tz),
                                "acknowledged_by": _("acknowledged by"), "created_at": _("raised at ({tz})", tz=tz)})

    def alert_label(a: dict) -> str:
        words = {"id": a["id"], "day": a["window_end"], "topic": a["topic"] or _("all articles"),
                 "share": i18n.percent(a["negative_share"])}
        if a.get("acknowledged_at"):
            return _("#{id} {day} · {topic} · {share} negative · acknowledged", **words)
        return _("#{id} {day} · {topic} · {share} negative", **words)

    labels = {a["id"]: alert_label(a) for a in alert_rows}
    if state.get("alert_pick") not in labels:
        state.pop("alert_pick", None)
    c1, c2 = st.columns([3, 1])
    chosen = c1.selectbox(_("Alert"), list(labels), format_func=labels.get, key="alert_pick")
    picked_alert = next(a for a in alert_rows if a["id"] == chosen)
    if not picked_alert.get("acknowledged_at"):
        if can("alerts.ack") and c2.button(_("Acknowledge"), key="alert_ack"):
            alerts.acknowledge(conn, chosen, current_user())
            state["monitor_flash"] = _("Alert #{id} acknowledged.", id=chosen)
            st.rerun()
    else:
        c2.caption(_("Acknowledged by {who} at {when}", who=md(picked_alert["acknowledged_by"]),
                     when=i18n.when(picked_alert["acknowledged_at"], tz)))
    st.markdown("**" + _("Articles that drove it") + "**")
    st.dataframe(alerts.alert_articles(conn, picked_alert).drop(columns=["id"]), hide_index=True, key="alert_drivers",
                 column_config={"day": _("day"), "title": _("headline"), "source": _("source"), "label": _("sentiment"),
                                "negative": st.column_config.ProgressColumn(_("negative prob."), min_value=0.0,
                                                                            max_value=1.0),
                                "covered_by_sources": _("covered by sources")})

with st.expander(_("Alert rule for this feed")):
    with st.form("alert_rule"):
        c1, c2, c3 = st.columns(3)
        window_days = c1.number_input(_("Window (days)"), 1, 90, int(rule["window_days"]))
        baseline_days = c2.number_input(_("Baseline (days)"), alerts.MIN_BASELINE_DAYS, 365, int(rule["baseline_days"]))
        k = c3.number_input(_("k (standard deviations)"), 0.1, 50.0, float(rule["k"]), step=0.5)
        c1, c2 = st.columns(2)
        threshold = c1.number_input(_("Absolute negative share (0 = off)"), 0.0, 1.0,
                                    float(rule["abs_threshold"] or 0.0), step=0.05)
        min_articles = c2.number_input(_("Minimum articles in the window"), 1, 1_000_000, int(rule["min_articles"]))
        if st.form_submit_button(_("Save rule and re-evaluate"), disabled=not can("alerts.rule", owner=feed_owner)):
            with plain_errors():
                alerts.set_rule(conn, feed_id, actor=current_user(), window_days=window_days, baseline_days=baseline_days, k=k,
                                abs_threshold=threshold or None, min_articles=min_articles)
                fired = alerts.evaluate(conn, feed_id, run_id) if run_id else []
                state["monitor_flash"] = _("Rule saved; {n} alerts over the feed's history.", n=len(fired))
                st.rerun()

# ---- exports ---------------------------------------------------------------------------------------------------

st.subheader(_("Export"))
EXPORT_LIMIT = 100_000
c1, c2, c3, c4 = st.columns(4)  # files are built when their button is clicked, not on every rerun
if c1.button(_("Prepare article export"), key="prep_export"):
    state["mon_export"] = (repr(f), trends.articles(conn, f, EXPORT_LIMIT))
cached = state.get("mon_export")
exported = cached[1] if cached and cached[0] == repr(f) else None
if exported is not None:
    c2.download_button(_("Articles (CSV)"), lambda: export.to_csv_bytes(exported), f"{feed_name}-articles.csv",
                       "text/csv", key="dl_articles_csv")
    c3.download_button(_("Articles (XLSX)"), lambda: export.to_xlsx_bytes({"articles": exported}),
                       f"{feed_name}-articles.xlsx", key="dl_articles_xlsx")
    if len(exported) >= EXPORT_LIMIT:
        st.caption(_("{n} filtered articles (the newest {limit}), with run {run_id}'s sentiment.",
                     n=i18n.number(len(exported)), limit=i18n.number(EXPORT_LIMIT), run_id=run_id))
    else:
        st.caption(_("{n} filtered articles, with run {run_id}'s sentiment.", n=i18n.number(len(exported)),
                     run_id=run_id))
alerts_export = alerts.alerts_frame(alert_rows)
c4.download_button(_("Alerts (CSV)"), lambda: export.to_csv_bytes(alerts_export), f"{feed_name}-alerts.csv", "text/csv",
                   key="dl_alerts_csv")
c4.download_button(_("Alerts (XLSX)"), lambda: export.to_xlsx_bytes({"alerts": alerts_export}),
                   f"{feed_name}-alerts.xlsx", key="dl_alerts_xlsx")
