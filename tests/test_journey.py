"""The analyst's whole journey in a real browser against `streamlit run`, nothing mocked.

Upload a labelled CSV -> Quick run of the default model (reload while it trains) -> report -> import and score a news
feed -> Monitor charts -> bad uploads leave everything as it was. Screenshots of each step go to
test-artifacts/screenshots/journey/.
"""

from __future__ import annotations

import csv
import re
import shutil

import pandas as pd
import pytest

from tests.browser import SCREENSHOTS, Shots, assert_no_exception, chromium_page, streamlit_server, wait_for_app_run
from tests.conftest import SHARED

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


def progress_step(page) -> int:
    text = page.get_by_test_id("stProgress").first.inner_text()
    match = re.search(r"Step (\d+) of (\d+)", text)
    return int(match.group(1)) if match else -1


def test_the_analysts_whole_journey(tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    data_file = tmp_path / "journey.csv"
    n_rows = labelled_csv(data_file)
    folder = SCREENSHOTS / "journey"
    # Each training step is slowed a little so that the test can watch the run while it trains on a fast machine.
    env = {"BELLWETHER_TEST_STEP_DELAY_S": "0.4"}
    with streamlit_server(tmp_path / "home", env=env) as server, chromium_page(folder) as page:
        shots = Shots(page, folder)
        try:
            page.goto(server.url)
            wait_for_app_run(page)

            # 1. Upload a labelled CSV, confirm the guessed mapping, read the report, save.
            expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
            upload(page, data_file)
            expect(page.get_by_text("Validation report")).to_be_visible()
            expect(page.get_by_test_id("stMetric").filter(has_text="Rows read")).to_contain_text(f"{n_rows:,}")
            # The columns were guessed from their names: text <- sentence, label <- sentiment.
            expect(page.get_by_role("combobox", name="Text column")).to_match_aria_snapshot('- combobox "Text column": sentence')
            expect(page.get_by_role("combobox", name="Label column")).to_match_aria_snapshot('- combobox "Label column": sentiment')
            shots("validation report")
            page.get_by_role("button", name="Accept & save").click()
            wait_for_app_run(page)
            expect(page.get_by_text(re.compile(r"Saved dataset journey version 1"))).to_be_visible()
            shots("dataset saved")

            # 2. A Quick run of the default model; watch it, reload while it trains, wait for success.
            go_to(page, "Train")
            page.get_by_test_id("stRadio").get_by_text("Quick", exact=True).click()
            wait_for_app_run(page)
            page.get_by_role("button", name="Train", exact=True).click()
            wait_for_app_run(page)
            expect(page.get_by_text(re.compile(r"Run 1 is queued"))).to_be_visible()
            shots("run queued")
            go_to(page, "Runs")
            expect(page.get_by_test_id("stProgress").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
            first = progress_step(page)
            page.wait_for_function(
                "s => { const p = document.querySelector(\"[data-testid='stProgress']\");"
                " const m = p && p.innerText.match(/Step (\\d+) of/); return m && Number(m[1]) > s; }",
                arg=first, timeout=TRAIN_TIMEOUT_MS,
            )
            expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
            shots("training live")
            page.reload()
            wait_for_app_run(page)
            expect(page.get_by_role("heading", name=re.compile(r"#1 "))).to_be_visible()
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text("Running")
            shots("after reload still running")
            # finished: "Succeeded", or "Finished with a warning" when the end-of-training check flags this small run
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text(
                re.compile("Succeeded|Finished with a warning"), timeout=TRAIN_TIMEOUT_MS)
            wait_for_app_run(page)
            expect(page.get_by_test_id("stMetric").filter(has_text="Macro-F1 (test)")).to_be_visible()
            shots("run succeeded")

            # 3. The report: per-class table and confusion matrix.
            page.get_by_role("link", name="Open the evaluation report").click()
            wait_for_app_run(page)
            assert_no_exception(page)
            expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
            table = page.get_by_test_id("stDataFrame").first
            expect(table).to_be_visible()
            for label in ("negative", "neutral", "positive", "Average over classes (macro)"):
                # The grid draws on a canvas; its accessible cells carry the same text.
                expect(table.locator("[role=gridcell]").filter(has_text=label).first).to_be_attached()
            # the verdict comes before the numbers, with the majority-class baseline
            expect(page.get_by_text(re.compile(r"Always answering '\w+' \(the commonest class\)"))).to_be_visible()
            shots("classification report")
            # The download is built when the button is clicked: the analyst gets every prediction with its classes.
            with page.expect_download() as download:
                page.get_by_role("button", name="Predictions (CSV)").click()
            predictions = pd.read_csv(download.value.path())
            assert list(predictions.columns[:5]) == ["row_id", "text", "true", "predicted", "confidence"]
            assert {"p(negative)", "p(neutral)", "p(positive)"} <= set(predictions.columns) and len(predictions) > 0
            page.get_by_role("tab", name="Confusion matrix").click()
            wait_for_app_run(page)
            expect(page.locator(".st-key-confusion-chart [data-testid='stPlotlyChart']")).to_be_visible()
            shots("confusion matrix")

            # 4. A news feed: import, score with the run, see the trend chart and the articles.
            go_to(page, "Feeds")
            page.get_by_label("New feed name").fill("reuters")
            page.get_by_label("New feed name").press("Enter")
            wait_for_app_run(page)
            upload(page, news_csv(tmp_path))
            page.get_by_role("button", name="Import into feed").click()
            wait_for_app_run(page)
            expect(page.get_by_text(re.compile(r"\d+ new"))).to_be_visible()
            shots("feed imported")
            page.get_by_role("button", name="Score", exact=True).click()
            wait_for_app_run(page)
            expect(page.get_by_text(re.compile(r"Job \d+ · run 1 · succeeded"))).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
            # the page refreshes itself when the job ends: nothing left to score, and the job says how fast it went
            expect(page.get_by_text("0 articles not yet scored by run 1.")).to_be_visible()
            expect(page.get_by_role("button", name="Score", exact=True)).to_be_disabled()
            expect(page.get_by_text(re.compile(r"articles scored, \d+ alerts · [\d,]+ articles/s on cpu"))).to_be_visible()
            shots("feed scored")
            go_to(page, "Monitor")
            expect(page.get_by_role("heading", name="Volume by sentiment", exact=True)).to_be_visible()
            expect(page.locator(".st-key-chart_volume [data-testid='stPlotlyChart']")).to_be_visible()
            expect(page.get_by_text(re.compile(r"\d+ articles on \d{4}-\d\d-\d\d, most negative first"))).to_be_visible()
            expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
            shots("monitor")

            # 5. Bad uploads get a plain message and leave what was there.
            go_to(page, "Data")
            empty = tmp_path / "empty.csv"
            empty.write_bytes(b"")
            binary = tmp_path / "binary.csv"
            binary.write_bytes(bytes(range(256)) * 40)
            upload(page, empty)
            expect(page.get_by_test_id("stAlert").filter(has_text="is empty")).to_be_visible()
            shots("empty file refused")
            upload(page, binary)
            expect(page.get_by_test_id("stAlert").filter(has_text="not a text file")).to_be_visible()
            assert page.get_by_test_id("stException").count() == 0
            shots("binary file refused")
            expect(page.get_by_text("Saved datasets")).to_be_visible()
            saved = page.get_by_test_id("stDataFrame").first.locator("[role=gridcell]")
            expect(saved.filter(has_text="journey").first).to_be_attached()
            go_to(page, "Runs")
            expect(page.locator("span.stMarkdownBadge").first).to_contain_text(
                re.compile("Succeeded|Finished with a warning"))
        except BaseException:
            shots("failure")
            print(server.log_tail())
            logs = sorted((server.home / "runs").glob("*/log.txt")) if (server.home / "runs").exists() else []
            for log in logs:
                print(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
            raise
