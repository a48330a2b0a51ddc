"""Every page renders without an exception on an empty store and on a populated one, and none shows data to someone
who has not signed in."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.helpers import PASSWORD, add_user, make_finished_run, open_page

PAGES = ["data", "train", "runs", "reports", "feeds", "monitor"]
TITLES = {"data": "Data", "train": "Train a model", "runs": "Runs", "reports": "Reports", "feeds": "Feeds",
          "monitor": "Monitor"}


def populate(store, tiny_text_model) -> int:
    """A saved dataset, a finished run with test predictions, a feed of scored articles."""
    from engine.data import datasets
    from engine.monitor import feeds
    from engine.jobs import queue
    from engine.monitor import scoring

    rows = "\n".join(f"Profit {'rose' if i % 3 == 0 else 'fell' if i % 3 == 1 else 'held'} at firm {i},"
                     f"{('positive', 'negative', 'neutral')[i % 3]}" for i in range(60))
    ds, _ = datasets.import_file(store, ("text,label\n" + rows).encode(), "fpb-mini.csv", "fpb-mini", created_by="test")
    predictions = [
        {"row_id": r["row_id"], "text": r["text"], "true_label": r["label"], "pred_label": r["label"],
         "confidence": 0.9, "probs": {"negative": 0.05, "neutral": 0.05, "positive": 0.9}}
        for r in datasets.rows(store, ds["id"], "test")
    ]
    run_id = make_finished_run(store, tiny_text_model, predictions=predictions, dataset_id=ds["id"],
                               metrics={"accuracy": 1.0, "macro_f1": 1.0})
    news = "Time,Headlines\n" + "\n".join(f"{1 + i % 9}-Jul-20,Headline number {i} about markets" for i in range(40))
    feeds.import_file(store, news.encode(), "news.csv", "markets")
    job_id = scoring.enqueue(store, "markets", run_id)
    job = queue.get(store, job_id)

    class Ctx:  # the runner's context, without a separate process
        log = __import__("logging").getLogger("test")

        def progress(self, **fields):
            pass

        def should_cancel(self):
            return False

    scoring.run(store, job, Ctx())
    return run_id


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_on_an_empty_store(home, page):
    at = open_page(page)
    assert not at.exception, at.exception
    assert at.title[0].value == TITLES[page]


def test_each_page_renders_on_a_populated_store(home, store, tiny_text_model):
    populate(store, tiny_text_model)
    for page in PAGES:
        at = open_page(page)
        assert not at.exception, (page, at.exception)
        assert at.title[0].value == TITLES[page]
        shown = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.success])
        assert "No dataset" not in shown and "No feeds yet" not in shown, page
    # The populated pages show what is stored.
    assert open_page("reports").metric[0].value == "1.000"


@pytest.mark.parametrize("page", PAGES)
def test_a_page_opened_by_its_own_url_asks_for_sign_in_first(store, page):
    add_user(store, "maria", "analyst")
    at = AppTest.from_file(str(ROOT / "views" / f"{page}.py"), default_timeout=60).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.title or at.title[0].value == "Bellwether"
    assert not at.get("file_uploader")


def test_sign_in_with_the_right_password_only(store):
    add_user(store, "maria", "analyst")
    # AppTest's first run has no page yet; the second is on the default page, as a browser's first run is
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run().run()
    assert not at.get("file_uploader") and not at.sidebar.caption
    at.text_input[0].input("maria")
    at.text_input[1].input("wrong")
    at.button[0].click().run()
    assert "do not match" in at.error[0].value
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert at.title[0].value == "Data"
    assert "maria" in " ".join(c.value for c in at.sidebar.caption)
