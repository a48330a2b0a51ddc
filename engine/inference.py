"""Predictions from a trained run's model: text labels with class probabilities, or entity tags.

Fast by construction: inputs sorted by length into batches, dynamic padding, ``torch.inference_mode``, half precision
on CUDA. Results always come back in the order of the inputs (each input carries its index), never by the order in
which batches ran.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from engine.errors import UserError


@dataclass
class TextPrediction:
    label: str
    confidence: float
    probs: dict[str, float]


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor:
    """A loaded model and tokenizer for one run's ``model/`` folder."""

    def __init__(self, model_dir: str | Path, device: str | None = None):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(f"No trained model was found in {model_dir}. The run may have failed or been deleted.")
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        archs = " ".join(config.architectures or [])
        self.task = "token-classification" if "TokenClassification" in archs else "text-classification"
        auto = AutoModelForTokenClassification if self.task == "token-classification" else AutoModelForSequenceClassification
        self.device = device or pick_device()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = auto.from_pretrained(model_dir, trust_remote_code=False)
        if self.device == "cuda":
            model = model.half()
        self.model = model.to(self.device).eval()
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        self.labels = [self.id2label[i] for i in range(len(self.id2label))]
        limit = getattr(config, "max_position_embeddings", 512) or 512
        self.max_length = int(min(limit, getattr(config, "bellwether_max_length", limit) or limit))
        self._torch = torch

    # ---- text classification -----------------------------------------------------------------------------------

    def predict(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[TextPrediction]:
        torch = self._torch
        texts = ["" if t is None else str(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[TextPrediction | None] = [None] * len(texts)
        done = 0
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits.float()
                probs = torch.softmax(logits, dim=-1).cpu().numpy()
                for row, i in enumerate(idx):
                    p = probs[row]
                    best = int(p.argmax())
                    out[i] = TextPrediction(
                        label=self.id2label[best],
                        confidence=float(p[best]),
                        probs={self.id2label[j]: float(p[j]) for j in range(len(p))},
                    )
                done += len(idx)
                if progress:
                    progress(done, len(texts))
        return out  # type: ignore[return-value]

    # ---- token classification ----------------------------------------------------------------------------------

    def predict_tokens(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[list[str]]:
        """Tags for pre-split tokens: the first sub-token of each word decides its tag."""
        torch = self._torch
        out: list[list[str]] = []
        with torch.inference_mode():
            for start in range(0, len(sentences), batch_size):
                batch = [list(s) for s in sentences[start : start + batch_size]]
                enc = self.tokenizer(
                    batch, is_split_into_words=True, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
                )
                logits = self.model(**enc.to(self.device)).logits
                pred = logits.argmax(-1).cpu().numpy()
                for b, words in enumerate(batch):
                    tags = ["O"] * len(words)
                    seen = set()
                    for pos, wid in enumerate(enc.word_ids(b)):
                        if wid is None or wid in seen:
                            continue
                        seen.add(wid)
                        tags[wid] = self.id2label[int(pred[b][pos])]
                    out.append(tags)
        return out


_CACHE: "OrderedDict[tuple[str, str], Predictor]" = OrderedDict()
_LOCK = threading.Lock()


def load(model_dir: str | Path, device: str | None = None, cache_size: int = 2) -> Predictor:
    """A Predictor, kept in a small in-process cache so that repeated calls (the Try-it box) do not reload."""
    key = (str(Path(model_dir).resolve()), device or "auto")
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    predictor = Predictor(model_dir, device=device)
    with _LOCK:
        _CACHE[key] = predictor
        while len(_CACHE) > cache_size:
            _CACHE.popitem(last=False)
    return predictor


def simple_tokens(text: str) -> list[str]:
    """Split free text into word and punctuation tokens, as CoNLL files are split."""
    import re

    return re.findall(r"\w+(?:[-'.]\w+)*|[^\w\s]", text)
