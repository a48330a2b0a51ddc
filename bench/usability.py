"""``python -m bench.usability``: the analyst's journey walked as a person reads the screen, counted.

A fresh dashboard (``streamlit run server.py``, its own temporary data directory, local mode) is driven in Debian's
Chromium with nothing but what a person sees: links, buttons, tabs and fields found by their role and visible
name, text found by what it says, files chosen through the upload button's file dialog. No test ids, no CSS, no
knowledge of how the page is built; the only other thing read is Streamlit's own "still running" state, to know when
the screen has settled. Each step's actions (clicks, typing, key presses, file choices) and seconds are reported.

Steps: upload a labelled CSV and save it; start a Quick training run; wait on Runs until it finishes; open its
report and the confusion matrix; import a news file into a new feed and score it; read the Monitor.

``--lang`` picks the interface language (``en`` or ``zh_CN``; the dashboard is started speaking it, as
BELLWETHER_LANGUAGE does). The labels each step looks for are ``LABELS["en"]``: the English the page code writes, which
is also the msgid of its catalogue entry; every other language's labels are derived from them through the catalogue
(engine.i18n), so there is no second list to keep in step. ``--save`` keeps the JSON result in docs/bench-results/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.dashboard import dashboard
from bench.data import shared_dir
from bench.visible import Words, sentence_pattern

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
RESULTS = ROOT / "docs" / "bench-results"
# What a person reads at each step, in English as the page code writes it (a sentence's {placeholders} stand for
# anything). Sentences are matched as shown, markdown marks left out.
LABELS = {
    "en": {
        "upload": "Upload", "save": "Accept & save", "saved": "Saved dataset {name} version {version} ({rows}).",
        "train_page": "Train", "quick": "Quick", "train": "Train",
        "queued": "Run {run_id} is queued. It trains in the background; you may close this page.",
        "runs_page": "Runs", "succeeded": "Succeeded", "warned": "Finished with a warning",
        "open_report": "Open the evaluation report", "confusion": "Confusion matrix", "feeds_page": "Feeds",
        "feed_name": "New feed name", "import": "Import into feed", "score": "Score",
        "scored": "{waiting} articles not yet scored by run {run_id}.",
        "monitor_page": "Monitor", "monitor_heading": "Volume by sentiment",
    },
}
# Streamlit's own words (its upload button), the same in every language: not in Bellwether's catalogue.
STREAMLIT_OWN = frozenset({"upload"})


def labels_in(lang: str) -> dict[str, str]:
    """``LABELS["en"]`` as the dashboard shows them in ``lang``: each through the catalogue, as the page does."""
    from engine import i18n
    from engine.i18n import _

    words = Words(lang)
    with i18n.using(lang):
        return {key: text if key in STREAMLIT_OWN else words(text) if "{" in text and _(text) == text else _(text)
                for key, text in LABELS["en"].items()}


LABELS["zh_CN"] = labels_in("zh_CN")


class Walker:
    """Acts on the page as a person would, counting each action."""

    def __init__(self, page):
        self.page, self.actions, self.steps = page, 0, []
        self._step: tuple[str, float, int] | None = None

    def settle(self, timeout_ms: int = 600_000) -> None:
        self.page.wait_for_timeout(300)
        self.page.locator("[data-test-script-state='notRunning']").first.wait_for(state="attached", timeout=timeout_ms)

    def click(self, role: str, name: str, exact: bool = True) -> None:
        self.page.get_by_role(role, name=name, exact=exact).first.click()
        self.actions += 1
        self.settle()

    def click_text(self, text: str) -> None:
        self.page.get_by_text(text, exact=True).first.click()
        self.actions += 1
        self.settle()

    def type_into(self, label: str, text: str, enter: bool = False) -> None:
        field = self.page.get_by_label(label, exact=True)
        field.fill(text)
        self.actions += 1
        if enter:
            field.press("Enter")
            self.actions += 1
        self.settle()

    def choose_file(self, button: str, path: Path) -> None:
        with self.page.expect_file_chooser() as chooser:
            self.page.get_by_role("button", name=button, exact=True).first.click()
        chooser.value.set_files(str(path))
        self.actions += 2  # the click and the choice in the dialog
        self.settle()

    def see(self, sentence: str | re.Pattern, timeout_ms: int = 60_000, **values) -> None:
        """Until the screen shows ``sentence`` (a label's text, its {placeholders} filled from ``values`` or any)."""
        pattern = sentence if isinstance(sentence, re.Pattern) else sentence_pattern(sentence, **values)
        self.page.get_by_text(pattern).first.wait_for(timeout=timeout_ms)

    @contextmanager
    def step(self, name: str):
        start, before = time.perf_counter(), self.actions
        try:
            yield
        except Exception as exc:  # what the person could not find, in the words of the step
            try:  # what the screen showed then, for whoever reads the failure
                shot = Path("test-artifacts") / f"usability-stuck-{name.replace(' ', '-')}.png"
                shot.parent.mkdir(exist_ok=True)
                self.page.screenshot(path=str(shot), full_page=True)
            except Exception:  # noqa: BLE001 - a screenshot that fails must not hide why the walk stopped
                pass
            raise Stuck(name, self.steps, str(exc).strip().splitlines()[-1]) from exc
        self.steps.append({"step": name, "actions": self.actions - before,
                           "seconds": round(time.perf_counter() - start, 1)})


class Stuck(Exception):
    """The walk could not go on: ``step`` is where, ``steps`` what was done before, ``what`` the last thing looked for."""

    def __init__(self, step: str, steps: list[dict], what: str):
        super().__init__(f"stopped at step '{step}': {what}")
        self.step, self.steps, self.what = step, steps, what


def _labelled_csv(path: Path, per_label: int) -> None:
    rows: dict[str, list[str]] = {}
    with open(shared_dir() / "fpb" / "train.csv", encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            rows.setdefault(r["label"], []).append(r["text"])
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "sentiment"])
        for label in sorted(rows):
            writer.writerows([t, label] for t in rows[label][:per_label])


def walk(page, lang: str, data_file: Path, news_file: Path) -> list[dict]:
    words = LABELS[lang]
    w = Walker(page)
    w.settle()
    with w.step("upload and save a labelled file"):
        w.choose_file(words["upload"], data_file)
        w.click("button", words["save"])
        w.see(words["saved"], version=1)
    with w.step("start a Quick training run"):
        w.click("link", words["train_page"])
        w.click_text(words["quick"])
        w.click("button", words["train"])
        w.see(words["queued"], run_id=1)
    with w.step("wait on Runs until it finishes"):
        w.click("link", words["runs_page"])
        w.see(re.compile("|".join(re.escape(words[k]) for k in ("succeeded", "warned"))), timeout_ms=900_000)
        w.settle()
    with w.step("read its report and confusion matrix"):
        w.click("link", words["open_report"])
        w.click("tab", words["confusion"])
    with w.step("import news into a new feed and score it"):
        w.click("link", words["feeds_page"])
        w.type_into(words["feed_name"], "reuters", enter=True)
        w.choose_file(words["upload"], news_file)
        w.click("button", words["import"])
        w.click("button", words["score"])
        w.see(words["scored"], timeout_ms=900_000, waiting=0, run_id=1)
    with w.step("read the Monitor"):
        w.click("link", words["monitor_page"])
        page.get_by_role("heading", name=words["monitor_heading"], exact=True).wait_for()
    return w.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.usability", description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=sorted(LABELS), default="en", help="the interface language (default en)")
    parser.add_argument("--per-label", type=int, default=60, help="labelled rows per class from fpb (default 60)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--save", action="store_true",
                        help="also keep the JSON result as docs/bench-results/usability-<lang>-<date>.json")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bellwether-usability-") as tmp:
        tmp_path = Path(tmp)
        data_file, home = tmp_path / "labelled.csv", tmp_path / "home"
        _labelled_csv(data_file, args.per_label)
        news_file = shared_dir() / "news" / "reuters_headlines.csv"
        with dashboard(home, env={"BELLWETHER_LANGUAGE": args.lang}) as url:
            started = time.perf_counter()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url)
                try:
                    steps = walk(page, args.lang, data_file, news_file)
                except Stuck as stuck:
                    for s in stuck.steps:
                        print(f"{s['step']:45} {s['actions']:>7} {s['seconds']:>8}")
                    print(f"The {args.lang} walk {stuck}", file=sys.stderr)
                    return 1
                finally:
                    browser.close()
    result = {"lang": args.lang, "steps": steps, "actions": sum(s["actions"] for s in steps),
              "seconds": round(time.perf_counter() - started, 1), "load_average": list(os.getloadavg()),
              "date": time.strftime("%Y-%m-%d")}
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    targets = [Path(args.out)] if args.out else []
    if args.save:
        targets.append(RESULTS / f"usability-{args.lang}-{result['date']}.json")
    for target in targets:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    print(f"{'step':45} {'actions':>7} {'seconds':>8}")
    for s in steps:
        print(f"{s['step']:45} {s['actions']:>7} {s['seconds']:>8}")
    print(f"{'whole journey':45} {result['actions']:>7} {result['seconds']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
