"""Dropout with cheaper random masks, for training on the CPU (issue 13: bf16 training speed).

torch's CPU dropout draws one random number per element (``bernoulli_``, from one serial generator): for the default
22M model that was about an eighth of a bf16 training step, and it does not get faster in bf16 as the matrix products
do. Here each mask takes 16 random bits per element, four elements from each 64-bit draw of torch's seeded
generator: the same keep probability (to 1/65,536), the same 1 / (1 - p) scaling of what is kept, so a run is still
reproduced by its seed. Dropout on attention probabilities happens inside torch's fused attention
(``scaled_dot_product_attention``), out of reach, so encoder models of the BERT family train with an attention
function of the same arithmetic as transformers' own 'eager' one whose dropout is this one; evaluation and every
loader of a saved model (Reports, scoring) keep transformers' attention, since the model is put back before it is
saved. Text classification trains with it on the CPU; entity tagging keeps torch's masks (its presets say
``fast_dropout: False``: over 10 seeds on FIN5 the entity F1 came out lower with these). ``python -m bench.precision_ab
--arms fp32,bf16,fp32+fast,bf16+fast`` measures the gain; docs/benchmarks.md ("Cheaper dropout masks") has the figures.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION = "bellwether_dropout"
# model types whose attention modules call the shared attention interface with BERT's eager signature
# (query, key, value, additive mask, scaling, dropout) and no extra terms
ATTENTION_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A boolean tensor of ``shape``, each element True with probability 1 - p (to 1/65,536)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), 2 ** 63 - 1)  # every bit random
    threshold = round((1 - p) * 65536) - 32768
    return (words.view(torch.int16)[:n] < threshold).view(shape)


def masked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)`` with the mask from :func:`keep_mask`."""
    if not training or p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    return x * (keep_mask(x.shape, p).to(x.dtype) * (1.0 / (1.0 - p)))


class FastDropout(nn.Module):
    """A drop-in ``nn.Dropout`` (no parameters, the same ``p``) whose masks come from :func:`keep_mask`."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention for the BERT family (``modeling_bert.eager_attention_forward``), with this
    module's dropout on the attention probabilities. Under bf16 autocast the scores are bf16 products, as in
    transformers' eager attention; computing them in float32, as torch's fused attention does, gave the same entity F1
    on FIN5 (9 seeds of 10 to four figures) and fpb macro-F1 (to 0.002) but slower steps (docs/benchmarks.md)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = masked_dropout(nn.functional.softmax(weights, dim=-1), dropout, module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTENTION, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)  # additive float masks, as eager attention takes


def apply(model) -> dict:
    """Swaps ``model``'s ``nn.Dropout`` modules (LoRA's included) for :class:`FastDropout` and, for the BERT family,
    its attention for :func:`_attention`. Returns what :func:`restore` needs. For training on the CPU only: on a GPU
    torch's own dropout and fused attention are the fast ones."""
    state = {"modules": [], "attention": None}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))
                state["modules"].append((parent, name, child))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the transformers model
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) in ATTENTION_MODEL_TYPES and hasattr(base, "set_attn_implementation"):
        before = config._attn_implementation
        if before in ("sdpa", "eager"):
            _register()
            base.set_attn_implementation(ATTENTION)
            state["attention"] = (base, before)
    return state


def restore(state: dict) -> None:
    """Undoes :func:`apply`: the modules and the attention the model was loaded with, as it is saved and loaded."""
    for parent, name, original in state["modules"]:
        setattr(parent, name, original)
    if state["attention"] is not None:
        base, before = state["attention"]
        base.set_attn_implementation(before)
    state["modules"], state["attention"] = [], None
