"""The generation task: import (text, prompt/response, messages) with its report, response-only loss labels, a
tiny GPT-2 trained from scratch on real news (description -> headline), the report, streaming, LoRA and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import db
from tests.helpers import build_tiny_gpt2
from tests.test_training import run_in_process

FAST = {"epochs": 2, "learning_rate": 5e-3, "batch_size": 16, "max_length": 64, "warmup_ratio": 0.0,
        "eval_steps": 0, "seed": 7}


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(autouse=True)
def few_held_out_generations(monkeypatch):
    """Seconds, not minutes, on 2 shared cores: 8 held-out prompts, 16 new tokens each."""
    from engine.training import generation

    monkeypatch.setattr(generation, "N_EVAL_GENERATIONS", 8)
    monkeypatch.setattr(generation, "EVAL_MAX_NEW_TOKENS", 16)


def import_news(conn, shared, name="headlines", n_rows=None):
    """Reuters news (description -> headline) as a generation dataset; ``n_rows``: the first rows only."""
    from engine.data import datasets

    data = shared("news", "reuters_headlines.csv").read_bytes()
    if n_rows:
        data = b"\r\n".join(data.splitlines()[: n_rows + 1])
    saved, report = datasets.import_file(conn, data, "reuters_headlines.csv", name, "analyst", task="generation")
    return saved, report


def corpus_texts(shared) -> list[str]:
    import pandas as pd

    frame = pd.read_csv(shared("news", "reuters_headlines.csv"), encoding="cp1252")
    return list(frame["Headlines"].astype(str)) + list(frame["Description"].astype(str))


# ---- data ---------------------------------------------------------------------------------------------------------


def test_news_file_is_read_as_description_to_headline(store, shared):
    saved, report = import_news(store, shared)
    assert saved["task"] == "generation" and saved["version"] == 1
    assert report.mapping["mode"] == "prompt-response"
    assert (report.mapping["prompt"], report.mapping["response"]) == ("Description", "Headlines")
    text = report.to_text()
    assert "prompt = 'Description', response = 'Headlines'" in text and "text generation" in text
    assert sum(saved["split_sizes"].values()) == saved["n_rows"] > 450
    from engine.data import datasets

    row = datasets.rows(store, saved["id"], "train")[0]
    assert row["text"] and row["label"] and row["text"] != row["label"]
    again, _ = import_news(store, shared)
    assert again["version"] == 2  # same versioning as the other tasks


def test_report_lists_what_matters_for_generation(store):
    from engine.data import datasets

    long = " ".join(["revenue"] * 700)
    lines = ["question,answer"]
    lines += [f"What did company {i} report?,Company {i} reported higher profit" for i in range(30)]
    lines += ["What did company 1 report?,Company 1 reported higher profit"]  # duplicate pair
    lines += [",An answer without a question", "A question without an answer,", "Same text,same text"]
    lines += [f"{long},Long input"]
    saved, report = datasets.import_file(store, "\n".join(lines).encode(), "qa.csv", "qa", task="generation")
    codes = {p.code: p for p in report.problems}
    assert codes["empty_prompt"].count == 1 and codes["empty_prompt"].action == "dropped"
    assert codes["empty_response"].count == 1
    assert codes["duplicates"].count == 1 and codes["duplicates"].action == "merged"
    assert codes["prompt_equals_response"].count == 1
    assert codes["too_long"].count == 1 and "truncated" in codes["too_long"].message
    assert report.length["n_truncated"] == 1 and 0 < report.length["share_truncated"] < 0.1
    assert saved["n_rows"] == 31  # 30 pairs + the long one


def test_messages_jsonl_and_plain_text_are_recognised(store):
    from engine.data import datasets, generation, ingest

    convo = [{"messages": [{"role": "system", "content": "You write headlines."},
                           {"role": "user", "content": f"Bank {i} beat estimates on trading income."},
                           {"role": "assistant", "content": f"Bank {i} beats estimates"}]} for i in range(20)]
    convo.append({"messages": [{"role": "user", "content": "no answer"}]})
    data = "\n".join(json.dumps(c) for c in convo).encode()
    candidate = ingest.read_file(data, "chat.jsonl")
    assert generation.guess_columns(candidate)["mode"] == "messages"
    saved, report = datasets.import_file(store, data, "chat.jsonl", "chat", task="generation")
    assert report.problem("unreadable_messages").count == 1
    row = datasets.rows(store, saved["id"])[0]
    assert row["label"].startswith("Bank") and row["tokens"][0]["role"] == "system"
    plain = "note\n" + "\n".join(f"Analyst note number {i} on rates." for i in range(20))
    saved, report = datasets.import_file(store, plain.encode(), "notes.csv", "notes", task="generation")
    assert report.mapping["mode"] == "text" and datasets.rows(store, saved["id"])[0]["label"] is None


# ---- labels -------------------------------------------------------------------------------------------------------


def test_prompt_tokens_carry_no_loss(tiny_gpt2):
    from engine.models import generate
    from engine.training.generation import Collator, encode_row

    tokenizer, _ = generate.load_causal(tiny_gpt2)
    row = {"text": "Shares of the bank rose after results.", "label": "Bank shares rise", "tokens": None}
    item = encode_row(tokenizer, row, 96)
    prompt_ids = tokenizer(generate.prompt_text(tokenizer, row["text"]), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer("Bank shares rise", add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert item["input_ids"][:n] == prompt_ids
    assert item["labels"][:n] == [-100] * n  # no prompt token is learnt
    assert item["labels"][n:] == response_ids + [tokenizer.sep_token_id]  # the response and its end token are
    plain = encode_row(tokenizer, {"text": "Bank shares rise", "label": None, "tokens": None}, 96)
    assert plain["labels"] == plain["input_ids"]  # plain text: every token
    batch = Collator(tokenizer.pad_token_id)([item, plain])
    assert batch["labels"][1, len(plain["input_ids"]):].eq(-100).all()  # padding carries no loss either


# ---- training, report, generation -----------------------------------------------------------------------------


def _train(store, shared, tiny_gpt2, n_rows=None, **extra):
    from engine.training import finetune

    saved, _ = import_news(store, shared, n_rows=n_rows)
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="quick",
                             overrides={**FAST, **extra})
    assert run_in_process(run_id) == 0, (store.execute("select error from jobs where id=?", [run_id]).fetchone())
    return run_id


def test_tiny_gpt2_learns_headlines_from_news(store, shared, tiny_gpt2):
    from engine.jobs import queue
    from engine.models import generate
    from engine.reports import generation as report

    run_id = _train(store, shared, tiny_gpt2)
    run = queue.get(store, run_id)
    m = run["metrics"]
    # the untrained model is near-uniform over 30k word pieces; training on the corpus cuts perplexity many times
    assert m["base_validation_perplexity"] > 5000
    assert m["validation_perplexity"] * 10 < m["base_validation_perplexity"], m
    assert m["test_perplexity"] * 10 < m["base_test_perplexity"]
    assert {"rouge1", "rouge2", "rougeL", "bleu", "base_rouge1", "base_bleu"} <= set(m)
    assert m["rouge1"] >= m["base_rouge1"]
    # generated text is made of the corpus's words (its word pieces, with this WordPiece tokenizer); the untrained
    # model's draws come from the whole 30k vocabulary
    tokenizer, _ = generate.load(run["model_dir"])
    corpus_ids = set(tokenizer(" ".join(corpus_texts(shared)), add_special_tokens=False)["input_ids"])

    def in_corpus(model_dir):
        tok, model = generate.load(model_dir)
        text = "".join(generate.stream(tok, model, generate.prompt_text(tok, "Apple shares rose on Friday."),
                                       generate.Sampling(max_new_tokens=24, min_new_tokens=24, seed=1)))
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return (sum(i in corpus_ids for i in ids) / len(ids) if ids else 0.0), len(set(ids)), text

    tuned_share, distinct, text = in_corpus(run["model_dir"])
    base_share, _, base_text = in_corpus(tiny_gpt2)
    assert distinct >= 5, text  # not one token repeated
    assert tuned_share >= 0.9 and base_share < 0.5, (tuned_share, text, base_share, base_text)
    rep = report.build(store, run)
    assert rep["fine_tuned"]["validation_perplexity"] == pytest.approx(m["validation_perplexity"])
    assert len(rep["rows"]) == m["n_generated"] > 0
    first = rep["rows"][0]
    assert first["prompt"] and first["reference"] and "base_output" in first and "fine_tuned_output" in first
    card = (run["model_dir"] and open(f"{run['model_dir']}/README.md").read())
    assert "validation perplexity" in card and "headlines:1" in card.replace(" version ", ":")
    # the export is formula-escaped
    store.execute("update predictions set true_label = '=HYPERLINK(1)' where run_id = ? and row_id = ?",
                  [run_id, first["row_id"]])
    csv_bytes = report.rows_csv(report.build(store, run))
    assert b"'=HYPERLINK(1)" in csv_bytes


def test_lora_targets_gpt2_attention_and_trains(store, shared, tiny_gpt2):
    from engine.jobs import queue
    from engine.training import generation

    assert generation.lora_targets("gpt2") == "c_attn"
    assert generation.lora_targets("qwen2") == generation.lora_targets("llama") == "q_proj,k_proj,v_proj,o_proj"
    run_id = _train(store, shared, tiny_gpt2, n_rows=150, lora=True, lora_r=4, lora_alpha=8, epochs=1, learning_rate=1e-2)
    run = queue.get(store, run_id)
    assert run["metrics"]["lora_target_modules"] == "c_attn"  # GPT-2's attention projection, chosen by model type
    assert "lora_target_modules: c_attn" in (Path(run["model_dir"]) / "README.md").read_text()
    assert run["metrics"]["validation_perplexity"] < run["metrics"]["base_validation_perplexity"]
    assert not list(Path(run["model_dir"]).glob("adapter_*"))  # merged: a plain model folder


def test_cancelled_generation_run_resumes_from_its_checkpoint(store, shared, tiny_gpt2):
    import threading
    import time

    from engine.data import datasets
    from engine.jobs import queue
    from engine.training import finetune

    saved, _ = import_news(store, shared, n_rows=150)
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="quick",
                             overrides={**FAST, "epochs": 2})

    def cancel_after_a_few_steps():
        conn = db.connect()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (conn.execute("select max(step) from progress where job_id = ? and kind = 'train'", [run_id]).fetchone()[0] or 0) >= 3:
                conn.execute("update jobs set cancel_requested = 1 where id = ?", [run_id])
                break
            time.sleep(0.1)
        conn.close()

    watcher = threading.Thread(target=cancel_after_a_few_steps)
    watcher.start()
    run_in_process(run_id)
    watcher.join()
    job = queue.get(store, run_id)
    assert job["status"] == "cancelled" and job["resume_from"], job["error"]
    stopped_at = int(Path(job["resume_from"]).name.split("-")[1])
    n_before = len(queue.progress_rows(store, run_id, "train"))
    queue.resume(store, run_id)
    assert run_in_process(run_id) == 0
    resumed = [r["step"] for r in queue.progress_rows(store, run_id, "train")][n_before:]
    assert resumed and min(resumed) > stopped_at  # continued from the checkpoint, not from step 0
    done = queue.get(store, run_id)
    assert done["status"] == "succeeded" and done["metrics"]["steps"] == max(resumed)
    assert done["metrics"]["base_validation_perplexity"] > done["metrics"]["validation_perplexity"]
    assert datasets.get(store, saved["ref"])["task"] == "generation"


# ---- the command line ------------------------------------------------------------------------------------------


@pytest.mark.process
def test_cli_import_train_report_generate(home, shared, tiny_gpt2, tmp_path):
    from tests.test_training import cli

    news = tmp_path / "news.csv"
    news.write_bytes(b"\r\n".join(shared("news", "reuters_headlines.csv").read_bytes().splitlines()[:151]))
    out = cli("dataset", "import", str(news), "--name", "heads", "--task", "generation", "--prompt-col", "Description",
              "--response-col", "Headlines", "--yes")
    assert out.returncode == 0, out.stderr
    assert "prompt = 'Description', response = 'Headlines'" in out.stdout and "Saved dataset heads version 1" in out.stdout
    bad = cli("dataset", "import", str(news), "--name", "x", "--task", "generation", "--prompt-col", "Nope", "--yes")
    assert bad.returncode == 2 and "has no column 'Nope'" in bad.stderr
    out = cli("train", "--dataset", "heads", "--base-model", str(tiny_gpt2), "--preset", "quick", "--epochs", "1",
              "--lr", "0.005", "--max-length", "64", "--no-worker")
    assert out.returncode == 0, out.stderr
    run_id = int(out.stdout.strip().splitlines()[-1])
    env = {"BELLWETHER_JOB_STDOUT_IS_LOG": "1"}
    job = cli("_job", str(run_id), env=env, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    rep = cli("report", str(run_id))
    assert rep.returncode == 0, rep.stderr
    assert "validation perplexity" in rep.stdout and "ROUGE-L" in rep.stdout and "fine-tuned:" in rep.stdout
    data = json.loads(cli("report", str(run_id), "--format", "json").stdout)
    assert data["fine_tuned"]["validation_perplexity"] < data["base"]["validation_perplexity"]
    gen = cli("generate", str(run_id), "Apple shares rose after results.", "--max-new-tokens", "12", "--seed", "3")
    assert gen.returncode == 0 and gen.stdout.strip(), gen.stderr
    wrong = cli("generate", str(run_id), "x", "--max-new-tokens", "100000")
    assert wrong.returncode == 2 and "max new tokens must be between 1 and 512" in wrong.stderr


# ---- the Data page ---------------------------------------------------------------------------------------------


def test_data_page_guesses_generation_and_saves_it(home, monkeypatch):
    from engine.data import datasets
    from tests.helpers import open_page, texts

    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    sample = ("question,answer\n" + "".join(f"What did bank {i} report?,Bank {i} reported a loss\n" for i in range(20))
              + "Same,same\n").encode()
    at = open_page("data")
    at.file_uploader[0].set_value(("qa.csv", sample, "text/csv")).run()
    assert not at.exception and not at.error
    assert at.radio[0].value.startswith("Generation")  # guessed from the prompt/response column names
    assert next(s for s in at.selectbox if s.label == "Prompt column").value == "question"
    assert next(s for s in at.selectbox if s.label == "Response column").value == "answer"
    shown = texts(at)
    assert "response the same as the prompt" in shown
    next(t for t in at.text_input if t.label == "Dataset name").set_value("qa")
    next(b for b in at.button if b.label == "Accept & save").click().run()
    assert not at.exception
    saved = datasets.get(db.connect(), "qa")
    assert saved["task"] == "generation" and saved["n_rows"] == 20


# ---- the Playground page ----------------------------------------------------------------------------------------


def test_playground_page_answers_and_shows_the_report(home, monkeypatch, tiny_gpt2):
    from tests.helpers import make_finished_run, open_page

    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    (tiny_gpt2 / "bellwether.json").write_text(json.dumps({"base_model_source": str(tiny_gpt2)}))
    conn = db.connect()
    run_id = make_finished_run(conn, tiny_gpt2, task="generation", metrics={
        "validation_perplexity": 812.5, "base_validation_perplexity": 30100.0, "rougeL": 0.21, "base_rougeL": 0.01})
    conn["predictions"].insert({"run_id": run_id, "split": "test", "row_id": 1, "text": "Bank results beat forecasts",
                                "true_label": "=cmd()", "pred_label": "Bank beats", "base_output": "zebra"})
    at = open_page("playground", run=str(run_id))
    figures = at.dataframe[0].value
    assert list(figures["figure"])[:2] == ["validation perplexity", "ROUGE-L"] or "validation perplexity" in list(figures["figure"])
    row = figures[figures["figure"] == "validation perplexity"].iloc[0]
    assert row["base model"] == 30100.0 and row["fine-tuned"] == 812.5
    outputs = at.dataframe[1].value
    assert list(outputs["reference"]) == ["=cmd()"] and list(outputs["base_output"]) == ["zebra"]
    labels = {s.label for s in at.slider} | {n.label for n in at.number_input}
    assert {"Temperature", "Top-p", "Repetition penalty", "Max new tokens", "Top-k", "Seed"} <= labels
    next(n for n in at.number_input if n.label == "Max new tokens").set_value(8).run()
    prompt = "Shares rose. ![x](http://evil.example/x.png) [sign in](javascript:alert(1)) <b>bold</b>"
    at.chat_input[0].set_value(prompt).run()
    assert not at.exception, [e.message for e in at.exception]
    plain = [t.value for t in at.text]
    assert plain[0] == prompt  # the prompt as typed, plain text: no image, no link, no HTML
    assert len(plain) == 2 and plain[1]  # the streamed answer, plain text too
    assert not any("evil.example" in m.value or "javascript:" in m.value for m in at.markdown)


def test_generation_needs_a_model_that_generates(store, shared, tiny_gpt2):
    from engine.training import finetune

    saved, _ = import_news(store, shared, n_rows=40)
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, saved["ref"], base_model="default", preset="quick")
    assert "is not a model that generates text" in err.value.errors["base_model"]
    with pytest.raises(finetune.ConfigError) as err:
        finetune.submit(store, saved["ref"], base_model="someorg/no-such-model", preset="quick")
    assert "pick it as a local folder" in err.value.errors["base_model"]
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="balanced")
    config = db.loads(store.execute("select config_json from jobs where id = ?", [run_id]).fetchone()[0])
    assert (config["epochs"], config["learning_rate"], config["batch_size"]) == (3, 5e-5, 8)  # generation presets
    assert config["max_length"] == 128  # capped by the tiny model's context
    # the classifier runner's speed-ups are not the generation runner's: asked for, the run still records them off
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="quick",
                             overrides={"freeze_embeddings": True, "fast_dropout": True})
    config = db.loads(store.execute("select config_json from jobs where id = ?", [run_id]).fetchone()[0])
    assert config["freeze_embeddings"] is False and config["fast_dropout"] is False


def test_evaluate_a_generation_run_on_a_new_file(store, tiny_gpt2, monkeypatch):
    from engine.jobs import runs
    from engine.reports import generation as report
    from tests.helpers import make_finished_run

    (tiny_gpt2 / "bellwether.json").write_text(json.dumps({"base_model_source": str(tiny_gpt2)}))
    run_id = make_finished_run(store, tiny_gpt2, task="generation")
    data = ("note,summary\n" + "".join(f"Bank {i} cut its outlook.,Bank {i} cuts outlook\n" for i in range(6))).encode()
    result = report.evaluate_file(store, runs.get(store, run_id), data, "q3.csv", "q3",
                                  {"prompt": "note", "response": "summary"})
    assert result["split"] == "eval:q3" and len(result["rows"]) == 6
    assert result["rows"][0]["reference"] == "Bank 0 cuts outlook"
    assert {"rouge1", "rougeL", "bleu"} <= {k for k, v in result["fine_tuned"].items() if v is not None}
    again = report.build(store, runs.get(store, run_id), "eval:q3")  # kept with the run
    assert len(again["rows"]) == 6 and again["fine_tuned"]["rougeL"] == result["fine_tuned"]["rougeL"]


# ---- packing ------------------------------------------------------------------------------------------------------


def test_packing_keeps_each_example_to_itself(tiny_gpt2):
    """Packed blocks: positions restart per example, the first token of each example and every prompt token carry
    no loss, and the model sees each example exactly as unpacked (same logits, same total loss)."""
    import torch

    from engine.models import generate
    from engine.training.generation import Collator, PackedCollator, encode_row, pack

    tokenizer, model = generate.load_causal(tiny_gpt2)
    rows = [{"text": "Bank shares rose after results.", "label": None, "tokens": None},
            {"text": "What did the bank report?", "label": "Higher profit", "tokens": None},
            {"text": "Oil fell.", "label": None, "tokens": None}]
    items = [encode_row(tokenizer, r, 64) for r in rows]
    items.sort(key=lambda it: -len(it["input_ids"]))  # pack() fills longest first: this is the order in the block
    sizes = [len(it["input_ids"]) for it in items]
    assert sizes[0] > sizes[1] > sizes[2]
    blocks = pack(items, 64)
    assert len(blocks) == 1 and len(blocks[0]["input_ids"]) == sum(sizes)
    block = blocks[0]
    assert block["position_ids"] == [p for n in sizes for p in range(n)]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    for start, it in zip(starts, items):
        n = len(it["input_ids"])
        assert block["labels"][start] == -100  # never learnt from the example before it
        assert block["labels"][start + 1:start + n] == it["labels"][1:]  # the prompt's -100s are kept
    pr = next(k for k, it in enumerate(items) if -100 in it["labels"])  # the prompt/response example
    n_prompt = len(tokenizer(generate.prompt_text(tokenizer, rows[1]["text"]), add_special_tokens=False)["input_ids"])
    assert block["labels"][starts[pr]:starts[pr] + n_prompt] == [-100] * n_prompt
    assert block["labels"][starts[pr] + n_prompt] != -100  # its response is learnt
    assert [len(b["input_ids"]) for b in pack(items, sizes[0] + sizes[1])] == [sizes[0] + sizes[1], sizes[2]]
    # best fit: the shortest example joins the block it fills best, not the next one in order
    assert [len(b["input_ids"]) for b in pack(items, sizes[0] + sizes[2])] == [sizes[0] + sizes[2], sizes[1]]

    batch = PackedCollator(tokenizer.pad_token_id)([block, pack(items[:1], 64)[0]])
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    assert batch["labels"][1, sizes[0]:].eq(-100).all()  # padding carries no loss
    model.config.use_cache = False  # as the runner sets it while packing
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"][:1], position_ids=batch["position_ids"][:1]).logits[0]
        packed_loss = model(**{k: v[:1] for k, v in batch.items()}).loss
        unpacked_sum, n_learnt = 0.0, 0
        for start, it in zip(starts, items):
            one = Collator(tokenizer.pad_token_id)([it])
            alone = model(input_ids=one["input_ids"]).logits[0]
            assert torch.allclose(packed[start:start + len(it["input_ids"])], alone, atol=1e-4)
            learnt = sum(1 for lab in it["labels"][1:] if lab != -100)
            unpacked_sum += float(model(input_ids=one["input_ids"], labels=one["labels"]).loss) * learnt
            n_learnt += learnt
    assert float(packed_loss) == pytest.approx(unpacked_sum / n_learnt, rel=1e-4)
    eval_batch = PackedCollator(tokenizer.pad_token_id)(items[:2])  # the unpacked validation rows
    assert "attention_mask" in eval_batch and "position_ids" not in eval_batch


def test_packed_run_trains_in_fewer_steps(store, shared, tiny_gpt2):
    from engine.jobs import queue
    from engine.training import finetune

    with pytest.raises(finetune.ConfigError) as err:  # a classifier has nothing to pack
        from tests.test_training import insert_text_dataset

        insert_text_dataset(store, shared("fpb", "train.csv"), n_train=12, n_val=3, n_test=3)
        finetune.submit(store, "fpb", base_model=str(tiny_gpt2), preset="quick", overrides={"packing": True})
    assert "generation datasets only" in err.value.errors["packing"]
    saved, _ = import_news(store, shared, n_rows=120)
    plain_rows = [r for r in store.query("select count(*) n from dataset_rows where dataset_id = ? and split = 'train'",
                                         [saved["id"]])][0]["n"]
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="quick",
                             overrides={**FAST, "epochs": 3, "packing": True, "max_length": 128})
    assert run_in_process(run_id) == 0
    m = queue.get(store, run_id)["metrics"]
    assert m["packed_blocks"] < plain_rows * 0.8  # 40-110-token examples in 128-token blocks: a short one joins a long one
    assert m["steps"] == 3 * -(-m["packed_blocks"] // FAST["batch_size"])
    assert m["validation_perplexity"] < m["base_validation_perplexity"] / 3  # it learnt from the packed blocks


# ---- memory and device --------------------------------------------------------------------------------------------


def test_out_of_memory_fails_with_what_to_lower(store, shared, tiny_gpt2, monkeypatch):
    import torch
    from transformers import Trainer

    from engine.jobs import queue
    from engine.training import finetune

    def no_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "training_step", no_memory)
    saved, _ = import_news(store, shared, n_rows=40)
    run_id = finetune.submit(store, saved["ref"], base_model=str(tiny_gpt2), preset="quick", overrides=FAST)
    run_in_process(run_id)
    job = queue.get(store, run_id)
    assert job["status"] == "failed"
    assert job["error"] == finetune.OOM_MESSAGE
    assert "Lower the batch size" in job["error"] and "max length" in job["error"] and "LoRA" in job["error"]
    assert "CUDA" not in job["error"] and "Traceback" not in job["error"]


def test_classifier_out_of_memory_gives_the_same_message(store, shared, tiny_text_model, monkeypatch):
    from transformers import Trainer

    from engine.jobs import queue
    from engine.training import finetune
    from tests.test_training import insert_text_dataset

    def no_memory(self, *args, **kwargs):
        raise MemoryError()  # the CPU's way of saying it

    monkeypatch.setattr(Trainer, "training_step", no_memory)
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=16, n_val=4, n_test=4)
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick",
                             overrides={"max_length": 32, "batch_size": 8})
    run_in_process(run_id)
    job = queue.get(store, run_id)
    assert job["status"] == "failed" and job["error"] == finetune.OOM_MESSAGE
    assert finetune.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory"))
    assert not finetune.is_out_of_memory(RuntimeError("shape mismatch"))


class _Props:
    name, total_memory = "Stand-in GPU", 80 * 1024**3


@pytest.mark.parametrize("bf16_supported, asked, expected", [
    (True, "auto", "bf16"), (False, "auto", "fp16"), (True, "fp32", "fp32"), (False, "bf16", "fp16")])
def test_generation_picks_device_and_precision_as_classifiers_do(monkeypatch, bf16_supported, asked, expected):
    """No GPU here: torch.cuda is stood in for. Both runners get their device from finetune.run_device."""
    import torch

    from engine.training import finetune
    from engine.training import generation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _Props())
    device = finetune.run_device({"precision": asked})
    assert (device["device"], device["precision"], device["gpu_name"]) == ("cuda", expected, "Stand-in GPU")

    seen = {}

    class Ctx:
        def set_device(self, info):
            seen["device"] = info

    monkeypatch.setattr(generation, "train", lambda conn, job, ctx: {"trained_on": seen["device"]["precision"]})
    assert generation.run(None, {"config": {"precision": asked}}, Ctx()) == {"trained_on": expected}
    assert seen["device"] == {**device, "environment": seen["device"]["environment"]}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert finetune.run_device({"precision": asked})["device"] == "cpu"
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")  # a CPU without bfloat16 arithmetic
    assert generation.run(None, {"config": {}}, Ctx()) == {"trained_on": "fp32"}
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")  # one that computes it natively, as this machine's does
    assert generation.run(None, {"config": {}}, Ctx()) == {"trained_on": "bf16"}


# ---- the Runs list ------------------------------------------------------------------------------------------------


def test_runs_list_shows_perplexity_for_generation_runs(home, monkeypatch, tiny_gpt2, tiny_text_model, capsys):
    from engine.cli.main import main
    from tests.helpers import make_finished_run, open_page

    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    conn = db.connect()
    classifier = make_finished_run(conn, tiny_text_model, metrics={"macro_f1": 0.734, "accuracy": 0.8})
    writer = make_finished_run(conn, tiny_gpt2, task="generation",
                               metrics={"validation_perplexity": 41.25, "base_validation_perplexity": 30100.0})
    at = open_page("runs", run=str(writer))
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[writer, "validation_perplexity"] == 41.25
    assert table.loc[classifier, "macro_f1"] == 0.734 and pd_isna(table.loc[classifier, "validation_perplexity"])
    assert pd_isna(table.loc[writer, "macro_f1"])
    assert main(["runs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "validation perplexity 41.250" in next(line for line in lines if line.strip().startswith(str(writer)))
    assert "macro-F1 (test) 0.734" in next(line for line in lines if line.strip().startswith(str(classifier)))


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# ---- chat template ------------------------------------------------------------------------------------------------


def test_chat_template_from_training_to_playground_and_generate(store, shared, tmp_path, monkeypatch, capsys):
    """A tokenizer with a ChatML template: messages data is written through apply_chat_template, only the last
    assistant turn (and its <|im_end|>) is learnt, and the Playground and `generate` send the template's prompt."""
    import pandas as pd

    from engine.cli.main import main
    from engine.data import datasets
    from engine.jobs import queue
    from engine.models import generate
    from engine.training import finetune
    from engine.training.generation import encode_row
    from tests.helpers import build_tiny_chat_gpt2, open_page

    frame = pd.read_csv(shared("news", "reuters_headlines.csv"), encoding="cp1252").dropna().head(80)
    pairs = [(" ".join(d.split()[:12]), h) for d, h in zip(frame["Description"], frame["Headlines"])]  # fits 128
    lines = [json.dumps({"messages": [
        {"role": "system", "content": "You write headlines."},
        {"role": "user", "content": pairs[i - 1][0]}, {"role": "assistant", "content": pairs[i - 1][1]},
        {"role": "user", "content": d}, {"role": "assistant", "content": h}]}) for i, (d, h) in enumerate(pairs)]
    saved, report = datasets.import_file(store, "\n".join(lines).encode(), "chats.jsonl", "chats", task="generation")
    assert report.mapping["mode"] == "messages"
    model_dir = build_tiny_chat_gpt2(tmp_path / "chat-gpt2")
    tokenizer, _ = generate.load_causal(model_dir)
    row = datasets.rows(store, saved["id"], "train")[0]
    item = encode_row(tokenizer, row, 128)
    text = tokenizer.decode(item["input_ids"])
    assert text.count("<|im_start|>") == 5 and "<|im_start|> system" in text and "<|im_start|> assistant" in text
    learnt = [i for i, lab in zip(item["input_ids"], item["labels"]) if lab != -100]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert learnt == tokenizer(row["label"], add_special_tokens=False)["input_ids"][:len(learnt) - 1] + [end]
    first = item["labels"].index(learnt[0])  # everything before the last answer (system, users, the earlier
    assert set(item["labels"][:first]) == {-100}  # assistant turn, the template's markers) carries no loss
    assert tokenizer.decode(item["input_ids"][:first]).endswith("<|im_start|> assistant")

    run_id = finetune.submit(store, saved["ref"], base_model=str(model_dir), preset="quick",
                             overrides={**FAST, "epochs": 1, "max_length": 128})
    assert run_in_process(run_id) == 0
    run = queue.get(store, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert json.loads((Path(run["model_dir"]) / "bellwether.json").read_text())["prompt_format"] == "chat template"
    assert run["metrics"]["validation_perplexity"] < run["metrics"]["base_validation_perplexity"]

    prompts = []
    real_stream = generate.stream

    def spy(tok, model, text, sampling=None, **kw):
        prompts.append(text)
        return real_stream(tok, model, text, sampling, **kw)

    monkeypatch.setattr(generate, "stream", spy)
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    at = open_page("playground", run=str(run_id))
    assert "This model has a chat template" in " ".join(c.value for c in at.caption)
    next(n for n in at.number_input if n.label == "Max new tokens").set_value(6).run()
    at.chat_input[0].set_value("Oil prices fell on Monday.").run()
    at.chat_input[0].set_value("Shorter, please.").run()
    assert not at.exception, [e.message for e in at.exception]
    assert prompts[0] == "<|im_start|>user\nOil prices fell on Monday.<|im_end|>\n<|im_start|>assistant\n"
    assert prompts[1].startswith(prompts[0])  # the conversation so far goes with the next message
    assert prompts[1].endswith("<|im_end|>\n<|im_start|>user\nShorter, please.<|im_end|>\n<|im_start|>assistant\n")
    assert len(at.chat_message) >= 4  # both turns of the history are on the screen

    prompts.clear()
    assert main(["generate", str(run_id), "Oil fell.", "--system", "You write headlines.", "--max-new-tokens", "4",
                 "--greedy"]) == 0
    assert prompts == ["<|im_start|>system\nYou write headlines.<|im_end|>\n<|im_start|>user\nOil fell.<|im_end|>\n"
                       "<|im_start|>assistant\n"]
    capsys.readouterr()


# ---- compare runs ---------------------------------------------------------------------------------------------------


def test_playground_compares_two_generation_runs(home, monkeypatch, tiny_gpt2):
    from tests.helpers import make_finished_run, open_page

    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    (tiny_gpt2 / "bellwether.json").write_text(json.dumps({"base_model_source": str(tiny_gpt2)}))
    conn = db.connect()
    first = make_finished_run(conn, tiny_gpt2, task="generation", metrics={
        "validation_perplexity": 90.5, "base_validation_perplexity": 30100.0, "rougeL": 0.18, "bleu": 2.5})
    second = make_finished_run(conn, tiny_gpt2, task="generation", metrics={
        "validation_perplexity": 60.25, "base_validation_perplexity": 30100.0, "rougeL": 0.24, "bleu": 4.0})
    prompts = [("Bank results beat forecasts", "Bank beats"), ("Oil fell on supply fears", "Oil falls")]
    for run_id, outs in ((first, ["bank beat", "oil up"]), (second, ["bank beats", "oil falls"])):
        conn["predictions"].insert_all({"run_id": run_id, "split": "test", "row_id": i + 1, "text": p, "true_label": r,
                                        "pred_label": o, "base_output": "zebra"}
                                       for i, ((p, r), o) in enumerate(zip(prompts, outs)))
    conn["predictions"].insert({"run_id": first, "split": "test", "row_id": 9, "text": "Only in the first run",
                                "true_label": "x", "pred_label": "y", "base_output": "z"})
    at = open_page("playground", run=str(first), compare=str(second))
    assert at.selectbox(key="gen-compare-run").value == second
    frames = [d.value for d in at.dataframe]
    figures = next(f for f in frames if "figure" in f.columns and f"run #{second}" in f.columns).set_index("figure")
    assert figures.loc["validation perplexity", f"run #{first}"] == 90.5
    assert figures.loc["validation perplexity", f"run #{second}"] == 60.25
    assert figures.loc["ROUGE-L", f"run #{second}"] == 0.24 and figures.loc["BLEU", f"run #{first}"] == 2.5
    assert figures.loc["validation perplexity", f"run #{second} base"] == 30100.0
    outputs = next(f for f in frames if "prompt" in f.columns and f"run #{second}" in f.columns)
    assert list(outputs["prompt"]) == [p for p, _ in prompts]  # only the prompts both runs answered
    assert list(outputs[f"run #{first}"]) == ["bank beat", "oil up"]
    assert list(outputs[f"run #{second}"]) == ["bank beats", "oil falls"]
    assert list(outputs["reference"]) == ["Bank beats", "Oil falls"]


def test_train_page_offers_the_generation_presets_and_packing(store, shared, tiny_gpt2, monkeypatch):
    from engine.jobs import queue
    from engine.models import catalog
    from tests.helpers import open_page, texts
    from tests.test_training import insert_text_dataset

    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.delenv("BELLWETHER_PASSWORD", raising=False)
    monkeypatch.setattr("engine.jobs.supervisor.ensure_supervisor", lambda *a, **k: None)
    insert_text_dataset(store, shared("fpb", "train.csv"), n_train=12, n_val=3, n_test=3)
    saved, _ = import_news(store, shared, n_rows=40)
    catalog.allow_model(str(tiny_gpt2))
    at = open_page("train")
    at.selectbox(key="train_dataset").set_value(saved["ref"]).run()
    assert at.number_input(key="adv_learning_rate").value == 5e-5  # the generation preset, not the classifier's (1e-4)
    assert at.number_input(key="adv_batch_size").value == 8
    assert "learning rate 5e-05 · batch 8" in texts(at)
    assert not [c for c in at.checkbox if c.label.startswith("Weight classes")]
    at.checkbox(key="adv_packing").check().run()
    at.text_input(key="train_base_model").set_value(str(tiny_gpt2)).run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = queue.list_jobs(store)[0]
    assert job["config"]["packing"] is True and job["config"]["learning_rate"] == 5e-5, job["config"]
    at.selectbox(key="train_dataset").set_value("fpb:1").run()  # back to a classifier: its own presets again
    assert at.number_input(key="adv_learning_rate").value == 1e-4


def test_a_bf16_runs_recorded_perplexity_is_the_saved_float32_models(store, shared, tiny_gpt2, monkeypatch):
    """Trained under bf16 autocast (auto's choice on a CPU that computes it), a run's validation perplexity and held-out generations are measured
    with the plain float32 model it saves: exactly what evaluating the saved model gives later."""
    from engine.jobs import queue
    from engine.models import generate
    from engine.training import finetune
    from engine.training import generation

    monkeypatch.setenv("BELLWETHER_CPU_BF16", "1")
    run_id = _train(store, shared, tiny_gpt2, n_rows=120, epochs=1)  # auto: bf16 on such a CPU
    run = queue.get(store, run_id)
    assert run["device"]["precision"] == "bf16"
    tokenizer, model = generate.load(run["model_dir"])
    rows = finetune._training_data(store, run["dataset_id"], "generation")[3]
    items = [generation.encode_row(tokenizer, r, FAST["max_length"]) for r in rows["validation"]]
    again = generation.perplexity(generation.token_loss(model, items, tokenizer.pad_token_id))
    assert run["metrics"]["validation_perplexity"] == pytest.approx(again, rel=1e-5)


def test_a_causal_model_that_fails_under_bf16_trains_in_fp32_with_a_note(store, shared, tiny_gpt2, monkeypatch):
    from engine.jobs import queue
    from engine.models import generate

    from tests.helpers import without_bf16_kernel

    monkeypatch.setattr(generate, "load_causal", without_bf16_kernel(generate.load_causal, "lm_head"))
    run_id = _train(store, shared, tiny_gpt2, n_rows=60, epochs=1, precision="bf16")
    run = queue.get(store, run_id)
    assert run["status"] == "succeeded"
    assert run["device"]["precision"] == "fp32"
    assert "could not train in bf16" in run["device"]["precision_note"] and "BFloat16" in run["device"]["precision_note"]
    assert run["metrics"]["validation_perplexity"] < run["metrics"]["base_validation_perplexity"]
