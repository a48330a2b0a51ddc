"""The Review page through AppTest: one item at a time, answers stored with the reviewer's name, the counter, skip,
add to dataset, promote; viewers have no Review page."""

from __future__ import annotations

import pytest

from engine import db
from engine.monitor import feeds
from engine.review import items, promote
from tests.helpers import add_user, feed_csv, make_finished_run, open_page, signed_in_app, texts
from tests.test_review import eval_run, probs
from tests.test_training import insert_text_dataset


@pytest.fixture
def queued(store, tiny_text_model):
    run_id = eval_run(store, tiny_text_model, [
        ("Operating loss widened", "negative", "positive", probs(0.3, 0.2, 0.5)),
        ("Net sales fell 5 %", "negative", "neutral", probs(0.3, 0.45, 0.25)),
        ("The plant opened", "neutral", "neutral", probs(0.2, 0.5, 0.3)),
    ])
    return items.queue_predictions(store, run_id, "eval:file")["queue"], run_id


def button(at, text):
    return next(b for b in at.button if b.label == text)


def test_one_item_at_a_time_answered_with_buttons_and_counted(store, queued):
    queue, run_id = queued
    at = open_page("review")
    page = texts(at)
    assert "The plant opened" in page or "Net sales fell 5 %" in page
    first = items.list_items(store, queue)[0]  # least confident first (smallest margin)
    assert first["text"] in page and "**0** done · **3** left" in page
    assert [b.label for b in at.button][:5] == ["1 · negative", "2 · neutral", "3 · positive", "Accept (Enter)",
                                                "Skip (S)"]
    button(at, "1 · negative").click().run()
    stored = items.get(store, first["id"])
    assert (stored["status"], stored["answer_label"], stored["suggested_label"]) == ("done", "negative",
                                                                                     first["suggested_label"])
    assert stored["answered_by"] and stored["answered_at"]
    assert "**1** done · **2** left" in texts(at) and first["text"] not in texts(at)
    second = next(i for i in items.list_items(store, queue) if i["status"] == "open" and i["claimed_by"])
    button(at, "Skip (S)").click().run()
    assert items.get(store, second["id"])["status"] == "skipped"
    third = next(i for i in items.list_items(store, queue) if i["status"] == "open")
    button(at, "Accept (Enter)").click().run()
    assert items.get(store, third["id"])["answer_label"] == third["suggested_label"]
    assert "Nothing left to review here." in texts(at)
    at.checkbox(key="rv-again").check().run()  # skipped items only when asked
    assert second["text"] in texts(at)


def test_add_to_dataset_and_promote_from_the_page(store, queued, shared, tiny_text_model):
    queue, run_id = queued
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    for item in items.list_items(store, queue):
        items.label(store, item["id"], item["true_label"])
    at = open_page("review")
    assert "**3** labelled items in every queue." in texts(at)
    at.button(key="rv-add").click().run()
    assert "Saved fpb:2: 3 reviewed rows added to train; validation and test rows unchanged." in texts(at)
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    other = make_finished_run(store, tiny_text_model)
    at.run()
    at.selectbox(key="rv-promote-run").set_value(other)
    at.checkbox(key="rv-rescore").uncheck()
    at.button(key="rv-promote").click().run()
    assert f"Run {other} is now the model of feed 'news'." in texts(at)
    assert store.execute("SELECT current_model FROM feeds").fetchone()[0] == other
    assert [h["run_id"] for h in promote.history(store, "news")] == [other]
    assert at.dataframe[-1].value["run_id"].tolist() == [other]  # the history table


def test_viewers_have_no_review_page_and_analysts_review_under_their_name(store, queued):
    queue, _ = queued
    add_user(store, "vic", "viewer")
    add_user(store, "ann", "analyst")
    viewer = signed_in_app("review", "vic")  # hidden from a viewer's navigation; its link explains
    assert "Reviewing is for analysts and administrators." in texts(viewer) and [b.key for b in viewer.button] == ["sign-out"]
    analyst = signed_in_app("review", "ann")
    assert analyst.title[0].value == "Review"
    held = next(i for i in items.list_items(store, queue) if i["claimed_by"])
    assert held["claimed_by"] == "ann"
    button(analyst, "2 · neutral").click().run()
    got = items.get(store, held["id"])
    assert (got["answered_by"], got["answer_label"]) == ("ann", "neutral")
    assert db.loads(store.execute("SELECT detail_json FROM audit_log WHERE action = 'review.label' AND actor = 'ann' "
                                  "ORDER BY id DESC LIMIT 1").fetchone()[0])["label"] == "neutral"


def test_flagging_from_the_monitors_drill_down_and_from_try_it(store, tiny_text_model):
    from engine.monitor import scoring
    from tests.test_monitor import FakeContext

    run_id = make_finished_run(store, tiny_text_model, metrics={"macro_f1": 0.7})
    result = feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump after profit warning")]), "a.csv", "news")
    scoring.run(store, {"id": 1, "feed_id": result.feed_id, "model_run_id": run_id}, FakeContext())
    promote.promote(store, "news", run_id)
    at = open_page("monitor")
    assert "(the feed's model)" in str(at.selectbox(key="mon_run").format_func(run_id))
    at.button(key=f"flag_go_{result.feed_id}").click().run()
    assert "Sent to the Review page (queue 'flagged'" in texts(at)
    [flagged] = items.list_items(store, "flagged")
    assert flagged["text"] == "Shares slump after profit warning" and flagged["run_id"] == run_id
    assert flagged["suggested_label"] in ("negative", "neutral", "positive") and flagged["probs"]
    reports = open_page("reports", run=str(run_id))
    reports.text_area(key="try-text").input("Operating loss widened").run()
    reports.button(key="try-go").click().run()
    reports.button(key="try-flag").click().run()
    assert "Sent to the Review page (queue 'flagged'" in texts(reports)
    tried = next(i for i in items.list_items(store, "flagged") if i["kind"] == "text")
    assert tried["text"] == "Operating loss widened" and tried["suggested_label"] and tried["run_id"] == run_id


def test_the_comparison_opens_when_the_retrained_run_has_finished(store, queued, shared, tiny_text_model):
    from engine.review import corrections

    queue, run_id = queued
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    for item in items.list_items(store, queue):
        items.label(store, item["id"], item["true_label"])
    new_ds = corrections.add_to_dataset(store, "fpb:1", queue=queue)["dataset"]
    preds = [{"row_id": 1, "text": "loss widened", "true_label": "negative", "pred_label": p, "confidence": 0.5,
              "probs": {}} for p in ("positive",)]
    old = make_finished_run(store, tiny_text_model, predictions=preds)
    new = make_finished_run(store, tiny_text_model, dataset_id=new_ds["id"],
                            predictions=[{**preds[0], "pred_label": "negative"}])
    store.execute("UPDATE jobs SET config_json = ?, status = 'running' WHERE id = ?",
                  [db.dumps({"corrects": old}), new])
    at = open_page("review")
    assert f"Run {new} (correcting run {old}) is running" in texts(at)
    store.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [new])
    at.run()
    table = at.dataframe[-1].value
    assert table["which rows"].tolist() == ["test", "reviewed items (seen in training by the new run)"]
    assert table["old accuracy"].tolist()[0] == 0.0 and table["new accuracy"].tolist()[0] == 1.0
    assert table["n"].tolist() == [1, 3]
