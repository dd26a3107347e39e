"""Streaming segmentation metrics, PyTorch side: a confusion matrix accumulated over batches.

Twin of ``segmentation_tf/metrics.py``. The scores are ``segparity.reference.metrics``'s, computed from the
accumulated counts, so they equal the numpy reference exactly on the same label maps. Predictions may
be logits ``(N, C, H, W)`` (argmax over C; with one channel, ``value > threshold`` gives labels 0/1:
``threshold=0`` for a logit, 0.5 for a network that ends in a sigmoid) or integer
label maps ``(N, H, W)``; targets are integer label maps ``(N, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from segparity.reference import metrics
from segparity.validation import nan_error


def predicted_labels(preds: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Integer labels ``(N, H, W)`` from logits ``(N, C, H, W)`` or from labels (returned as they are).
    One channel: label 1 where the value is above ``threshold`` (0 for a logit, i.e. probability 0.5;
    0.5 for a probability)."""
    if not preds.is_floating_point():
        return preds
    if not bool(torch.isfinite(preds).all()):
        raise nan_error("preds")
    if preds.shape[1] == 1:
        return (preds[:, 0] > threshold).long()
    return preds.argmax(dim=1)


class ConfusionMatrix:
    """Accumulates ``cm[target, prediction]`` counts over ``update`` calls (``segparity.reference.metrics``).

    ``update(preds, target)``, ``compute()`` (the ``(num_classes, num_classes)`` int64 numpy counts),
    ``reset()``. Pixels whose target is ``ignore_index`` are not counted. ``threshold``: a one-channel
    prediction's label is 1 above it (``predicted_labels``).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, threshold: float = 0.0):
        metrics.check_num_classes(num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.counts = torch.zeros(num_classes * num_classes, dtype=torch.int64)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        labels = predicted_labels(preds, self.threshold)
        if labels.shape != target.shape:
            raise ValueError(f"preds give label maps of shape {tuple(labels.shape)} but target has shape "
                             f"{tuple(target.shape)}; target must be integer labels (N, H, W)")
        metrics.check_labels("target", target.cpu().numpy(), self.num_classes, self.ignore_index)
        keep = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        metrics.check_labels("preds", labels[keep].cpu().numpy(), self.num_classes, None)
        pairs = target[keep].long() * self.num_classes + labels[keep].long()
        self.counts += torch.bincount(pairs.cpu(), minlength=self.num_classes * self.num_classes)

    def compute(self) -> np.ndarray:
        return self.counts.reshape(self.num_classes, self.num_classes).numpy().copy()

    def reset(self) -> None:
        self.counts.zero_()


class _Score(ConfusionMatrix):
    """A float score of the accumulated counts, computed by ``segparity.reference.metrics`` (``score``)."""

    score = None  # a segparity.reference.metrics function of the confusion matrix

    def compute(self) -> float:
        return type(self).score(super().compute())


class MeanIoU(_Score):
    """Mean IoU over the classes present in target or prediction (``segparity.reference.metrics.mean_iou``);
    ``compute()`` returns a float (NaN before any counted pixel)."""

    score = staticmethod(metrics.mean_iou)


class MeanDice(_Score):
    """Mean Dice (F1) over the classes present in target or prediction (``segparity.reference.metrics.mean_dice``);
    ``compute()`` returns a float (NaN before any counted pixel)."""

    score = staticmethod(metrics.mean_dice)


class PixelAccuracy(_Score):
    """Fraction of counted pixels labelled correctly (``segparity.reference.metrics.pixel_accuracy``); ``compute()``
    returns a float (NaN before any counted pixel)."""

    score = staticmethod(metrics.pixel_accuracy)
