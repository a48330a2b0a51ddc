"""Helpers for tests: tiny models built from a config, a finished run registered in the store, a news file, and the
dashboard opened on a page through AppTest."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(path: Path, labels: list[str], task: str = "text-classification", seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT with random weights and the default model's tokenizer to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertForTokenClassification

    from engine.models.catalog import default_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    cls = BertForTokenClassification if task == "token-classification" else BertForSequenceClassification
    model = cls(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


ENGLISH_WORDS = ("the company said that profits rose in quarter shares of bank fell on day a an and to for with "
                 "is was are by as at from its it this").split()


def build_english_vocab_model(path: Path, labels: list[str]) -> Path:
    """Save a tiny BERT classifier whose tokenizer knows only a few English words, ASCII letters, digits and
    punctuation (no CJK character): a model Bellwether's catalogue does not know, blind to Chinese."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    words = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-%$")
             + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + ENGLISH_WORDS)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    path.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_finished_run(conn, model_dir: Path, predictions: list[dict] | None = None, metrics: dict | None = None,
                      task: str = "text-classification", dataset_id: int | None = None) -> int:
    """Register a succeeded training run whose model is ``model_dir``, as the training engine leaves one.

    ``predictions``: rows for the ``predictions`` table (split 'test'), each with row_id, text, true_label, pred_label,
    confidence and probs (a dict).
    """
    from engine import db

    job_id = conn["jobs"].insert(
        {
            "kind": "train",
            "status": "succeeded",
            "task": task,
            "dataset_id": dataset_id,
            "base_model": "tiny",
            "config_json": db.dumps({"epochs": 1}),
            "created_at": db.now(),
            "started_at": db.now(),
            "finished_at": db.now(),
            "model_dir": str(model_dir),
            "metrics_json": db.dumps(metrics or {}),
            "device_json": db.dumps({"device": "cpu", "precision": "fp32", "world_size": 1}),
        }
    ).last_pk
    for row in predictions or []:
        row = dict(row)
        probs = row.pop("probs", None)
        conn["predictions"].insert({"run_id": job_id, "split": "test", "probs_json": db.dumps(probs), **row})
    return job_id


def feed_csv(rows) -> bytes:
    """A news file of (published time, title) rows, as a feed import reads it."""
    return ("time,title\n" + "\n".join(f"{d},{t}" for d, t in rows)).encode()


PASSWORD = "correct horse battery"


def add_user(conn, name: str, role: str, password: str = PASSWORD) -> None:
    """An account (the local administrator adds it), so the dashboard asks everyone to sign in."""
    from engine.access import users

    users.add(conn, name, role, password)


def signed_in_app(page: str | None = None, name: str = "maria", password: str = PASSWORD, **query):
    """The dashboard after ``name`` signed in through its form, switched to ``page`` with these query parameters."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:  # a deep link: the page is chosen before signing in
        at.switch_page(page if page.endswith(".py") else f"views/{page}.py")
    at.run()  # AppTest's first run has no page yet; this one is on it, as a browser's first run is
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def open_page(page: str, **query):
    """The dashboard (streamlit_app.py) switched to ``page`` ("data" or "views/data.py"), with these query parameters,
    run through Streamlit's AppTest; it must render without an exception."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    # Each test has its own data directory, but st.cache_data lives as long as the process: a cached read keyed by ids
    # (dataset 1 saved at the same second) would otherwise hand one test another test's rows.
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.switch_page(page if page.endswith(".py") else f"views/{page}.py")
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def train_page_on_fpb(monkeypatch, shared, base_model):
    """(store, AppTest): the Train page as an analyst opens it, a small fpb dataset in the store, ``base_model``
    allowed and chosen; the worker is not started (the run stays queued)."""
    from engine import db
    from engine.jobs import supervisor
    from engine.models import catalog
    from tests.test_training import insert_text_dataset

    monkeypatch.setenv("BELLWETHER_USER", "ana")
    monkeypatch.setattr(supervisor, "ensure_supervisor", lambda *a, **k: 0)
    conn = db.connect()
    insert_text_dataset(conn, shared("fpb", "train.csv"), n_train=40, n_val=10, n_test=10)
    catalog.allow_model(str(base_model))
    at = open_page("train")
    at.text_input(key="train_base_model").set_value(str(base_model)).run()
    return conn, at


def markdown_sources(at) -> str:
    """The Markdown source of everything a page says (markdown, warnings, infos, successes, errors, captions,
    subheaders), one per line: what Streamlit renders, escapes included."""
    parts = [m.value for m in at.markdown] + [e.value for e in at.warning] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.error] + [c.value for c in at.caption]
    parts += [h.value for h in at.subheader]
    return "\n".join(str(p) for p in parts)


def texts(at) -> str:
    """Everything a page says, as the analyst reads it: the Markdown sources with backslash escapes resolved (data
    shown through views._shared.md is escaped so it never becomes a link or formatting)."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown_sources(at))


def build_tiny_gpt2(path: Path, seed: int = 0, n_positions: int = 128) -> Path:
    """Save an untrained 2-layer, 64-wide GPT-2 (a causal language model built from a config) with the default
    model's WordPiece tokenizer (its [SEP] ends a response, its [PAD] pads) to ``path``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.models.catalog import default_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_chat_gpt2(path: Path, seed: int = 0) -> Path:
    """build_tiny_gpt2 with a chat template: ChatML's <|im_start|> / <|im_end|> added as special tokens, <|im_end|>
    as the end-of-sequence token (it closes the assistant's turn), and the ChatML Jinja template."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.models.catalog import default_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), trust_remote_code=False)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "eos_token": "<|im_end|>"})
    tokenizer.chat_template = CHATML
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def without_bf16_kernel(load, layer: str):
    """``load`` (a loader returning (tokenizer, model)) whose model's ``layer`` fails under bf16 autocast on the CPU,
    as a layer without a bf16 kernel does in some models."""

    def loading(*args, **kwargs):
        import torch

        tokenizer, model = load(*args, **kwargs)
        module = getattr(model, layer)
        forward = module.forward

        def picky(*a, **kw):
            if torch.is_autocast_enabled("cpu"):
                raise RuntimeError('"addmm_impl_cpu_" not implemented for \'BFloat16\'')
            return forward(*a, **kw)

        module.forward = picky
        return tokenizer, model

    return loading
