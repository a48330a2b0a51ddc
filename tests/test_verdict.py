"""A run that went wrong says so: the check, the broken run it flags, and where an analyst reads it (Runs, Reports,
`runs show`, `train --wait`)."""

from __future__ import annotations

import pytest

from tests.helpers import make_finished_run, open_page, texts
from tests.test_training import insert_text_dataset, run_in_process

LABELS = ["negative", "neutral", "positive"]
TRUE = ["negative"] * 12 + ["neutral"] * 30 + ["positive"] * 18


def rows(pred: list[str]) -> list[dict]:
    return [{"row_id": i, "text": f"sentence {i}", "true_label": t, "pred_label": p, "confidence": 0.9,
             "probs": {label: (0.9 if label == p else 0.05) for label in LABELS}}
            for i, (t, p) in enumerate(zip(TRUE, pred))]


GOOD = list(TRUE)
GOOD[0], GOOD[20], GOOD[50] = "neutral", "positive", "neutral"  # a few mistakes, every class predicted
COLLAPSED = ["neutral"] * len(TRUE)  # always the majority class
NO_NEGATIVE = [("neutral" if t == "negative" else t) for t in TRUE]  # good otherwise, never 'negative'


def test_the_check_flags_a_majority_collapse_and_a_missing_class_but_not_a_good_model():
    from engine.training import verdict

    assert verdict.check(TRUE, GOOD) == []
    collapsed = verdict.check(TRUE, COLLAPSED)
    assert any("learnt little" in w and "'neutral'" in w for w in collapsed), collapsed
    assert any("almost never predicts" in w and "'negative'" in w and "'positive'" in w for w in collapsed)
    assert "Run again" in collapsed[-1] and "Balanced" in collapsed[-1]  # and what to do
    missing = verdict.check(TRUE, NO_NEGATIVE)
    assert len(missing) == 1 and "Run again" in missing[0] and "'negative' (predicted 0 times for 12 true, recall 0.00)" in missing[0]
    # the baselines: always 'neutral' (share 0.5) -> F1 2*0.5/1.5 for that class, 0 for the others
    assert verdict.baselines(TRUE)["majority"] == pytest.approx((2 * 0.5 / 1.5) / 3)


def test_a_tagger_that_answers_O_everywhere_is_flagged():
    from engine.training import verdict

    true = [["B-ORG", "I-ORG", "O", "B-PER"]] * 3
    assert verdict.check_tags(true, [["O"] * 4] * 3)
    assert verdict.check_tags(true, true) == []


def test_a_run_at_learning_rate_1_is_flagged_at_the_end_of_training(store, shared, tiny_text_model):
    from engine.jobs import queue
    from engine.training import finetune, verdict

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=60, n_val=15, n_test=15)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={"max_length": 32, "batch_size": 8, "epochs": 2, "learning_rate": 1.0,
                                        "warmup_ratio": 0.0})
    assert run_in_process(run_id) == 0
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", job["error"]
    warnings = job["metrics"]["warnings"]
    assert warnings and "almost never predicts" in " ".join(warnings), job["metrics"]
    assert verdict.for_run(store, job) == warnings  # read back as recorded


def test_runs_and_reports_pages_warn_about_a_broken_run_and_not_about_a_good_one(home, store, tiny_text_model):
    good = make_finished_run(store, tiny_text_model, rows(GOOD), metrics={"macro_f1": 0.95, "accuracy": 0.95})
    # an old run: no warnings recorded in its metrics, computed from its predictions on read
    broken = make_finished_run(store, tiny_text_model, rows(COLLAPSED), metrics={"macro_f1": 0.22, "accuracy": 0.5})

    page = open_page("runs", run=str(broken))
    assert "learnt little" in texts(page) and "Run again" in texts(page)
    page = open_page("runs", run=str(good))
    assert not page.warning and "learnt little" not in texts(page)

    page = open_page("reports", run=str(broken))
    assert any("learnt little" in w.value for w in page.warning)
    page = open_page("reports", run=str(good))
    assert not any("learnt little" in w.value or "almost never" in w.value for w in page.warning)


def test_runs_show_and_train_wait_print_the_warning_instead_of_succeeded(home, store, tiny_text_model, capsys):
    import io

    from engine.cli import main
    from engine.cli.train import follow

    good = make_finished_run(store, tiny_text_model, rows(GOOD), metrics={"macro_f1": 0.95, "accuracy": 0.95})
    broken = make_finished_run(store, tiny_text_model, rows(COLLAPSED), metrics={"macro_f1": 0.22, "accuracy": 0.5})
    assert main.main(["runs", "show", str(broken)]) == 0
    assert "WARNING: This run learnt little" in capsys.readouterr().out
    assert main.main(["runs", "show", str(good)]) == 0
    assert "WARNING" not in capsys.readouterr().out

    out = io.StringIO()
    assert follow(store, broken, out=out) == 0
    assert f"Run {broken} finished, but WARNING: This run learnt little" in out.getvalue()
    assert f"Run {broken} succeeded" not in out.getvalue()
    out = io.StringIO()
    follow(store, good, out=out)
    assert f"Run {good} succeeded" in out.getvalue() and "WARNING" not in out.getvalue()
