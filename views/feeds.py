"""Feeds: upload news into a named feed (columns and time zone), topic rules, search, and scoring with a run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.monitor import feeds
from engine.jobs import runs
from engine.jobs import queue
from engine.monitor import scoring
from engine.monitor import vocabulary
from engine.monitor import feedjobs
from engine.monitor import notify
from engine.monitor import sources
from engine.monitor import topics
from engine.data import language as languages
from views._shared import can, connect, current_user, md, plain_errors, queued, require_sign_in, start_worker

NONE = "(none)"
NEW_FEED = "+ New feed"
FIELD_LABELS = {
    "time": "Published time",
    "title": "Title or headline",
    "body": "Body or description (optional)",
    "source": "Source (optional)",
    "url": "URL (optional)",
    "topic": "Topic or ticker (optional)",
}


@st.cache_data(max_entries=2, show_spinner=False)
def read_upload(data: bytes, file_name: str, fmt: str):
    """The uploaded news file, read once per file and format (each column pick reruns the page)."""
    return feeds.preview_guarded(data, file_name, fmt)


require_sign_in()
conn = connect()
state = st.session_state
state.setdefault("feed_upload_round", 0)

st.title("Feeds")
st.caption("Upload news exports or RSS/Atom files into a named feed, tag topics, search, and score with a trained model.")
if state.get("feed_flash"):
    flash = state.pop("feed_flash")
    message, level = flash if isinstance(flash, tuple) else (flash, "success")
    if level == "warning":
        st.warning(message, icon=":material/warning:")
    else:
        st.success(message, icon=":material/check_circle:")

all_feeds = feeds.list_feeds(conn)
names = [f["name"] for f in all_feeds]
if state.get("feed_selected") in names:  # a feed just created or chosen elsewhere: select it in the widget itself
    state["feed_choice"] = state.pop("feed_selected")
elif state.get("feed_choice") not in names + [NEW_FEED]:
    state.pop("feed_choice", None)
choice = st.selectbox("Feed", names + [NEW_FEED], key="feed_choice")
if choice == NEW_FEED:
    feed_name = st.text_input("New feed name", placeholder="markets-daily", key="new_feed_name").strip()
    feed_row = None
else:
    feed_name = choice
    feed_row = next(f for f in all_feeds if f["name"] == choice)
    found = scoring.feed_language(conn, feed_row["id"])
    language_words = f" · language {languages.describe(found)}" if found else ""
    st.caption(f"**{feed_row['n_articles']}** articles from {feed_row['n_imports']} imports · time zone "
               f"{md(feed_row['tz'])}{language_words}")

# ---- import ----------------------------------------------------------------------------------------------------

uploaded = None
if can("feed.import"):
    st.subheader("Import news")
    uploaded = st.file_uploader(
        "News file (CSV, Excel, JSON lines, RSS or Atom XML)",
        type=["csv", "tsv", "txt", "xlsx", "xlsm", "jsonl", "ndjson", "json", "xml", "rss", "atom"],
        key=f"feed_upload_{state['feed_upload_round']}",
    )
last = state.get("feed_last_import")
if last and uploaded is None:
    st.success(md(last["summary"]), icon=":material/check_circle:")
    if any(last["examples"].values()):
        st.markdown("**Rows kept out** (examples)")
        st.dataframe(pd.DataFrame([e for rows in last["examples"].values() for e in rows]), hide_index=True)

if uploaded is not None:
    data = uploaded.getvalue()
    key = f"{state['feed_upload_round']}_{uploaded.name}"
    c1, c2, c3 = st.columns(3)
    fmt = c1.selectbox("Format", feeds.FORMAT_CHOICES, key=f"ffmt_{key}", help="auto: from the file's name and content")
    default_tz = feed_row["tz"] if feed_row else "UTC"
    tz = c2.text_input("Time zone of times without one", default_tz, key=f"ftz_{key}",
                       help="UTC, ET, PT, Europe/London, Asia/Shanghai ... Times that name their zone (ET, +02:00) keep it.")
    parsed = None
    with plain_errors():
        parsed = read_upload(data, uploaded.name, fmt)
    if parsed is not None:
        c3.text_input("Read as", f"{parsed.format}" + (f", {parsed.encoding}" if parsed.encoding else ""), disabled=True,
                      key=f"fread_{key}")
        stored = feed_row and feeds.get_feed(conn, feed_row["id"])["mapping"]
        guess = feeds.default_mapping(parsed.columns, stored)
        options = [NONE] + parsed.columns
        st.markdown("**Columns** (guessed from their names; change them if they are wrong)")
        mapping = {}
        cols = st.columns(3)
        for i, fld in enumerate(feeds.FIELDS):
            current = guess.get(fld)
            mapping[fld] = cols[i % 3].selectbox(FIELD_LABELS[fld], options,
                                                 index=options.index(current) if current in options else 0,
                                                 key=f"fmap_{fld}_{key}")
        mapping = {k: ("" if v == NONE else v) for k, v in mapping.items()}
        st.dataframe(parsed.frame.head(5), hide_index=True)
        if st.button("Import into feed", type="primary", key=f"fimport_{key}", disabled=not feed_name):
            with plain_errors():
                with st.spinner("Importing..."):
                    result = feeds.import_file_guarded(data, uploaded.name, feed_name, mapping=mapping, tz=tz,
                                                       format=fmt, actor=current_user())
                state["feed_last_import"] = {"summary": result.summary(), "examples": result.examples}
                state["feed_selected"] = feed_name
                state["feed_upload_round"] += 1
                st.rerun()
        if not feed_name:
            st.caption("Name the new feed to import.")

if feed_row is None:
    if not all_feeds:
        st.info("No feeds yet. Upload a news file above to create the first one.", icon=":material/info:")
    st.stop()

feed_id = feed_row["id"]

history = feeds.imports(conn, feed_id)
if history:
    with st.expander(f"Import history ({len(history)})"):
        st.dataframe(pd.DataFrame([{"file": h["file_name"], "new": h["n_new"], "duplicate": h["n_duplicate"],
                                    "rejected": h["n_rejected"], "blank": h["report"].get("n_blank"),
                                    "imported": h["created_at"]} for h in history]), hide_index=True)

# ---- topics ----------------------------------------------------------------------------------------------------

st.subheader("Topics")
st.caption("A topic is a name and its keywords or tickers, matched without case on word boundaries "
           "(Chinese keywords anywhere in the text). Topics from a mapped column appear here too.")
rules = feeds.topic_rules(conn, feed_id)
counts = {t["topic"]: t["n_articles"] for t in feeds.topics(conn, feed_id)}
rows = [{"topic": r.name, "keywords": ", ".join(r.keywords), "articles": counts.get(r.name, 0), "from": "rule"} for r in rules]
model_counts = topics.model_topic_counts(conn, feed_id)
rows += [{"topic": t, "keywords": "", "articles": n, "from": "model" if t in model_counts else "column"}
         for t, n in counts.items() if t not in {r.name for r in rules}]
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True)
if can("topics.set", owner=feed_row.get("created_by")):
    with st.form("topic_rule", clear_on_submit=True):
        c1, c2 = st.columns([1, 2])
        topic_name = c1.text_input("Topic name", placeholder="Banks")
        keywords = c2.text_input("Keywords or tickers, comma-separated", placeholder="bank, lender, JPM, 银行")
        if st.form_submit_button("Save topic"):
            with plain_errors():
                info = feeds.set_topic_rule(conn, feed_id, topic_name, keywords, actor=current_user())
                state["feed_flash"] = f"Topic '{info['name']}' saved: {info['matches']} articles tagged."
                st.rerun()
    if rules:
        c1, c2 = st.columns([2, 1])
        gone = c1.selectbox("Remove a topic rule", [r.name for r in rules], key="topic_remove")
        if c2.button("Remove", key="topic_remove_btn"):
            with plain_errors():
                feeds.delete_topic_rule(conn, feed_id, gone, actor=current_user())
                state["feed_flash"] = f"Topic rule '{gone}' removed."
                st.rerun()
else:
    st.caption(f"Topic rules are changed by the feed's creator ({feed_row.get('created_by') or 'unknown'}) or an "
               "administrator.")

st.markdown("**Tag topics with a trained classifier**")
runs_in_order = vocabulary.runs_by_purpose(conn, runs.finished_runs(conn, runs.TEXT))
topic_runs = runs_in_order["topics"]
if not can("topics.classify"):
    st.caption("Tagging needs an analyst's role.")
elif not topic_runs:
    st.caption("No finished run trained for topics yet. On the Train page, train a text classifier on a dataset "
               "labelled with topics (earnings, M&A, macro ...) with the purpose 'Topics', then tag this feed with it. "
               "Sentiment runs are not offered here: their labels would become topics.")
else:
    topic_labels = {r["id"]: runs.title(r) for r in topic_runs}
    c1, c2 = st.columns([2, 1])
    topic_run = c1.selectbox("Topic model (a finished run trained for topics)", list(topic_labels),
                             format_func=topic_labels.get, key="topic_run")
    c1.caption("Labels: " + ", ".join(vocabulary.run_labels(conn, topic_run)))
    untagged = topics.count_untagged(conn, feed_id, topic_run)
    current = [r for r in topics.model_topic_runs(conn, feed_id) if r != topic_run]
    note = f" Tagging replaces the model topics of run {', '.join(map(str, current))}." if current else ""
    st.caption(f"{untagged} articles not yet tagged by run {topic_run}.{note} Column and rule topics stay.")
    if c2.button("Tag topics", key="topic_tag_btn", disabled=untagged == 0):
        with plain_errors():
            job_id = topics.enqueue(conn, feed_id, topic_run, actor=current_user())
            state["feed_flash"] = queued(f"Topics job {job_id} queued: progress below under Score with a trained model.")
            st.rerun()
if model_counts and can("topics.delete", owner=feed_row.get("created_by")):
    tagged_by = ", ".join(f"run {r}" for r in topics.model_topic_runs(conn, feed_id))
    c1, c2 = st.columns([2, 1])
    c1.caption(f"{sum(model_counts.values()):,} article topics come from a classifier ({tagged_by}). Removing them "
               "leaves column and rule topics as they are.")
    if c2.button("Remove model topics", key="topic_untag_btn"):
        with plain_errors():
            removed = topics.remove_model_topics(conn, feed_id, actor=current_user())
            state["feed_flash"] = f"Removed {removed:,} model topics. Column and rule topics stay."
            st.rerun()

# ---- search ----------------------------------------------------------------------------------------------------

st.subheader("Search")
query = st.text_input("Search the feed's titles and bodies", key="feed_search", placeholder="wirecard OR belarus")
if query.strip():
    hits = feeds.search(conn, feed_id, query, limit=100)
    if hits:
        st.dataframe(pd.DataFrame(hits)[["day", "title", "source", "body"]], hide_index=True)
    else:
        st.info("No articles match every word.")

# ---- scoring ---------------------------------------------------------------------------------------------------

st.subheader("Score with a trained model")
PRECISION_NAMES = {"fast": "Fast (recommended)", "exact": "Exact (float32)"}
score_runs = runs_in_order[vocabulary.SENTIMENT]
if not can("feed.score"):
    st.caption("Scoring needs an analyst's role.")
elif not score_runs:
    st.info("No finished sentiment run yet. Train one on the Train page, then score this feed with it.")
else:
    labels = {r["id"]: runs.title(r) for r in score_runs}
    c1, c2, c3 = st.columns([2, 1, 1])
    run_choice = c1.selectbox("Model (a finished run)", list(labels), format_func=labels.get, key="score_run")
    text_mode = c2.selectbox("Score", ["title", "title_body"], format_func={"title": "Titles",
                             "title_body": "Titles and bodies"}.get, key="score_text")
    precision = c3.selectbox("Precision", ["fast", "exact"], format_func=PRECISION_NAMES.get, key="score_precision",
                             help="Fast runs the model in reduced precision where the processor supports it natively: "
                                  "about twice as fast, and the label matches the exact result for over 99% of "
                                  "texts. Exact runs it as it was evaluated on the Reports page.")
    run_labels = vocabulary.run_labels(conn, run_choice)
    c1.caption("Labels: " + ", ".join(run_labels))
    if warning := vocabulary.no_negative_class(run_labels):
        st.warning(f"Run {run_choice}'s {md(warning)}. Pick a sentiment run, unless this is what you mean to do.")
    if warning := scoring.language_warning(conn, feed_id, run_choice):
        st.warning(md(warning), icon=":material/translate:")
    waiting = scoring.count_unscored(conn, feed_id, run_choice)
    st.caption(f"{waiting} articles not yet scored by run {run_choice}.")
    if st.button("Score", type="primary", key="score_btn", disabled=waiting == 0):
        with plain_errors():
            job_id = scoring.enqueue(conn, feed_id, run_choice, actor=current_user(), text=text_mode,
                                     precision=precision)
            state["feed_flash"] = queued(f"Score job {job_id} queued.")
            st.rerun()


recent_jobs = feedjobs.recent_jobs(conn, feed_id)
active = any(j["status"] in queue.ACTIVE for j in recent_jobs)


@st.fragment(run_every=2 if active else None)
def score_progress() -> None:
    fconn = connect()
    recent = feedjobs.recent_jobs(fconn, feed_id)
    if active and not any(j["status"] in queue.ACTIVE for j in recent):
        st.rerun()  # a job has just finished: the whole page again, so its counts and choices are current
    for job in recent:
        what = "topics" if topics.is_topics_job(job) else "sentiment"
        head = f"Job {job['id']} · run {job['model_run_id']} · **{job['status']}**" + (" · topics" if what == "topics" else "")
        if job["status"] in queue.ACTIVE:
            p = queue.last_progress(fconn, job["id"], kind="score")
            done, total = (p["step"] or 0, p["total_steps"] or 0) if p else (0, 0)
            st.progress(done / total if total else 0.0, f"{head} · {done}/{total} articles")
            if can("run.cancel", owner=job.get("created_by")) and st.button("Cancel", key=f"cancel_score_{job['id']}"):
                with plain_errors():
                    queue.cancel(fconn, job["id"], actor=current_user())
                    st.rerun()
        else:
            detail = job.get("error") or ""
            if job["status"] == "succeeded":
                m = job["metrics"]
                detail = (f"{m.get('tagged', 0)} articles tagged with topics" if what == "topics"
                          else f"{m.get('scored', 0)} articles scored, {m.get('alerts', 0)} alerts")
                if m.get("articles_per_s"):
                    detail += f" · {m['articles_per_s']:,.0f} articles/s on {m.get('device', '?')} ({m.get('dtype', '?')})"
            st.caption(f"{head} · {md(detail)}")


if recent_jobs:
    score_progress()


# ---- sources: polled by the worker -----------------------------------------------------------------------------

st.subheader("Sources")
st.caption("RSS/Atom addresses and server folders the worker polls on a schedule. What arrives is imported like an "
           "upload, scored by the feed's current model and checked against the alert rule, without pressing anything.")
feed_sources = sources.list_sources(conn, feed_id)
if feed_sources:
    start_worker()  # sources are polled by the worker: after a restart of the server, this starts it again


@st.fragment(run_every=5 if feed_sources else None)
def source_status() -> None:
    fconn = connect()
    rows = sources.list_sources(fconn, feed_id)
    counts = sources.article_counts(fconn, feed_id, sources.current_model(fconn, feed_id))
    st.caption(f"{counts['articles']:,} articles in the feed, {counts['scored']:,} scored by its current model "
               f"(refreshes every 5 s).")
    if rows:
        table = pd.DataFrame([{
            "id": r["id"], "kind": r["kind"], "address or folder": r["location"], "every (s)": r["interval_s"],
            "imported": r["n_imported"] or 0, "last poll": r["last_poll_at"], "next poll": r["next_poll_at"],
            "status": ("error: " + r["last_error"]) if r["last_error"] else ("ok" if r["last_poll_at"] else "waiting"),
        } for r in rows])
        st.dataframe(table, hide_index=True, key="sources_table")
        for r in rows:
            if r["last_error"]:
                st.error(f"Source {r['id']} ({sources.host_of(r['location'])}): {r['last_error']} "
                         f"Next try {r['next_poll_at']}.", icon=":material/error:")


source_status()

sentiment_runs = vocabulary.runs_by_purpose(conn, runs.finished_runs(conn, task="text-classification"))["sentiment"]
model_now = sources.current_model(conn, feed_id)
model_labels = {0: "(the newest run that scored this feed)"} | {r["id"]: runs.title(r) for r in sentiment_runs}
with st.form("source_add", clear_on_submit=True):
    c1, c2 = st.columns([3, 1])
    location = c1.text_input("RSS/Atom URL or server folder", placeholder="https://example.com/markets.rss",
                             key="source_location")
    interval = c2.number_input("Every (seconds)", min_value=1.0, value=300.0, step=60.0, key="source_interval")
    set_model = st.selectbox("Current model: scores what arrives", list(model_labels), format_func=model_labels.get,
                             index=list(model_labels).index(model_now) if model_now in model_labels else 0,
                             key="source_model")
    if st.form_submit_button("Add source", type="primary"):
        with plain_errors():
            sources.set_current_model(conn, feed_id, set_model or None, actor=current_user())
            row = sources.add_source(conn, feed_id, location, interval_s=interval, actor=current_user())
            why = start_worker()
            state["feed_flash"] = (f"Source {row['id']} added; it is polled every {row['interval_s']:g} s." + why,
                                   "warning" if why else "success")
            st.rerun()
if feed_sources:
    c1, c2, c3 = st.columns([2, 1, 1])
    picked_source = c1.selectbox("Source", [r["id"] for r in feed_sources], key="source_pick",
                                 format_func=lambda i: next(f"{i}: {r['location']}" for r in feed_sources if r["id"] == i))
    if c2.button("Poll now", key="source_poll_now"):
        with plain_errors():
            sources.poll_now(conn, picked_source, actor=current_user())
            state["feed_flash"] = (f"Source {picked_source} will be polled within seconds." + start_worker(), "success")
            st.rerun()
    if c3.button("Remove", key="source_remove"):
        with plain_errors():
            sources.remove_source(conn, picked_source, actor=current_user())
            state["feed_flash"] = (f"Source {picked_source} removed; its articles stay in the feed.", "success")
            st.rerun()

# ---- notification channels -------------------------------------------------------------------------------------

if can("notify.channels"):  # channels hold secrets and reach outside: administrators only
    with st.expander("Notification channels (for administrators)"):
        st.caption("New alerts of every feed, and optionally training runs that end, are pushed to these channels. "
                   "Webhook addresses and passwords are kept secret: only the host is shown.")
        channels = notify.list_channels(conn)
        if channels:
            st.dataframe(pd.DataFrame([{
                "name": c["name"], "kind": c["kind"], "goes to": c["target"], "events": c["events"],
                "last delivery": (f"{c['last_delivery']['status']} {c['last_delivery']['at']}"
                                  + (f": {c['last_delivery']['error']}" if c["last_delivery"]["error"] else ""))
                if c["last_delivery"] else "nothing sent yet"} for c in channels]), hide_index=True, key="channels_table")
            c1, c2 = st.columns([2, 1])
            test_channel = c1.selectbox("Channel", [c["name"] for c in channels], key="channel_pick")
            if c2.button("Send test", key="channel_test"):
                result = notify.send_test(conn, test_channel, actor=current_user())
                if result["status"] == "sent":
                    st.success(f"Test message sent to '{test_channel}'.", icon=":material/check_circle:")
                else:
                    st.error(f"The test message to '{test_channel}' failed: {result['error']}", icon=":material/error:")
            picked = next(c for c in channels if c["name"] == test_channel)
            c1, c2, c3 = st.columns([2, 1, 1])
            new_events = c1.selectbox("Its events", ["alerts", "alerts,runs", "runs"], key="channel_edit_events",
                                      index=["alerts", "alerts,runs", "runs"].index(picked["events"])
                                      if picked["events"] in ("alerts", "alerts,runs", "runs") else 0,
                                      format_func={"alerts": "Alerts", "alerts,runs": "Alerts and training runs",
                                                   "runs": "Training runs"}.get)
            on = c2.toggle("Sending", value=picked["enabled"], key="channel_edit_on",
                           help="Off: the channel is paused and sent nothing; its log is kept.")
            if c3.button("Save channel", key="channel_edit_save"):
                with plain_errors():
                    notify.edit_channel(conn, test_channel, events=new_events, enabled=on, actor=current_user())
                    state["feed_flash"] = (f"Channel '{md(test_channel)}' {'sends' if on else 'is paused'}: "
                                           f"{new_events.replace(',', ' and ')}.", "success")
                    st.rerun()
            log = notify.deliveries(conn, limit=20)
            if log:
                st.markdown("**Delivery log**")
                st.dataframe(pd.DataFrame(log), hide_index=True, key="delivery_log")
        with st.form("channel_add", clear_on_submit=True):
            c1, c2, c3 = st.columns(3)
            ch_name = c1.text_input("Name", placeholder="desk-slack", key="channel_name")
            ch_kind = c2.selectbox("Kind", ["webhook", "email"], key="channel_kind")
            ch_events = c3.selectbox("Events", ["alerts", "alerts,runs"], key="channel_events",
                                     format_func={"alerts": "Alerts", "alerts,runs": "Alerts and training runs"}.get)
            c1, c2 = st.columns([3, 1])
            ch_url = c1.text_input("Webhook URL", type="password", key="channel_url")
            ch_style = c2.selectbox("Payload", list(notify.STYLES), key="channel_style")
            c1, c2, c3 = st.columns([2, 1, 1])
            ch_host = c1.text_input("SMTP host", key="channel_host")
            ch_port = c2.number_input("Port", 1, 65535, 587, key="channel_port")
            ch_security = c3.selectbox("Security", ["starttls", "ssl", "none"], key="channel_security")
            c1, c2 = st.columns(2)
            ch_user = c1.text_input("SMTP user (optional)", key="channel_user")
            ch_password = c2.text_input("SMTP password", type="password", key="channel_password")
            c1, c2 = st.columns(2)
            ch_sender = c1.text_input("From", placeholder="bellwether@example.com", key="channel_sender")
            ch_to = c2.text_input("To (comma-separated)", key="channel_to")
            if st.form_submit_button("Add channel"):
                with plain_errors():
                    added = notify.add_channel(conn, ch_name, ch_kind, url=ch_url, style=ch_style, host=ch_host,
                                               port=ch_port, username=ch_user, password=ch_password, sender=ch_sender,
                                               to=ch_to, security=ch_security, events=ch_events,
                                               actor=current_user())
                    state["feed_flash"] = (f"Channel '{added['name']}' added: {added['target']}." + start_worker(), "success")
                    st.rerun()
