"""Guard rails (issue 14): a label column that is not labels needs an explicit choice; a run's purpose is stored and
only a topics run tags topics; model topics can be removed; pressing Train twice asks first."""

from __future__ import annotations

import pytest

from engine import db
from engine.cli.main import main
from engine.data import datasets, ingest, validate
from engine.errors import UserError
from engine.jobs import runs, supervisor
from engine.monitor import feeds, topics, vocabulary
from engine.training import finetune
from tests.helpers import build_tiny_model, feed_csv, make_finished_run, open_page, texts

# An unlabelled news export: the only short column is the time, which must not pass for the label.
NEWS = ("Time,Headline,Source\n" + "".join(
    f"2020-07-{1 + i % 10:02d} 09:{i % 60:02d},Company {i} reports quarterly results,Wire\n" for i in range(40))).encode()


def test_a_date_like_label_column_is_flagged_and_needs_an_explicit_choice(store):
    candidate = ingest.read_file(NEWS, "news.csv")
    assert validate.guess_columns(candidate)["label"] is None  # the Time column is never guessed as the label
    prepared = validate.build(candidate, {"text": "Headline", "label": "Time"})
    problem = prepared.report.problem(validate.LABEL_SUSPECT)
    assert problem is not None and problem.action == "confirm"
    assert "The label column 'Time' looks like dates or times" in problem.message
    assert "[confirm] The label column 'Time'" in prepared.report.to_text()
    before = db.table_counts(store)
    with pytest.raises(UserError, match="Nothing was saved: the label column 'Time' does not look like labels"):
        datasets.save(store, candidate, prepared, "news")
    assert db.table_counts(store) == before
    saved = datasets.save(store, candidate, prepared, "news", label_confirmed=True)  # the analyst's explicit choice
    assert saved["n_rows"] == 40


@pytest.mark.parametrize("values, words", [
    (["12.5", "13.1", "99.0", "101.2"] * 5, "holds numbers"),
    (["The bank said profits rose sharply this year"] * 3 + ["Sales fell for a third quarter in a row"] * 3,
     "looks like free text"),
    ([f"id-{i}" for i in range(30)], "too many classes"),
])
def test_numbers_free_text_and_too_many_classes_are_flagged_but_class_codes_and_names_are_not(values, words):
    assert words in validate.label_concern(values)


@pytest.mark.parametrize("values", [["0", "1", "2"] * 4, ["-1", "0", "1"] * 4, ["positive", "negative"] * 5,
                                    ["正面", "负面", "中性"] * 3, ["earnings", "M&A", "macro"] * 4])
def test_ordinary_labels_are_not_flagged(values):
    assert validate.label_concern(values) is None


def test_cli_import_refuses_a_date_label_unless_label_column_ok(home, tmp_path, capsys):
    path = tmp_path / "news.csv"
    path.write_bytes(NEWS)
    argv = ["dataset", "import", str(path), "--name", "news", "--text-col", "Headline", "--label-col", "Time"]
    assert main(argv + ["--yes"]) == 2  # --yes accepts the report's problems, never a doubtful label
    assert "add --label-column-ok if 'Time' is the label" in capsys.readouterr().err
    assert main(argv + ["--label-column-ok", "--yes"]) == 0  # --yes: the other problems (few rows per label)
    assert "Saved dataset news version 1" in capsys.readouterr().out


@pytest.fixture
def page_user(home, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)


def test_data_page_accept_stays_off_until_the_date_label_is_confirmed(page_user):
    at = open_page("data")
    at.file_uploader[0].set_value(("news.csv", NEWS, "text/csv")).run()
    at.radio[0].set_value("Classification (a text and its label)").run()
    assert next(s for s in at.selectbox if s.label == "Label column").value == "(none)"  # not guessed
    assert any("could not tell which column holds the label" in e.value for e in at.error)
    next(s for s in at.selectbox if s.label == "Label column").set_value("Time").run()
    assert not at.exception
    assert "**Needs your choice.** The label column 'Time' looks like dates or times" in texts(at)
    accept = next(b for b in at.button if b.label == "Accept & save")
    assert accept.disabled
    next(c for c in at.checkbox if c.label.startswith("Yes, 'Time' is the label column")).check().run()
    accept = next(b for b in at.button if b.label == "Accept & save")
    assert not accept.disabled
    accept.click().run()
    assert "Saved dataset news version 1 (40 rows)." in [s.value for s in at.success]


# ---- purposes and topics ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {"sentiment": build_tiny_model(tmp_path_factory.mktemp("s"), ["negative", "neutral", "positive"]),
            "topics": build_tiny_model(tmp_path_factory.mktemp("t"), ["earnings", "M&A", "macro"])}


def test_a_sentiment_run_is_refused_for_topics_in_plain_words(store, models):
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts")]), "a.csv", "wire")
    sentiment = make_finished_run(store, models["sentiment"])
    topic = make_finished_run(store, models["topics"])
    # runs trained before purposes were stored: guessed from their labels
    assert runs.purpose(runs.get(store, sentiment)) == "sentiment"
    assert runs.purpose(runs.get(store, topic)) == "topics"
    before = db.table_counts(store)
    with pytest.raises(UserError, match=rf"Run {sentiment} was trained for sentiment, not topics: its labels "
                                        r"\(negative, neutral, positive\) would be written as topics"):
        topics.enqueue(store, "wire", sentiment)
    assert db.table_counts(store) == before
    assert topics.enqueue(store, "wire", topic)
    # a stored purpose wins over the labels: a topic-labelled run trained as 'other' is not offered for topics
    store.execute("UPDATE jobs SET purpose = 'other' WHERE id = ?", [topic])
    with pytest.raises(UserError, match="trained for other, not topics"):
        runs.for_topics(store, topic)
    offered = vocabulary.runs_by_purpose(store, runs.finished_runs(store, runs.TEXT))
    assert offered["topics"] == []
    assert [r["id"] for r in offered["sentiment"]] == [sentiment, topic]


def test_model_topics_can_be_removed_and_rule_topics_stay(store, models, capsys):
    feeds.import_file(store, feed_csv([("2020-07-01", "Bank profits beat forecasts"),
                                       ("2020-07-02", "Fed holds rates")]), "a.csv", "wire")
    feeds.set_topic_rule(store, "wire", "Banks", "bank")
    topic = make_finished_run(store, models["topics"])
    ids = [r[0] for r in store.execute("SELECT id FROM articles ORDER BY id")]
    store.execute("INSERT INTO article_topics (article_id, topic, origin, run_id) VALUES (?, 'macro', 'model', ?)",
                  [ids[1], topic])
    feed_id = feeds.get_feed(store, "wire")["id"]
    assert topics.model_topic_counts(store, feed_id) == {"macro": 1}
    # refused while a topics job could put them back
    job = topics.enqueue(store, "wire", topic)
    with pytest.raises(UserError, match="is tagging this feed now"):
        topics.remove_model_topics(store, "wire")
    store.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", [job])
    assert topics.remove_model_topics(store, "wire") == 1
    assert topics.model_topic_counts(store, feed_id) == {}
    assert [t["topic"] for t in feeds.topics(store, feed_id)] == ["Banks"]
    store.execute("INSERT INTO article_topics (article_id, topic, origin, run_id) VALUES (?, 'macro', 'model', ?)",
                  [ids[1], topic])
    assert main(["topics", "untag", "--feed", "wire"]) == 0
    assert "Removed 1 model topics from feed 'wire'" in capsys.readouterr().out


# ---- Train: purpose and the duplicate prompt -------------------------------------------------------------------


def _dataset(conn, labels=("negative", "neutral", "positive")) -> str:
    rows = [{"row_id": i, "split": ("train", "validation", "test")[i % 3], "text": f"text {i}",
             "label": labels[i % len(labels)]} for i in range(30)]
    ds_id = conn["datasets"].insert({"name": "tiny", "version": 1, "task": "text-classification",
                                     "labels_json": db.dumps(sorted(labels)), "counts_json": "{}", "n_rows": 30,
                                     "created_at": db.now(), "created_by": "test"}).last_pk
    conn["dataset_rows"].insert_all({"dataset_id": ds_id, **r} for r in rows)
    return "tiny:1"


def test_submit_stores_the_purpose_and_refuses_a_duplicate_unless_again(store, capsys):
    ref = _dataset(store)
    first = finetune.submit(store, ref, preset="quick")
    assert runs.purpose(runs.get(store, first)) == "sentiment"  # guessed from the labels, then stored
    assert store.execute("SELECT purpose FROM jobs WHERE id = ?", [first]).fetchone()[0] == "sentiment"
    with pytest.raises(finetune.DuplicateRun, match=rf"Run #{first} already trains tiny:1 with the same base model"):
        finetune.submit(store, ref, preset="quick")
    assert store["jobs"].count == 1
    other = finetune.submit(store, ref, preset="balanced", purpose="topics")  # another setting: no question
    assert runs.get(store, other)["purpose"] == "topics"
    again = finetune.submit(store, ref, preset="quick", again=True)
    assert again not in (first, other)
    assert main(["train", "--dataset", ref, "--preset", "quick", "--no-worker"]) == 2
    assert "--again" in capsys.readouterr().err
    assert main(["train", "--dataset", ref, "--preset", "thorough", "--purpose", "other", "--no-worker"]) == 0
    assert "for other" in capsys.readouterr().err


def test_train_page_asks_before_queueing_the_same_run_twice(page_user):
    conn = db.connect()
    _dataset(conn)
    at = open_page("train")
    assert at.radio(key="train_purpose_tiny:1").value == "sentiment"  # guessed from the labels
    at.radio(key="train_preset").set_value("quick").run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert conn["jobs"].count == 1
    first = conn.execute("SELECT id FROM jobs").fetchone()[0]
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception
    assert conn["jobs"].count == 1  # nothing queued: the page asks first
    assert any(f"Run #{first} already trains this dataset with the same base model and settings" in w.value
               for w in at.warning)
    next(b for b in at.button if b.label == "No, keep one").click().run()
    assert not any("already trains" in w.value for w in at.warning) and conn["jobs"].count == 1
    next(b for b in at.button if b.label == "Train").click().run()
    next(b for b in at.button if b.label == "Yes, train again").click().run()
    assert not at.exception
    assert conn["jobs"].count == 2
    assert f"Run {first + 1} is queued" in texts(at)
    conn.close()
