"""Model soups (engine/training/soup.py): a run trains its settings from several seeds and averages the weights into
one ordinary model; Thorough is a soup of three Balanced runs. The soup's model is exactly the average of the single
runs of those seeds, Reports and scoring read it as any run's, progress counts over all its runs, and a cancelled soup
resumes without training its finished runs again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_jobs import last_step, wait_for
from tests.test_training import insert_text_dataset, run_in_process

SMALL = {"max_length": 32, "batch_size": 8, "epochs": 1, "r_drop": 0.0}


def _weights(model_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_the_average_is_uniform_over_floating_weights_and_keeps_integer_buffers():
    import torch

    from engine.training import soup

    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([3.0], dtype=torch.bfloat16), "ids": torch.tensor([0, 1])}
    out = soup.average([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and out["h"].dtype == torch.bfloat16 and out["h"].item() == 2.0
    assert out["ids"].dtype == torch.int64 and out["ids"].tolist() == [0, 1]
    assert soup.member_seeds(42, 3) == [42, 1042, 2042]  # the first member is the single run of the same seed
    assert soup.runs({"soup": 3}) == 3 and soup.runs({}) == 1
    with pytest.raises(ValueError):
        soup.average([])


def test_soup_is_a_validated_option_refused_with_lora_and_for_generation():
    from engine.training import finetune

    for bad in (0, 11, 2.5, "three"):
        with pytest.raises(finetune.ConfigError) as exc:
            finetune.build_config("balanced", {"soup": bad})
        assert set(exc.value.errors) == {"soup"} and "1: off" in exc.value.errors["soup"]
    with pytest.raises(finetune.ConfigError) as exc:
        finetune.build_config("thorough", {"lora": True})
    assert "LoRA" in exc.value.errors["soup"]
    assert finetune.build_config("thorough", {"lora": True, "soup": 1})["lora"]
    # tagging and generation keep a single run for Thorough (soups were measured on text classification only)
    assert finetune.preset_config("thorough", "token-classification")["soup"] == 1
    assert finetune.preset_config("thorough", "generation")["soup"] == 1


def test_a_soup_is_the_average_of_the_single_runs_of_its_seeds_and_reads_as_any_run(store, shared, tiny_text_model):
    from engine.jobs import queue
    from engine.models import inference
    from engine.reports import reporting
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=48, n_val=12, n_test=12)
    souped = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="thorough",
                             overrides={**SMALL, "soup": 2})
    singles = [finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="balanced",
                               overrides={**SMALL, "seed": seed}) for seed in (42, 1042)]
    for run_id in (souped, *singles):
        assert run_in_process(run_id) == 0
    job = queue.get(store, souped)
    assert job["status"] == "succeeded", job["error"]
    one, two = (queue.get(store, r) for r in singles)

    # the soup's saved model is the uniform average of the two single runs' saved models, weight for weight
    import torch

    mine, a, b = _weights(job["model_dir"]), _weights(one["model_dir"]), _weights(two["model_dir"])
    assert set(mine) == set(a)
    for key in mine:
        if torch.is_floating_point(mine[key]):
            torch.testing.assert_close(mine[key], (a[key] + b[key]) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])  # two different runs were averaged

    soup = job["metrics"]["soup"]
    assert soup["runs"] == 2 and soup["seeds"] == [42, 1042]
    assert soup["member_validation_macro_f1"] == pytest.approx(
        [one["metrics"]["validation_macro_f1"], two["metrics"]["validation_macro_f1"]])
    assert soup["validation_macro_f1"] == job["metrics"]["validation_macro_f1"]
    assert job["metrics"]["steps"] == one["metrics"]["steps"] + two["metrics"]["steps"]

    # progress counts on over both runs, and each row says which run it is
    rows = queue.progress_rows(store, souped, "train")
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and rows[-1]["step"] == rows[-1]["total_steps"] == job["metrics"]["steps"]
    assert {json.loads(r["extra_json"])["soup_run"] for r in rows} == {1, 2}
    evals = queue.progress_rows(store, souped, "eval")
    assert [r["step"] for r in evals] == sorted(r["step"] for r in evals) and len(evals) == 2  # one each run's epoch

    # the run folder keeps the members' figures, not their weights (each would be a whole model)
    folder = Path(job["model_dir"]).parent / "members"
    assert sorted(p.name for p in folder.iterdir()) == ["0.json", "1.json"]
    assert not list((Path(job["model_dir"]).parent / "checkpoints").glob("checkpoint-*"))

    # Reports and scoring read it as any run: stored test predictions agree with the saved model
    preds = list(store.query("SELECT text, pred_label FROM predictions WHERE run_id = ? ORDER BY row_id", [souped]))
    assert len(preds) == 12
    again = inference.load(job["model_dir"]).predict([p["text"] for p in preds])
    assert [x.label for x in again] == [p["pred_label"] for p in preds]
    report = reporting.run_report(store, souped)
    assert report.n_scored == 12 and report.report["macro avg"]["f1-score"] == pytest.approx(job["metrics"]["macro_f1"])


@pytest.mark.process
def test_a_cancelled_soup_resumes_without_training_its_finished_runs_again(store, shared, tiny_text_model, workers):
    from engine.jobs import queue
    from engine.training import finetune

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=16)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="thorough",
                             overrides={**SMALL, "epochs": 2, "soup": 2})  # 16 steps a run, 32 in all
    workers()
    wait_for(store, run_id, lambda j: last_step(store, run_id) >= 20, what="steps of the soup's second run")
    assert queue.cancel(store, run_id) == "cancelling"
    job = wait_for(store, run_id, lambda j: j["status"] != "running", what="the cancel")
    assert job["status"] == "cancelled" and job["resume_from"]
    stopped_at = last_step(store, run_id)
    assert 16 < stopped_at < 32
    members = Path(job["resume_from"]).parents[1] / "members"
    assert (members / "0.json").is_file() and (members / "0.pt").is_file() and not (members / "1.json").exists()

    n_before = len(queue.progress_rows(store, run_id, "train"))
    queue.resume(store, run_id)
    done = wait_for(store, run_id, lambda j: j["status"] in queue.FINISHED and j["attempt"] == 2, what="the resume")
    assert done["status"] == "succeeded", done["error"]
    resumed = [r["step"] for r in queue.progress_rows(store, run_id, "train")][n_before:]
    assert resumed and min(resumed) > 16 and max(resumed) == 32  # only the second run's remaining steps trained
    log = queue.log_tail(done, 400)
    assert "run 1 of 2 (seed 42) was trained before" in log
    assert done["metrics"]["soup"]["runs"] == 2 and len(done["metrics"]["soup"]["members"]) == 2
    assert not (members / "0.pt").exists()  # the model is saved: the members' weights went, their figures stay


def test_time_left_for_a_soup_counts_its_runs_still_to_train(store, tiny_text_model):
    from engine import db
    from engine.jobs import overview, queue
    from engine.training import finetune

    config = finetune.build_config("thorough")
    assert config["soup"] == 3
    one = finetune.build_config("balanced")
    n = 1000
    # before it starts: three Balanced runs' time, each with its own loading and test predictions
    assert finetune.estimate_seconds(store, n, config, speed=40.0) == pytest.approx(
        3 * finetune.estimate_seconds(store, n, one, speed=40.0))
    # while it runs: the runner's ETA (a row of the second run: 10 s since it started, 30 steps of 90 done in all)
    run_id = queue.enqueue(store, "train", dataset_id=1, base_model="default", config=config, device_slot="cpu")
    store.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", [db.now(), run_id])
    store["progress"].insert({"job_id": run_id, "kind": "train", "step": 40, "total_steps": 90, "elapsed_s": 10.0,
                              "eta_s": 50.0, "created_at": db.now()})
    low, high = overview.remaining(store, queue.get(store, run_id))
    assert low == pytest.approx(45) and high == pytest.approx(70)  # not 10 s / 40 steps x 50 left = 12.5 s


def test_the_train_page_the_cli_and_the_runs_page_show_a_soup(home, monkeypatch, shared, tiny_text_model, capsys):
    from engine import db
    from engine.cli.main import main
    from engine.jobs import queue, supervisor
    from tests.helpers import make_finished_run, open_page, texts, train_page_on_fpb

    conn, at = train_page_on_fpb(monkeypatch, shared, tiny_text_model)
    assert "3 runs averaged into one model" in texts(at)  # Thorough's card
    at.radio(key="train_preset").set_value("thorough").run()
    soup_field = at.number_input(key="adv_soup")
    assert soup_field.value == 3 and soup_field.label.startswith("Model soup")
    soup_field.set_value(2).run()
    at.button[0].click().run()
    assert not at.exception
    job = queue.list_jobs(conn)[0]
    assert job["config"]["soup"] == 2 and job["config"]["preset"] == "thorough"
    assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--soup", "4", "--no-worker",
                 "--again"]) == 0
    assert queue.list_jobs(conn)[0]["config"]["soup"] == 4
    assert main(["train", "--dataset", "fpb", "--base-model", str(tiny_text_model), "--soup", "2", "--lora",
                 "--no-worker", "--again"]) != 0  # refused, nothing queued
    assert len(queue.list_jobs(conn)) == 2

    # running: the progress bar says which of the soup's runs is training
    monkeypatch.setattr(supervisor, "check_running", lambda conn: None)  # this running run has no process
    running = job["id"]
    conn.execute("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ?", [db.now(), running])
    conn["progress"].insert({"job_id": running, "kind": "train", "step": 30, "total_steps": 40, "elapsed_s": 5.0,
                             "eta_s": 20.0, "created_at": db.now(), "extra_json": db.dumps({"soup_run": 2,
                                                                                            "soup_runs": 2})})
    page = open_page("runs", run=str(running))
    assert any("Step 30 of 40" in str(p.proto) and "run 2 of 2" in str(p.proto) for p in page.get("progress"))
    # finished: what the soup averaged, and how each of its runs scored alone
    finished = make_finished_run(conn, tiny_text_model, metrics={
        "macro_f1": 0.8, "accuracy": 0.85, "validation_macro_f1": 0.84,
        "soup": {"runs": 3, "seeds": [42, 1042, 2042], "validation_macro_f1": 0.84,
                 "member_validation_macro_f1": [0.81, 0.83, 0.82], "members": []}})
    page = open_page("runs", run=str(finished))
    assert ("A model soup: 3 runs (seeds 42, 1042, 2042) averaged into this one model. Validation macro-F1 0.840; "
            "the runs alone 0.810, 0.830, 0.820.") in texts(page)
    assert "too few to tell" not in texts(page)  # the soup is not below its runs here
    # a soup whose validation figure is below each of its runs' (seen on fpb: 0.799 against 0.831-0.838) says why
    # that need not mean it is worse, here, in `runs show` and in Chinese
    below = make_finished_run(conn, tiny_text_model, metrics={
        "macro_f1": 0.8, "validation_macro_f1": 0.799, "n_validation": 296,
        "soup": {"runs": 3, "seeds": [47, 1047, 2047], "validation_macro_f1": 0.799,
                 "member_validation_macro_f1": [0.831, 0.838, 0.835], "members": []}})
    said = ("The soup scores below each of its runs on the validation split, which has only 296 rows: too few to tell "
            "such models apart.")
    assert said in texts(open_page("runs", run=str(below)))
    assert main(["runs", "show", str(below)]) == 0 and said in capsys.readouterr().out
    assert main(["--lang", "zh_CN", "runs", "show", str(below)]) == 0
    assert "验证集只有 296 行" in capsys.readouterr().out


@pytest.mark.process
def test_a_soup_trains_data_parallel_too(store, shared, tiny_text_model):
    """Every rank trains each of the soup's runs and averages them; the first rank keeps the runs' weights and saves."""
    from engine.jobs import queue
    from engine.training import finetune
    from tests.test_training import cli

    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=64, n_val=16, n_test=16)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="thorough",
                             overrides={**SMALL, "soup": 2})
    done = cli("_job", str(run_id), env={"BELLWETHER_DDP_CPU_PROCS": "2"})
    job = queue.get(store, run_id)
    assert job["status"] == "succeeded", (job["error"], done.stderr[-2000:])
    assert job["metrics"]["world_size"] == 2 and job["metrics"]["soup"]["runs"] == 2
    # 64 rows, 8 per process, 2 processes: 4 steps a run, 8 in all
    assert queue.progress_rows(store, run_id, "train")[-1]["total_steps"] == 8
    assert store.execute("SELECT COUNT(*) FROM predictions WHERE run_id = ?", [run_id]).fetchone()[0] == 16
