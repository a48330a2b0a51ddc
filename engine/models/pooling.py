"""Mean pooling for sentence classifiers built on sentence-transformers encoders.

A sequence-classification head in transformers reads the encoder's *pooler*: the first token's ([CLS]) vector through
a dense layer and tanh. A sentence-transformers model such as the default all-MiniLM-L6-v2 was trained to mean the
token vectors instead (its ``1_Pooling/config.json`` says ``pooling_mode_mean_tokens``); its [CLS] vector and pooler
were never tuned for sentences. With ``pooling: mean`` the classifier reads the average of the token vectors (padding
left out), the way the encoder was trained.

The choice is written into the saved model's config.json (``bellwether_pooling``), and every loader of a run's model in
Bellwether (training, Reports, scoring, Review) calls :func:`apply` after ``from_pretrained``, so a run predicts the
same way wherever it is loaded. The weights keep transformers' own layout (the pooler's dense layer stays in the file,
unused), so the folder still loads anywhere with ``trust_remote_code=False``; a loader that does not call
:func:`apply` would read [CLS] instead (README says so).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

CONFIG_KEY = "bellwether_pooling"
CHOICES = ("auto", "cls", "mean")

_mask = threading.local()  # the attention mask of the forward pass under way on this thread


def sentence_transformers_mean(source: str | Path) -> bool:
    """Whether ``source`` is a local sentence-transformers folder trained with mean pooling."""
    path = Path(str(source)) / "1_Pooling" / "config.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"))
    except (OSError, ValueError):
        return False


def choose(setting: str | None, source: str | Path, task: str) -> str:
    """'mean' or 'cls' for a run: ``auto`` means mean pooling for a sentence classifier on an encoder trained with it."""
    setting = (setting or "auto").lower()
    if task != "text-classification":
        return "cls"  # entity tagging reads every token; generation has no pooler
    if setting == "auto":
        return "mean" if sentence_transformers_mean(source) else "cls"
    return setting


class _MeanPooler:
    """Replaces a BERT-style pooler's forward: the mean of the token vectors where the attention mask is 1."""

    def __init__(self, pooler):
        self.pooler = pooler

    def __call__(self, hidden_states):
        mask = getattr(_mask, "value", None)
        if mask is None or mask.shape[:2] != hidden_states.shape[:2]:
            return hidden_states.mean(dim=1)
        weights = mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _remember_mask(module, args, kwargs):
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    _mask.value = mask


def apply(model, pooling: str | None = None):
    """Make ``model`` read mean-pooled tokens when ``pooling`` (or its config's ``bellwether_pooling``) is 'mean';
    records the choice in the config so that it is saved with the model. Returns the model."""
    pooling = pooling or getattr(model.config, CONFIG_KEY, None) or "cls"
    base = getattr(model, "base_model", None)
    pooler = getattr(base, "pooler", None)
    if pooling != "mean" or pooler is None:
        if pooling == "mean":
            pooling = "cls"  # an architecture without a pooler to replace: its own head stays
        setattr(model.config, CONFIG_KEY, pooling)
        return model
    pooler.forward = _MeanPooler(pooler)
    base.register_forward_pre_hook(_remember_mask, with_kwargs=True)
    setattr(model.config, CONFIG_KEY, "mean")
    return model
