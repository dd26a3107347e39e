"""Streaming segmentation metrics, Keras side: a confusion matrix accumulated over batches.

Twin of ``segmentation_torch/metrics.py``; ``keras.metrics.Metric`` subclasses usable in
``model.compile(metrics=[...])``. The scores are ``segparity.reference.metrics``'s, computed from the accumulated
counts, so they equal the numpy reference exactly on the same label maps. Predictions may be logits
``(N, H, W, C)`` (argmax over C; with one channel, ``value > threshold`` gives labels 0/1: ``threshold=0`` for a
logit, 0.5 for a network that ends in a sigmoid) or integer label maps
``(N, H, W)``; targets are integer label maps ``(N, H, W)`` (Keras may hand them over as floats in
``fit``: they are cast to int32).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from segparity.reference import metrics
from segparity.validation import nan_error


def predicted_labels(preds, threshold: float = 0.0):
    """Integer labels ``(N, H, W)`` from logits ``(N, H, W, C)`` or from labels (returned as they are).
    One channel: label 1 where the value is above ``threshold`` (0 for a logit, i.e. probability 0.5;
    0.5 for a probability)."""
    if not keras.backend.is_float_dtype(preds.dtype):
        return preds
    if tf.executing_eagerly() and not bool(ops.all(ops.isfinite(preds))):
        raise nan_error("y_pred")
    preds = tf.debugging.assert_all_finite(preds, str(nan_error("y_pred")))  # inside fit's graph
    if preds.shape[-1] == 1:
        return ops.cast(preds[..., 0] > threshold, "int32")
    # tf.argmax, not keras.ops.argmax: the Keras op ranks -0.0 below 0.0 (argmax of [-0.0, 0.0] is 1),
    # while tf.argmax, torch.argmax and numpy treat them as a tie and return the first (found by the
    # property test in tests/test_streaming_metrics.py)
    return tf.argmax(preds, axis=-1)


class ConfusionMatrix(keras.metrics.Metric):
    """Accumulates ``cm[target, prediction]`` counts over ``update_state`` calls (``segparity.reference.metrics``).

    ``update_state(y_true, y_pred)``, ``result()`` (the ``(num_classes, num_classes)`` int64 counts),
    ``reset_state()``. Pixels whose target is ``ignore_index`` are not counted. ``threshold``: a one-channel
    prediction's label is 1 above it (``predicted_labels``).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, threshold: float = 0.0,
                 name: str = "confusion_matrix", **kwargs):
        metrics.check_num_classes(num_classes)
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.counts = self.add_variable(shape=(num_classes * num_classes,), initializer="zeros", dtype="int64",
                                        name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported: use ignore_index to leave pixels out")
        labels = ops.cast(predicted_labels(y_pred, self.threshold), "int64")
        target = ops.cast(y_true, "int64")
        if tuple(labels.shape) != tuple(target.shape) and None not in labels.shape + target.shape:
            raise ValueError(f"y_pred gives label maps of shape {tuple(labels.shape)} but y_true has shape "
                             f"{tuple(target.shape)}; y_true must be integer labels (N, H, W)")
        keep = target != self.ignore_index if self.ignore_index is not None else ops.ones_like(target, dtype="bool")
        if tf.executing_eagerly():  # the same checks and messages as torch, before TensorFlow runs anything
            metrics.check_labels("y_true", np.asarray(y_true).astype(np.int64), self.num_classes, self.ignore_index)
            metrics.check_labels("y_pred", labels[keep].numpy(), self.num_classes, None)
        target, labels = target[keep], labels[keep]
        n = self.num_classes
        for name, values in (("y_true", target), ("y_pred", labels)):  # inside fit's graph: no value in the text
            allowed = f"0..{n - 1}" + (f" or ignore_index={self.ignore_index}" if name == "y_true" and
                                       self.ignore_index is not None else "")
            tf.debugging.assert_less(values, tf.constant(n, tf.int64), message=f"{name} holds a label outside {allowed}")
            tf.debugging.assert_non_negative(values, message=f"{name} holds a label outside {allowed}")
        pairs = target * n + labels
        self.counts.assign_add(tf.math.bincount(pairs, minlength=n * n, maxlength=n * n, dtype=tf.int64))

    def result(self):
        return ops.reshape(self.counts, (self.num_classes, self.num_classes))

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "threshold": self.threshold}


class _Score(ConfusionMatrix):
    """A float score of the accumulated counts, computed by ``segparity.reference.metrics`` (``score``); works inside
    fit's ``tf.function`` too."""

    score = None  # a segparity.reference.metrics function of the confusion matrix

    def result(self):
        value = tf.numpy_function(lambda cm: np.float64(type(self).score(cm)), [super().result()], tf.float64)
        return tf.reshape(value, ())


class MeanIoU(_Score):
    """Mean IoU over the classes present in target or prediction (``segparity.reference.metrics.mean_iou``);
    ``result()`` returns a float scalar (NaN before any counted pixel)."""

    score = staticmethod(metrics.mean_iou)

    def __init__(self, num_classes: int, ignore_index: int | None = None, threshold: float = 0.0,
                 name: str = "mean_iou", **kwargs):
        super().__init__(num_classes, ignore_index, threshold, name=name, **kwargs)


class MeanDice(_Score):
    """Mean Dice (F1) over the classes present in target or prediction (``segparity.reference.metrics.mean_dice``);
    ``result()`` returns a float scalar (NaN before any counted pixel)."""

    score = staticmethod(metrics.mean_dice)

    def __init__(self, num_classes: int, ignore_index: int | None = None, threshold: float = 0.0,
                 name: str = "mean_dice", **kwargs):
        super().__init__(num_classes, ignore_index, threshold, name=name, **kwargs)


class PixelAccuracy(_Score):
    """Fraction of counted pixels labelled correctly (``segparity.reference.metrics.pixel_accuracy``); ``result()``
    returns a float scalar (NaN before any counted pixel)."""

    score = staticmethod(metrics.pixel_accuracy)

    def __init__(self, num_classes: int, ignore_index: int | None = None, threshold: float = 0.0,
                 name: str = "pixel_accuracy", **kwargs):
        super().__init__(num_classes, ignore_index, threshold, name=name, **kwargs)
