"""How much of a set of texts a model's vocabulary covers: the share of their tokens its tokenizer maps to its unknown
token ([UNK]), for any model whose tokenizer is on this machine.

A model learns nothing from an unknown token: every word its vocabulary lacks reaches it as the same [UNK]. The
catalogue knows the languages of a few base models only (engine.models.catalog.SUGGESTIONS); this check works for any
other one too (a local folder, a hub id already downloaded, a run's saved model), whatever its language.

``THRESHOLD`` (10%) is where Bellwether warns. Measured with the default model (all-MiniLM-L6-v2, an English WordPiece
vocabulary) over 300 texts spread over each file: Chinese stock-forum posts (finfe-zh train.csv) 63% unknown (macro-F1
about 0.42 when trained on them), English financial news (fpb train.csv) 0.0% (no unknown token in 8,555). English
text stays near zero (an emoji or a rare symbol now and then), a script the vocabulary lacks is far above a half, so
10% is well clear of both while still catching texts where one word in ten is lost. English headlines (news/*.csv)
gave 0.0% too.

What it cannot see: a vocabulary that has a script's letters but not its words spells them out letter by letter, with
no unknown token. The default model does so for Russian (0% unknown, yet it was not trained on Russian): for the
models it knows, engine.data.language's warning says that.

Tokenizers with no unknown token (byte-level BPE such as GPT-2's) can represent every text: :func:`unknown_share` is
None for them, as for a tokenizer that cannot be loaded. Nothing is downloaded, and no custom code is run.
"""

from __future__ import annotations

from functools import lru_cache

from engine.models import catalog
from engine.text import evenly

THRESHOLD = 0.10  # the share of unknown tokens at or above which a model is said not to know the texts
SAMPLE = 300  # texts looked at, spread over the whole set
MAX_CHARS = 1000  # of each text: enough to tell, bounded time


@lru_cache(maxsize=8)
def _tokenizer(folder: str):
    """The tokenizer in ``folder`` (once per folder and process: a dashboard rerun must not reload it), or None."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except Exception:  # noqa: BLE001 - no tokenizer files, custom code, a broken folder: nothing to tell
        return None


def spread(texts, n: int = SAMPLE) -> list[str]:
    """At most ``n`` non-empty texts spread over the whole list (not just its start)."""
    return evenly([str(t) for t in texts if t is not None and str(t).strip()], n)


@lru_cache(maxsize=64)
def _share(folder: str, texts: tuple[str, ...]) -> float | None:
    tokenizer = _tokenizer(folder)
    unknown = getattr(tokenizer, "unk_token_id", None)
    if tokenizer is None or unknown is None:
        return None
    special = set(getattr(tokenizer, "all_special_ids", None) or []) - {unknown}
    encoded = tokenizer([t[:MAX_CHARS] for t in texts], add_special_tokens=False)["input_ids"]  # raises: not cached
    total = hits = 0
    for ids in encoded:
        for token in ids:
            if token in special:
                continue
            total += 1
            hits += token == unknown
    return hits / total if total else None


def unknown_share(spec: str | None, texts) -> float | None:
    """The share of the tokens of ``texts`` (special tokens excluded; at most SAMPLE texts spread over them) that base
    model ``spec``'s tokenizer maps to its unknown token. ``spec`` is what the Train page and ``train --base-model``
    take ('default', a hub id, a folder) or a run's saved model folder. None when the tokenizer is not on this machine
    (nothing is downloaded), cannot be loaded, has no unknown token, or there is no text."""
    folder = catalog.local_folder(spec)
    sample = spread(texts)
    if folder is None or not sample:
        return None
    try:
        return _share(folder, tuple(sample))
    except Exception:  # noqa: BLE001 - a tokenizer that cannot take these texts tells nothing (tried again next time)
        return None


def is_blind(share: float | None) -> bool:
    """Whether a measured share means the model does not know the texts (at or above THRESHOLD)."""
    return share is not None and share >= THRESHOLD
