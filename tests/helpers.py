"""Helpers for tests: tiny models built from a config, and a finished run registered in the store."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(path: Path, labels: list[str], task: str = "text-classification", seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT with random weights and the default model's tokenizer to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertForTokenClassification

    from engine.models import default_model_path

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
