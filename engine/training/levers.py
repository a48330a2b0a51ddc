"""Training levers measured by the seed study (issue 13, docs/benchmarks.md): layer-wise learning-rate decay, weight
averaging over the last part of training and R-Drop. Label smoothing is transformers' own (``label_smoothing_factor``).

- **Layer-wise learning-rate decay** (``layer_decay`` < 1): the classifier head and the top encoder layer learn at the
  run's learning rate, each layer below at ``layer_decay`` times the one above, the embeddings at the lowest rate. The
  lower layers hold what pre-training learnt about language in general and need the least change.
- **Weight averaging** (``average_last`` > 0): the mean of the model's weights after every optimizer step of the last
  ``average_last`` share of the steps (tail averaging, as in SWA with the run's own decaying schedule). At the end it
  is one more candidate beside the epoch checkpoints: it is kept when its validation macro-F1 is at least the best
  checkpoint's, and the run says which was kept. A resumed run averages from where it resumed.
- **R-Drop** (``r_drop`` = alpha > 0; Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks"): each
  training batch goes through the model twice, with two different dropout masks; the loss is the mean of the two
  cross-entropies plus alpha times the symmetric KL divergence between the two predicted distributions, so the model
  learns to answer the same whatever dropout removes. A step costs about twice as much; evaluation and prediction are
  unchanged.
"""

from __future__ import annotations

import re

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_scale(name: str, n_layers: int, decay: float) -> float:
    """The factor on the learning rate for the parameter ``name``: ``decay ** (n_layers - i)`` for encoder layer i
    (0 at the bottom), ``decay ** (n_layers + 1)`` for the embeddings, 1 for everything above the encoder."""
    if decay >= 1 or n_layers <= 0:
        return 1.0
    found = _LAYER.search(name)
    if found:
        i = min(int(found.group(1)), n_layers - 1)
        return decay ** (n_layers - i)
    if "embeddings" in name or "embed_tokens" in name or name.split(".")[-2:-1] == ["wte"]:
        return decay ** (n_layers + 1)
    return 1.0


def layerwise_trainer_class(base, decay: float):
    """``base`` (a Trainer class) whose optimizer gives each layer its own learning rate (see :func:`layer_scale`);
    weight decay is left off biases and norms as the Trainer does."""

    class LayerwiseTrainer(base):
        def create_optimizer(self, model=None):
            if self.optimizer is not None or decay >= 1:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            n_layers = int(getattr(opt_model.config, "num_hidden_layers", 0) or getattr(opt_model.config, "n_layer", 0))
            decay_names = set(self.get_decay_parameter_names(opt_model))
            groups: dict[tuple[float, bool], list] = {}
            for name, param in opt_model.named_parameters():
                if param.requires_grad:
                    groups.setdefault((layer_scale(name, n_layers, decay), name in decay_names), []).append(param)
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            lr = float(kwargs.get("lr", self.args.learning_rate))
            self.optimizer = optimizer_cls(
                [{"params": params, "lr": lr * scale, "weight_decay": self.args.weight_decay if decays else 0.0}
                 for (scale, decays), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))],
                **kwargs,
            )
            return self.optimizer

    return LayerwiseTrainer


def rdrop_loss(logits_a, logits_b, labels, alpha: float, class_weights=None, label_smoothing: float = 0.0):
    """The R-Drop loss of two forward passes of one batch: mean cross-entropy of both plus ``alpha`` times the
    symmetric KL divergence between them, over the positions with a label (-100: none, as for sub-word tokens)."""
    import torch
    import torch.nn.functional as F

    n = logits_a.shape[-1]
    flat = labels.reshape(-1)
    keep = flat != -100
    a, b, y = logits_a.reshape(-1, n)[keep].float(), logits_b.reshape(-1, n)[keep].float(), flat[keep]
    if y.numel() == 0:
        return (logits_a.sum() + logits_b.sum()) * 0.0
    weight = class_weights.to(a.device, a.dtype) if class_weights is not None else None
    ce = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    log_a, log_b = F.log_softmax(a, dim=-1), F.log_softmax(b, dim=-1)
    kl = 0.5 * (F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")
                + F.kl_div(log_b, log_a, log_target=True, reduction="batchmean"))
    return 0.5 * (ce(a, y) + ce(b, y)) + alpha * kl


def rdrop_trainer_class(base, alpha: float, class_weights=None, label_smoothing: float = 0.0):
    """``base`` (a Trainer class) training with the R-Drop loss (see :func:`rdrop_loss`): the batch is sent through
    the model twice in one forward (stacked), so the two halves see different dropout masks. Evaluation keeps the
    base class's loss."""
    import torch

    class RDropTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if alpha <= 0 or not model.training or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            labels = inputs.pop("labels")
            size = labels.shape[0]
            doubled = {k: torch.cat([v, v]) if torch.is_tensor(v) and v.shape[:1] == (size,) else v
                       for k, v in inputs.items()}
            outputs = model(**doubled)
            logits_a, logits_b = outputs.logits[:size], outputs.logits[size:]
            loss = rdrop_loss(logits_a, logits_b, labels, alpha, class_weights, label_smoothing)
            if return_outputs:
                outputs.logits = logits_a
                return loss, outputs
            return loss

    return RDropTrainer


def weight_averager(share: float):
    """A TrainerCallback keeping the running mean of the trainable weights over the last ``share`` of the steps."""
    import torch
    from transformers import TrainerCallback

    class WeightAverager(TrainerCallback):
        def __init__(self):
            self.mean: dict[str, torch.Tensor] = {}
            self.count = 0
            self.start_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start_step = int(state.max_steps * (1 - share))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is None or state.global_step <= self.start_step:
                return control
            self.count += 1
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if not param.requires_grad:
                        continue
                    value = param.detach().float()
                    if name not in self.mean:
                        self.mean[name] = value.clone()
                    else:
                        self.mean[name].add_(value - self.mean[name], alpha=1.0 / self.count)
            return control

        def swap_into(self, model) -> dict[str, torch.Tensor]:
            """Put the averaged weights into ``model``; returns the weights they replaced (for :func:`restore`)."""
            replaced = {}
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name in self.mean:
                        replaced[name] = param.detach().clone()
                        param.copy_(self.mean[name].to(param.device, param.dtype))
            return replaced

    return WeightAverager()


def restore(model, replaced: dict) -> None:
    """Undo :meth:`WeightAverager.swap_into`."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in replaced:
                param.copy_(replaced[name])
