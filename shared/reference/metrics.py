"""Segmentation metrics in plain numpy: the reference definitions both frameworks' metrics must equal.

Everything starts from the confusion matrix of two integer label maps: ``cm[t, p]`` counts pixels whose
target (true) label is ``t`` and predicted label is ``p`` (rows: target, columns: prediction, as in
scikit-learn), pixels whose target is ``ignore_index`` left out. Per-class scores are float64 arrays
with ``NaN`` for a class that appears neither in the target nor in the prediction (nothing to score);
means (``mean_iou``, ``mean_dice``) leave those classes out, and are ``NaN`` only when no class appears
at all (every pixel ignored). scikit-image cross-checks: ``contingency_table`` equals the confusion
matrix, and ``adapted_rand_error`` computed from it equals ``skimage.metrics.adapted_rand_error``
(``tests/test_metrics.py``).

Instance and panoptic metrics (issue #9's first part): ``symmetric_best_dice``, ``instance_scores``
(precision, recall and F1 of instances matched at IoU > 0.5) and ``panoptic_quality`` (PQ = SQ x RQ,
COCO's rules), tested on hand-computed cases and properties in ``tests/test_instance_metrics.py``.
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


# ---- instance and panoptic metrics ---------------------------------------------------------------------
# Instance label maps are integer arrays (H, W) or (N, H, W): 0 (``background``) is no instance, every
# other value one instance of that image. Panoptic maps are (N, H, W, 2): (class id, instance id).


def _check_integer_maps(pred, target, *, trailing: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    for name, array in (("pred", pred), ("target", target)):
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must be an integer label map, got dtype {array.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {pred.shape} and target {target.shape}")
    if trailing and (pred.ndim != 4 or pred.shape[3:] != trailing):
        raise ValueError(f"pred and target must have shape (N, H, W, {trailing[0]}), got {pred.shape}")
    if not trailing and pred.ndim not in (2, 3):
        raise ValueError(f"instance maps must have shape (H, W) or (N, H, W), got {pred.shape}")
    return pred, target


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment ids of ``a`` and ``b`` (1-D, non-negative; -1 = not a segment), their sizes, and the
    intersection of every pair: ``(ids_a, sizes_a, ids_b, sizes_b, inter[len(ids_a), len(ids_b)])``."""
    ids_a, sizes_a = np.unique(a[a >= 0], return_counts=True)
    ids_b, sizes_b = np.unique(b[b >= 0], return_counts=True)
    both = (a >= 0) & (b >= 0)
    inter = np.zeros((ids_a.size, ids_b.size), dtype=np.int64)
    if both.any():
        np.add.at(inter, (np.searchsorted(ids_a, a[both]), np.searchsorted(ids_b, b[both])), 1)
    return ids_a, sizes_a, ids_b, sizes_b, inter


def _instances(labels: np.ndarray, background: int) -> np.ndarray:
    return np.where(labels == background, -1, labels.astype(np.int64)).ravel()


def symmetric_best_dice(pred, target, background: int = 0) -> float:
    """Symmetric best Dice (Scharr et al. 2016, the CVPPP leaf benchmark): per image
    ``min(BD(pred, target), BD(target, pred))`` with ``BD(a, b)`` the mean over the instances of ``a`` of
    their best Dice with an instance of ``b``; the mean over the images of a batch. An image where both
    maps are empty scores 1, one where only one is empty 0."""
    pred, target = _check_integer_maps(pred, target)
    scores = []
    for p, t in zip(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])):
        _, size_p, _, size_t, inter = _overlaps(_instances(p, background), _instances(t, background))
        if size_p.size == 0 or size_t.size == 0:
            scores.append(1.0 if size_p.size == size_t.size else 0.0)
            continue
        dice = 2.0 * inter / (size_p[:, None] + size_t[None, :])
        scores.append(min(dice.max(axis=1).mean(), dice.max(axis=0).mean()))
    return float(np.mean(scores))


def _matches(inter: np.ndarray, union: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` with IoU > 0.5: at most one per row and column (two sets of disjoint
    segments cannot have two such partners, Kirillov et al. 2019, Theorem 1)."""
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    rows, cols = np.nonzero(iou > 0.5)
    return rows, cols, iou[rows, cols]


def _rates(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1; 1.0 where nothing was there to find and nothing was predicted."""
    return {"precision": tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0),
            "recall": tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0),
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0}


def instance_scores(pred, target, background: int = 0) -> dict[str, float]:
    """Instance-level detection over a batch: an instance is found when a predicted instance overlaps it
    with IoU > 0.5 (a unique match). Returns ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``
    (``_rates``: 1.0 for a batch with no instances and no predictions)."""
    pred, target = _check_integer_maps(pred, target)
    tp = fp = fn = 0
    for p, t in zip(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])):
        _, size_p, _, size_t, inter = _overlaps(_instances(p, background), _instances(t, background))
        matched = _matches(inter, size_p[:, None] + size_t[None, :] - inter)[0].size
        tp, fp, fn = tp + matched, fp + size_p.size - matched, fn + size_t.size - matched
    return {"tp": tp, "fp": fp, "fn": fn, **_rates(tp, fp, fn)}


def _panoptic_segments(image: np.ndarray, things: set, stuffs: set, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, a segment id ``class * shift + instance`` (instance 0 for a stuff class: one segment per
    class) or -1 for void (a class in neither ``things`` nor ``stuffs``); and the void mask."""
    classes, ids = image[..., 0].astype(np.int64), image[..., 1].astype(np.int64)
    is_thing = np.isin(classes, list(things))
    void = ~(is_thing | np.isin(classes, list(stuffs)))
    segment = classes * shift + np.where(is_thing, ids, 0)
    return np.where(void, -1, segment).ravel(), void.ravel()


def panoptic_quality(pred, target, things, stuffs) -> dict:
    """Panoptic quality (Kirillov, He, Girshick, Rother, Dollár, *Panoptic Segmentation*, CVPR 2019;
    the COCO panoptic evaluation's rules) of ``pred`` against ``target``, integer arrays ``(N, H, W, 2)``
    of (class id, instance id) per pixel.

    - A segment is one (class, instance id) pair of a class in ``things``, or all pixels of a class in
      ``stuffs`` whatever their instance ids. Pixels of any other class are void.
    - In each image, a predicted and a target segment of the same class match when their IoU > 0.5;
      target void pixels are left out of the union. Matched pairs are true positives, unmatched target
      segments false negatives, unmatched predicted segments false positives, except those more than
      half of whose pixels are target void (COCO's rule).
    - Per class over the batch: ``pq = sum IoU / (tp + fp/2 + fn/2)``, ``sq = sum IoU / tp`` (0 without
      a tp), ``rq = tp / (tp + fp/2 + fn/2)``, so ``pq = sq * rq``.

    Returns ``{"pq", "sq", "rq", "n"}`` overall (the mean over the classes that occur, i.e. have a tp,
    fp or fn; NaN when none does), the same for ``"things"`` and ``"stuff"``, and ``"per_class"``:
    ``{class: {"pq", "sq", "rq", "tp", "fp", "fn"}}``.
    """
    pred, target = _check_integer_maps(pred, target, trailing=(2,))
    things, stuffs = {int(c) for c in things}, {int(c) for c in stuffs}
    if things & stuffs:
        raise ValueError(f"a class cannot be both a thing and stuff: {sorted(things & stuffs)}")
    if (pred < 0).any() or (target < 0).any():
        raise ValueError("class and instance ids must be non-negative")
    shift = int(max(pred[..., 1].max(initial=0), target[..., 1].max(initial=0))) + 1
    counts = {c: [0, 0, 0, 0.0] for c in sorted(things | stuffs)}  # tp, fp, fn, sum of IoU
    for p_image, t_image in zip(pred, target):
        p_seg, _ = _panoptic_segments(p_image, things, stuffs, shift)
        t_seg, t_void = _panoptic_segments(t_image, things, stuffs, shift)
        ids_p, size_p, ids_t, size_t, inter = _overlaps(p_seg, t_seg)
        on_void = np.bincount(np.searchsorted(ids_p, p_seg[(p_seg >= 0) & t_void]), minlength=ids_p.size)
        same_class = (ids_p[:, None] // shift) == (ids_t[None, :] // shift)
        union = size_p[:, None] + size_t[None, :] - inter - on_void[:, None]
        rows, cols, ious = _matches(np.where(same_class, inter, 0), union)
        for j, iou in zip(cols, ious):
            counts[int(ids_t[j] // shift)][0] += 1
            counts[int(ids_t[j] // shift)][3] += float(iou)
        for j in np.setdiff1d(np.arange(ids_t.size), cols):
            counts[int(ids_t[j] // shift)][2] += 1
        for i in np.setdiff1d(np.arange(ids_p.size), rows):
            if on_void[i] <= 0.5 * size_p[i]:
                counts[int(ids_p[i] // shift)][1] += 1
    per_class = {}
    for c, (tp, fp, fn, iou_sum) in counts.items():
        if tp + fp + fn == 0:
            continue
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = iou_sum / tp if tp else 0.0
        per_class[c] = {"pq": sq * rq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn}

    def mean_over(classes) -> dict[str, float]:
        scores = [per_class[c] for c in classes if c in per_class]
        if not scores:
            return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
        return {key: float(np.mean([s[key] for s in scores])) for key in ("pq", "sq", "rq")} | {"n": len(scores)}

    return {**mean_over(per_class), "things": mean_over(things), "stuff": mean_over(stuffs), "per_class": per_class}
