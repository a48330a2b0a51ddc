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
from engine import i18n
from engine.errors import UserError
from engine.i18n import N_, _
from views._shared import can, connect, current_user, md, plain_errors, queued, require_sign_in, start_worker

NONE = "(none)"  # option values; shown through format_func in the reader's language
NEW_FEED = "+ New feed"
FIELD_LABELS = {
    "time": N_("Published time"),
    "title": N_("Title or headline"),
    "body": N_("Body or description (optional)"),
    "source": N_("Source (optional)"),
    "url": N_("URL (optional)"),
    "topic": N_("Topic or ticker (optional)"),
}


# Status codes kept in the store (jobs, deliveries), shown translated: _(status)
STATUS_WORDS = (N_("queued"), N_("running"), N_("succeeded"), N_("failed"), N_("cancelled"), N_("sent"),
                N_("pending"))


def option_name(value: str) -> str:
    return {NONE: _("(none)"), NEW_FEED: _("+ New feed")}.get(value, value)


def shown_table(rows: list[dict], headings: dict[str, str]) -> pd.DataFrame:
    """``rows`` as a table whose columns are named in the reader's language (``headings``: key -> English heading)."""
    frame = pd.DataFrame(rows)
    return frame.rename(columns={k: _(v) for k, v in headings.items()})


@st.cache_data(max_entries=2, show_spinner=False)
def read_upload(data: bytes, file_name: str, fmt: str):
    """The uploaded news file, read once per file and format (each column pick reruns the page)."""
    return feeds.preview_guarded(data, file_name, fmt)


require_sign_in()
conn = connect()
state = st.session_state
state.setdefault("feed_upload_round", 0)
state.setdefault("topic_round", 0)

st.title(_("Feeds"))
st.caption(_("Upload news exports or RSS/Atom files into a named feed, tag topics, search, and score with a trained "
             "model."))
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
choice = st.selectbox(_("Feed"), names + [NEW_FEED], key="feed_choice", format_func=option_name)
feed_tz = None
if choice == NEW_FEED:
    feed_name = st.text_input(_("New feed name"), placeholder=_("markets-daily"), key="new_feed_name").strip()
    feed_row = None
else:
    feed_name = choice
    feed_row = next(f for f in all_feeds if f["name"] == choice)
    feed_tz = feed_row["tz"]
    found = scoring.feed_language(conn, feed_row["id"])
    if found:
        st.caption(_("**{n_articles}** articles from {n_imports} imports · time zone {tz} · language {language}",
                     n_articles=feed_row["n_articles"], n_imports=feed_row["n_imports"], tz=md(feed_row["tz"]),
                     language=scoring.describe_language(found)))
    else:
        st.caption(_("**{n_articles}** articles from {n_imports} imports · time zone {tz}",
                     n_articles=feed_row["n_articles"], n_imports=feed_row["n_imports"], tz=md(feed_row["tz"])))


def when(value) -> str:
    """A time from the store, in the feed's zone, written the reader's way."""
    return i18n.when(value, feed_tz) if value else ""


# ---- import ----------------------------------------------------------------------------------------------------

uploaded = None
if can("feed.import"):
    st.subheader(_("Import news"))
    # Any file is taken, and one that is not news (a PDF, a Word file) is refused below in words, as the CLI does.
    uploaded = st.file_uploader(_("News file (CSV, Excel, JSON lines, RSS or Atom XML)"),
                                key=f"feed_upload_{state['feed_upload_round']}")
last = state.get("feed_last_import")
if last and uploaded is None:
    st.success(md(feeds.import_summary(last["report"])), icon=":material/check_circle:")
    if any(last["examples"].values()):
        st.markdown(_("**Rows kept out** (examples)"))
        kept_out = [{**e, "reason": i18n.shown(e["reason"])} for rows in last["examples"].values() for e in rows]
        st.dataframe(shown_table(kept_out, {"row": N_("row"), "value": N_("value"), "reason": N_("reason")}),
                     hide_index=True)

if uploaded is not None:
    data = uploaded.getvalue()
    key = f"{state['feed_upload_round']}_{uploaded.name}"
    refused = None
    try:
        feeds.check_news_file_name(uploaded.name)
    except UserError as exc:
        refused = exc
        st.error(md(exc), icon=":material/error:")
    c1, c2, c3 = st.columns(3)
    fmt = c1.selectbox(_("Format"), feeds.FORMAT_CHOICES, key=f"ffmt_{key}",
                       help=_("auto: from the file's name and content"))
    default_tz = feed_row["tz"] if feed_row else "UTC"
    tz = c2.text_input(_("Time zone of times without one"), default_tz, key=f"ftz_{key}",
                       help=_("UTC, ET, PT, Europe/London, Asia/Shanghai ... Times that name their zone (ET, +02:00) "
                              "keep it."))
    parsed = None
    if refused is None or fmt != "auto":  # a format chosen by hand reads the file whatever its name
        with plain_errors():
            parsed = read_upload(data, uploaded.name, fmt)
    if parsed is not None:
        c3.text_input(_("Read as"), f"{parsed.format}" + (f", {parsed.encoding}" if parsed.encoding else ""),
                      disabled=True, key=f"fread_{key}")
        stored = feed_row and feeds.get_feed(conn, feed_row["id"])["mapping"]
        guess = feeds.default_mapping(parsed.columns, stored)
        options = [NONE] + parsed.columns
        st.markdown(_("**Columns** (guessed from their names; change them if they are wrong)"))
        mapping = {}
        cols = st.columns(3)
        for i, fld in enumerate(feeds.FIELDS):
            current = guess.get(fld)
            mapping[fld] = cols[i % 3].selectbox(_(FIELD_LABELS[fld]), options, format_func=option_name,
                                                 index=options.index(current) if current in options else 0,
                                                 key=f"fmap_{fld}_{key}")
        mapping = {k: ("" if v == NONE else v) for k, v in mapping.items()}
        st.dataframe(parsed.frame.head(5), hide_index=True)
        if st.button(_("Import into feed"), type="primary", key=f"fimport_{key}", disabled=not feed_name):
            with plain_errors():
                with st.spinner(_("Importing...")):
                    result = feeds.import_file_guarded(data, uploaded.name, feed_name, mapping=mapping, tz=tz,
                                                       format=fmt, actor=current_user())
                state["feed_last_import"] = {"report": result.as_dict(), "examples": result.examples}
                state["feed_selected"] = feed_name
                state["feed_upload_round"] += 1
                st.rerun()
        if not feed_name:
            st.caption(_("Name the new feed to import."))

if feed_row is None:
    if not all_feeds:
        st.info(_("No feeds yet. Upload a news file above to create the first one."), icon=":material/info:")
    st.stop()

feed_id = feed_row["id"]

history = feeds.imports(conn, feed_id)
if history:
    with st.expander(_("Import history ({n})", n=len(history))):
        st.dataframe(shown_table(
            [{"file": h["file_name"], "new": h["n_new"], "duplicate": h["n_duplicate"], "rejected": h["n_rejected"],
              "blank": h["report"].get("n_blank"), "imported": when(h["created_at"])} for h in history],
            {"file": N_("file"), "new": N_("new"), "duplicate": N_("duplicate"), "rejected": N_("rejected"),
             "blank": N_("blank"), "imported": N_("imported")}), hide_index=True)

# ---- topics ----------------------------------------------------------------------------------------------------

st.subheader(_("Topics"))
st.caption(_("A topic is a name and its keywords or tickers, matched without case on word boundaries, simple plurals "
             "included (Chinese keywords anywhere in the text). Topics from a mapped column appear here too."))
rules = feeds.topic_rules(conn, feed_id)
counts = {t["topic"]: t["n_articles"] for t in feeds.topics(conn, feed_id)}
ORIGINS = {"rule": N_("rule"), "model": N_("model"), "column": N_("column")}
rows = [{"topic": r.name, "keywords": ", ".join(r.keywords), "articles": counts.get(r.name, 0), "from": _("rule")}
        for r in rules]
model_counts = topics.model_topic_counts(conn, feed_id)
rows += [{"topic": t, "keywords": "", "articles": n, "from": _(ORIGINS["model" if t in model_counts else "column"])}
         for t, n in counts.items() if t not in {r.name for r in rules}]
if rows:
    st.dataframe(shown_table(rows, {"topic": N_("topic"), "keywords": N_("keywords"), "articles": N_("articles"),
                                    "from": N_("from")}), hide_index=True)
if can("topics.set", owner=feed_row.get("created_by")):
    # Not a form: the preview below follows what is typed, before anything is saved.
    c1, c2 = st.columns([1, 2])
    topic_name = c1.text_input(_("Topic name"), placeholder=_("Banks"), key=f"topic_name_{state['topic_round']}")
    keywords = c2.text_input(_("Keywords or tickers, comma-separated"), placeholder=_("bank, lender, JPM, 银行"),
                             key=f"topic_keywords_{state['topic_round']}")
    if keywords.strip():
        preview = feeds.preview_topic_rule(conn, feed_id, keywords)
        st.caption(_("Preview: these keywords catch **{matches}** of the feed's {total} articles (saving tags exactly "
                     "these).", matches=i18n.number(preview["matches"]), total=i18n.number(preview["total"])))
        if preview["sample"]:
            st.dataframe(shown_table([{"published": when(a["published_at"]), "title": a["title"]}
                                      for a in preview["sample"]],
                                     {"published": N_("published"), "title": N_("headline")}),
                         hide_index=True, key="topic_preview")
    if st.button(_("Save topic"), key="topic_save"):
        with plain_errors():
            info = feeds.set_topic_rule(conn, feed_id, topic_name, keywords, actor=current_user())
            state["feed_flash"] = _("Topic '{name}' saved: {n} articles tagged.", name=info["name"], n=info["matches"])
            state["topic_round"] += 1
            st.rerun()
    if rules:
        c1, c2 = st.columns([2, 1])
        gone = c1.selectbox(_("Remove a topic rule"), [r.name for r in rules], key="topic_remove")
        if c2.button(_("Remove"), key="topic_remove_btn"):
            with plain_errors():
                feeds.delete_topic_rule(conn, feed_id, gone, actor=current_user())
                state["feed_flash"] = _("Topic rule '{name}' removed.", name=gone)
                st.rerun()
else:
    st.caption(_("Topic rules are changed by the feed's creator ({owner}) or an administrator.",
                 owner=feed_row.get("created_by") or _("unknown")))

st.markdown(_("**Tag topics with a trained classifier**"))
runs_in_order = vocabulary.runs_by_purpose(conn, runs.finished_runs(conn, runs.TEXT))
topic_runs = runs_in_order["topics"]
if not can("topics.classify"):
    st.caption(_("Tagging needs an analyst's role."))
elif not topic_runs:
    st.caption(_("No finished run trained for topics yet. On the Train page, train a text classifier on a dataset "
                 "labelled with topics (earnings, M&A, macro ...) with the purpose 'Topics', then tag this feed with "
                 "it. Sentiment runs are not offered here: their labels would become topics."))
else:
    topic_labels = {r["id"]: runs.title(r) for r in topic_runs}
    c1, c2 = st.columns([2, 1])
    topic_run = c1.selectbox(_("Topic model (a finished run trained for topics)"), list(topic_labels),
                             format_func=topic_labels.get, key="topic_run")
    c1.caption(_("Labels: {labels}", labels=", ".join(vocabulary.run_labels(conn, topic_run))))
    untagged = topics.count_untagged(conn, feed_id, topic_run)
    current = [r for r in topics.model_topic_runs(conn, feed_id) if r != topic_run]
    if current:
        st.caption(_("{n} articles not yet tagged by run {run_id}. Tagging replaces the model topics of run {runs}. "
                     "Column and rule topics stay.", n=untagged, run_id=topic_run, runs=", ".join(map(str, current))))
    else:
        st.caption(_("{n} articles not yet tagged by run {run_id}. Column and rule topics stay.", n=untagged,
                     run_id=topic_run))
    if c2.button(_("Tag topics"), key="topic_tag_btn", disabled=untagged == 0):
        with plain_errors():
            job_id = topics.enqueue(conn, feed_id, topic_run, actor=current_user())
            state["feed_flash"] = queued(_("{job} queued: progress below under Score with a trained model.",
                                           job=queue.label_of(conn, job_id, start=True)))
            st.rerun()
if model_counts and can("topics.delete", owner=feed_row.get("created_by")):
    tagged_by = ", ".join(_("run {run_id}", run_id=r) for r in topics.model_topic_runs(conn, feed_id))
    c1, c2 = st.columns([2, 1])
    c1.caption(_("{n} article topics come from a classifier ({runs}). Removing them leaves column and rule topics as "
                 "they are.", n=i18n.number(sum(model_counts.values())), runs=tagged_by))
    if c2.button(_("Remove model topics"), key="topic_untag_btn"):
        with plain_errors():
            removed = topics.remove_model_topics(conn, feed_id, actor=current_user())
            state["feed_flash"] = _("Removed {n} model topics. Column and rule topics stay.", n=i18n.number(removed))
            st.rerun()

# ---- search ----------------------------------------------------------------------------------------------------

st.subheader(_("Search"))
query = st.text_input(_("Search the feed's titles and bodies"), key="feed_search", placeholder=_("wirecard OR belarus"))
if query.strip():
    hits = feeds.search(conn, feed_id, query, limit=100)
    if hits:
        st.dataframe(shown_table([{"published": when(h["published_at"]), "title": h["title"], "source": h["source"],
                                   "body": h["body"]} for h in hits],
                                 {"published": N_("published"), "title": N_("title"), "source": N_("source"),
                                  "body": N_("body")}), hide_index=True)
    else:
        st.info(_("No articles match every word."))

# ---- scoring ---------------------------------------------------------------------------------------------------

st.subheader(_("Score with a trained model"))
PRECISION_NAMES = {"fast": N_("Fast (recommended)"), "exact": N_("Exact (float32)")}
TEXT_NAMES = {"title": N_("Titles"), "title_body": N_("Titles and bodies")}
score_runs = runs_in_order[vocabulary.SENTIMENT]
if not can("feed.score"):
    st.caption(_("Scoring needs an analyst's role."))
elif not score_runs:
    st.info(_("No finished sentiment run yet. Train one on the Train page, then score this feed with it."))
else:
    labels = {r["id"]: runs.title(r) for r in score_runs}
    c1, c2, c3 = st.columns([2, 1, 1])
    run_choice = c1.selectbox(_("Model (a finished run)"), list(labels), format_func=labels.get, key="score_run")
    text_mode = c2.selectbox(_("Score"), ["title", "title_body"], format_func=lambda v: _(TEXT_NAMES[v]),
                             key="score_text")
    precision = c3.selectbox(_("Precision"), ["fast", "exact"], format_func=lambda v: _(PRECISION_NAMES[v]),
                             key="score_precision",
                             help=_("Fast runs the model in reduced precision where the processor supports it "
                                    "natively: about twice as fast, and the label matches the exact result for over "
                                    "99% of texts. Exact runs it as it was evaluated on the Reports page."))
    run_labels = vocabulary.run_labels(conn, run_choice)
    c1.caption(_("Labels: {labels}", labels=", ".join(run_labels)))
    if vocabulary.no_negative_class(run_labels):
        st.warning(_("Run {run_id}'s labels ({labels}) have no negative class, so the Monitor's negative share and "
                     "surge alerts would stay at zero. Pick a sentiment run, unless this is what you mean to do.",
                     run_id=run_choice, labels=md(", ".join(run_labels))))
    if warning := scoring.language_warning(conn, feed_id, run_choice):
        st.warning(md(warning), icon=":material/translate:")
    waiting = scoring.count_unscored(conn, feed_id, run_choice)
    st.caption(_("{n} articles not yet scored by run {run_id}.", n=waiting, run_id=run_choice))
    if st.button(_("Score"), type="primary", key="score_btn", disabled=waiting == 0):
        with plain_errors():
            job_id = scoring.enqueue(conn, feed_id, run_choice, actor=current_user(), text=text_mode,
                                     precision=precision)
            state["feed_flash"] = queued(_("{job} queued.", job=queue.label_of(conn, job_id, start=True)))
            st.rerun()


recent_jobs = feedjobs.recent_jobs(conn, feed_id)
active = any(j["status"] in queue.ACTIVE for j in recent_jobs)


def job_outcome(job: dict, what: str) -> str:
    """What a finished score or topics job did (or why it did not), in the reader's language."""
    if job["status"] != "succeeded":
        return i18n.shown(job.get("error"))
    m = job["metrics"]
    if what == "topics":
        detail = _("{n} articles tagged with topics", n=m.get("tagged", 0))
    else:
        detail = _("{n} articles scored, {alerts} alerts", n=m.get("scored", 0), alerts=m.get("alerts", 0))
    if m.get("articles_per_s"):
        detail += " · " + _("{rate} articles/s on {device} ({dtype})", rate=i18n.number(m["articles_per_s"]),
                            device=m.get("device", "?"), dtype=m.get("dtype", "?"))
    return detail


@st.fragment(run_every=2 if active else None)
def score_progress() -> None:
    fconn = connect()
    recent = feedjobs.recent_jobs(fconn, feed_id)
    if active and not any(j["status"] in queue.ACTIVE for j in recent):
        st.rerun()  # a job has just finished: the whole page again, so its counts and choices are current
    for job in recent:
        what = "topics" if topics.is_topics_job(job) else "sentiment"
        if what == "topics":
            head = _("{job} · run {run_id} · **{status}** · topics", job=queue.label(job, start=True),
                     run_id=job["model_run_id"], status=_(job["status"]))
        else:
            head = _("{job} · run {run_id} · **{status}**", job=queue.label(job, start=True),
                     run_id=job["model_run_id"], status=_(job["status"]))
        if job["status"] in queue.ACTIVE:
            p = queue.last_progress(fconn, job["id"], kind="score")
            done, total = (p["step"] or 0, p["total_steps"] or 0) if p else (0, 0)
            st.progress(done / total if total else 0.0, _("{head} · {done}/{total} articles", head=head, done=done,
                                                          total=total))
            if can("run.cancel", owner=job.get("created_by")) and st.button(_("Cancel"),
                                                                             key=f"cancel_score_{job['id']}"):
                with plain_errors():
                    queue.cancel(fconn, job["id"], actor=current_user())
                    st.rerun()
        else:
            st.caption(f"{head} · {md(job_outcome(job, what))}")


if recent_jobs:
    score_progress()


# ---- sources: polled by the worker -----------------------------------------------------------------------------

st.subheader(_("Sources"))
st.caption(_("RSS/Atom addresses and server folders the worker polls on a schedule. What arrives is imported like an "
             "upload, scored by the feed's current model and checked against the alert rule, without pressing "
             "anything."))
feed_sources = sources.list_sources(conn, feed_id)
if feed_sources:
    start_worker()  # sources are polled by the worker: after a restart of the server, this starts it again
SOURCE_KINDS = {"rss": N_("RSS/Atom"), "folder": N_("folder")}


def source_state(r: dict) -> str:
    if r["last_error"]:
        return _("error: {error}", error=i18n.shown(r["last_error"]))
    return _("ok") if r["last_poll_at"] else _("waiting")


@st.fragment(run_every=5 if feed_sources else None)
def source_status() -> None:
    fconn = connect()
    rows = sources.list_sources(fconn, feed_id)
    counts = sources.article_counts(fconn, feed_id, sources.current_model(fconn, feed_id))
    st.caption(_("{articles} articles in the feed, {scored} scored by its current model (refreshes every 5 s).",
                 articles=i18n.number(counts["articles"]), scored=i18n.number(counts["scored"])))
    if rows:
        table = shown_table([{
            "id": r["id"], "kind": _(SOURCE_KINDS.get(r["kind"], r["kind"])), "address or folder": r["location"],
            "every (s)": r["interval_s"], "imported": r["n_imported"] or 0, "last poll": when(r["last_poll_at"]),
            "next poll": when(r["next_poll_at"]), "status": source_state(r),
        } for r in rows], {"id": N_("id"), "kind": N_("kind"), "address or folder": N_("address or folder"),
                           "every (s)": N_("every (s)"), "imported": N_("imported"), "last poll": N_("last poll"),
                           "next poll": N_("next poll"), "status": N_("status")})
        st.dataframe(table, hide_index=True, key="sources_table")
        for r in rows:
            if r["last_error"]:
                st.error(_("Source {source_id} ({host}): {error} Next try {when}.", source_id=r["id"],
                           host=sources.host_of(r["location"]), error=i18n.shown(r["last_error"]),
                           when=when(r["next_poll_at"])), icon=":material/error:")


source_status()

sentiment_runs = vocabulary.runs_by_purpose(conn, runs.finished_runs(conn, task="text-classification"))["sentiment"]
model_now = sources.current_model(conn, feed_id)
model_labels = {r["id"]: runs.title(r) for r in sentiment_runs}
model_ids = [0] + list(model_labels)
with st.form("source_add", clear_on_submit=True):
    c1, c2 = st.columns([3, 1])
    location = c1.text_input(_("RSS/Atom URL or server folder"), placeholder="https://example.com/markets.rss",
                             key="source_location")
    interval = c2.number_input(_("Every (seconds)"), min_value=1.0, value=300.0, step=60.0, key="source_interval")
    set_model = st.selectbox(_("Current model: scores what arrives"), model_ids,
                             format_func=lambda i: model_labels.get(i) or _("(the newest run that scored this feed)"),
                             index=model_ids.index(model_now) if model_now in model_ids else 0, key="source_model")
    if st.form_submit_button(_("Add source"), type="primary"):
        with plain_errors():
            sources.set_current_model(conn, feed_id, set_model or None, actor=current_user())
            row = sources.add_source(conn, feed_id, location, interval_s=interval, actor=current_user())
            why = start_worker()
            state["feed_flash"] = (_("Source {source_id} added; it is polled every {seconds} s.", source_id=row["id"],
                                     seconds=f"{row['interval_s']:g}") + why, "warning" if why else "success")
            st.rerun()
if feed_sources:
    c1, c2, c3 = st.columns([2, 1, 1])
    picked_source = c1.selectbox(_("Source"), [r["id"] for r in feed_sources], key="source_pick",
                                 format_func=lambda i: next(f"{i}: {r['location']}" for r in feed_sources if r["id"] == i))
    if c2.button(_("Poll now"), key="source_poll_now"):
        with plain_errors():
            sources.poll_now(conn, picked_source, actor=current_user())
            state["feed_flash"] = (_("Source {source_id} will be polled within seconds.", source_id=picked_source)
                                   + start_worker(), "success")
            st.rerun()
    if c3.button(_("Remove"), key="source_remove"):
        with plain_errors():
            sources.remove_source(conn, picked_source, actor=current_user())
            state["feed_flash"] = (_("Source {source_id} removed; its articles stay in the feed.",
                                     source_id=picked_source), "success")
            st.rerun()

# ---- notification channels -------------------------------------------------------------------------------------

EVENT_CHOICES = {"alerts": N_("Alerts"), "alerts,runs": N_("Alerts and training runs"), "runs": N_("Training runs")}
EVENT_WORDS = {"alerts": N_("alerts"), "alerts,runs": N_("alerts and runs"), "runs": N_("runs")}
if can("notify.channels"):  # channels hold secrets and reach outside: administrators only
    with st.expander(_("Notification channels (for administrators)")):
        st.caption(_("New alerts of every feed, and optionally training runs that end, are pushed to these channels. "
                     "Webhook addresses and passwords are kept secret: only the host is shown."))
        channels = notify.list_channels(conn)
        if channels:
            def last_delivery(c: dict) -> str:
                last_one = c["last_delivery"]
                if not last_one:
                    return _("nothing sent yet")
                text = f"{_(last_one['status'])} {when(last_one['at'])}"
                return text + (f": {i18n.shown(last_one['error'])}" if last_one["error"] else "")

            st.dataframe(shown_table([{
                "name": c["name"], "kind": c["kind"], "goes to": c["target"],
                "events": _(EVENT_WORDS.get(c["events"], c["events"] or "")), "last delivery": last_delivery(c),
            } for c in channels], {"name": N_("name"), "kind": N_("kind"), "goes to": N_("goes to"),
                                   "events": N_("events"), "last delivery": N_("last delivery")}),
                hide_index=True, key="channels_table")
            c1, c2 = st.columns([2, 1])
            test_channel = c1.selectbox(_("Channel"), [c["name"] for c in channels], key="channel_pick")
            if c2.button(_("Send test"), key="channel_test"):
                result = notify.send_test(conn, test_channel, actor=current_user())
                if result["status"] == "sent":
                    st.success(_("Test message sent to '{name}'.", name=test_channel), icon=":material/check_circle:")
                else:
                    st.error(_("The test message to '{name}' failed: {error}", name=test_channel,
                               error=i18n.shown(result["error"])), icon=":material/error:")
            picked = next(c for c in channels if c["name"] == test_channel)
            c1, c2, c3 = st.columns([2, 1, 1])
            event_options = list(EVENT_CHOICES)
            new_events = c1.selectbox(_("Its events"), event_options, key="channel_edit_events",
                                      index=event_options.index(picked["events"])
                                      if picked["events"] in event_options else 0,
                                      format_func=lambda v: _(EVENT_CHOICES[v]))
            on = c2.toggle(_("Sending"), value=picked["enabled"], key="channel_edit_on",
                           help=_("Off: the channel is paused and sent nothing; its log is kept."))
            if c3.button(_("Save channel"), key="channel_edit_save"):
                with plain_errors():
                    notify.edit_channel(conn, test_channel, events=new_events, enabled=on, actor=current_user())
                    events_words = _(EVENT_WORDS[new_events])
                    state["feed_flash"] = (_("Channel '{name}' sends: {events}.", name=md(test_channel),
                                             events=events_words) if on else
                                           _("Channel '{name}' is paused: {events}.", name=md(test_channel),
                                             events=events_words), "success")
                    st.rerun()
            log = notify.deliveries(conn, limit=20)
            if log:
                st.markdown(_("**Delivery log**"))
                st.dataframe(shown_table([{
                    "id": d["id"], "channel": d["channel"], "event": d["event_key"], "status": _(d["status"]),
                    "attempts": d["attempts"], "error": i18n.shown(d["last_error"]),
                    "created": when(d["created_at"]), "sent": when(d["sent_at"]),
                    "next attempt": when(d["next_attempt_at"]),
                } for d in log], {"id": N_("id"), "channel": N_("channel"), "event": N_("event"),
                                  "status": N_("status"), "attempts": N_("attempts"), "error": N_("error"),
                                  "created": N_("created"), "sent": N_("sent"), "next attempt": N_("next attempt")}),
                    hide_index=True, key="delivery_log")
        with st.form("channel_add", clear_on_submit=True):
            c1, c2, c3 = st.columns(3)
            ch_name = c1.text_input(_("Name"), placeholder=_("desk-slack"), key="channel_name")
            ch_kind = c2.selectbox(_("Kind"), ["webhook", "email"], key="channel_kind",
                                   format_func=lambda v: {"webhook": _("webhook"), "email": _("e-mail")}[v])
            ch_events = c3.selectbox(_("Events"), ["alerts", "alerts,runs"], key="channel_events",
                                     format_func=lambda v: _(EVENT_CHOICES[v]))
            c1, c2 = st.columns([3, 1])
            ch_url = c1.text_input(_("Webhook URL"), type="password", key="channel_url")
            ch_style = c2.selectbox(_("Payload"), list(notify.STYLES), key="channel_style")
            c1, c2, c3 = st.columns([2, 1, 1])
            ch_host = c1.text_input(_("SMTP host"), key="channel_host")
            ch_port = c2.number_input(_("Port"), 1, 65535, 587, key="channel_port")
            ch_security = c3.selectbox(_("Security"), ["starttls", "ssl", "none"], key="channel_security")
            c1, c2 = st.columns(2)
            ch_user = c1.text_input(_("SMTP user (optional)"), key="channel_user")
            ch_password = c2.text_input(_("SMTP password"), type="password", key="channel_password")
            c1, c2 = st.columns(2)
            ch_sender = c1.text_input(_("From"), placeholder=_("bellwether@example.com"), key="channel_sender")
            ch_to = c2.text_input(_("To (comma-separated)"), key="channel_to")
            if st.form_submit_button(_("Add channel")):
                with plain_errors():
                    added = notify.add_channel(conn, ch_name, ch_kind, url=ch_url, style=ch_style, host=ch_host,
                                               port=ch_port, username=ch_user, password=ch_password, sender=ch_sender,
                                               to=ch_to, security=ch_security, events=ch_events,
                                               actor=current_user())
                    state["feed_flash"] = (_("Channel '{name}' added: {target}.", name=added["name"],
                                             target=added["target"]) + start_worker(), "success")
                    st.rerun()
