"""Causal language models: load, format a prompt, generate (whole or streamed), and score generated text.

Used by the generation runner (base and fine-tuned outputs on held-out prompts), the generation report, the
playground page and ``python -m engine generate``.

**Prompt format.** When the tokenizer has a chat template, a prompt (or a conversation) goes through
``apply_chat_template(..., add_generation_prompt=True)``. Otherwise Bellwether writes the plain format
:data:`PLAIN_PROMPT`::

    ### Prompt:
    {prompt}

    ### Response:
    {response}<eos>

and a conversation without a template as ``### System:`` / ``### Prompt:`` / ``### Response:`` blocks in order.

**Bounds.** ``max_new_tokens`` is at most :data:`MAX_NEW_TOKENS_LIMIT`; streaming runs ``model.generate`` in a thread
and yields text pieces from transformers' ``TextIteratorStreamer``, so the caller (a page's script) is never blocked
for longer than a piece takes.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.errors import UserError
from engine.i18n import _

PLAIN_PROMPT = "### Prompt:\n{prompt}\n\n### Response:\n"
ROLE_HEADINGS = {"system": "### System:\n", "user": "### Prompt:\n", "assistant": "### Response:\n"}
MAX_NEW_TOKENS_LIMIT = 512


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def eos_token_id(tokenizer) -> int | None:
    """The token that ends a response: the tokenizer's end-of-sequence, else its separator (BERT-style vocabularies)."""
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return tokenizer.sep_token_id


def prepare_tokenizer(tokenizer):
    """A tokenizer ready for causal LM batches: a pad token (GPT-2 has none: its end-of-text is used) and an
    end-of-sequence token."""
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prompt_text(tokenizer, prompt: str | None = None, messages: list[dict] | None = None) -> str:
    """The text the model continues: ``messages`` (a conversation without the answer) or a single ``prompt``, in
    the chat template when the tokenizer has one, else in the plain format."""
    if messages is None:
        messages = [{"role": "user", "content": prompt or ""}]
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if len(messages) == 1 and messages[0]["role"] == "user":
        return PLAIN_PROMPT.format(prompt=messages[0]["content"])
    parts = [ROLE_HEADINGS[m["role"]] + m["content"] + "\n\n" for m in messages]
    return "".join(parts) + ROLE_HEADINGS["assistant"]


@dataclass
class Sampling:
    """How to pick the next token. ``greedy`` always takes the most likely token (the same answer every time);
    otherwise tokens are drawn with ``temperature`` (higher: more varied), ``top_p`` / ``top_k`` (only the most
    likely tokens are candidates), ``repetition_penalty`` (above 1: fewer repeated words), and ``seed`` (the same
    seed gives the same draw)."""

    max_new_tokens: int = 64
    min_new_tokens: int = 0  # the end token is refused before this many tokens
    greedy: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    seed: int | None = None

    def checked(self) -> "Sampling":
        problems = []
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            problems.append(_("max new tokens must be between 1 and {n}", n=MAX_NEW_TOKENS_LIMIT))
        if not 0 <= int(self.min_new_tokens) <= int(self.max_new_tokens):
            problems.append(_("min new tokens must be between 0 and max new tokens"))
        if not 0 < float(self.temperature) <= 5:
            problems.append(_("temperature must be above 0 and at most 5"))
        if not 0 < float(self.top_p) <= 1:
            problems.append(_("top-p must be above 0 and at most 1"))
        if not 0 <= int(self.top_k) <= 1000:
            problems.append(_("top-k must be between 0 (off) and 1000"))
        if not 0.5 <= float(self.repetition_penalty) <= 3:
            problems.append(_("repetition penalty must be between 0.5 and 3 (1 = none)"))
        if problems:
            raise UserError(_("Sampling settings: {problems}.", problems=_("; ").join(problems)))
        return self

    def generate_kwargs(self, tokenizer) -> dict:
        kwargs = {
            "max_new_tokens": int(self.max_new_tokens),
            "min_new_tokens": int(self.min_new_tokens) or None,
            "repetition_penalty": float(self.repetition_penalty),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": eos_token_id(tokenizer),
        }
        if self.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=float(self.temperature), top_p=float(self.top_p),
                          top_k=int(self.top_k))
        return kwargs


def load_causal(source: str | Path):
    """(tokenizer, model) of a causal language model folder or hub id, trust_remote_code=False, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(source), trust_remote_code=False))
        model = AutoModelForCausalLM.from_pretrained(str(source), trust_remote_code=False)
    except ValueError as exc:
        raise UserError(_("{source} is not a model that generates text (a causal language model such as GPT-2, "
                          "SmolLM or Qwen): {problem}", source=source, problem=exc)) from None
    except OSError as exc:
        raise UserError(_("The model {source} could not be read ({problem}). Check that the folder is complete.",
                          source=source, problem=exc)) from None
    model.eval()
    return tokenizer, model


@functools.lru_cache(maxsize=3)
def _cached(source: str, stamp: float):
    return load_causal(source)


def load(source: str | Path):
    """load_causal, cached per folder (and reloaded when the folder's config changes)."""
    path = Path(source)
    stamp = (path / "config.json").stat().st_mtime if (path / "config.json").is_file() else 0.0
    return _cached(str(source), stamp)


def _inputs(tokenizer, model, text: str):
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    dev = next(model.parameters()).device
    return {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def generate(tokenizer, model, text: str, sampling: Sampling | None = None) -> str:
    """The continuation of ``text`` (a formatted prompt), special tokens removed."""
    import torch

    sampling = (sampling or Sampling(greedy=True)).checked()
    inputs = _inputs(tokenizer, model, text)
    if sampling.seed is not None:
        torch.manual_seed(int(sampling.seed))
    with torch.inference_mode():
        out = model.generate(**inputs, **sampling.generate_kwargs(tokenizer))
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def stream(tokenizer, model, text: str, sampling: Sampling | None = None, timeout_s: float = 120.0) -> Iterator[str]:
    """Yield the continuation of ``text`` piece by piece while ``model.generate`` runs in a thread."""
    import torch
    from transformers import TextIteratorStreamer

    sampling = (sampling or Sampling()).checked()
    inputs = _inputs(tokenizer, model, text)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
    errors: list[BaseException] = []

    def work():
        try:
            if sampling.seed is not None:
                torch.manual_seed(int(sampling.seed))
            with torch.inference_mode():
                model.generate(**inputs, **sampling.generate_kwargs(tokenizer), streamer=streamer)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, name="bellwether-generate", daemon=True)
    thread.start()
    for piece in streamer:
        if piece:
            yield piece
    thread.join()
    if errors:
        raise UserError(_("Generation failed: {kind}: {problem}", kind=type(errors[0]).__name__, problem=errors[0]))


def overlap_scores(references: list[str], predictions: list[str]) -> dict:
    """ROUGE-1/2/L F-measures (rouge-score, stemmed, averaged over rows) and corpus BLEU (sacrebleu, 0-100)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not references:
        return {}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref, pred in zip(references, predictions):
        scores = scorer.score(ref or "", pred or "")
        for key in totals:
            totals[key] += scores[key].fmeasure
    out = {key: value / len(references) for key, value in totals.items()}
    out["bleu"] = float(sacrebleu.corpus_bleu([p or "" for p in predictions], [[r or "" for r in references]]).score)
    return out
