"""The review loop end to end on real data (issue 16, slow): a run that never saw one kind of sentence errs on it; the
reviewed corrections of that kind become a new dataset version; the retrained run does clearly better on the unchanged
test rows of that kind, and no worse overall than noise.

The kind is sentences mentioning a loss or a profit warning. In Financial PhraseBank about half of them are positive
("net loss narrowed to EUR 8.3 million from EUR 21.9 million"): a model that never saw one reads "loss" as bad news
and gets those wrong, which a few dozen reviewed examples put right.

(A first try with sentences about a fall - decrease, decline, fell, drop - was not a blind spot: the model without them
already called 79% of them right, mostly negative, and the gain there was within noise. Measured 2026-12-01.)"""

from __future__ import annotations

import csv
import io
import random
import re
import time

import pytest

from engine import paths
from engine.data import datasets
from engine.jobs import queue
from engine.reports import reporting
from engine.review import corrections, items
from engine.training import finetune
from tests.test_training import run_in_process

KIND = r"\bloss|profit warning"
SETTINGS = {"epochs": 4, "learning_rate": 1e-4, "batch_size": 8, "max_length": 64, "seed": 42}
N_TRAIN_PER_LABEL = 60  # few plain sentences: 50 reviewed ones weigh enough to move the model
N_POOL = 60  # kind sentences the analyst evaluates the old run on (the rest of the kind is test rows)
N_REVIEW = 50
# macro-F1 on the kind's test rows must rise by at least this much. Measured 2026-12-01 (4 runs): +0.162 (seed 42)
# and +0.139 (seed 43) with these settings, +0.144 and +0.131 with 100 sentences per label and 3 epochs; the old run's
# own figure moved by 0.035 between the two seeds. 0.15 was the first threshold: seed 43 missed it, so it is 0.10,
# about three times the seed-to-seed spread. Accuracy on the kind did not rise in every run (0.589 -> 0.625 with seed
# 42, 0.589 -> 0.554 with 43): the corrected model calls more loss sentences positive, fixing about as many as it breaks.
KIND_GAIN = 0.10
OVERALL_NOISE = 0.06  # overall test macro-F1 may fall by at most this much (another draw of batches moves it)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def _csv(rows, with_split=True) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["text", "label", "split"] if with_split else ["text", "label"])
    for row in rows:
        w.writerow(row)
    return out.getvalue().encode()


def _pick(rows, per_label, rng):
    by = {}
    for text, label in rows:
        by.setdefault(label, []).append((text, label))
    picked = []
    for label in sorted(by):
        rng.shuffle(by[label])
        picked += by[label][:per_label]
    rng.shuffle(picked)
    return picked


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two short fine-tunes: about 2 minutes on 2 idle cores, far longer on a loaded machine
def test_reviewed_corrections_fix_a_kind_the_model_never_saw(store, shared):
    started = time.monotonic()
    rng = random.Random(7)
    kind = re.compile(KIND, re.IGNORECASE)
    train_all, dev_all = _read(shared("fpb", "train.csv")), _read(shared("fpb", "dev.csv"))
    plain_train = [r for r in train_all if not kind.search(r[0])]
    kind_train = [r for r in train_all if kind.search(r[0])]
    plain_dev = [r for r in dev_all if not kind.search(r[0])]
    kind_dev = [r for r in dev_all if kind.search(r[0])]
    train = _pick(plain_train, N_TRAIN_PER_LABEL, rng)
    rest = [r for r in plain_train if r not in train]
    validation = _pick(rest, 25, rng)
    rng.shuffle(kind_train)
    pool, kind_test = kind_train[:N_POOL], kind_train[N_POOL:] + kind_dev  # never in training, never reviewed
    test = _pick(plain_dev, 50, rng) + kind_test
    rows = [(t, y, "train") for t, y in train] + [(t, y, "validation") for t, y in validation] + \
           [(t, y, "test") for t, y in test]
    v1, _ = datasets.import_file(store, _csv(rows), "fpb-without-losses.csv", "fpb-losses",
                                 mapping={"text": "text", "label": "label", "split": "split"})
    assert v1["split_sizes"]["test"] == len(test)

    old = finetune.submit(store, "fpb-losses:1", preset="balanced", overrides=SETTINGS)
    assert run_in_process(old) == 0, queue.get(store, old)["error"]

    # the analyst evaluates the model on new sentences of that kind and reviews its doubtful calls
    evaluation = reporting.evaluate_file(store, old, _csv(pool, with_split=False), "losses.csv", name="losses")
    assert evaluation
    queued = items.queue_predictions(store, old, "eval:losses", below=0.95, limit=N_REVIEW)
    assert 30 <= queued["added"] <= 60
    n = 0
    while (item := items.next_item(store, queued["queue"], actor=None)) is not None:
        items.label(store, item["id"], item["true_label"])  # the analyst's answer: the annotators' label
        n += 1
    assert n == queued["added"]
    result = corrections.add_to_dataset(store, "fpb-losses:1", queue=queued["queue"])
    assert result["dataset"]["ref"] == "fpb-losses:2" and result["added"] == n

    new = corrections.retrain(store, old, "fpb-losses:2")
    assert run_in_process(new) == 0, queue.get(store, new)["error"]
    assert queue.get(store, new)["config"]["corrects"] == old

    compared = corrections.compare(store, old, new, match=KIND)
    overall, kind_rows = compared["rows"]["test"], compared["rows"]["test: " + KIND]
    reviewed = compared["rows"]["reviewed items"]
    figures = (f"kind test rows n={kind_rows['old']['n']}: macro-F1 {kind_rows['old']['macro_f1']:.3f} -> "
               f"{kind_rows['new']['macro_f1']:.3f}, accuracy {kind_rows['old']['accuracy']:.3f} -> "
               f"{kind_rows['new']['accuracy']:.3f}; overall n={overall['old']['n']}: macro-F1 "
               f"{overall['old']['macro_f1']:.3f} -> {overall['new']['macro_f1']:.3f}; reviewed (seen) macro-F1 "
               f"{reviewed['old']['macro_f1']:.3f} -> {reviewed['new']['macro_f1']:.3f}; "
               f"{n} reviewed; kind rows fixed/broken {compared['changed']['test: ' + KIND]}; "
               f"{time.monotonic() - started:.0f}s")
    print(figures)
    (paths.home() / "e2e-figures.txt").write_text(figures)
    assert kind_rows["old"]["n"] == len(kind_test) and overall["old"]["n"] == len(test)
    assert kind_rows["new"]["macro_f1"] - kind_rows["old"]["macro_f1"] >= KIND_GAIN, figures
    assert overall["new"]["macro_f1"] >= overall["old"]["macro_f1"] - OVERALL_NOISE, figures
