"""Monitor benchmark: build a feed of 1,000,000 articles in a temporary BELLWETHER_HOME and time what the Monitor does.

Reports the import rate (CSV exports appended in daily-export-sized files, with blank rows, unreadable times and
duplicates mixed in, topic rules applied on import), the Monitor page's queries (filters, volume, net index, heatmap,
drill-down, alert evaluation over the whole history, search, export), and the memory of a dashboard-like process
(a fresh process rendering the Monitor page through Streamlit's AppTest over that store).

    python bench/monitor_bench.py            # 1,000,000 articles
    python bench/monitor_bench.py --quick    # 100,000
    python bench/monitor_bench.py --rows 20000 --json
    python -m bench monitor [--quick]  # the same, through the engine's bench command

Scores are written directly (random labels, a fixed seed) for a stand-in run: model inference speed is measured by
``python -m bench score``, not here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.runner import peak_rss_mb  # noqa: E402 - after the path is set for `python bench/monitor_bench.py`

SIZES = {"tiny": 5_000, "quick": 100_000, "full": 1_000_000}
FILES = {"tiny": 2, "quick": 2, "full": 4}
COMPANIES = ["Apple", "Microsoft", "Tesla", "Barclays", "HSBC", "JPMorgan", "Shell", "BP", "Amazon", "Alibaba",
             "Tencent", "Boeing", "Airbus", "Nvidia", "Intel", "Pfizer", "Moderna", "Disney", "Netflix", "Ford"]
TICKERS = ["AAPL", "MSFT", "TSLA", "BARC", "HSBA", "JPM", "SHEL", "BP", "AMZN", "BABA", "0700", "BA", "AIR", "NVDA",
           "INTC", "PFE", "MRNA", "DIS", "NFLX", "F"]
VERBS = ["shares rise after", "shares slump on", "beats forecasts with", "warns of", "cuts jobs amid", "raises guidance on",
         "faces probe over", "announces buyback after", "misses estimates as", "upgraded by analysts after"]
OBJECTS = ["strong quarter", "weak demand", "supply chain problems", "record sales", "regulatory pressure",
           "rate cut hopes", "falling margins", "new product launch", "currency swings", "lawsuit"]
SOURCES = ["Reuters", "CNBC", "Guardian", "Bloomberg", "FT", "WSJ", "AP", "MarketWatch", "Barron's", "Xinhua"]


def make_files(n_rows: int, n_files: int, seed: int = 0) -> list[tuple[str, bytes, dict]]:
    """CSV exports totalling ``n_rows`` data rows (about 1% blank, 0.3% unreadable time, 1% duplicates)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2019-01-01", tz="UTC").value // 10**9
    span = 2 * 365 * 86400
    per_file = n_rows // n_files
    out = []
    for k in range(n_files):
        n = per_file if k < n_files - 1 else n_rows - per_file * (n_files - 1)
        # Files cover consecutive periods, as daily exports appended over time do.
        secs = np.sort(rng.integers(start + k * span // n_files, start + (k + 1) * span // n_files, n))
        stamps = pd.to_datetime(secs, unit="s", utc=True)
        kind = rng.random(n)
        iso = stamps.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_numpy(dtype=object)
        et = stamps.tz_convert("America/New_York")
        # CNBC style for a fifth of the rows (minute precision: many repeats, as in real exports).
        cnbc = (et.strftime(" %-I:%M  %p ET %a, %-d %B %Y")).to_numpy(dtype=object)
        epoch = secs.astype(str).astype(object)
        times = np.where(kind < 0.7, iso, np.where(kind < 0.9, cnbc, epoch))
        bad = rng.random(n) < 0.003
        times[bad] = "sometime soon"
        comp = rng.integers(0, len(COMPANIES), n)
        titles = (pd.Series(np.array(COMPANIES, dtype=object)[comp]) + " " + pd.Series(np.array(VERBS, dtype=object)[rng.integers(0, len(VERBS), n)])
                  + " " + pd.Series(np.array(OBJECTS, dtype=object)[rng.integers(0, len(OBJECTS), n)])
                  + " (" + pd.Series(np.arange(n) + k * per_file).astype(str) + ")")
        bodies = titles.str.lower() + ", people familiar with the matter said; analysts expect more volatility."
        urls = "https://news.example/" + pd.Series(np.arange(n) + k * per_file).astype(str)
        urls[rng.random(n) < 0.2] = ""
        frame = pd.DataFrame({
            "published": times, "headline": titles, "description": bodies,
            "source": np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), n)],
            "link": urls, "ticker": np.array(TICKERS, dtype=object)[comp],
        })
        dups = frame.sample(frac=0.01, random_state=seed + k)
        blanks = pd.DataFrame([[""] * frame.shape[1]] * int(n * 0.01), columns=frame.columns)
        frame = pd.concat([frame, dups, blanks], ignore_index=True)
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        out.append((f"export-{k + 1}.csv", buf.getvalue().encode("utf-8"),
                    {"rows": len(frame), "blank": len(blanks), "dup": len(dups), "bad_time": int(bad.sum())}))
    return out


def _timed(fn, repeat: int = 1):
    best, value = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return round(best, 3), value


def _stand_in_run(conn, home: Path) -> int:
    from engine import db

    model = home / "stand-in-model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps({"id2label": {"0": "negative", "1": "neutral", "2": "positive"}}))
    return conn["jobs"].insert({"kind": "train", "status": "succeeded", "task": "text-classification",
                                "created_at": db.now(), "finished_at": db.now(), "model_dir": str(model),
                                "name": "stand-in", "metrics_json": "{}"}).last_pk


PAGE_SCRIPT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=600)
at.run()
at.switch_page("views/monitor.py")
t1 = time.perf_counter()
at.run()
t2 = time.perf_counter()
at.radio(key="mon_freq").set_value("W").run()
t3 = time.perf_counter()
at.radio(key="mon_freq").set_value("D").run()
t4 = time.perf_counter()
err = [str(e.value) for e in at.exception]
status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmHWM", "VmRSS")))
mb = lambda key: round(int(status[key].split()[0]) / 1024, 1)  # VmHWM: this process's own peak (reset at exec)
print(json.dumps({"first_render_s": round(t2 - t1, 2), "weekly_rerun_s": round(t3 - t2, 2),
                  "daily_again_cached_s": round(t4 - t3, 2), "peak_rss_mb": mb("VmHWM"), "rss_end_mb": mb("VmRSS"),
                  "charts": len(at.get("plotly_chart")), "exceptions": err, "metric_articles": at.metric[0].value}))
"""


def dashboard_process(home: Path) -> dict:
    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_USER": "bench"}
    env.pop("BELLWETHER_PASSWORD", None)
    out = subprocess.run([sys.executable, "-c", PAGE_SCRIPT, str(ROOT / "streamlit_app.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(mode: str = "full", rows: int | None = None, keep: bool = False, page: bool = True, log=sys.stderr) -> dict:
    from engine import db, paths
    from engine.monitor import alerts
    from engine.monitor import feeds
    from engine.monitor import trends

    n_rows = rows or SIZES[mode]
    n_files = FILES.get(mode, 4) if rows is None else max(1, min(4, rows // 100_000 or 1))
    result: dict = {"articles_target": n_rows, "files": n_files}
    t = time.perf_counter()
    files = make_files(n_rows, n_files)
    result["generate_s"] = round(time.perf_counter() - t, 1)
    result["file_mb"] = round(sum(len(d) for _, d, _ in files) / 1e6, 1)
    with paths.temporary_home("bellwether-monitor-bench-", keep) as home:
        conn = db.connect()
        imports = []
        total_rows = 0
        t_all = time.perf_counter()
        for i, (name, data, truth) in enumerate(files):
            t = time.perf_counter()
            r = feeds.import_file(conn, data, name, "bench", tz="UTC", created_by="bench")
            dt = time.perf_counter() - t
            total_rows += truth["rows"]
            imports.append({"file": name, "rows": truth["rows"], "seconds": round(dt, 1),
                            "rows_per_s": round(truth["rows"] / dt), "new": r.n_new, "duplicate": r.n_duplicate,
                            "rejected": r.n_rejected, "blank": r.n_blank})
            print(f"imported {name}: {imports[-1]}", file=log, flush=True)
            if i == 0:
                t = time.perf_counter()
                for topic, words in [("Banks", "Barclays, HSBC, JPMorgan, bank"), ("Energy", "Shell, BP, oil"),
                                     ("Tech", "Apple, Microsoft, Nvidia, Intel, AAPL")]:
                    feeds.set_topic_rule(conn, "bench", topic, words)
                result["topic_rules_retag_s"] = round(time.perf_counter() - t, 1)
        import_s = time.perf_counter() - t_all
        feed_id = feeds.get_feed(conn, "bench")["id"]
        n_articles = conn.execute("SELECT COUNT(*) FROM articles WHERE feed_id = ?", [feed_id]).fetchone()[0]
        result.update(imports=imports, articles=n_articles, import_total_s=round(import_s, 1),
                      import_rows_per_s=round(total_rows / import_s),
                      import_articles_per_s=round(n_articles / import_s))

        run_id = _stand_in_run(conn, home)
        t = time.perf_counter()
        with db.transaction(conn):
            conn.execute(
                "INSERT INTO scores (article_id, run_id, label, confidence, negative, probs_json, scored_at) "
                "SELECT id, ?, CASE WHEN abs(random()) % 100 < 25 THEN 'negative' WHEN abs(random()) % 100 < 50 "
                "THEN 'neutral' ELSE 'positive' END, 0.8, 0.0, '{}', ? FROM articles WHERE feed_id = ?",
                [run_id, db.now(), feed_id])
            conn.execute("UPDATE scores SET negative = CASE WHEN label = 'negative' THEN 0.5 + (abs(random()) % 500) / 1000.0 "
                         "ELSE (abs(random()) % 300) / 1000.0 END WHERE run_id = ?", [run_id])
        result["write_stand_in_scores_s"] = round(time.perf_counter() - t, 1)
        conn.execute("ANALYZE")

        first, last = trends.date_range(conn, feed_id)
        f = trends.Filters(feed_id, run_id, first, last)
        last_month = trends.Filters(feed_id, run_id, (pd.Timestamp(last) - pd.Timedelta(days=30)).strftime("%Y-%m-%d"), last)
        queries = {}
        queries["date_range"], _ = _timed(lambda: trends.date_range(conn, feed_id))
        queries["topic_names"], topics = _timed(lambda: trends.topic_names(conn, feed_id))
        queries["sources"], _ = _timed(lambda: trends.sources(conn, feed_id))
        queries["runs_for_feed"], _ = _timed(lambda: trends.runs_for_feed(conn, feed_id))
        queries["count_all"], _ = _timed(lambda: trends.count(conn, f))
        queries["volume_daily_all"], vol = _timed(lambda: trends.volume(conn, f, "D"))
        queries["volume_weekly_all"], _ = _timed(lambda: trends.volume(conn, f, "W"))
        queries["net_daily_all"], _ = _timed(lambda: trends.net_sentiment(conn, f, "D"))
        queries["net_weekly_all"], _ = _timed(lambda: trends.net_sentiment(conn, f, "W"))
        queries["topic_week_heatmap_all"], _ = _timed(lambda: trends.topic_week_negative(conn, f))
        queries["volume_daily_last_30d"], _ = _timed(lambda: trends.volume(conn, last_month, "D"))
        queries["net_daily_topic_banks"], _ = _timed(lambda: trends.net_sentiment(conn, trends.Filters(feed_id, run_id, topic="Banks"), "D"))
        queries["drilldown_one_day"], _ = _timed(lambda: trends.drilldown(conn, f, last))
        queries["alerts_evaluate_full_history"], fired = _timed(lambda: alerts.evaluate(conn, feed_id, run_id))
        queries["alerts_list"], _ = _timed(lambda: alerts.list_alerts(conn, feed_id, run_id))
        queries["search_fts"], hits = _timed(lambda: feeds.search(conn, feed_id, "barclays lawsuit", 100))
        queries["export_100k_articles"], exported = _timed(lambda: trends.articles(conn, f, 100_000))
        monitor_page_queries = ["date_range", "topic_names", "sources", "runs_for_feed", "count_all", "volume_daily_all",
                                "net_daily_all", "topic_week_heatmap_all", "alerts_list"]
        result.update(
            queries_s=queries,
            monitor_page_queries_total_s=round(sum(queries[q] for q in monitor_page_queries), 2),
            days=int(vol["period"].nunique()), topics=len(topics), alerts_fired=len(fired), search_hits=len(hits),
            exported_rows=len(exported),
            db_size_mb=round(sum(p.stat().st_size for p in home.glob("bellwether.db*")) / 1e6, 1),
            bench_process_peak_rss_mb=peak_rss_mb(),
        )
        conn.close()
        if page:
            print("rendering the Monitor page in a fresh process ...", file=log, flush=True)
            result["dashboard_process"] = dashboard_process(home)
        if keep:
            result["home"] = str(home)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100,000 articles instead of 1,000,000")
    p.add_argument("--rows", type=int, help="exactly this many article rows")
    p.add_argument("--no-page", action="store_true", help="skip the dashboard-process measurement")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    result = run("quick" if args.quick else "full", rows=args.rows, keep=args.keep, page=not args.no_page)
    result["load_average_start"] = load
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
