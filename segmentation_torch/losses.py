"""Segmentation losses, PyTorch side. Call as ``loss(input, target)`` (torch's order); ``input`` is
``(N, C, H, W)``. Twin of ``segmentation_tf/losses.py``.

Modes, target shapes, reductions and edge cases are defined once by the numpy references in
``segparity.reference.losses`` (each class names its function); both frameworks are tested equal to them, in value
and gradient. Every loss returns a scalar and is 0.0 (never NaN) when every entry is ignored.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segparity.reference import losses as reference
from segparity.validation import (check_loss_target, check_target_dtype, label_range_error, nan_error,
                               probability_error, target_value_error)


def _first(values: torch.Tensor, bad: torch.Tensor) -> float:
    return float(values[bad][0])


class _SegmentationLoss(nn.Module):
    """What every loss shares: argument checks, probabilities, and the target as ``(N, C, H, W)``."""

    labels_only = False  # targets are integer class labels in every mode (cross-entropy)
    hard_targets = False  # binary/multilabel targets must be exactly 0 or 1 (Lovász hinge)

    def __init__(self, mode: str, from_logits: bool, ignore_index: int | None):
        super().__init__()
        reference.check_mode(mode, type(self).__name__)
        self.mode = mode
        self.from_logits = from_logits
        self.ignore_index = ignore_index

    def _check(self, input: torch.Tensor, target: torch.Tensor) -> None:
        """Shapes and dtypes, then values: finite input, probabilities in [0, 1], labels in range."""
        check_loss_target(tuple(input.shape), tuple(target.shape), mode=self.mode, layout="NCHW")
        labels = self.labels_only or self.mode == "multiclass"
        check_target_dtype("target", str(target.dtype).removeprefix("torch."), labels=labels)
        if not bool(torch.isfinite(input).all()):
            raise nan_error("input")
        if not self.from_logits and bool(((input < 0) | (input > 1)).any()):
            raise probability_error("input", _first(input, (input < 0) | (input > 1)))
        if target.is_floating_point() and not bool(torch.isfinite(target).all()):
            raise nan_error("target")
        counted = self._valid(target)
        if labels:
            num_classes = input.shape[1] if self.mode == "multiclass" else 2
            bad = counted & ((target < 0) | (target >= num_classes))
            if bool(bad.any()):
                raise label_range_error("target", int(target[bad][0]), num_classes, self.ignore_index)
            return
        bad = counted & ((target < 0) | (target > 1))
        if self.hard_targets:
            bad = bad | (counted & (target != 0) & (target != 1))
        if bool(bad.any()):
            raise target_value_error("target", _first(target, bad), hard=self.hard_targets,
                                     ignore_index=self.ignore_index)

    def _valid(self, target: torch.Tensor) -> torch.Tensor:
        """Boolean mask of entries whose target is not ``ignore_index``."""
        if self.ignore_index is None:
            return torch.ones_like(target, dtype=torch.bool)
        return target != self.ignore_index

    def _probabilities(self, input: torch.Tensor) -> torch.Tensor:
        if not self.from_logits:
            return input
        return input.softmax(dim=1) if self.mode == "multiclass" else input.sigmoid()

    def _targets_and_mask(self, target: torch.Tensor, num_classes: int,
                          dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``segparity.reference.losses.targets_and_mask``: target ``(N, C, H, W)`` (one-hot in multiclass mode, 0 where
        ignored) and the ``(N, C, H, W)`` mask of counted entries, both in ``dtype``."""
        if self.mode == "binary" and target.dim() == 3:
            target = target.unsqueeze(1)
        valid = self._valid(target)
        safe = torch.where(valid, target, torch.zeros_like(target))
        if self.mode == "multiclass":
            onehot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2) * valid.unsqueeze(1)
            return onehot.to(dtype), valid.unsqueeze(1).expand_as(onehot).to(dtype)
        return safe.to(dtype), valid.to(dtype)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``segparity.reference.losses.masked_mean``: mean over counted entries, 0.0 (with zero gradient) when none."""
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def _power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` for ``x >= 0``, with gradient 0 at ``x == 0`` when ``gamma < 1`` (the slope is
    infinite there, and TensorFlow's gradient of ``x ** 0`` at 0 is NaN)."""
    if gamma >= 1.0:
        return x ** gamma
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0) ** gamma, 0.0 if gamma > 0 else 1.0)


def _binary_cross_entropy(input: torch.Tensor, t: torch.Tensor, from_logits: bool, eps: float) -> torch.Tensor:
    """Elementwise BCE of ``input`` (logits, or probabilities clipped to [eps, 1 - eps]) against ``t``."""
    if from_logits:
        return F.binary_cross_entropy_with_logits(input, t, reduction="none")
    p = input.clamp(eps, 1.0 - eps)
    return -(t * p.log() + (1.0 - t) * (1.0 - p).log())


class BinaryCrossEntropyLoss(_SegmentationLoss):
    """Sigmoid cross-entropy, mean over counted entries (``segparity.reference.losses.binary_cross_entropy``).

    multiclass mode: each class channel against the one-hot labels (one-vs-rest). ``label_smoothing``
    moves targets to ``t (1 - s) + s / 2``.
    """

    def __init__(self, mode: str = "binary", from_logits: bool = True, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, eps: float = 1e-7):
        super().__init__(mode, from_logits, ignore_index)
        reference.check_fraction("label_smoothing", label_smoothing, type(self).__name__)
        self.label_smoothing = label_smoothing
        self.eps = eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        t, valid = self._targets_and_mask(target, input.shape[1], input.dtype)
        t = t * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        return _masked_mean(_binary_cross_entropy(input, t, self.from_logits, self.eps), valid)


class CrossEntropyLoss(_SegmentationLoss):
    """Softmax cross-entropy against integer labels, weighted mean over counted pixels
    (``segparity.reference.losses.cross_entropy``; equals ``F.cross_entropy(weight=, ignore_index=, label_smoothing=)``
    where that is defined). Binary and multilabel modes are the two-class case on ``[0, x]`` per entry,
    with 0/1 integer targets and two ``class_weights`` (background, foreground).
    """

    labels_only = True

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, class_weights: Sequence[float] | None = None,
                 ignore_index: int | None = None, label_smoothing: float = 0.0, eps: float = 1e-7):
        super().__init__(mode, from_logits, ignore_index)
        reference.check_fraction("label_smoothing", label_smoothing, type(self).__name__)
        self.label_smoothing = label_smoothing
        self.eps = eps
        weights = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        if self.mode != "multiclass":  # (N, C, H, W) -> two classes [0, x] on (N, 2, C*H, W)
            n, c, h, w = input.shape
            x = input.reshape(n, 1, c * h, w)
            input = torch.cat([torch.zeros_like(x) if self.from_logits else 1.0 - x, x], dim=1)
            target = target.reshape(n, c * h, w)
        num_classes = input.shape[1]
        if self.class_weights is not None and self.class_weights.numel() != num_classes:
            raise ValueError(f"class_weights has {self.class_weights.numel()} entries but {self.mode} mode has "
                             f"{num_classes} classes")
        logp = input.log_softmax(dim=1) if self.from_logits else input.clamp_min(self.eps).log()
        keep = self._valid(target)
        safe = torch.where(keep, target, torch.zeros_like(target)).long()
        weights = torch.ones(num_classes, dtype=input.dtype, device=input.device) if self.class_weights is None \
            else self.class_weights.to(input.device, input.dtype)
        pixel_weights = weights[safe] * keep
        nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        smooth = -(logp * weights.view(1, -1, 1, 1)).sum(dim=1) * keep / num_classes
        total = (1.0 - self.label_smoothing) * (pixel_weights * nll).sum() + self.label_smoothing * smooth.sum()
        return total / pixel_weights.sum().clamp_min(1e-12)


class _OverlapLoss(_SegmentationLoss):
    """Dice, Jaccard and Tversky: per-class sums over ``(N, H, W)`` of counted entries, then
    ``segparity.reference.losses.mean_over_classes``."""

    def __init__(self, mode: str, from_logits: bool, smooth: float, eps: float, ignore_index: int | None):
        super().__init__(mode, from_logits, ignore_index)
        reference.check_non_negative("smooth", smooth, type(self).__name__)
        self.smooth = smooth
        self.eps = eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        t, valid = self._targets_and_mask(target, input.shape[1], input.dtype)
        p = self._probabilities(input) * valid
        dims = (0, 2, 3)
        intersection, p_sum, t_sum = (p * t).sum(dims), p.sum(dims), t.sum(dims)
        per_class = 1.0 - self._score(intersection, p_sum, t_sum)
        return self._aggregate((per_class * (t_sum > 0)).mean())

    def _score(self, intersection, p_sum, t_sum):
        raise NotImplementedError

    def _aggregate(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


class DiceLoss(_OverlapLoss):
    """``1 - (2 I + smooth) / max(sum p + sum t + smooth, eps)`` per class (``segparity.reference.losses.dice_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 ignore_index: int | None = None):
        super().__init__(mode, from_logits, smooth, eps, ignore_index)

    def _score(self, intersection, p_sum, t_sum):
        return (2.0 * intersection + self.smooth) / (p_sum + t_sum + self.smooth).clamp_min(self.eps)


class JaccardLoss(_OverlapLoss):
    """``1 - (I + smooth) / max(sum p + sum t - I + smooth, eps)`` per class (``segparity.reference.losses.jaccard_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 ignore_index: int | None = None):
        super().__init__(mode, from_logits, smooth, eps, ignore_index)

    def _score(self, intersection, p_sum, t_sum):
        return (intersection + self.smooth) / (p_sum + t_sum - intersection + self.smooth).clamp_min(self.eps)


class TverskyLoss(_OverlapLoss):
    """Tversky index with false-positive weight ``alpha`` and false-negative weight ``beta``; the class
    mean raised to ``gamma`` (focal Tversky for gamma != 1; ``segparity.reference.losses.tversky_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, alpha: float = 0.5, beta: float = 0.5,
                 gamma: float = 1.0, smooth: float = 0.0, eps: float = 1e-7, ignore_index: int | None = None):
        super().__init__(mode, from_logits, smooth, eps, ignore_index)
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            reference.check_non_negative(name, value, type(self).__name__)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def _score(self, intersection, p_sum, t_sum):
        false_pos, false_neg = p_sum - intersection, t_sum - intersection
        denominator = intersection + self.alpha * false_pos + self.beta * false_neg + self.smooth
        return (intersection + self.smooth) / denominator.clamp_min(self.eps)

    def _aggregate(self, loss: torch.Tensor) -> torch.Tensor:
        return _power(loss, self.gamma)


class FocalLoss(_SegmentationLoss):
    """``-a (1 - p_t) ** gamma log p_t``, mean over counted entries (``segparity.reference.losses.focal_loss``):
    sigmoid per entry in binary/multilabel mode (``alpha`` weights positives, ``1 - alpha`` negatives),
    softmax in multiclass mode (``alpha`` scales every pixel)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, alpha: float | None = None,
                 gamma: float = 2.0, ignore_index: int | None = None, eps: float = 1e-7):
        super().__init__(mode, from_logits, ignore_index)
        if alpha is not None:
            reference.check_fraction("alpha", alpha, type(self).__name__)
        reference.check_non_negative("gamma", gamma, type(self).__name__)
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        t, valid = self._targets_and_mask(target, input.shape[1], input.dtype)
        if self.mode == "multiclass":
            logp = input.log_softmax(dim=1) if self.from_logits else input.clamp_min(self.eps).log()
            log_pt = (logp * t).sum(dim=1)
            loss = -_power(1.0 - log_pt.exp(), self.gamma) * log_pt * (1.0 if self.alpha is None else self.alpha)
            return _masked_mean(loss, valid[:, 0])
        ce = _binary_cross_entropy(input, t, self.from_logits, self.eps)
        p = input.sigmoid() if self.from_logits else input.clamp(self.eps, 1.0 - self.eps)
        p_t = p * t + (1.0 - p) * (1.0 - t)
        loss = ce * _power(1.0 - p_t, self.gamma)
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1.0 - self.alpha) * (1.0 - t))
        return _masked_mean(loss, valid)


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """``segparity.reference.losses.lovasz_grad`` of a 1-D target sorted by decreasing error."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def _lovasz_sorted_dot(errors: torch.Tensor, gt: torch.Tensor, hinge: bool) -> torch.Tensor:
    """Errors sorted decreasingly (ties keep their order; ``relu`` after sorting for the hinge) dot the
    Lovász gradient of the targets in that order."""
    order = torch.sort(errors, descending=True, stable=True).indices
    errors_sorted = errors[order].relu() if hinge else errors[order]
    return torch.dot(errors_sorted, _lovasz_grad(gt[order]))


class LovaszLoss(_SegmentationLoss):
    """Lovász hinge (binary/multilabel: all counted entries as one binary problem, 0/1 targets, logits
    only) or Lovász-softmax (multiclass: mean over the classes present among counted pixels);
    ``segparity.reference.losses.lovasz_loss``."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, ignore_index: int | None = None):
        super().__init__(mode, from_logits, ignore_index)
        if mode != "multiclass" and not from_logits:
            raise ValueError(f"LovaszLoss(mode={mode!r}) is the Lovász hinge on logits: from_logits must be True")
        self.hard_targets = mode != "multiclass"

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(input, target)
        t, valid = self._targets_and_mask(target, input.shape[1], input.dtype)
        if self.mode != "multiclass":
            keep = valid.bool()
            x, t = input[keep], t[keep]
            return _lovasz_sorted_dot(1.0 - x * (2.0 * t - 1.0), t, hinge=True)  # 0.0 when nothing is counted
        p = self._probabilities(input)
        keep = valid[:, 0].bool()
        per_class, present = [], []
        for c in range(input.shape[1]):
            fg, p_c = t[:, c][keep], p[:, c][keep]
            per_class.append(_lovasz_sorted_dot((fg - p_c).abs(), fg, hinge=False))
            present.append(fg.sum() > 0)
        present = torch.stack(present).to(input.dtype)
        return (torch.stack(per_class) * present).sum() / present.sum().clamp_min(1.0)


class CombinedLoss(nn.Module):
    """``sum_i weights[i] * losses[i](input, target)``; ``weights`` default to 1 each. The losses must
    accept the same ``(input, target)`` (same mode)."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if not losses:
            raise ValueError("CombinedLoss: losses must hold at least one loss")
        if weights is not None and len(weights) != len(losses):
            raise ValueError(f"CombinedLoss: {len(weights)} weights for {len(losses)} losses")
        self.losses = nn.ModuleList(losses)
        self.weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(input, target) for w, loss in zip(self.weights, self.losses))
