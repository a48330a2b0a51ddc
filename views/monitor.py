"""Monitor: sentiment over time for a feed, by topic; drill-down; negative-news alerts with their rule; exports."""

from __future__ import annotations

from datetime import date

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from engine import export, paths, settings
from engine.jobs import runs
from engine.monitor import alerts
from engine.monitor import feeds
from engine.monitor import scoring
from engine.monitor import sources
from engine.monitor import trends
from views._shared import can, connect, current_user, md, plain_errors, plot_text, require_sign_in, start_worker

ALL = "(all)"
MAX_VLINES = 25
COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c", "unscored": "#d9d9d9"}

require_sign_in()
conn = connect()
state = st.session_state

st.title("Monitor")
if state.get("monitor_flash"):
    st.success(state.pop("monitor_flash"), icon=":material/check_circle:")

all_feeds = feeds.list_feeds(conn)
if not all_feeds:
    st.info("No feeds yet. Import news on the Feeds page, score it with a trained model, and watch it here.",
            icon=":material/info:")
    st.stop()


@st.cache_data(ttl=900, max_entries=128, show_spinner="Aggregating…")
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
feed_name = c1.selectbox("Feed", [f["name"] for f in all_feeds], key="mon_feed")
feed = next(f for f in all_feeds if f["name"] == feed_name)
feed_id = feed["id"]
feed_owner = feed.get("created_by")
feed_runs = trends.runs_for_feed(conn, feed_id)
run_labels = {r["run_id"]: runs.title({**r, "id": r["run_id"]}) for r in feed_runs}
run_id = c2.selectbox("Model", list(run_labels), format_func=run_labels.get, key="mon_run") if feed_runs else None
freq = c3.radio("Period", ["D", "W"], format_func={"D": "Daily", "W": "Weekly"}.get, horizontal=True, key="mon_freq")

first, last = trends.date_range(conn, feed_id)
if first is None:
    st.info(f"Feed '{md(feed_name)}' has no articles yet.")
    st.stop()
lo, hi = date.fromisoformat(first), date.fromisoformat(last)
if state.get("mon_link_dates"):
    wanted = state.pop("mon_link_dates")
    try:
        a, b = (date.fromisoformat(wanted[0]) if wanted[0] else lo), (date.fromisoformat(wanted[1]) if wanted[1] else hi)
        state[f"mon_dates_{feed_id}"] = (min(max(a, lo), hi), min(max(b, lo), hi))
    except ValueError:
        pass  # a mangled link: the whole range
# Live: a selection that ran to the feed's newest day keeps following it as new days arrive.
dates_key, newest_key = f"mon_dates_{feed_id}", f"mon_newest_{feed_id}"
chosen_dates = state.get(dates_key)
if (isinstance(chosen_dates, (tuple, list)) and len(chosen_dates) == 2 and state.get(newest_key)
        and chosen_dates[1] == state[newest_key] and hi > state[newest_key]):
    state[dates_key] = (chosen_dates[0], hi)
state[newest_key] = hi
c1, c2, c3 = st.columns([2, 1, 1])
picked = c1.date_input("Dates", (lo, hi), min_value=lo, max_value=hi, key=dates_key)
start, end = (picked if isinstance(picked, (tuple, list)) and len(picked) == 2 else (lo, hi))
version = data_version(feed_id)
home = str(paths.home())
topic_options = [ALL] + aggregate("topics", home, version, (feed_id,))
topic = c2.selectbox("Topic", topic_options, key=f"mon_topic_{feed_id}")
source_options = [ALL] + aggregate("sources", home, version, (feed_id,))
source = c3.selectbox("Source", source_options, key=f"mon_source_{feed_id}")
f = trends.Filters(feed_id, run_id, start.isoformat(), end.isoformat(), None if topic == ALL else topic,
                   None if source == ALL else source)

st.caption(md(trends.model_caption(conn, run_id) + f" · {f.describe()}"))
if run_id is None:
    st.warning("This feed has not been scored yet: the charts show volume only. Score it on the Feeds page.")
else:
    left = scoring.count_unscored(conn, feed_id, run_id)
    total = feed.get("n_articles") or trends.count(conn, trends.Filters(feed_id, None))
    if left:
        if left >= total:
            st.warning(f"Run {run_id} has not scored this feed yet, so its sentiment charts and alerts are empty, "
                       "not calm. Score the feed with it to see them.", icon=":material/warning:")
        else:
            st.info(f"Run {run_id} has scored {total - left:,} of this feed's {total:,} articles; the charts and "
                    f"alerts leave out the {left:,} it has not scored.", icon=":material/info:")
        if can("feed.score") and st.button(f"Score the {left:,} articles with run {run_id}", key="mon_score"):
            with plain_errors():
                job_id = scoring.enqueue(conn, feed_id, run_id, actor=current_user())
                why = start_worker()
                state["monitor_flash"] = f"Score job {job_id} queued: follow it on the Jobs page.{why}"
                st.rerun()

alert_rows = alerts.list_alerts(conn, feed_id, run_id, topic=f.topic, start=f.start, end=f.end) if run_id else []
open_alerts = [a for a in alert_rows if not a.get("acknowledged_at")]
n_articles = trends.count(conn, f)
m1, m2, m3 = st.columns(3)
m1.metric("Articles", f"{n_articles:,}")
m2.metric("Alerts", len(alert_rows))
m3.metric("Open alerts", len(open_alerts))

page_version = (data_version(feed_id), alerts.version(conn, feed_id))
if sources.any_enabled(conn):
    start_worker()  # live sources are polled by the worker: make sure one runs while someone watches


@st.fragment(run_every=settings.monitor_refresh_s())
def live_refresh() -> None:
    """While the page is open, look for new articles, scores and alerts; redraw the page when there are some."""
    fconn = connect()
    if (trends.data_version(fconn, feed_id), alerts.version(fconn, feed_id)) != page_version:
        st.rerun()
    st.caption(f":material/autorenew: Live: new articles, scores and alerts appear by themselves "
               f"(checked every {settings.monitor_refresh_s():g} s).")


live_refresh()


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
    fig.add_trace(go.Scatter(x=xs, y=[y_top] * len(xs), mode="markers", name="alert",
                             marker={"symbol": "triangle-down", "size": 12, "color": "#d62728"},
                             text=[f"{a['window_end']} {plot_text(a['topic'] or 'all articles')}: {a['negative_share']:.0%} negative"
                                   for a in alert_rows], hoverinfo="text"))


# ---- charts ----------------------------------------------------------------------------------------------------

fields = (f.feed_id, f.run_id, f.start, f.end, f.topic, f.source)
volume = aggregate("volume", home, version, fields, freq)
if volume.empty:
    st.info("No articles match these filters.")
else:
    st.subheader("Volume by sentiment")
    fig = px.bar(volume.assign(label=volume["label"].map(plot_text)), x="period", y="n", color="label", color_discrete_map=COLORS,
                 labels={"period": "day" if freq == "D" else "week", "n": "articles"})
    fig.update_layout(barmode="stack", height=320, margin={"t": 10, "b": 10}, legend_title_text="")
    totals = volume.groupby("period")["n"].sum()
    alert_markers(fig, float(totals.max()) * 1.05)
    st.plotly_chart(fig, width="stretch", key="chart_volume")

    net = aggregate("net", home, version, fields, freq)
    if not net.empty:
        st.subheader("Net sentiment index")
        st.caption("(positive − negative) / scored articles per period, with its rolling mean "
                   f"({'7 days' if freq == 'D' else '4 weeks'}).")
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=net["period"], y=net["net"], mode="lines+markers", name="net index",
                                 line={"color": "#1f77b4"}))
        fig.add_trace(go.Scatter(x=net["period"], y=net["rolling"], mode="lines", name="rolling mean",
                                 line={"color": "#ff7f0e", "width": 3}))
        fig.update_layout(height=300, margin={"t": 10, "b": 10}, yaxis={"range": [-1.05, 1.1]})
        alert_markers(fig, 1.05)
        st.plotly_chart(fig, width="stretch", key="chart_net")

    heat = aggregate("heat", home, version, fields)
    if not heat.empty:
        st.subheader("Negative share by topic and week")
        grid = heat.pivot_table(index="topic", columns="week", values="share")
        counts = heat.pivot_table(index="topic", columns="week", values="n")
        fig = go.Figure(go.Heatmap(z=grid.values, x=list(grid.columns), y=[plot_text(t) for t in grid.index], zmin=0, zmax=1,
                                   colorscale="Reds", customdata=counts.values,
                                   hovertemplate="%{y}, week of %{x}: %{z:.0%} negative of %{customdata} articles<extra></extra>"))
        fig.update_layout(height=max(200, 40 * len(grid) + 80), margin={"t": 10, "b": 10})
        st.plotly_chart(fig, width="stretch", key="chart_heat")

# ---- drill-down ------------------------------------------------------------------------------------------------

st.subheader("Drill down")
days = sorted(aggregate("volume", home, version, fields, "D")["period"].unique(), reverse=True)
if days:
    c1, c2 = st.columns(2)
    day = c1.selectbox("Day", days, key=f"drill_day_{feed_id}")
    drill_topic = c2.selectbox("Topic", topic_options, index=topic_options.index(topic), key=f"drill_topic_{feed_id}")
    drill = trends.drilldown(conn, f, day, None if drill_topic == ALL else drill_topic)
    st.caption(f"{len(drill)} articles on {day}, most negative first.")
    st.dataframe(drill.drop(columns=["id"]), hide_index=True,
                 column_config={"confidence": st.column_config.NumberColumn(format="%.2f"),
                                "negative": st.column_config.ProgressColumn("negative prob.", min_value=0.0, max_value=1.0),
                                "url": st.column_config.LinkColumn()})

# ---- alerts ----------------------------------------------------------------------------------------------------

st.subheader("Alerts")
rule = alerts.get_rule(conn, feed_id)
st.caption(
    f"An alert fires when the negative share over the last {rule['window_days']} day(s) exceeds the mean of the "
    f"{rule['baseline_days']} days before by {rule['k']:g} standard deviations"
    + (f", or reaches {rule['abs_threshold']:.0%}" if rule["abs_threshold"] is not None else "")
    + f", with at least {rule['min_articles']} scored articles. Per topic and for all articles."
)
if not run_id:
    st.info("Alerts appear once the feed is scored.")
elif not alert_rows:
    st.info("No alerts in this period.")
else:
    frame = alerts.alerts_frame(alert_rows)
    st.dataframe(frame.drop(columns=["rule", "run_id"]), hide_index=True,
                 column_config={"negative_share": st.column_config.NumberColumn("negative share", format="percent"),
                                "baseline_mean": st.column_config.NumberColumn("baseline", format="percent"),
                                "baseline_std": st.column_config.NumberColumn("baseline sd", format="%.3f"),
                                "magnitude": st.column_config.NumberColumn("sd above", format="%.1f")})
    labels = {a["id"]: f"#{a['id']} {a['window_end']} · {a['topic'] or 'all articles'} · {a['negative_share']:.0%} negative"
              + (" · acknowledged" if a.get("acknowledged_at") else "") for a in alert_rows}
    if state.get("alert_pick") not in labels:
        state.pop("alert_pick", None)
    c1, c2 = st.columns([3, 1])
    chosen = c1.selectbox("Alert", list(labels), format_func=labels.get, key="alert_pick")
    picked_alert = next(a for a in alert_rows if a["id"] == chosen)
    if not picked_alert.get("acknowledged_at"):
        if can("alerts.ack") and c2.button("Acknowledge", key="alert_ack"):
            alerts.acknowledge(conn, chosen, current_user())
            state["monitor_flash"] = f"Alert #{chosen} acknowledged."
            st.rerun()
    else:
        c2.caption(f"Acknowledged by {md(picked_alert['acknowledged_by'])} at {picked_alert['acknowledged_at']}")
    st.markdown("**Articles that drove it**")
    st.dataframe(alerts.alert_articles(conn, picked_alert).drop(columns=["id"]), hide_index=True)

with st.expander("Alert rule for this feed"):
    with st.form("alert_rule"):
        c1, c2, c3 = st.columns(3)
        window_days = c1.number_input("Window (days)", 1, 90, int(rule["window_days"]))
        baseline_days = c2.number_input("Baseline (days)", alerts.MIN_BASELINE_DAYS, 365, int(rule["baseline_days"]))
        k = c3.number_input("k (standard deviations)", 0.1, 50.0, float(rule["k"]), step=0.5)
        c1, c2 = st.columns(2)
        threshold = c1.number_input("Absolute negative share (0 = off)", 0.0, 1.0,
                                    float(rule["abs_threshold"] or 0.0), step=0.05)
        min_articles = c2.number_input("Minimum articles in the window", 1, 1_000_000, int(rule["min_articles"]))
        if st.form_submit_button("Save rule and re-evaluate", disabled=not can("alerts.rule", owner=feed_owner)):
            with plain_errors():
                alerts.set_rule(conn, feed_id, actor=current_user(), window_days=window_days, baseline_days=baseline_days, k=k,
                                abs_threshold=threshold or None, min_articles=min_articles)
                fired = alerts.evaluate(conn, feed_id, run_id) if run_id else []
                state["monitor_flash"] = f"Rule saved; {len(fired)} alerts over the feed's history."
                st.rerun()

# ---- exports ---------------------------------------------------------------------------------------------------

st.subheader("Export")
EXPORT_LIMIT = 100_000
c1, c2, c3, c4 = st.columns(4)  # files are built when their button is clicked, not on every rerun
if c1.button("Prepare article export", key="prep_export"):
    state["mon_export"] = (repr(f), trends.articles(conn, f, EXPORT_LIMIT))
cached = state.get("mon_export")
exported = cached[1] if cached and cached[0] == repr(f) else None
if exported is not None:
    c2.download_button("Articles (CSV)", lambda: export.to_csv_bytes(exported), f"{feed_name}-articles.csv", "text/csv",
                       key="dl_articles_csv")
    c3.download_button("Articles (XLSX)", lambda: export.to_xlsx_bytes({"articles": exported}), f"{feed_name}-articles.xlsx",
                       key="dl_articles_xlsx")
    note = f" (the newest {EXPORT_LIMIT:,})" if len(exported) >= EXPORT_LIMIT else ""
    st.caption(f"{len(exported):,} filtered articles{note}, with run {run_id}'s sentiment.")
alerts_export = alerts.alerts_frame(alert_rows)
c4.download_button("Alerts (CSV)", lambda: export.to_csv_bytes(alerts_export), f"{feed_name}-alerts.csv", "text/csv",
                   key="dl_alerts_csv")
c4.download_button("Alerts (XLSX)", lambda: export.to_xlsx_bytes({"alerts": alerts_export}), f"{feed_name}-alerts.xlsx",
                   key="dl_alerts_xlsx")
