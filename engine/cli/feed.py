"""``python -m engine feed import|score|trends|search|list``, ``alerts``, ``topics set|list|delete|classify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine import db, i18n, paths
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue
from engine.jobs import supervisor
from engine.monitor import alerts
from engine.monitor import feeds
from engine.monitor import poller
from engine.monitor import scoring
from engine.monitor import sources
from engine.monitor import topics
from engine.monitor import trends
from engine.monitor import vocabulary


def register(subparsers) -> None:
    feed = subparsers.add_parser("feed", help=_("import news into a feed, score it, show its sentiment trends"))
    fs = feed.add_subparsers(dest="feed_command", metavar="ACTION", required=True)

    imp = fs.add_parser("import", help=_("import a CSV, XLSX, JSONL, RSS or Atom file into a feed"))
    imp.add_argument("file")
    imp.add_argument("--feed", required=True, help=_("the feed's name (created when new)"))
    for fld in ("time", "title", "body", "source", "url", "topic"):
        imp.add_argument(f"--{fld}-col", dest=f"{fld}_col",
                         help=_("the column holding the {field} (guessed when absent)", field=_(feeds.FIELD_NAMES[fld])))
    imp.add_argument("--tz", help=_("time zone of times written without one (UTC, ET, Europe/London, ...)"))
    imp.add_argument("--format", default="auto", choices=["auto", "csv", "xlsx", "jsonl", "rss"])
    imp.add_argument("--encoding", help=_("utf-8, gb18030, cp1252 (detected when absent)"))
    imp.add_argument("--sheet", help=_("XLSX: the sheet to read"))
    imp.add_argument("--json", action="store_true", help=_("print the import report as JSON"))
    imp.set_defaults(func=cmd_import)

    sc = fs.add_parser("score", help=_("queue a job that scores the feed's articles with a finished run's model"))
    sc.add_argument("--feed", required=True)
    sc.add_argument("--run", required=True, type=int, help=_("the id of a finished training run"))
    sc.add_argument("--text", default="title", choices=["title", "title_body"], help=_("what is scored"))
    sc.add_argument("--precision", default="fast", choices=["fast", "exact"],
                    help=_("fast: bfloat16 on CPUs that compute it natively, float16 on GPUs (about 2x faster; the "
                           "label agrees with float32 for over 99%% of texts); exact: float32, as the run was "
                           "evaluated"))
    sc.add_argument("--no-worker", action="store_true", help=_("only queue; do not start a supervisor"))
    sc.add_argument("--wait", action="store_true", help=_("follow the job; exit 0 only if it succeeds"))
    sc.set_defaults(func=cmd_score)

    tr = fs.add_parser("trends", help=_("volume by sentiment and the net sentiment index per day or week"))
    tr.add_argument("--feed", required=True)
    tr.add_argument("--freq", default="D", type=str.upper, choices=["D", "W"])
    tr.add_argument("--topic")
    tr.add_argument("--source")
    tr.add_argument("--run", type=int, help=_("the model run (default: the newest that scored the feed)"))
    tr.add_argument("--from", dest="start", help=_("first day, YYYY-MM-DD"))
    tr.add_argument("--to", dest="end", help=_("last day, YYYY-MM-DD"))
    tr.add_argument("--window", type=int, help=_("rolling-mean window in periods (default 7 days / 4 weeks)"))
    tr.add_argument("--format", default="csv", choices=["json", "csv"])
    tr.set_defaults(func=cmd_trends)

    se = fs.add_parser("search", help=_("full-text search over a feed's articles"))
    se.add_argument("--feed", required=True)
    se.add_argument("query")
    se.add_argument("--limit", type=int, default=20)
    se.set_defaults(func=cmd_search)

    ls = fs.add_parser("list", help=_("the feeds and their article counts"))
    ls.set_defaults(func=cmd_list)

    src = fs.add_parser("source", help=_("a feed's sources: RSS/Atom URLs and server folders the worker polls"))
    ss = src.add_subparsers(dest="source_command", metavar="ACTION", required=True)
    sa = ss.add_parser("add", help=_("poll a URL or a server folder into the feed on a schedule"))
    sa.add_argument("--feed", required=True, help=_("an existing feed's name"))
    sa.add_argument("location", help=_("an http(s) RSS/Atom URL, or a folder on this server"))
    sa.add_argument("--kind", choices=["rss", "folder"], help=_("guessed: a URL is rss, a path a folder"))
    sa.add_argument("--every", type=float, default=300.0, dest="interval_s", help=_("seconds between polls (300)"))
    sa.add_argument("--run", type=int, help=_("also make this finished run the feed's current model"))
    sa.set_defaults(func=cmd_source_add)
    sl = ss.add_parser("list", help=_("sources with their last and next poll and last error"))
    sl.add_argument("--feed")
    sl.add_argument("--format", default="table", choices=["table", "json"])
    sl.set_defaults(func=cmd_source_list)
    sr = ss.add_parser("remove", help=_("stop polling a source (its articles stay)"))
    sr.add_argument("id", type=int)
    sr.set_defaults(func=cmd_source_remove)
    sp = ss.add_parser("poll-now", help=_("poll a source at once, here (the worker also polls it on schedule)"))
    sp.add_argument("id", type=int)
    sp.set_defaults(func=cmd_source_poll_now)

    sm = fs.add_parser("set-model", help=_("the run that scores what the feed's sources bring in"))
    sm.add_argument("--feed", required=True)
    sm.add_argument("--run", type=int,
                    help=_("a finished sentiment run; leave out to use the newest that scored the feed"))
    sm.set_defaults(func=cmd_set_model)

    pr = fs.add_parser("promote",
                       help=_("make a run the feed's model (kept in its history); --rescore scores the feed"))
    pr.add_argument("--feed", required=True)
    pr.add_argument("--run", type=int, help=_("the run to promote (leave out with --history)"))
    pr.add_argument("--rescore", action="store_true", help=_("also queue scoring of the feed with the run"))
    pr.add_argument("--note", help=_("why (kept in the history)"))
    pr.add_argument("--history", action="store_true", help=_("print the feed's promotions instead"))
    pr.set_defaults(func=cmd_promote)

    al = subparsers.add_parser("alerts", help=_("negative-news surge alerts of a feed (evaluates the rule first)"))
    al.add_argument("--feed", required=True)
    al.add_argument("--run", type=int, help=_("the model run (default: the newest that scored the feed)"))
    al.add_argument("--window-days", type=int)
    al.add_argument("--baseline-days", type=int)
    al.add_argument("--k", type=float)
    al.add_argument("--threshold", type=float, dest="abs_threshold",
                    help=_("absolute negative share (0-1); 0 clears it"))
    al.add_argument("--min-articles", type=int)
    al.add_argument("--ack", type=int, metavar="ALERT_ID", help=_("acknowledge an alert"))
    al.add_argument("--format", default="table", choices=["table", "json"])
    al.set_defaults(func=cmd_alerts)

    tp = subparsers.add_parser("topics",
                               help=_("topics of a feed: rules (keywords or tickers) or a topic classifier run"))
    ts = tp.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    st = ts.add_parser("set", help=_("create or replace a topic rule and re-tag the feed"))
    st.add_argument("--feed", required=True)
    st.add_argument("--name", required=True)
    st.add_argument("--keywords", required=True, help=_("comma-separated keywords or tickers"))
    st.add_argument("--preview", action="store_true",
                    help=_("only show how many articles the keywords catch and some of their headlines; save nothing"))
    st.set_defaults(func=cmd_topics_set)
    tl = ts.add_parser("list", help=_("the feed's topics and their article counts"))
    tl.add_argument("--feed", required=True)
    tl.set_defaults(func=cmd_topics_list)
    td = ts.add_parser("delete", help=_("remove a topic rule"))
    td.add_argument("--feed", required=True)
    td.add_argument("--name", required=True)
    td.set_defaults(func=cmd_topics_delete)
    tu = ts.add_parser("untag", help=_("remove the topics a classifier run put on the feed's articles "
                                       "(column and rule topics stay)"))
    tu.add_argument("--feed", required=True)
    tu.set_defaults(func=cmd_topics_untag)
    tc = ts.add_parser("classify", help=_("queue a job that tags the feed's articles with a topic classifier run"))
    tc.add_argument("--feed", required=True)
    tc.add_argument("--run", required=True, type=int, help=_("the id of a finished run trained on topic labels"))
    tc.add_argument("--text", default="title", choices=["title", "title_body"], help=_("what is classified"))
    tc.add_argument("--no-worker", action="store_true", help=_("only queue; do not start a supervisor"))
    tc.add_argument("--wait", action="store_true", help=_("follow the job; exit 0 only if it succeeds"))
    tc.set_defaults(func=cmd_topics_classify)


def cmd_import(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(_("{path} is not a file. Check the path.", path=args.file))
    mapping = {fld: getattr(args, f"{fld}_col") for fld in feeds.FIELDS}
    conn = db.connect()
    result = feeds.import_file(conn, path.read_bytes(), path.name, args.feed, mapping=mapping, tz=args.tz,
                               format=args.format, encoding=args.encoding, sheet=args.sheet,
                               created_by=paths.default_user())
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
        return 0
    print(result.summary())
    mapped = ", ".join(f"{k}={v}" for k, v in result.mapping.items() if v)
    print(_("Columns: {mapped}. Time zone: {tz}.", mapped=mapped, tz=result.tz))
    for kind, rows in result.examples.items():
        for ex in rows:
            print("  " + _("row {row}: {reason}: {value}", row=ex["row"], reason=_(ex["reason"]),
                           value=repr(ex["value"])))
    return 0


def _feed(conn, name: str) -> dict:
    return feeds.get_feed(conn, name)


def _when(value, tz: str | None) -> str:
    """A stored time in the feed's zone, written the current language's way ('-' when there is none)."""
    return i18n.when(value, tz) if value else "-"


def _default_run(conn, feed_id: int, run_id: int | None) -> int | None:
    if run_id:
        return run_id
    runs = trends.runs_for_feed(conn, feed_id)
    return runs[0]["run_id"] if runs else None


def cmd_score(args) -> int:
    conn = db.connect()
    job_id = scoring.enqueue(conn, args.feed, args.run, created_by=paths.default_user(), text=args.text,
                             precision=args.precision)
    print(_("Queued {job} for feed '{feed}' with run {run_id}.", job=queue.label_of(conn, job_id), feed=args.feed,
            run_id=args.run), file=sys.stderr)
    labels = vocabulary.run_labels(conn, args.run)
    if vocabulary.no_negative_class(labels):
        print(_("Note: run {run_id}'s labels ({labels}) have no negative class, so the Monitor's negative share and "
                "surge alerts would stay at zero.", run_id=args.run, labels=", ".join(labels)), file=sys.stderr)
    if warning := scoring.language_warning(conn, feeds.get_feed(conn, args.feed)["id"], args.run):
        print(_("WARNING: {warning}", warning=warning), file=sys.stderr)
    if not args.no_worker:
        supervisor.ensure_supervisor()
    if args.wait:
        code = follow(conn, job_id)
        print(job_id)
        return code
    print(job_id)
    return 0


def follow(conn, job_id: int, out=None, poll_s: float = 1.0) -> int:
    """Show the score (or topics) job's progress until it finishes; 0 only if it succeeded."""
    def line(p: dict) -> str:
        frac = min(1.0, (p["step"] or 0) / p["total_steps"])
        bar = f"[{'#' * int(frac * 30):<30}] {p['step']}/{p['total_steps']}"
        if p.get("samples_per_s"):
            return bar + " " + _("{rate} articles/s", rate=f"{p['samples_per_s']:.0f}")
        return bar

    def done(job: dict) -> str:
        m = job["metrics"]
        if m.get("purpose") == "topics":
            tags = ", ".join(f"{t} {n}" for t, n in sorted(m.get("topics", {}).items()))
            if tags:
                return _("{job} succeeded: {n} articles tagged with topics ({tags}).", job=queue.label(job, start=True),
                         n=m.get("tagged", 0), tags=tags)
            return _("{job} succeeded: {n} articles tagged with topics.", job=queue.label(job, start=True),
                     n=m.get("tagged", 0))
        return _("{job} succeeded: {n} articles scored, {alerts} alerts.", job=queue.label(job, start=True),
                 n=m.get("scored", 0), alerts=m.get("alerts", 0))

    return queue.follow(conn, job_id, "score", line, done, out=out, poll_s=poll_s)


def cmd_trends(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    f = trends.Filters(feed["id"], _default_run(conn, feed["id"], args.run), args.start, args.end, args.topic, args.source)
    table = trends.trend_table(conn, f, args.freq, args.window)
    if args.format == "json":
        print(json.dumps({"feed": feed["name"], "freq": args.freq, "model_run": f.run_id, "filters": f.describe(),
                          "rows": json.loads(table.to_json(orient="records"))}, indent=2, ensure_ascii=False))
    else:
        print("# " + _("feed {feed}, {filters}", feed=feed["name"], filters=f.describe()), file=sys.stderr)
        sys.stdout.write(table.to_csv(index=False))
    return 0


def cmd_search(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    hits = feeds.search(conn, feed["id"], args.query, args.limit)
    for h in hits:  # the publication time in the feed's zone
        print(f"{h['id']:>8}  {_when(h['published_at'], feed['tz'])}  {h['title']}")
    if not hits:
        print(_("No articles match."), file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    conn = db.connect()
    rows = feeds.list_feeds(conn)
    if not rows:
        print(_("No feeds yet. Import one with `python -m engine feed import FILE --feed NAME`."))
    for r in rows:
        print(_("{name} {n_articles} articles  {n_imports} imports  time zone {tz}  created {created}",
                name=f"{r['name']:<30}", n_articles=f"{r['n_articles']:>9}", n_imports=f"{r['n_imports']:>4}",
                tz=r["tz"], created=_when(r["created_at"], r["tz"])))
    return 0


def cmd_alerts(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    if args.ack:
        alerts.acknowledge(conn, args.ack, paths.default_user())
        print(_("Alert {alert_id} acknowledged.", alert_id=args.ack), file=sys.stderr)
    changes = {k: getattr(args, k) for k in ("window_days", "baseline_days", "k", "abs_threshold", "min_articles")
               if getattr(args, k) is not None}
    if "abs_threshold" in changes and changes["abs_threshold"] == 0:
        changes["abs_threshold"] = None
    if changes:
        alerts.set_rule(conn, feed["id"], **changes)
    run_id = _default_run(conn, feed["id"], args.run)
    if run_id is None:
        raise UserError(_("Feed '{feed}' has not been scored yet. Score it first: "
                          "python -m engine feed score --feed {feed} --run RUN_ID --wait", feed=feed["name"]))
    alerts.evaluate(conn, feed["id"], run_id)
    rows = alerts.list_alerts(conn, feed["id"], run_id)
    if args.format == "json":
        print(json.dumps({"feed": feed["name"], "model_run": run_id, "rule": alerts.get_rule(conn, feed["id"]),
                          "alerts": [{k: v for k, v in r.items() if not k.endswith("_json")} for r in rows]},
                         indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(_("No alerts for feed '{feed}' with run {run_id}.", feed=feed["name"], run_id=run_id))
    for r in rows:
        mag = _("{sd} sd", sd=f"{r['magnitude']:.1f}") if r.get("magnitude") is not None else "-"
        values = dict(alert_id=f"{r['id']:>5}", day=r["window_end"],
                      topic=f"{r['topic'] or _('(all articles)'):<20}", share=i18n.percent(r["negative_share"]),
                      baseline=i18n.percent(r["baseline_mean"] or 0), magnitude=mag, n=r["n_articles"])
        if r.get("acknowledged_at"):
            print(_("{alert_id}  {day}  {topic} negative {share} vs {baseline}  {magnitude}  n={n} (acknowledged by "
                    "{who})", who=r["acknowledged_by"], **values))
        else:
            print(_("{alert_id}  {day}  {topic} negative {share} vs {baseline}  {magnitude}  n={n}", **values))
    return 0


def cmd_topics_set(args) -> int:
    conn = db.connect()
    if args.preview:  # what saving would tag, from the same matching; nothing is stored
        feed = _feed(conn, args.feed)
        found = feeds.preview_topic_rule(conn, feed["id"], args.keywords)
        if not found["keywords"]:
            raise UserError(_("Give at least one keyword or ticker for the topic '{name}', separated by commas.",
                              name=args.name))
        print(_("Preview of topic '{name}' ({keywords}): {n} of the {total} articles in feed '{feed}' would be "
                "tagged. Nothing was saved.", name=args.name, keywords=", ".join(found["keywords"]), n=found["matches"],
                total=found["total"], feed=feed["name"]))
        for a in found["sample"]:
            print(f"  {_when(a['published_at'], feed['tz'])}  {a['title']}")
        return 0
    info = feeds.set_topic_rule(conn, args.feed, args.name, args.keywords)
    print(_("Topic '{name}' ({keywords}): {n} articles tagged by rules in feed '{feed}'.", name=info["name"],
            keywords=", ".join(info["keywords"]), n=info["matches"], feed=args.feed))
    return 0


def cmd_topics_list(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    rules = {r.name: r.keywords for r in feeds.topic_rules(conn, feed["id"])}
    for t in feeds.topics(conn, feed["id"]):
        kw = f"  [{', '.join(rules[t['topic']])}]" if t["topic"] in rules else ""
        print(f"{t['topic']:<30} {t['n_articles']:>8}{kw}")
    return 0


def cmd_topics_untag(args) -> int:
    conn = db.connect()
    removed = topics.remove_model_topics(conn, args.feed)
    print(_("Removed {n} model topics from feed '{feed}'. Column and rule topics stay.", n=i18n.number(removed),
            feed=args.feed))
    return 0


def cmd_topics_delete(args) -> int:
    conn = db.connect()
    feeds.delete_topic_rule(conn, args.feed, args.name)
    print(_("Topic rule '{name}' removed.", name=args.name))
    return 0


def cmd_topics_classify(args) -> int:
    conn = db.connect()
    job_id = topics.enqueue(conn, args.feed, args.run, created_by=paths.default_user(), text=args.text)
    print(_("Queued {job} for feed '{feed}' with run {run_id}.", job=queue.label_of(conn, job_id), feed=args.feed,
            run_id=args.run), file=sys.stderr)
    if not args.no_worker:
        supervisor.ensure_supervisor()
    code = follow(conn, job_id) if args.wait else 0
    print(job_id)
    return code


def _source_line(row: dict, tz: str | None) -> str:
    """One source as a line, its times in its feed's zone and its last error in the current language."""
    if row.get("last_error"):
        state = _("error ({n} in a row): {error}", n=row["error_count"],
                  error=i18n.shown(row["last_error"]))
    else:
        state = _("ok")
    return _("{source_id}  {feed}  {kind}  {location}  every {seconds}s  last {last}  next {next}  {n} imported  "
             "{state}", source_id=f"{row['id']:>4}", feed=row["feed_name"], kind=row["kind"], location=row["location"],
             seconds=f"{row['interval_s']:g}",
             last=_when(row.get("last_poll_at"), tz) if row.get("last_poll_at") else _("never"),
             next=_when(row.get("next_poll_at"), tz), n=row.get("n_imported") or 0, state=state)


def _zones(conn) -> dict[int, str]:
    return {f["id"]: f["tz"] for f in feeds.list_feeds(conn)}


def cmd_source_add(args) -> int:
    conn = db.connect()
    row = sources.add_source(conn, args.feed, args.location, kind=args.kind, interval_s=args.interval_s,
                             run_id=args.run, created_by=paths.default_user())
    print(_source_line(row, _zones(conn).get(row["feed_id"])))
    model = sources.current_model(conn, row["feed_id"])
    print(_("Scored by run {run_id} as articles arrive.", run_id=model) if model else
          _("No model yet: articles arrive unscored until `python -m engine feed set-model --feed NAME --run ID`."))
    if not supervisor.supervisor_alive(conn):
        print(_("Start the worker (`python -m engine worker`, or open the dashboard) so that the source is polled."))
    return 0


def cmd_source_list(args) -> int:
    conn = db.connect()
    rows = sources.list_sources(conn, args.feed)
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return 0
    if not rows:
        print(_("No sources. Add one with `python -m engine feed source add --feed NAME URL`."))
    zones = _zones(conn)
    for row in rows:
        print(_source_line(row, zones.get(row["feed_id"])))
    return 0


def cmd_source_remove(args) -> int:
    conn = db.connect()
    sources.remove_source(conn, args.id)
    print(_("Source {source_id} removed; the articles it brought in stay in the feed.", source_id=args.id))
    return 0


def cmd_source_poll_now(args) -> int:
    conn = db.connect()
    result = poller.poll_source(conn, args.id)
    poller.ensure_scoring(conn)
    if result.status == "error":
        print(_("error: {error}", error=i18n.shown(result.error)), file=sys.stderr)
        return 1
    print(_("Source {source_id}: {n_new} new articles, {n_duplicate} already in the feed.", source_id=args.id,
            n_new=result.n_new, n_duplicate=result.n_duplicate))
    return 0


def cmd_set_model(args) -> int:
    conn = db.connect()
    sources.set_current_model(conn, args.feed, args.run)
    feed_id = feeds.get_feed(conn, args.feed)["id"]
    model = sources.current_model(conn, feed_id)
    print(_("Feed '{feed}': new articles are scored by run {run_id}.", feed=args.feed, run_id=model) if model else
          _("Feed '{feed}' has no model yet: score it once, or set one with --run.", feed=args.feed))
    return 0


def cmd_promote(args) -> int:
    from engine.review import promote  # the review loop sits above the monitor; only this command needs it

    conn = db.connect()
    if args.history:
        tz = feeds.get_feed(conn, args.feed)["tz"]
        rows = promote.history(conn, args.feed)
        if not rows:
            print(_("Feed '{feed}' has no promotions yet.", feed=args.feed))
        for h in rows:
            values = dict(when=_when(h["promoted_at"], tz), run_id=h["run_id"], name=h.get("run_name") or "-",
                          who=h["promoted_by"], previous=h["previous_run_id"] or _("none"))
            if h.get("note"):
                print(_("{when}  run {run_id} ({name}) by {who}, replacing {previous}: {note}", note=h["note"],
                        **values))
            else:
                print(_("{when}  run {run_id} ({name}) by {who}, replacing {previous}", **values))
        return 0
    if args.run is None:
        raise UserError(_("Give the run to promote with --run ID (or --history to list the promotions)."))
    row = promote.promote(conn, args.feed, args.run, rescore=args.rescore, note=args.note)
    print(_("Feed '{feed}': run {run_id} is now its model (was {previous}).", feed=args.feed, run_id=args.run,
            previous=row["previous_run_id"] or _("none")))
    if row.get("rescore_job_id"):
        print(_("Queued {job}.", job=queue.label_of(conn, row["rescore_job_id"])))
        supervisor.ensure_supervisor()
    return 0
