"""The review loop (issue 16): items to review, leases, answers, corrections -> a new dataset version, retrain with the
same settings, the comparison, promotion. Fast tests with tiny models; the real-data loop is in test_review_e2e.py."""

from __future__ import annotations

import json
import threading

import pytest

from engine import db
from engine.access.roles import Forbidden
from engine.errors import UserError
from engine.jobs import queue
from engine.monitor import feeds, scoring
from engine.review import corrections, items, promote
from tests.helpers import add_user, feed_csv, make_finished_run
from tests.test_monitor import FakeContext
from tests.test_training import insert_text_dataset

LABELS = ["negative", "neutral", "positive"]


def probs(neg, neu, pos):
    return {"negative": neg, "neutral": neu, "positive": pos}


def eval_run(store, model_dir, rows):
    """A finished run with predictions on split 'eval:file' (rows: (text, true, pred, probs))."""
    run_id = make_finished_run(store, model_dir)
    for i, (text, true, pred, p) in enumerate(rows):
        store["predictions"].insert({"run_id": run_id, "split": "eval:file", "row_id": i, "text": text,
                                     "true_label": true, "pred_label": pred, "confidence": max(p.values()),
                                     "probs_json": db.dumps(p)})
    return run_id


# ---- the new version: the suspects of the lost branch's failure, checked first ---------------------------------


def test_a_new_version_keeps_every_old_row_byte_for_byte_and_the_label_order(store, shared, tiny_text_model):
    ds_id = insert_text_dataset(store, shared("fpb", "train.csv"), n_train=30, n_val=12, n_test=12)
    # a label order that is not alphabetical: a rebuilt (sorted) list would swap the ids
    store.execute("UPDATE datasets SET labels_json = ? WHERE id = ?", [db.dumps(["positive", "negative", "neutral"]),
                                                                       ds_id])
    old_rows = store.execute("SELECT row_id, split, text, label, tokens_json, tags_json FROM dataset_rows "
                             "WHERE dataset_id = ? ORDER BY row_id", [ds_id]).fetchall()
    test_texts = [r[2] for r in old_rows if r[1] == "test"]
    run_id = eval_run(store, tiny_text_model, [
        ("Operating loss widened to EUR 5 mn", "negative", "positive", probs(0.3, 0.2, 0.5)),
        ("Net loss narrowed to EUR 1 mn from EUR 4 mn", "positive", "negative", probs(0.5, 0.1, 0.4)),
        ("The company issued a profit warning", "negative", "neutral", probs(0.3, 0.4, 0.3)),
        (test_texts[0], "neutral", "positive", probs(0.2, 0.3, 0.5)),  # a test text: must not leak into train
    ])
    q = items.queue_predictions(store, run_id, "eval:file")
    assert q["added"] == 4
    answers = {}
    while (item := items.next_item(store, q["queue"])) is not None:
        answer = item["true_label"] if item["text"] != test_texts[0] else "positive"
        items.label(store, item["id"], answer)
        answers[item["text"]] = answer
    result = corrections.add_to_dataset(store, "fpb:1", queue=q["queue"])
    new = result["dataset"]
    assert new["ref"] == "fpb:2" and result["added"] == 3
    assert [c["text"] for c in result["conflicts"]] == [test_texts[0]]  # reported, not overwritten
    assert new["labels_json"] == json.dumps(["positive", "negative", "neutral"])  # same ids for the same labels
    new_rows = store.execute("SELECT row_id, split, text, label, tokens_json, tags_json FROM dataset_rows "
                             "WHERE dataset_id = ? ORDER BY row_id", [new["id"]]).fetchall()
    assert new_rows[:len(old_rows)] == old_rows  # validation and test (and train) rows exactly as they were
    added = new_rows[len(old_rows):]
    assert [r[1] for r in added] == ["train"] * 3
    assert {r[2]: r[3] for r in added} == {t: a for t, a in answers.items() if t != test_texts[0]}
    assert min(r[0] for r in added) > max(r[0] for r in old_rows)
    assert new["counts"]["test"] == db.loads(store.execute("SELECT counts_json FROM datasets WHERE id = ?",
                                                           [ds_id]).fetchone()[0])["test"]
    assert sum(new["counts"]["train"].values()) == 33 and new["n_rows"] == len(old_rows) + 3
    origin = corrections.origin(new)
    assert origin["from"] == "fpb:1" and len(origin["review_items"]) == 3
    # the old version is untouched
    assert store.execute("SELECT COUNT(*) FROM dataset_rows WHERE dataset_id = ?", [ds_id]).fetchone()[0] == len(old_rows)
    # adding the same items again adds nothing and says why
    with pytest.raises(UserError, match="None of the 4 reviewed items can be added"):
        corrections.add_to_dataset(store, "fpb:2", queue=q["queue"])


def test_training_on_the_new_version_maps_labels_by_the_same_ids(store, shared):
    from engine.training import finetune

    ds_id = insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    run_id = eval_run(store, "unused", [("Profit warning issued", "negative", "neutral", probs(0.3, 0.4, 0.3))])
    item = items.next_item(store, items.queue_predictions(store, run_id, "eval:file")["queue"])
    items.label(store, item["id"], "negative")
    new = corrections.add_to_dataset(store, "fpb", queue=f"run:{run_id}:eval:file")["dataset"]
    _, _, labels_old, rows_old = finetune._training_data(store, ds_id, "text-classification")
    _, _, labels_new, rows_new = finetune._training_data(store, new["id"], "text-classification")
    assert labels_old == labels_new
    assert rows_new["validation"] == rows_old["validation"] and rows_new["test"] == rows_old["test"]
    assert rows_new["train"][:-1] == rows_old["train"]
    assert (rows_new["train"][-1]["text"], rows_new["train"][-1]["label"]) == ("Profit warning issued", "negative")


def test_retrain_repeats_the_runs_exact_settings_and_base_model_on_the_new_version(store, shared, tiny_text_model):
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    settings = {"epochs": 3, "learning_rate": 7e-5, "seed": 11, "max_length": 48, "batch_size": 4,
                "warmup_ratio": 0.2, "group_by_length": False}
    old = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="thorough", overrides=settings)
    store.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [old])
    run_id = eval_run(store, tiny_text_model, [("A profit warning", "negative", "neutral", probs(0.3, 0.4, 0.3))])
    items.queue_predictions(store, run_id, "eval:file")
    item = items.next_item(store)
    items.label(store, item["id"], "negative")
    new_ds = corrections.add_to_dataset(store, "fpb:1", item_ids=[item["id"]])["dataset"]
    new = corrections.retrain(store, old, new_ds["ref"])
    a, b = queue.get(store, old), queue.get(store, new)
    assert b["dataset_id"] == new_ds["id"] and b["base_model"] == a["base_model"]
    assert b["config"]["corrects"] == old and b["config"]["dataset"] == "fpb:2"
    for key in finetune.DEFAULTS:
        assert b["config"][key] == a["config"][key], key
    assert b["config"]["preset"] == "thorough" and b["config"]["base_model_source"] == a["config"]["base_model_source"]
    other = insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6, name="other")
    assert other
    with pytest.raises(UserError, match="later version of fpb"):
        corrections.retrain(store, old, "other:1")


# ---- queues -----------------------------------------------------------------------------------------------------


def test_feed_articles_are_queued_least_confident_first_and_never_twice(store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    titles = [f"Headline {i}" for i in range(6)]
    result = feeds.import_file(store, feed_csv([("2020-07-01", t) for t in titles]), "a.csv", "news")
    scoring.run(store, {"id": 1, "feed_id": result.feed_id, "model_run_id": run_id}, FakeContext())
    margins = {0: (0.34, 0.33, 0.33), 1: (0.9, 0.05, 0.05), 2: (0.5, 0.45, 0.05), 3: (0.6, 0.2, 0.2),
               4: (0.4, 0.39, 0.21), 5: (0.98, 0.01, 0.01)}
    for aid, title in store.execute("SELECT id, title FROM articles").fetchall():
        p = probs(*margins[int(title.split()[-1])])
        store.execute("UPDATE scores SET probs_json = ?, label = ? WHERE article_id = ?",
                      [db.dumps(p), max(p, key=p.get), aid])
    q = items.queue_feed(store, "news", run_id, limit=4)
    assert q == {"queue": "feed:news", "added": 4, "considered": 6}
    order = [i["text"] for i in items.list_items(store, "feed:news")]
    assert order == ["Headline 0", "Headline 4", "Headline 2", "Headline 3"]
    by_entropy = items.queue_feed(store, "news", run_id, limit=10, order="entropy")
    assert by_entropy["added"] == 2  # only the two not queued yet
    first = items.next_item(store, "feed:news")
    assert first["text"] == "Headline 0" and first["suggested_label"] == "negative"
    assert first["margin"] == pytest.approx(0.01)
    items.accept(store, first["id"])
    assert items.get(store, first["id"])["answer_label"] == "negative"
    assert items.queue_feed(store, "news", run_id)["added"] == 0  # reviewed or queued: never again


def test_mistakes_and_low_confidence_rows_of_an_evaluated_file(store, tiny_text_model):
    run_id = eval_run(store, tiny_text_model, [
        ("right and sure", "positive", "positive", probs(0.05, 0.05, 0.9)),
        ("wrong and sure", "negative", "positive", probs(0.05, 0.05, 0.9)),
        ("right but unsure", "neutral", "neutral", probs(0.3, 0.4, 0.3)),
    ])
    q = items.queue_predictions(store, run_id, "eval:file", below=0.6)
    assert q["added"] == 2
    assert [i["text"] for i in items.list_items(store, q["queue"])] == ["right but unsure", "wrong and sure"]
    assert items.queue_predictions(store, run_id, "eval:file", mistakes=False, below=0.6)["added"] == 0
    with pytest.raises(UserError, match="no text predictions on 'eval:other'"):
        items.queue_predictions(store, run_id, "eval:other")


def test_flagging_an_article_a_prediction_or_a_text(store, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model, predictions=[
        {"row_id": 5, "text": "Sales fell", "true_label": "negative", "pred_label": "positive", "confidence": 0.5,
         "probs": probs(0.3, 0.2, 0.5)}])
    result = feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    scoring.run(store, {"id": 1, "feed_id": result.feed_id, "model_run_id": run_id}, FakeContext())
    article_id = store.execute("SELECT id FROM articles").fetchone()[0]
    a = items.flag(store, article_id=article_id, run_id=run_id, note="clearly negative")
    assert a["queue"] == "flagged" and a["text"] == "Shares slump" and a["suggested_label"] in LABELS
    assert set(a["probs"]) == set(LABELS)
    b = items.flag(store, run_id=run_id, split="test", row_id=5)
    assert b["suggested_label"] == "positive" and b["true_label"] == "negative"
    c = items.flag(store, text="  Try-it sentence  ", run_id=run_id, suggested_label="neutral",
                   probs=probs(0.2, 0.5, 0.3))
    assert c["text"] == "Try-it sentence" and c["kind"] == "text"
    assert items.counts(store, "flagged") == {"done": 0, "skipped": 0, "left": 3}
    items.label(store, a["id"], "negative")
    again = items.flag(store, article_id=article_id, run_id=run_id)  # flagged after review: open again
    assert again["id"] == a["id"] and again["status"] == "open"
    with pytest.raises(UserError, match="Say what to flag"):
        items.flag(store)


# ---- reviewing: leases, answers, roles --------------------------------------------------------------------------


def queued(store, model_dir, n):
    run_id = eval_run(store, model_dir, [(f"text {i}", "negative", "positive", probs(0.3, 0.2, 0.5))
                                         for i in range(n)])
    return items.queue_predictions(store, run_id, "eval:file")["queue"]


def test_two_reviewers_never_hold_the_same_item_and_a_lost_tabs_item_comes_back(store, tiny_text_model):
    add_user(store, "ana", "analyst")
    add_user(store, "ben", "analyst")
    q = queued(store, tiny_text_model, 3)
    a1 = items.next_item(store, q, actor="ana")
    b1 = items.next_item(store, q, actor="ben")
    assert a1["id"] != b1["id"]
    assert items.next_item(store, q, actor="ana")["id"] == a1["id"]  # a reload shows the same item
    with pytest.raises(UserError, match="being reviewed by ana"):
        items.label(store, a1["id"], "neutral", actor="ben")
    items.label(store, a1["id"], "neutral", actor="ana")
    stored = items.get(store, a1["id"])
    assert (stored["answer_label"], stored["answered_by"], stored["suggested_label"]) == ("neutral", "ana", "positive")
    assert stored["answered_at"] and stored["claimed_by"] is None
    # ben's tab is lost: his hold lapses and the item goes to the next reviewer; nothing he answered is lost
    store.execute("UPDATE review_items SET lease_until = '2000-01-01T00:00:00+00:00' WHERE id = ?", [b1["id"]])
    a2 = items.next_item(store, q, actor="ana")
    assert a2["id"] == b1["id"]
    a3 = items.next_item(store, q, actor="ana")
    assert a3["id"] == a2["id"]
    items.skip(store, a2["id"], actor="ana")
    last = items.next_item(store, q, actor="ana")
    items.label(store, last["id"], "negative", actor="ana")
    assert items.next_item(store, q, actor="ana") is None
    assert items.next_item(store, q, again=True, actor="ana")["id"] == a2["id"]  # skipped: only when asked
    assert items.counts(store, q) == {"done": 2, "skipped": 1, "left": 0}
    with pytest.raises(UserError, match="already labelled by ana"):
        items.label(store, a1["id"], "positive", actor="ana")
    assert items.label(store, a1["id"], "positive", again=True, actor="ana")["answer_label"] == "positive"
    with pytest.raises(UserError, match="not a label of this model"):
        items.label(store, last["id"], "bullish", again=True, actor="ana")


def test_many_reviewers_at_once_get_distinct_items(home, tiny_text_model):
    conn = db.connect()
    for name in ("r0", "r1", "r2", "r3", "r4", "r5"):
        add_user(conn, name, "analyst")
    q = queued(conn, tiny_text_model, 40)
    conn.close()
    got: dict[str, list[int]] = {}
    errors = []

    def reviewer(name):
        c = db.connect()
        try:
            mine = []
            while (item := items.next_item(c, q, actor=name)) is not None:
                mine.append(item["id"])
                items.label(c, item["id"], "negative", actor=name)
            got[name] = mine
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 40
    conn = db.connect()
    answered_by = dict(conn.execute("SELECT id, answered_by FROM review_items").fetchall())
    assert all(answered_by[i] == name for name, ids in got.items() for i in ids)
    conn.close()


def test_viewers_cannot_review_add_or_promote(store, tiny_text_model):
    add_user(store, "vic", "viewer")
    q = queued(store, tiny_text_model, 1)
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    run_id = make_finished_run(store, tiny_text_model)
    before = db.table_counts(store)
    with pytest.raises(Forbidden, match="cannot review"):
        items.next_item(store, q, actor="vic")
    with pytest.raises(Forbidden, match="cannot add reviewed items"):
        corrections.add_to_dataset(store, "small", actor="vic") if _small(store) else None
    with pytest.raises(Forbidden, match="cannot promote"):
        promote.promote(store, "news", run_id, actor="vic")
    after = db.table_counts(store)
    unchanged = ("audit_log", "datasets")
    assert {k: v for k, v in after.items() if k not in unchanged} == {k: v for k, v in before.items()
                                                                       if k not in unchanged}
    assert after["datasets"] == before["datasets"] + 1  # the one _small made, no new version


def _small(store) -> int:
    return store["datasets"].insert({"name": "small", "version": 1, "task": "text-classification",
                                     "labels_json": db.dumps(LABELS), "counts_json": "{}", "n_rows": 0,
                                     "created_at": db.now()}).last_pk


# ---- compare and promote ----------------------------------------------------------------------------------------


def test_compare_matches_rows_by_id_and_scores_by_label_name(store, tiny_text_model):
    rows = [(1, "loss widened", "negative"), (2, "profit rose", "positive"), (3, "plant opened", "neutral"),
            (4, "loss grew", "negative")]

    def run(preds):
        return make_finished_run(store, tiny_text_model, predictions=[
            {"row_id": r, "text": t, "true_label": y, "pred_label": p, "confidence": 0.6, "probs": {}}
            for (r, t, y), p in zip(rows, preds)])

    old = run(["positive", "positive", "neutral", "neutral"])
    new = run(["negative", "positive", "neutral", "negative"])
    result = corrections.compare(store, old, new, match="loss", reviewed=False)
    loss = result["rows"]["test: loss"]
    assert loss["old"]["accuracy"] == 0.0 and loss["new"]["accuracy"] == 1.0 and loss["new"]["n"] == 2
    assert result["rows"]["test"]["new"]["macro_f1"] == 1.0
    assert result["changed"]["test"] == {"fixed": 2, "broken": 0}
    table = corrections.comparison_rows(result)
    assert table[1]["rows"] == "test: loss" and table[1]["fixed"] == 2
    moved = make_finished_run(store, tiny_text_model, predictions=[
        {"row_id": 1, "text": "another text", "true_label": "negative", "pred_label": "negative", "confidence": 0.6,
         "probs": {}}])
    with pytest.raises(UserError, match="tested on different rows"):
        corrections.compare(store, old, moved, reviewed=False)


def test_promote_sets_the_feeds_current_model_keeps_history_and_rescores(store, tiny_text_model):
    from engine.monitor import sources

    add_user(store, "ana", "analyst")
    add_user(store, "ben", "analyst")
    first = make_finished_run(store, tiny_text_model)
    second = make_finished_run(store, tiny_text_model)
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news", created_by="ana")
    promote.promote(store, "news", first, actor="ana")
    row = promote.promote(store, "news", second, rescore=True, note="better on losses", actor="ana")
    assert sources.current_model(store, feeds.get_feed(store, "news")["id"]) == second
    assert store.execute("SELECT current_model FROM feeds").fetchone()[0] == second
    assert row["previous_run_id"] == first and row["promoted_by"] == "ana" and row["rescore_job_id"]
    job = queue.get(store, row["rescore_job_id"])
    assert job["kind"] == "score" and job["model_run_id"] == second
    assert [h["run_id"] for h in promote.history(store, "news")] == [second, first]
    with pytest.raises(UserError, match="already the model"):
        promote.promote(store, "news", second, actor="ana")
    with pytest.raises(Forbidden):
        promote.promote(store, "news", first, actor="ben")  # not the feed's creator


def test_the_command_line_reviews_adds_and_promotes(store, shared, tiny_text_model, capsys):
    from engine.cli.main import main

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=20, n_val=6, n_test=6)
    run_id = eval_run(store, tiny_text_model, [("Operating loss widened", "negative", "positive", probs(0.3, 0.2, 0.5)),
                                               ("Sales fell", "negative", "neutral", probs(0.3, 0.4, 0.3))])
    assert main(["review", "queue", "--run", str(run_id), "--split", "eval:file"]) == 0
    assert "2 new items" in capsys.readouterr().out
    queue = f"run:{run_id}:eval:file"
    assert main(["review", "next", "--queue", queue, "--reviewer", "ana", "--format", "json"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert main(["review", "label", str(item["id"]), "negative", "--reviewer", "ana"]) == 0
    assert "answer: negative by ana" in capsys.readouterr().out
    assert main(["review", "next", "--queue", queue, "--reviewer", "ana"]) == 0
    second = int(capsys.readouterr().out.split()[1])
    assert main(["review", "accept", str(second), "--reviewer", "ana"]) == 0
    assert main(["review", "next", "--queue", queue]) == 1
    capsys.readouterr()
    assert main(["review", "list"]) == 0
    assert f"{queue}: 2 done, 0 skipped, 0 left" in capsys.readouterr().out
    assert main(["dataset", "add-reviewed", "fpb:1", "--queue", queue]) == 0
    assert "Saved dataset fpb:2: 2 reviewed rows added to train" in capsys.readouterr().out
    feeds.import_file(store, feed_csv([("2020-07-01", "Shares slump")]), "a.csv", "news")
    assert main(["feed", "promote", "--feed", "news", "--run", str(run_id)]) == 0
    assert main(["feed", "promote", "--feed", "news", "--history"]) == 0
    assert f"run {run_id}" in capsys.readouterr().out
    assert main(["review", "label", str(item["id"]), "bullish", "--again"]) == 2
    assert "not a label of this model" in capsys.readouterr().err
