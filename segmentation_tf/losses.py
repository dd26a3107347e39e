"""Segmentation losses, Keras side. Call as ``loss(y_true, y_pred)`` (Keras's order); ``y_pred`` is
``(N, H, W, C)``. Twin of ``segmentation_torch/losses.py``; ``keras.losses.Loss`` subclasses usable in
``model.compile(loss=...)``.

Modes, target shapes, reductions and edge cases are defined once by the numpy references in
``segparity.reference.losses`` (each class names its function); both frameworks are tested equal to them, in value
and gradient. Every loss returns a scalar and is 0.0 (never NaN) when every entry is ignored.
Value checks (label range, NaN, probabilities) run when TensorFlow executes eagerly; inside a compiled
``tf.function`` (``model.fit``) only the shape and dtype checks run.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from segparity.reference import losses as reference
from segparity.validation import (check_loss_target, check_target_dtype, label_range_error, nan_error,
                               probability_error, target_value_error)


def _first(values, bad) -> float:
    return float(ops.convert_to_numpy(values)[ops.convert_to_numpy(bad)][0])


def _dtype_name(x) -> str:
    return keras.backend.standardize_dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


def _scaled_for_replicas(loss):
    """``loss / replicas`` under a ``tf.distribute`` strategy with several replicas in sync, else ``loss``.

    Under a strategy each replica's gradient is *summed* over the replicas, so Keras's built-in losses divide
    their batch mean by the number of replicas (``keras.losses.Loss.__call__``, and ``fit`` multiplies the
    logged loss back). Keras skips that division when ``call`` already returns a scalar, as every segparity
    loss does (each reduces itself, as segmentation_models_pytorch's do): without this, two replicas would
    take twice the single-process step and log twice the loss (pitfall ``tf_distribute_scalar_loss``)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


class _SegmentationLoss(keras.losses.Loss):
    """What every loss shares: argument checks, probabilities, and the target as ``(N, H, W, C)``."""

    labels_only = False  # targets are integer class labels in every mode (cross-entropy)
    hard_targets = False  # binary/multilabel targets must be exactly 0 or 1 (Lovász hinge)

    def __init__(self, mode: str, from_logits: bool, ignore_index: int | None, name: str):
        super().__init__(name=name)
        reference.check_mode(mode, type(self).__name__)
        self.mode = mode
        self.from_logits = from_logits
        self.ignore_index = ignore_index

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss.__call__ casts y_true to float32: check the dtype it came in before it does.
        labels = self.labels_only or self.mode == "multiclass"
        check_target_dtype("y_true", _dtype_name(y_true), labels=labels)
        return _scaled_for_replicas(super().__call__(y_true, y_pred, sample_weight))

    def _check(self, y_true, y_pred) -> None:
        """Shapes, then (eagerly) values: finite input, probabilities in [0, 1], labels in range."""
        check_loss_target(tuple(y_pred.shape), tuple(y_true.shape), mode=self.mode, layout="NHWC",
                          input_name="y_pred", target_name="y_true")
        if not tf.executing_eagerly():
            return
        if not bool(ops.all(ops.isfinite(y_pred))):
            raise nan_error("y_pred")
        if not self.from_logits and bool(ops.any((y_pred < 0) | (y_pred > 1))):
            raise probability_error("y_pred", _first(y_pred, (y_pred < 0) | (y_pred > 1)))
        if not bool(ops.all(ops.isfinite(y_true))):
            raise nan_error("y_true")
        counted = self._valid(y_true)
        if self.labels_only or self.mode == "multiclass":
            num_classes = y_pred.shape[-1] if self.mode == "multiclass" else 2
            bad = counted & ((y_true < 0) | (y_true >= num_classes))
            if bool(ops.any(bad)):
                raise label_range_error("y_true", int(_first(y_true, bad)), num_classes, self.ignore_index)
            return
        bad = counted & ((y_true < 0) | (y_true > 1))
        if self.hard_targets:
            bad = bad | (counted & (y_true != 0) & (y_true != 1))
        if bool(ops.any(bad)):
            raise target_value_error("y_true", _first(y_true, bad), hard=self.hard_targets,
                                     ignore_index=self.ignore_index)

    def _valid(self, y_true):
        """Boolean mask of entries whose target is not ``ignore_index``."""
        if self.ignore_index is None:
            return ops.ones_like(y_true, dtype="bool")
        return ops.not_equal(y_true, self.ignore_index)

    def _probabilities(self, y_pred):
        if not self.from_logits:
            return y_pred
        return ops.softmax(y_pred, axis=-1) if self.mode == "multiclass" else ops.sigmoid(y_pred)

    def _targets_and_mask(self, y_true, num_classes: int, dtype: str):
        """``segparity.reference.losses.targets_and_mask``: target ``(N, H, W, C)`` (one-hot in multiclass mode, 0 where
        ignored) and the ``(N, H, W, C)`` mask of counted entries, both in ``dtype``."""
        if self.mode == "binary" and len(y_true.shape) == 3:
            y_true = y_true[..., None]
        valid = self._valid(y_true)
        safe = ops.where(valid, y_true, ops.zeros_like(y_true))
        if self.mode == "multiclass":
            onehot = ops.one_hot(ops.cast(safe, "int32"), num_classes, dtype=dtype) * ops.cast(valid[..., None], dtype)
            return onehot, ops.broadcast_to(ops.cast(valid[..., None], dtype), ops.shape(onehot))
        return ops.cast(safe, dtype), ops.cast(valid, dtype)

    def get_config(self):
        """The constructor's arguments (each is stored under its own name)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "name")]
        return {"name": self.name, **{n: getattr(self, n) for n in names}}


def _masked_mean(values, valid):
    """``segparity.reference.losses.masked_mean``: mean over counted entries, 0.0 (with zero gradient) when none."""
    return ops.sum(values * valid) / ops.maximum(ops.sum(valid), 1.0)


def _power(x, gamma: float):
    """``x ** gamma`` for ``x >= 0``, with gradient 0 at ``x == 0`` when ``gamma < 1`` (the slope is
    infinite there, and TensorFlow's gradient of ``x ** 0`` at 0 is NaN)."""
    if gamma >= 1.0:
        return x ** gamma
    positive = x > 0
    return ops.where(positive, ops.where(positive, x, 1.0) ** gamma, 0.0 if gamma > 0 else 1.0)


def _binary_cross_entropy(y_pred, t, from_logits: bool, eps: float):
    """Elementwise BCE of ``y_pred`` (logits, or probabilities clipped to [eps, 1 - eps]) against ``t``.

    With logits it is written out as TensorFlow's ``sigmoid_cross_entropy_with_logits`` computes it
    (``max(x, 0) - x t + log1p(exp(-|x|))``, both branches chosen by ``x >= 0``, so the gradient at ``x = 0`` is
    ``0.5 - t`` as torch's) rather than called as ``ops.binary_crossentropy(from_logits=True)``: that one looks at how
    ``y_pred`` was made and, when a sigmoid made it, silently takes the sigmoid's input instead. torch's
    ``BCEWithLogitsLoss`` takes what it is given (pitfall ``keras_bce_unwraps_sigmoid``)."""
    if from_logits:
        positive = y_pred >= 0
        relu_logits = ops.where(positive, y_pred, ops.zeros_like(y_pred))
        neg_abs_logits = ops.where(positive, -y_pred, y_pred)
        return relu_logits - y_pred * t + ops.log1p(ops.exp(neg_abs_logits))
    p = ops.clip(y_pred, eps, 1.0 - eps)
    return -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))


@keras.saving.register_keras_serializable(package="segparity")
class BinaryCrossEntropyLoss(_SegmentationLoss):
    """Sigmoid cross-entropy, mean over counted entries (``segparity.reference.losses.binary_cross_entropy``).

    multiclass mode: each class channel against the one-hot labels (one-vs-rest). ``label_smoothing``
    moves targets to ``t (1 - s) + s / 2``.
    """

    def __init__(self, mode: str = "binary", from_logits: bool = True, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, eps: float = 1e-7, name: str = "binary_cross_entropy_loss"):
        super().__init__(mode, from_logits, ignore_index, name)
        reference.check_fraction("label_smoothing", label_smoothing, type(self).__name__)
        self.label_smoothing = label_smoothing
        self.eps = eps

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        t, valid = self._targets_and_mask(y_true, y_pred.shape[-1], y_pred.dtype)
        t = t * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        return _masked_mean(_binary_cross_entropy(y_pred, t, self.from_logits, self.eps), valid)


@keras.saving.register_keras_serializable(package="segparity")
class CrossEntropyLoss(_SegmentationLoss):
    """Softmax cross-entropy against integer labels, weighted mean over counted pixels
    (``segparity.reference.losses.cross_entropy``; equals ``F.cross_entropy(weight=, ignore_index=, label_smoothing=)``
    where that is defined). Binary and multilabel modes are the two-class case on ``[0, x]`` per entry,
    with 0/1 integer targets and two ``class_weights`` (background, foreground).
    """

    labels_only = True

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, class_weights: Sequence[float] | None = None,
                 ignore_index: int | None = None, label_smoothing: float = 0.0, eps: float = 1e-7,
                 name: str = "cross_entropy_loss"):
        super().__init__(mode, from_logits, ignore_index, name)
        reference.check_fraction("label_smoothing", label_smoothing, type(self).__name__)
        self.label_smoothing = label_smoothing
        self.eps = eps
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        if self.mode != "multiclass":  # (N, H, W, C) -> two classes [0, x] on (N, H, W*C, 2)
            _, h, w, c = ops.shape(y_pred)
            x = ops.reshape(y_pred, (-1, h, w * c, 1))
            y_pred = ops.concatenate([ops.zeros_like(x) if self.from_logits else 1.0 - x, x], axis=-1)
            y_true = ops.reshape(y_true, (-1, h, w * c))
        num_classes = y_pred.shape[-1]
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries but {self.mode} mode has "
                             f"{num_classes} classes")
        logp = ops.log_softmax(y_pred, axis=-1) if self.from_logits else ops.log(ops.maximum(y_pred, self.eps))
        keep = self._valid(y_true)
        safe = ops.cast(ops.where(keep, y_true, ops.zeros_like(y_true)), "int32")
        weights = ops.ones((num_classes,), y_pred.dtype) if self.class_weights is None \
            else ops.convert_to_tensor(self.class_weights, y_pred.dtype)
        pixel_weights = ops.take(weights, safe) * ops.cast(keep, y_pred.dtype)
        nll = -ops.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        smooth = -ops.sum(logp * weights, axis=-1) * ops.cast(keep, y_pred.dtype) / num_classes
        total = (1.0 - self.label_smoothing) * ops.sum(pixel_weights * nll) + self.label_smoothing * ops.sum(smooth)
        return total / ops.maximum(ops.sum(pixel_weights), 1e-12)


class _OverlapLoss(_SegmentationLoss):
    """Dice, Jaccard and Tversky: per-class sums over ``(N, H, W)`` of counted entries, then
    ``segparity.reference.losses.mean_over_classes``."""

    def __init__(self, mode: str, from_logits: bool, smooth: float, eps: float, ignore_index: int | None, name: str):
        super().__init__(mode, from_logits, ignore_index, name)
        reference.check_non_negative("smooth", smooth, type(self).__name__)
        self.smooth = smooth
        self.eps = eps

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        t, valid = self._targets_and_mask(y_true, y_pred.shape[-1], y_pred.dtype)
        p = self._probabilities(y_pred) * valid
        axes = (0, 1, 2)
        intersection, p_sum, t_sum = ops.sum(p * t, axis=axes), ops.sum(p, axis=axes), ops.sum(t, axis=axes)
        per_class = 1.0 - self._score(intersection, p_sum, t_sum)
        return self._aggregate(ops.mean(per_class * ops.cast(t_sum > 0, y_pred.dtype)))

    def _score(self, intersection, p_sum, t_sum):
        raise NotImplementedError

    def _aggregate(self, loss):
        return loss


@keras.saving.register_keras_serializable(package="segparity")
class DiceLoss(_OverlapLoss):
    """``1 - (2 I + smooth) / max(sum p + sum t + smooth, eps)`` per class (``segparity.reference.losses.dice_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 ignore_index: int | None = None, name: str = "dice_loss"):
        super().__init__(mode, from_logits, smooth, eps, ignore_index, name)

    def _score(self, intersection, p_sum, t_sum):
        return (2.0 * intersection + self.smooth) / ops.maximum(p_sum + t_sum + self.smooth, self.eps)


@keras.saving.register_keras_serializable(package="segparity")
class JaccardLoss(_OverlapLoss):
    """``1 - (I + smooth) / max(sum p + sum t - I + smooth, eps)`` per class (``segparity.reference.losses.jaccard_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-7,
                 ignore_index: int | None = None, name: str = "jaccard_loss"):
        super().__init__(mode, from_logits, smooth, eps, ignore_index, name)

    def _score(self, intersection, p_sum, t_sum):
        return (intersection + self.smooth) / ops.maximum(p_sum + t_sum - intersection + self.smooth, self.eps)


@keras.saving.register_keras_serializable(package="segparity")
class TverskyLoss(_OverlapLoss):
    """Tversky index with false-positive weight ``alpha`` and false-negative weight ``beta``; the class
    mean raised to ``gamma`` (focal Tversky for gamma != 1; ``segparity.reference.losses.tversky_loss``)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, alpha: float = 0.5, beta: float = 0.5,
                 gamma: float = 1.0, smooth: float = 0.0, eps: float = 1e-7, ignore_index: int | None = None,
                 name: str = "tversky_loss"):
        super().__init__(mode, from_logits, smooth, eps, ignore_index, name)
        for arg, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            reference.check_non_negative(arg, value, type(self).__name__)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def _score(self, intersection, p_sum, t_sum):
        false_pos, false_neg = p_sum - intersection, t_sum - intersection
        denominator = intersection + self.alpha * false_pos + self.beta * false_neg + self.smooth
        return (intersection + self.smooth) / ops.maximum(denominator, self.eps)

    def _aggregate(self, loss):
        return _power(loss, self.gamma)


@keras.saving.register_keras_serializable(package="segparity")
class FocalLoss(_SegmentationLoss):
    """``-a (1 - p_t) ** gamma log p_t``, mean over counted entries (``segparity.reference.losses.focal_loss``):
    sigmoid per entry in binary/multilabel mode (``alpha`` weights positives, ``1 - alpha`` negatives),
    softmax in multiclass mode (``alpha`` scales every pixel)."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, alpha: float | None = None,
                 gamma: float = 2.0, ignore_index: int | None = None, eps: float = 1e-7, name: str = "focal_loss"):
        super().__init__(mode, from_logits, ignore_index, name)
        if alpha is not None:
            reference.check_fraction("alpha", alpha, type(self).__name__)
        reference.check_non_negative("gamma", gamma, type(self).__name__)
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        t, valid = self._targets_and_mask(y_true, y_pred.shape[-1], y_pred.dtype)
        if self.mode == "multiclass":
            logp = ops.log_softmax(y_pred, axis=-1) if self.from_logits else ops.log(ops.maximum(y_pred, self.eps))
            log_pt = ops.sum(logp * t, axis=-1)
            loss = -_power(1.0 - ops.exp(log_pt), self.gamma) * log_pt * (1.0 if self.alpha is None else self.alpha)
            return _masked_mean(loss, valid[..., 0])
        ce = _binary_cross_entropy(y_pred, t, self.from_logits, self.eps)
        p = ops.sigmoid(y_pred) if self.from_logits else ops.clip(y_pred, self.eps, 1.0 - self.eps)
        p_t = p * t + (1.0 - p) * (1.0 - t)
        loss = ce * _power(1.0 - p_t, self.gamma)
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1.0 - self.alpha) * (1.0 - t))
        return _masked_mean(loss, valid)


def _lovasz_grad(gt_sorted):
    """``segparity.reference.losses.lovasz_grad`` of a 1-D target sorted by decreasing error."""
    gts = ops.sum(gt_sorted)
    intersection = gts - ops.cumsum(gt_sorted)
    union = gts + ops.cumsum(1.0 - gt_sorted)
    jaccard = 1.0 - intersection / union
    return ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)


def _lovasz_sorted_dot(errors, gt, hinge: bool):
    """Errors sorted decreasingly (ties keep their order; ``relu`` after sorting for the hinge) dot the
    Lovász gradient of the targets in that order."""
    # tf.argsort, not keras.ops.argsort: the Keras op has no stable descending sort
    order = tf.argsort(errors, direction="DESCENDING", stable=True)
    errors_sorted = ops.relu(ops.take(errors, order)) if hinge else ops.take(errors, order)
    return ops.sum(errors_sorted * _lovasz_grad(ops.take(gt, order)))


@keras.saving.register_keras_serializable(package="segparity")
class LovaszLoss(_SegmentationLoss):
    """Lovász hinge (binary/multilabel: all counted entries as one binary problem, 0/1 targets, logits
    only) or Lovász-softmax (multiclass: mean over the classes present among counted pixels);
    ``segparity.reference.losses.lovasz_loss``."""

    def __init__(self, mode: str = "multiclass", from_logits: bool = True, ignore_index: int | None = None,
                 name: str = "lovasz_loss"):
        super().__init__(mode, from_logits, ignore_index, name)
        if mode != "multiclass" and not from_logits:
            raise ValueError(f"LovaszLoss(mode={mode!r}) is the Lovász hinge on logits: from_logits must be True")
        self.hard_targets = mode != "multiclass"

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        t, valid = self._targets_and_mask(y_true, y_pred.shape[-1], y_pred.dtype)
        if self.mode != "multiclass":
            keep = ops.cast(valid, "bool")
            x, t = tf.boolean_mask(y_pred, keep), tf.boolean_mask(t, keep)
            return _lovasz_sorted_dot(1.0 - x * (2.0 * t - 1.0), t, hinge=True)  # 0.0 when nothing is counted
        p = self._probabilities(y_pred)
        keep = ops.cast(valid[..., 0], "bool")
        per_class, present = [], []
        for c in range(y_pred.shape[-1]):
            fg, p_c = tf.boolean_mask(t[..., c], keep), tf.boolean_mask(p[..., c], keep)
            per_class.append(_lovasz_sorted_dot(ops.abs(fg - p_c), fg, hinge=False))
            present.append(ops.sum(fg) > 0)
        present = ops.cast(ops.stack(present), y_pred.dtype)
        return ops.sum(ops.stack(per_class) * present) / ops.maximum(ops.sum(present), 1.0)


@keras.saving.register_keras_serializable(package="segparity")
class CombinedLoss(keras.losses.Loss):
    """``sum_i weights[i] * losses[i](y_true, y_pred)``; ``weights`` default to 1 each. The losses must
    accept the same ``(y_true, y_pred)`` (same mode)."""

    def __init__(self, losses: Sequence[keras.losses.Loss], weights: Sequence[float] | None = None,
                 name: str = "combined_loss"):
        super().__init__(name=name)
        if not losses:
            raise ValueError("CombinedLoss: losses must hold at least one loss")
        if weights is not None and len(weights) != len(losses):
            raise ValueError(f"CombinedLoss: {len(weights)} weights for {len(losses)} losses")
        self.losses = list(losses)
        self.weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]

    def __call__(self, y_true, y_pred, sample_weight=None):
        # each part checks and casts y_true itself (Loss.__call__ would make integer labels float first)
        if sample_weight is not None:
            raise ValueError("CombinedLoss: sample_weight is not supported; use ignore_index to leave pixels out")
        return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        return sum(w * loss(y_true, y_pred) for w, loss in zip(self.weights, self.losses))

    def get_config(self):
        return {"name": self.name, "losses": [keras.saving.serialize_keras_object(loss) for loss in self.losses],
                "weights": self.weights}

    @classmethod
    def from_config(cls, config):
        losses = [keras.saving.deserialize_keras_object(loss) for loss in config.pop("losses")]
        return cls(losses, **config)
