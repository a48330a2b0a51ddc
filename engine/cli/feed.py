"""``python -m engine feed import|score|trends|search|list``, ``alerts``, ``topics set|list|delete|classify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine import db, paths
from engine.errors import UserError
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
    feed = subparsers.add_parser("feed", help="import news into a feed, score it, show its sentiment trends")
    fs = feed.add_subparsers(dest="feed_command", metavar="ACTION", required=True)

    imp = fs.add_parser("import", help="import a CSV, XLSX, JSONL, RSS or Atom file into a feed")
    imp.add_argument("file")
    imp.add_argument("--feed", required=True, help="the feed's name (created when new)")
    for fld in ("time", "title", "body", "source", "url", "topic"):
        imp.add_argument(f"--{fld}-col", dest=f"{fld}_col", help=f"the column holding the {fld} (guessed when absent)")
    imp.add_argument("--tz", help="time zone of times written without one (UTC, ET, Europe/London, ...)")
    imp.add_argument("--format", default="auto", choices=["auto", "csv", "xlsx", "jsonl", "rss"])
    imp.add_argument("--encoding", help="utf-8, gb18030, cp1252 (detected when absent)")
    imp.add_argument("--sheet", help="XLSX: the sheet to read")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.set_defaults(func=cmd_import)

    sc = fs.add_parser("score", help="queue a job that scores the feed's articles with a finished run's model")
    sc.add_argument("--feed", required=True)
    sc.add_argument("--run", required=True, type=int, help="the id of a finished training run")
    sc.add_argument("--text", default="title", choices=["title", "title_body"], help="what is scored")
    sc.add_argument("--precision", default="fast", choices=["fast", "exact"],
                    help="fast: bfloat16 on CPUs that compute it natively, float16 on GPUs (about 2x faster; the "
                         "label agrees with float32 for over 99%% of texts); exact: float32, as the run was evaluated")
    sc.add_argument("--no-worker", action="store_true", help="only queue; do not start a supervisor")
    sc.add_argument("--wait", action="store_true", help="follow the job; exit 0 only if it succeeds")
    sc.set_defaults(func=cmd_score)

    tr = fs.add_parser("trends", help="volume by sentiment and the net sentiment index per day or week")
    tr.add_argument("--feed", required=True)
    tr.add_argument("--freq", default="D", type=str.upper, choices=["D", "W"])
    tr.add_argument("--topic")
    tr.add_argument("--source")
    tr.add_argument("--run", type=int, help="the model run (default: the newest that scored the feed)")
    tr.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    tr.add_argument("--to", dest="end", help="last day, YYYY-MM-DD")
    tr.add_argument("--window", type=int, help="rolling-mean window in periods (default 7 days / 4 weeks)")
    tr.add_argument("--format", default="csv", choices=["json", "csv"])
    tr.set_defaults(func=cmd_trends)

    se = fs.add_parser("search", help="full-text search over a feed's articles")
    se.add_argument("--feed", required=True)
    se.add_argument("query")
    se.add_argument("--limit", type=int, default=20)
    se.set_defaults(func=cmd_search)

    ls = fs.add_parser("list", help="the feeds and their article counts")
    ls.set_defaults(func=cmd_list)

    src = fs.add_parser("source", help="a feed's sources: RSS/Atom URLs and server folders the worker polls")
    ss = src.add_subparsers(dest="source_command", metavar="ACTION", required=True)
    sa = ss.add_parser("add", help="poll a URL or a server folder into the feed on a schedule")
    sa.add_argument("--feed", required=True, help="an existing feed's name")
    sa.add_argument("location", help="an http(s) RSS/Atom URL, or a folder on this server")
    sa.add_argument("--kind", choices=["rss", "folder"], help="guessed: a URL is rss, a path a folder")
    sa.add_argument("--every", type=float, default=300.0, dest="interval_s", help="seconds between polls (300)")
    sa.add_argument("--run", type=int, help="also make this finished run the feed's current model")
    sa.set_defaults(func=cmd_source_add)
    sl = ss.add_parser("list", help="sources with their last and next poll and last error")
    sl.add_argument("--feed")
    sl.add_argument("--format", default="table", choices=["table", "json"])
    sl.set_defaults(func=cmd_source_list)
    sr = ss.add_parser("remove", help="stop polling a source (its articles stay)")
    sr.add_argument("id", type=int)
    sr.set_defaults(func=cmd_source_remove)
    sp = ss.add_parser("poll-now", help="poll a source at once, here (the worker also polls it on schedule)")
    sp.add_argument("id", type=int)
    sp.set_defaults(func=cmd_source_poll_now)

    sm = fs.add_parser("set-model", help="the run that scores what the feed's sources bring in")
    sm.add_argument("--feed", required=True)
    sm.add_argument("--run", type=int, help="a finished sentiment run; leave out to use the newest that scored the feed")
    sm.set_defaults(func=cmd_set_model)

    al = subparsers.add_parser("alerts", help="negative-news surge alerts of a feed (evaluates the rule first)")
    al.add_argument("--feed", required=True)
    al.add_argument("--run", type=int, help="the model run (default: the newest that scored the feed)")
    al.add_argument("--window-days", type=int)
    al.add_argument("--baseline-days", type=int)
    al.add_argument("--k", type=float)
    al.add_argument("--threshold", type=float, dest="abs_threshold", help="absolute negative share (0-1); 0 clears it")
    al.add_argument("--min-articles", type=int)
    al.add_argument("--ack", type=int, metavar="ALERT_ID", help="acknowledge an alert")
    al.add_argument("--format", default="table", choices=["table", "json"])
    al.set_defaults(func=cmd_alerts)

    tp = subparsers.add_parser("topics", help="topics of a feed: rules (keywords or tickers) or a topic classifier run")
    ts = tp.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    st = ts.add_parser("set", help="create or replace a topic rule and re-tag the feed")
    st.add_argument("--feed", required=True)
    st.add_argument("--name", required=True)
    st.add_argument("--keywords", required=True, help="comma-separated keywords or tickers")
    st.set_defaults(func=cmd_topics_set)
    tl = ts.add_parser("list", help="the feed's topics and their article counts")
    tl.add_argument("--feed", required=True)
    tl.set_defaults(func=cmd_topics_list)
    td = ts.add_parser("delete", help="remove a topic rule")
    td.add_argument("--feed", required=True)
    td.add_argument("--name", required=True)
    td.set_defaults(func=cmd_topics_delete)
    tu = ts.add_parser("untag", help="remove the topics a classifier run put on the feed's articles "
                                     "(column and rule topics stay)")
    tu.add_argument("--feed", required=True)
    tu.set_defaults(func=cmd_topics_untag)
    tc = ts.add_parser("classify", help="queue a job that tags the feed's articles with a topic classifier run")
    tc.add_argument("--feed", required=True)
    tc.add_argument("--run", required=True, type=int, help="the id of a finished run trained on topic labels")
    tc.add_argument("--text", default="title", choices=["title", "title_body"], help="what is classified")
    tc.add_argument("--no-worker", action="store_true", help="only queue; do not start a supervisor")
    tc.add_argument("--wait", action="store_true", help="follow the job; exit 0 only if it succeeds")
    tc.set_defaults(func=cmd_topics_classify)


def cmd_import(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{args.file} is not a file. Check the path.")
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
    print(f"Columns: {mapped}. Time zone: {result.tz}.")
    for kind, rows in result.examples.items():
        for ex in rows:
            print(f"  row {ex['row']}: {ex['reason']}: {ex['value']!r}")
    return 0


def _feed(conn, name: str) -> dict:
    return feeds.get_feed(conn, name)


def _default_run(conn, feed_id: int, run_id: int | None) -> int | None:
    if run_id:
        return run_id
    runs = trends.runs_for_feed(conn, feed_id)
    return runs[0]["run_id"] if runs else None


def cmd_score(args) -> int:
    conn = db.connect()
    job_id = scoring.enqueue(conn, args.feed, args.run, created_by=paths.default_user(), text=args.text,
                             precision=args.precision)
    print(f"Queued score job {job_id} for feed '{args.feed}' with run {args.run}.", file=sys.stderr)
    if warning := vocabulary.no_negative_class(vocabulary.run_labels(conn, args.run)):
        print(f"Note: run {args.run}'s {warning}.", file=sys.stderr)
    if warning := scoring.language_warning(conn, feeds.get_feed(conn, args.feed)["id"], args.run):
        print(f"WARNING: {warning}", file=sys.stderr)
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
        rate = f" {p['samples_per_s']:.0f} articles/s" if p.get("samples_per_s") else ""
        return f"[{'#' * int(frac * 30):<30}] {p['step']}/{p['total_steps']}{rate}"

    def done(job: dict) -> str:
        m = job["metrics"]
        if m.get("purpose") == "topics":
            tags = ", ".join(f"{t} {n}" for t, n in sorted(m.get("topics", {}).items()))
            return f"Job {job_id} succeeded: {m.get('tagged', 0)} articles tagged with topics" + (f" ({tags})" if tags else "") + "."
        return f"Job {job_id} succeeded: {m.get('scored', 0)} articles scored, {m.get('alerts', 0)} alerts."

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
        print(f"# feed {feed['name']}, {f.describe()}", file=sys.stderr)
        sys.stdout.write(table.to_csv(index=False))
    return 0


def cmd_search(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    hits = feeds.search(conn, feed["id"], args.query, args.limit)
    for h in hits:
        print(f"{h['id']:>8}  {h['day']}  {h['title']}")
    if not hits:
        print("No articles match.", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    conn = db.connect()
    rows = feeds.list_feeds(conn)
    if not rows:
        print("No feeds yet. Import one with `python -m engine feed import FILE --feed NAME`.")
    for r in rows:
        print(f"{r['name']:<30} {r['n_articles']:>9} articles  {r['n_imports']:>4} imports  tz {r['tz']}")
    return 0


def cmd_alerts(args) -> int:
    conn = db.connect()
    feed = _feed(conn, args.feed)
    if args.ack:
        alerts.acknowledge(conn, args.ack, paths.default_user())
        print(f"Alert {args.ack} acknowledged.", file=sys.stderr)
    changes = {k: getattr(args, k) for k in ("window_days", "baseline_days", "k", "abs_threshold", "min_articles")
               if getattr(args, k) is not None}
    if "abs_threshold" in changes and changes["abs_threshold"] == 0:
        changes["abs_threshold"] = None
    if changes:
        alerts.set_rule(conn, feed["id"], **changes)
    run_id = _default_run(conn, feed["id"], args.run)
    if run_id is None:
        raise UserError(f"Feed '{feed['name']}' has not been scored yet. Score it first: "
                        f"python -m engine feed score --feed {feed['name']} --run RUN_ID --wait")
    alerts.evaluate(conn, feed["id"], run_id)
    rows = alerts.list_alerts(conn, feed["id"], run_id)
    if args.format == "json":
        print(json.dumps({"feed": feed["name"], "model_run": run_id, "rule": alerts.get_rule(conn, feed["id"]),
                          "alerts": [{k: v for k, v in r.items() if not k.endswith("_json")} for r in rows]},
                         indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(f"No alerts for feed '{feed['name']}' with run {run_id}.")
    for r in rows:
        ack = f" (acknowledged by {r['acknowledged_by']})" if r.get("acknowledged_at") else ""
        mag = f"{r['magnitude']:.1f} sd" if r.get("magnitude") is not None else "-"
        print(f"{r['id']:>5}  {r['window_end']}  {r['topic'] or '(all articles)':<20} negative {r['negative_share']:.0%} "
              f"vs {(r['baseline_mean'] or 0):.0%}  {mag}  n={r['n_articles']}{ack}")
    return 0


def cmd_topics_set(args) -> int:
    conn = db.connect()
    info = feeds.set_topic_rule(conn, args.feed, args.name, args.keywords)
    print(f"Topic '{info['name']}' ({', '.join(info['keywords'])}): {info['matches']} articles tagged by rules "
          f"in feed '{args.feed}'.")
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
    print(f"Removed {removed:,} model topics from feed '{args.feed}'. Column and rule topics stay.")
    return 0


def cmd_topics_delete(args) -> int:
    conn = db.connect()
    feeds.delete_topic_rule(conn, args.feed, args.name)
    print(f"Topic rule '{args.name}' removed.")
    return 0


def cmd_topics_classify(args) -> int:
    conn = db.connect()
    job_id = topics.enqueue(conn, args.feed, args.run, created_by=paths.default_user(), text=args.text)
    print(f"Queued topics job {job_id} for feed '{args.feed}' with run {args.run}.", file=sys.stderr)
    if not args.no_worker:
        supervisor.ensure_supervisor()
    code = follow(conn, job_id) if args.wait else 0
    print(job_id)
    return code


def _source_line(row: dict) -> str:
    state = f"error ({row['error_count']} in a row): {row['last_error']}" if row.get("last_error") else "ok"
    return (f"{row['id']:>4}  {row['feed_name']}  {row['kind']}  {row['location']}  every {row['interval_s']:g}s  "
            f"last {row.get('last_poll_at') or 'never'}  next {row.get('next_poll_at') or '-'}  "
            f"{row.get('n_imported') or 0} imported  {state}")


def cmd_source_add(args) -> int:
    conn = db.connect()
    row = sources.add_source(conn, args.feed, args.location, kind=args.kind, interval_s=args.interval_s,
                             run_id=args.run, created_by=paths.default_user())
    print(_source_line(row))
    model = sources.current_model(conn, row["feed_id"])
    print(f"Scored by run {model} as articles arrive." if model else
          "No model yet: articles arrive unscored until `python -m engine feed set-model --feed NAME --run ID`.")
    if not supervisor.supervisor_alive(conn):
        print("Start the worker (`python -m engine worker`, or open the dashboard) so that the source is polled.")
    return 0


def cmd_source_list(args) -> int:
    conn = db.connect()
    rows = sources.list_sources(conn, args.feed)
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return 0
    if not rows:
        print("No sources. Add one with `python -m engine feed source add --feed NAME URL`.")
    for row in rows:
        print(_source_line(row))
    return 0


def cmd_source_remove(args) -> int:
    conn = db.connect()
    sources.remove_source(conn, args.id)
    print(f"Source {args.id} removed; the articles it brought in stay in the feed.")
    return 0


def cmd_source_poll_now(args) -> int:
    conn = db.connect()
    result = poller.poll_source(conn, args.id)
    poller.ensure_scoring(conn)
    if result.status == "error":
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    print(f"Source {args.id}: {result.n_new} new articles, {result.n_duplicate} already in the feed.")
    return 0


def cmd_set_model(args) -> int:
    conn = db.connect()
    sources.set_current_model(conn, args.feed, args.run)
    feed_id = feeds.get_feed(conn, args.feed)["id"]
    model = sources.current_model(conn, feed_id)
    print(f"Feed '{args.feed}': new articles are scored by run {model}." if model else
          f"Feed '{args.feed}' has no model yet: score it once, or set one with --run.")
    return 0
