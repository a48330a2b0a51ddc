"""Predictions from a trained run's model: text labels with class probabilities, or entity tags.

Fast by construction: every input tokenized once, sorted by its number of tokens into batches (so a batch is padded
to almost nothing), ``torch.inference_mode``. Results always come back in the order of the inputs (each input carries
its index), never by the order in which batches ran.

Precision: ``"exact"`` runs the model in float32, as it was trained and evaluated (reports and the Try-it box use it).
``"fast"`` (the score and topics jobs' default) runs it in float16 on CUDA and in bfloat16 on a CPU that computes
bfloat16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm), and in float32 elsewhere. On fpb dev and the news
headlines bfloat16 gave the same label as float32 for 100% and 99.86% of texts at about twice the speed
(docs/benchmarks.md); each score job records the precision it used.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from engine import settings
from engine.errors import UserError
from engine.i18n import _
from engine.models import pooling


@dataclass
class TextPrediction:
    label: str
    confidence: float
    probs: dict[str, float]


PRECISIONS = ("fast", "exact")


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (where it does not, bfloat16 is emulated and slower than float32).

    ``BELLWETHER_CPU_BF16=0`` or ``1`` overrides the check.
    """
    forced = settings.cpu_bf16()
    if forced is not None:
        return forced
    return _cpu_flags_have_bf16()


@lru_cache(maxsize=1)
def _cpu_flags_have_bf16() -> bool:
    """/proc/cpuinfo's answer, read once per process: the queue's ETAs ask for every job on every redraw, and the
    processor does not change."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return False
    flags = set()
    for line in info.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def pick_dtype(device: str, precision: str = "exact"):
    """The torch dtype a model runs in for ``precision`` ('fast' or 'exact') on ``device``."""
    import torch

    if precision not in PRECISIONS:
        raise UserError(_("Precision must be one of {choices}, not '{precision}'.", choices=", ".join(PRECISIONS),
                          precision=precision))
    if precision == "exact":
        return torch.float32
    if device == "cuda":
        return torch.float16
    return torch.bfloat16 if device == "cpu" and cpu_has_bf16() else torch.float32


class Predictor:
    """A loaded model and tokenizer for one run's ``model/`` folder."""

    def __init__(self, model_dir: str | Path, device: str | None = None, precision: str = "exact"):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(_("No trained model was found in {path}. The run may have failed or been deleted.",
                              path=model_dir))
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        archs = " ".join(config.architectures or [])
        self.task = "token-classification" if "TokenClassification" in archs else "text-classification"
        auto = AutoModelForTokenClassification if self.task == "token-classification" else AutoModelForSequenceClassification
        self.device = device or pick_device()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = pooling.apply(auto.from_pretrained(model_dir, trust_remote_code=False))  # as it was trained
        self.dtype = pick_dtype(self.device, precision)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.dtype_name = str(self.dtype).replace("torch.", "")
        self.fallback: str | None = None  # why a reduced precision was given up, if it was
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
        out: list[TextPrediction | None] = [None] * len(texts)
        done = 0
        with torch.inference_mode():
            for idx, enc in self._batches(texts, batch_size):
                logits = self._forward(enc).logits.float()
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

    def _forward(self, enc):
        """The model on one batch; a model that cannot run in reduced precision falls back to float32 for good."""
        try:
            return self.model(**enc)
        except RuntimeError as exc:
            if self.dtype == self._torch.float32:
                raise
            import logging

            logging.getLogger("bellwether.inference").warning(
                "this model cannot run in %s here (%s); scoring in float32 instead", self.dtype_name, exc)
            self.fallback = f"{self.dtype_name} failed ({str(exc).splitlines()[0][:200]}); ran in float32"
            self.model = self.model.float()
            self.dtype, self.dtype_name = self._torch.float32, "float32"
            return self.model(**enc)

    def _batches(self, texts: list[str], batch_size: int):
        """(input indices, padded tensors) per batch: all texts tokenized at once, batched by their token counts."""
        torch = self._torch
        if not texts:
            return
        batch_size = max(1, int(batch_size))
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        ids = enc["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        pad_id = self.tokenizer.pad_token_id or 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            batch = {}
            for key in keys:
                fill = pad_id if key == "input_ids" else 0
                seqs = [list(enc[key][i]) for i in idx]
                rows = [[fill] * (width - len(q)) + q if left else q + [fill] * (width - len(q)) for q in seqs]
                batch[key] = torch.tensor(rows, dtype=torch.long).to(self.device)
            yield idx, batch

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


_CACHE: "OrderedDict[tuple[str, str, str], Predictor]" = OrderedDict()
_LOCK = threading.Lock()


def load(model_dir: str | Path, device: str | None = None, cache_size: int = 2, precision: str = "exact") -> Predictor:
    """A Predictor, kept in a small in-process cache so that repeated calls (the Try-it box) do not reload."""
    key = (str(Path(model_dir).resolve()), device or "auto", precision)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    predictor = Predictor(model_dir, device=device, precision=precision)
    with _LOCK:
        _CACHE[key] = predictor
        while len(_CACHE) > cache_size:
            _CACHE.popitem(last=False)
    return predictor


def simple_tokens(text: str) -> list[str]:
    """Split free text into word and punctuation tokens, as CoNLL files are split."""
    return re.findall(r"\w+(?:[-'.]\w+)*|[^\w\s]", text)
