"""Losses, Keras side. Call as ``loss(y_true, y_pred)`` (Keras's order); logits are ``(N, H, W, C)``.

Reference definitions: ``shared.losses``. Both reduce to a scalar mean (documented per class).
Value checks (label range, NaN) run when TensorFlow executes eagerly; inside a compiled
``tf.function`` (``model.fit``) only the shape and dtype checks run.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from shared.validation import check_logits_and_target, label_dtype_error, label_range_error, nan_error


def _dtype_name(x) -> str:
    return keras.backend.standardize_dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


def _check_finite(name: str, x) -> None:
    if tf.executing_eagerly() and not bool(ops.all(ops.isfinite(x))):
        raise nan_error(name)


class BinaryCrossEntropyLoss(keras.losses.Loss):
    """Mean binary cross-entropy on logits: ``y_true`` is float 0/1 (or soft) of the logits' shape.

    Uses ``keras.ops.binary_crossentropy(from_logits=True)`` (log-sum-exp form, no clamping).
    """

    def __init__(self, name: str = "binary_cross_entropy_loss"):
        super().__init__(name=name)

    def call(self, y_true, y_pred):
        check_logits_and_target(tuple(y_pred.shape), tuple(y_true.shape), layout="NHWC", labels=False,
                                input_name="y_pred", target_name="y_true")
        _check_finite("y_pred", y_pred)
        return ops.mean(ops.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred, from_logits=True))


class CrossEntropyLoss(keras.losses.Loss):
    """Multiclass cross-entropy on logits ``(N, H, W, C)`` against integer labels ``(N, H, W)``.

    Reduction: sum of ``class_weights[label] * -log softmax(y_pred)[label]`` over pixels whose label
    is not ``ignore_index``, divided by the sum of their class weights (torch's weighted mean). When
    every pixel is ignored the loss is 0.0, not NaN.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int | None = None,
                 name: str = "cross_entropy_loss"):
        super().__init__(name=name)
        self.ignore_index = ignore_index
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss.__call__ casts y_true to float32; check integer labels before it does.
        dtype = _dtype_name(y_true)
        if not (dtype.startswith("int") or dtype.startswith("uint")):
            raise label_dtype_error("y_true", dtype)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        check_logits_and_target(tuple(y_pred.shape), tuple(y_true.shape), layout="NHWC", labels=True,
                                input_name="y_pred", target_name="y_true")
        _check_finite("y_pred", y_pred)
        num_classes = y_pred.shape[-1]
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries but y_pred has {num_classes} classes")
        y_true = ops.cast(y_true, "int32")
        keep = ops.ones_like(y_true, dtype="bool") if self.ignore_index is None else ops.not_equal(y_true, self.ignore_index)
        if tf.executing_eagerly():
            bad = ops.logical_and(keep, ops.logical_or(y_true < 0, y_true >= num_classes))
            if bool(ops.any(bad)):
                first = int(ops.convert_to_numpy(y_true)[ops.convert_to_numpy(bad)][0])
                raise label_range_error("y_true", first, num_classes, self.ignore_index)
        safe = ops.where(keep, y_true, 0)
        nll = -ops.take_along_axis(ops.log_softmax(y_pred, axis=-1), safe[..., None], axis=-1)[..., 0]
        weights = ops.cast(keep, y_pred.dtype)
        if self.class_weights is not None:
            weights = weights * ops.take(ops.convert_to_tensor(self.class_weights, y_pred.dtype), safe)
        denominator = ops.sum(weights)
        return ops.where(denominator > 0, ops.sum(weights * nll) / ops.maximum(denominator, 1e-12),
                         denominator * 0.0)

    def get_config(self):
        return {"name": self.name, "class_weights": self.class_weights, "ignore_index": self.ignore_index}
