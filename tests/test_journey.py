"""The analyst's whole journey in a real browser against `streamlit run`, nothing mocked, in English and in 简体中文.

Upload a labelled CSV -> Quick run of the default model (reload while it trains) -> report -> import and score a news
feed -> Monitor charts -> bad uploads leave everything as it was. The same code drives both languages: every label and
sentence it looks for is the English the page code writes, looked up through the catalogue (bench.visible.Words). The
Chinese run has the server speak zh_CN (BELLWETHER_LANGUAGE), checks that Chinese renders as characters, and fails at
the first screen that still shows an English sentence. A full-page screenshot of every step goes to
test-artifacts/journey/<language>/NN-step.png.
"""

from __future__ import annotations

import csv
import re

import pandas as pd
import pytest

from bench.visible import Words, english_left
from engine import i18n
from tests.browser import ARTIFACTS, Shots, assert_no_exception, chromium_page, streamlit_server, wait_for_app_run
from tests.conftest import SHARED
from tests.test_theme_browser import GLYPHS_DIFFER

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]

TRAIN_TIMEOUT_MS = 420_000


def labelled_csv(path) -> int:
    """300 rows of Financial PhraseBank (100 of each label), or rows written here when the shared data is absent."""
    source = SHARED / "fpb" / "train.csv"
    rows: list[tuple[str, str]] = []
    if source.exists():
        with open(source, encoding="utf-8", newline="") as handle:
            per_label: dict[str, list[tuple[str, str]]] = {}
            for r in csv.DictReader(handle):
                per_label.setdefault(r["label"], []).append((r["text"], r["label"]))
        rows = [row for label in sorted(per_label) for row in per_label[label][:100]]
    else:
        words = {"positive": "rose strongly", "negative": "fell sharply", "neutral": "was unchanged"}
        rows = [(f"Company {i} said quarterly profit {words[label]} in period {i}", label)
                for i in range(300) for label in [("positive", "negative", "neutral")[i % 3]]]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "sentiment"])
        writer.writerows(rows)
    return len(rows)


def news_csv(tmp_path):
    source = SHARED / "news" / "reuters_headlines.csv"
    if source.exists():
        return source
    path = tmp_path / "reuters_headlines.csv"
    with open(path, "w", encoding="cp1252", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Headlines", "Time", "Description"])
        for i in range(60):
            writer.writerow([f"Shares of firm {i} {'slump' if i % 2 else 'jump'}", f"Jul {1 + i % 28} 2020", "Body"])
    return path


def go_to(page, screen: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=screen, exact=True).click()
    wait_for_app_run(page)
    assert_no_exception(page)


def upload(page, path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(path))
    wait_for_app_run(page)


def progress_value(page) -> int:
    """How far the run's progress bar is (its aria-valuenow, the same in every language)."""
    return int(float(page.get_by_test_id("stProgress").first.get_by_role("progressbar").get_attribute("aria-valuenow")))


def data_shown(*files, names=()) -> str:
    """Every text from the data the screens may show (rows, headlines, names): English there is not the interface's."""
    texts = [*names]
    for path in files:
        texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(texts)


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_the_analysts_whole_journey(tmp_path, lang):
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    w = Words(lang)
    data_file = tmp_path / "journey.csv"
    n_rows = labelled_csv(data_file)
    news = news_csv(tmp_path)
    data = data_shown(data_file, news, names=("journey", "reuters", "default", "sentence", "sentiment", "Headlines",
                                                 "Time", "Description", "negative", "neutral", "positive"))

    def no_english_left(page, step: str) -> None:
        left = english_left(page, data)
        assert not left, f"step {step}: the {lang} screen still shows English: {left}"

    folder = ARTIFACTS / "journey" / lang
    # Each training step is slowed a little so that the test can watch the run while it trains on a fast machine.
    env = {"BELLWETHER_TEST_STEP_DELAY_S": "0.4", "BELLWETHER_LANGUAGE": lang}
    with streamlit_server(tmp_path / "home", env=env) as server, chromium_page(folder) as page:
        shots = Shots(page, folder, check=None if lang == i18n.DEFAULT else no_english_left)
        try:
            page.goto(server.url)
            wait_for_app_run(page)

            # 1. Upload a labelled CSV, confirm the guessed mapping, read the report, save.
            expect(page.get_by_role("heading", name=w("Data"), exact=True)).to_be_visible()
            if lang != i18n.DEFAULT:
                assert page.evaluate(GLYPHS_DIFFER) == [True, True], "no CJK font: install fonts-noto-cjk (make test)"
            upload(page, data_file)
            expect(page.get_by_text(w("Validation report"))).to_be_visible()
            with i18n.using(lang):
                rows_read = i18n.number(n_rows)
            expect(page.get_by_test_id("stMetric").filter(has_text=w("Rows read"))).to_contain_text(rows_read)
            # The columns were guessed from their names: text <- sentence, label <- sentiment.
            for field, column in (("Text column", "sentence"), ("Label column", "sentiment")):
                expect(page.get_by_role("combobox", name=w(field))).to_match_aria_snapshot(
                    f'- combobox "{w(field)}": {column}')
            shots("validation report")
            page.get_by_role("button", name=w("Accept & save")).click()
            wait_for_app_run(page)
            expect(page.get_by_text(w.pattern("Saved dataset {name} version {version} ({rows}).",
                                              name="journey", version=1))).to_be_visible()
            shots("dataset saved")

            # 2. A Quick run of the default model; watch it, reload while it trains, wait for success.
            go_to(page, w("Train"))
            page.get_by_test_id("stRadio").get_by_text(w("Quick"), exact=True).click()
            wait_for_app_run(page)
            page.get_by_role("button", name=w("Train"), exact=True).click()
            wait_for_app_run(page)
            expect(page.get_by_text(w.pattern(
                "Run {run_id} is queued. It trains in the background; you may close this page.", run_id=1))).to_be_visible()
            shots("run queued")
            go_to(page, w("Runs"))
            expect(page.get_by_test_id("stProgress").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
            first = progress_value(page)
            page.wait_for_function(
                "v => { const p = document.querySelector(\"[data-testid='stProgress'] [role='progressbar']\");"
                " return p && Number(p.getAttribute('aria-valuenow')) > v; }",
                arg=first, timeout=TRAIN_TIMEOUT_MS,
            )
            expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
            shots("training live")
            page.reload()
            wait_for_app_run(page)
            expect(page.get_by_role("heading", name=re.compile(r"#1 "))).to_be_visible()
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text(w("Running"))
            shots("after reload still running")
            # finished: "Succeeded", or "Finished with a warning" when the end-of-training check flags this small run
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text(
                w.any_of("Succeeded", "Finished with a warning"), timeout=TRAIN_TIMEOUT_MS)
            wait_for_app_run(page)
            expect(page.get_by_test_id("stMetric").filter(has_text=w.pattern("Macro-F1 ({split})"))).to_be_visible()
            shots("run succeeded")

            # 3. The report: per-class table and confusion matrix.
            page.get_by_role("link", name=w("Open the evaluation report")).click()
            wait_for_app_run(page)
            assert_no_exception(page)
            expect(page.get_by_role("heading", name=w("Reports"), exact=True)).to_be_visible()
            table = page.get_by_test_id("stDataFrame").first
            expect(table).to_be_visible()
            for label in ("negative", "neutral", "positive", w("Average over classes (macro)")):
                # The grid draws on a canvas; its accessible cells carry the same text.
                expect(table.locator("[role=gridcell]").filter(has_text=label).first).to_be_attached()
            # the verdict comes before the numbers, with the majority-class baseline
            expect(page.get_by_text(w.pattern(
                "Always answering '{label}' (the commonest class) would be right on {accuracy}, with macro F1 "
                "{baseline_f1} against the model's {f1}.", label=re.compile(r"\w+")))).to_be_visible()
            shots("classification report")
            # The download is built when the button is clicked: the analyst gets every prediction with its classes.
            with page.expect_download() as download:
                page.get_by_role("button", name=w("Predictions (CSV)")).click()
            predictions = pd.read_csv(download.value.path())
            assert list(predictions.columns[:5]) == ["row_id", "text", "true", "predicted", "confidence"]
            assert {"p(negative)", "p(neutral)", "p(positive)"} <= set(predictions.columns) and len(predictions) > 0
            page.get_by_role("tab", name=w("Confusion matrix")).click()
            wait_for_app_run(page)
            expect(page.locator(".st-key-confusion-chart [data-testid='stPlotlyChart']")).to_be_visible()
            shots("confusion matrix")

            # 4. A news feed: import, score with the run, see the trend chart and the articles.
            go_to(page, w("Feeds"))
            page.get_by_label(w("New feed name")).fill("reuters")
            page.get_by_label(w("New feed name")).press("Enter")
            wait_for_app_run(page)
            upload(page, news)
            page.get_by_role("button", name=w("Import into feed")).click()
            wait_for_app_run(page)
            # the import's summary: how many articles came into the feed, none rejected
            expect(page.get_by_test_id("stAlert").filter(has_text=w.pattern(
                "{n_new} new articles in '{feed}', {n_duplicate} duplicates skipped, {n_rejected} rows rejected, "
                "{n_blank} blank rows ignored.", n_new=re.compile(r"[1-9][\d,]*"), feed="reuters", n_duplicate=0,
                n_rejected=0))).to_be_visible()
            shots("feed imported")
            page.get_by_role("button", name=w("Score"), exact=True).click()
            wait_for_app_run(page)
            succeeded = re.compile("succeeded|" + re.escape(w("succeeded")))
            expect(page.get_by_text(w.pattern("{job} · run {run_id} · **{status}**", run_id=1,
                                              status=succeeded))).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
            # the page refreshes itself when the job ends: nothing left to score, and the job says how fast it went
            expect(page.get_by_text(w.pattern("{waiting} articles not yet scored by run {run_id}.", waiting=0,
                                              run_id=1))).to_be_visible()
            expect(page.get_by_role("button", name=w("Score"), exact=True)).to_be_disabled()
            expect(page.get_by_text(w.pattern("{scored} articles scored, {alerts} alerts",
                                              alerts=re.compile(r"\d+")))).to_be_visible()
            expect(page.get_by_text(w.pattern("{rate} articles/s on {device} ({dtype})", rate=re.compile(r"[\d,]+"),
                                              device="cpu"))).to_be_visible()
            shots("feed scored")
            go_to(page, w("Monitor"))
            expect(page.get_by_role("heading", name=w("Volume by sentiment"), exact=True)).to_be_visible()
            expect(page.locator(".st-key-chart_volume [data-testid='stPlotlyChart']")).to_be_visible()
            expect(page.get_by_text(w.pattern("{n} articles on {day}, most negative first."))).to_be_visible()
            expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
            shots("monitor")

            # 5. Bad uploads get a plain message and leave what was there.
            go_to(page, w("Data"))
            empty = tmp_path / "empty.csv"
            empty.write_bytes(b"")
            binary = tmp_path / "binary.csv"
            binary.write_bytes(bytes(range(256)) * 40)
            upload(page, empty)
            expect(page.get_by_test_id("stAlert").filter(has_text=w.pattern(
                "{file_name} is empty. Export the sheet again and upload the file that has the rows.",
                file_name="empty.csv"))).to_be_visible()
            shots("empty file refused")
            upload(page, binary)
            expect(page.get_by_test_id("stAlert").filter(has_text=w.pattern(
                "{file_name} is not a text file (it looks like a binary file with a .csv or similar name). "
                "Upload a CSV, XLSX or JSONL export.", file_name="binary.csv"))).to_be_visible()
            assert page.get_by_test_id("stException").count() == 0
            shots("binary file refused")
            expect(page.get_by_text(w("Saved datasets"))).to_be_visible()
            saved = page.get_by_test_id("stDataFrame").first.locator("[role=gridcell]")
            expect(saved.filter(has_text="journey").first).to_be_attached()
            go_to(page, w("Runs"))
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text(
                w.any_of("Succeeded", "Finished with a warning"))
            shots("runs at the end")
        except BaseException:
            print(f"[{lang}] failed after step {shots.last or '(none: before the first)'}; texts looked up that the "
                  f"{lang} catalogue does not have: {w.missing}")
            shots.check = None
            shots("failure")
            print(server.log_tail())
            logs = sorted((server.home / "runs").glob("*/log.txt")) if (server.home / "runs").exists() else []
            for log in logs:
                print(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
            raise
