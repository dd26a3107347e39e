"""numpy reference losses: the definitions both frameworks are checked against.

Arrays are channels-first: logits ``(N, C, H, W)``, label maps ``(N, H, W)``. Computed in float64.
"""

from __future__ import annotations

import numpy as np


def bce_with_logits(logits: np.ndarray, target: np.ndarray) -> float:
    """Mean over all elements of ``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))``.

    Written in the overflow-free form ``max(x, 0) - x t + log(1 + exp(-|x|))``.
    """
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    return float(np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))))


def log_softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray, class_weights=None, ignore_index: int | None = None) -> float:
    """Weighted mean of ``-log softmax(logits)[label]`` over pixels whose label is not ``ignore_index``.

    The mean divides by the sum of the class weights of the counted pixels (torch's convention for
    ``F.cross_entropy(weight=...)``). When no pixel counts, the loss is 0.0 (torch returns NaN).
    """
    logp = log_softmax(logits, axis=1)
    labels = np.asarray(labels)
    num_classes = logp.shape[1]
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(keep, labels, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    pixel_w = w[safe] * keep
    denominator = pixel_w.sum()
    if denominator == 0:
        return 0.0
    return float(-(pixel_w * picked).sum() / denominator)
