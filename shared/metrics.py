"""Segmentation metrics in plain numpy: the reference definitions both frameworks' metrics must equal.

Everything starts from the confusion matrix of two integer label maps: ``cm[t, p]`` counts pixels whose
target (true) label is ``t`` and predicted label is ``p`` (rows: target, columns: prediction, as in
scikit-learn), pixels whose target is ``ignore_index`` left out. Per-class scores are float64 arrays
with ``NaN`` for a class that appears neither in the target nor in the prediction (nothing to score);
means (``mean_iou``, ``mean_dice``) leave those classes out, and are ``NaN`` only when no class appears
at all (every pixel ignored). scikit-image cross-checks: ``contingency_table`` equals the confusion
matrix, and ``adapted_rand_error`` computed from it equals ``skimage.metrics.adapted_rand_error``
(``tests/test_metrics.py``).
"""

from __future__ import annotations

import numpy as np


def check_num_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def check_labels(name: str, labels: np.ndarray, num_classes: int, ignore_index: int | None) -> None:
    """Integer dtype and every label in ``0..num_classes-1`` (or ``ignore_index``); errors name ``name``."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {labels.dtype}; "
                        f"take the argmax of scores (or round a float mask) first")
    keep = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, bool)
    bad = keep & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        allowed = f"0..{num_classes - 1}" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
        raise ValueError(f"{name} holds label {int(labels[bad][0])}, outside the valid range {allowed}")


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts of (target, prediction) pairs over all pixels.

    ``pred`` and ``target`` are integer label maps of the same shape (any rank, e.g. ``(N, H, W)``).
    Pixels whose *target* is ``ignore_index`` are not counted; a prediction never holds it.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {pred.shape} and target {target.shape}")
    check_num_classes(num_classes)
    check_labels("pred", pred, num_classes, None)
    check_labels("target", target, num_classes, ignore_index)
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    pairs = target[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _parts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per class."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union ``tp / (tp + fp + fn)`` per class; NaN for a class absent from both."""
    tp, fp, fn = _parts(cm)
    return _ratio(tp, tp + fp + fn)


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    """Dice (F1) ``2 tp / (2 tp + fp + fn)`` per class, equal to ``2 IoU / (1 + IoU)``; NaN if absent."""
    tp, fp, fn = _parts(cm)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _mean_present(scores: np.ndarray) -> float:
    present = scores[~np.isnan(scores)]
    return float(present.mean()) if present.size else float("nan")


def mean_iou(cm: np.ndarray) -> float:
    """Mean of ``iou_per_class`` over the classes present in target or prediction."""
    return _mean_present(iou_per_class(cm))


def mean_dice(cm: np.ndarray) -> float:
    """Mean of ``dice_per_class`` over the classes present in target or prediction."""
    return _mean_present(dice_per_class(cm))


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels predicted correctly; NaN when no pixel is counted."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: precision ``tp / (tp + fp)`` (NaN if never predicted), recall ``tp / (tp + fn)``
    (NaN if absent from the target)."""
    tp, fp, fn = _parts(cm)
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn)


def adapted_rand_error(cm: np.ndarray) -> tuple[float, float, float]:
    """``(error, precision, recall)`` of the adapted Rand index (Arganda-Carreras et al. 2015) from a
    confusion matrix, with scikit-image's definitions (pairs of pixels, ``alpha = 0.5``); NaN where a
    ratio has no pairs to count (e.g. a single pixel)."""
    p = np.asarray(cm, dtype=np.float64)
    n = p.sum()
    sum_p2 = (p**2).sum() - n
    a, b = p.sum(axis=1), p.sum(axis=0)  # target (true) and prediction segment sizes
    sum_a2, sum_b2 = (a**2).sum() - n, (b**2).sum() - n
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = sum_p2 / sum_a2, sum_p2 / sum_b2
        return float(1.0 - sum_p2 / (0.5 * sum_a2 + 0.5 * sum_b2)), float(precision), float(recall)
