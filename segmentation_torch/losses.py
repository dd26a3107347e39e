"""Losses, PyTorch side. Call as ``loss(input, target)`` (torch's order); logits are ``(N, C, H, W)``.

Reference definitions: ``shared.losses``. Both reduce to a scalar mean (documented per class).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shared.validation import check_logits_and_target, label_dtype_error, label_range_error, nan_error


def _check_finite(name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise nan_error(name)


class BinaryCrossEntropyLoss(nn.Module):
    """Mean binary cross-entropy on logits: ``target`` is float 0/1 (or soft) of the logits' shape.

    Uses ``F.binary_cross_entropy_with_logits`` (log-sum-exp form, no clamping of probabilities).
    """

    def __init__(self):
        super().__init__()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_logits_and_target(tuple(input.shape), tuple(target.shape), layout="NCHW", labels=False)
        _check_finite("input", input)
        return F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction="mean")


class CrossEntropyLoss(nn.Module):
    """Multiclass cross-entropy on logits ``(N, C, H, W)`` against integer labels ``(N, H, W)``.

    Reduction: sum of ``class_weights[label] * -log softmax(input)[label]`` over pixels whose label is
    not ``ignore_index``, divided by the sum of their class weights (torch's weighted mean). When
    every pixel is ignored the loss is 0.0, not NaN.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        weights = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_logits_and_target(tuple(input.shape), tuple(target.shape), layout="NCHW", labels=True)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise label_dtype_error("target", str(target.dtype).removeprefix("torch."))
        _check_finite("input", input)
        num_classes = input.shape[1]
        if self.class_weights is not None and self.class_weights.numel() != num_classes:
            raise ValueError(f"class_weights has {self.class_weights.numel()} entries but input has {num_classes} classes")
        keep = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        bad = keep & ((target < 0) | (target >= num_classes))
        if bool(bad.any()):
            raise label_range_error("target", int(target[bad][0]), num_classes, self.ignore_index)
        safe = torch.where(keep, target, torch.zeros_like(target)).long()
        nll = -F.log_softmax(input, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        weights = keep.to(input.dtype)
        if self.class_weights is not None:
            weights = weights * self.class_weights.to(input.device, input.dtype)[safe]
        denominator = weights.sum()
        return torch.where(denominator > 0, (weights * nll).sum() / denominator.clamp_min(1e-12),
                           denominator * 0.0)
