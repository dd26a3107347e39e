"""Instance segmentation, Keras side: the discriminative embedding loss.

Twin of ``segmentation_torch/instance.py``; the definition, reduction and edge cases are
``segparity.reference.instance.discriminative_loss``'s (numpy reference), which both are tested equal to.
Call as ``loss(y_true, y_pred)`` (Keras's order): ``y_true (N, H, W)`` integer instance ids,
``y_pred (N, H, W, E)`` the embedding. Works eagerly and inside ``tf.function`` (``model.fit``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segmentation_tf.losses import _scaled_for_replicas
from segparity.reference.instance import check_discriminative, check_embedding_target, check_instance_dtype


def _norm(v):
    """Euclidean norm over the last axis, with gradient 0 (not NaN) where it is 0."""
    squared = tf.reduce_sum(v * v, axis=-1)
    positive = squared > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, squared, tf.ones_like(squared))), tf.zeros_like(squared))


@keras.saving.register_keras_serializable(package="segparity")
class DiscriminativeLoss(keras.losses.Loss):
    """Pull each pixel within ``delta_v`` of its instance's mean, push instance means ``2 * delta_d``
    apart, keep means small; ``alpha * L_var + beta * L_dist + gamma * L_reg`` per image, averaged over
    the images that hold an instance (``segparity.reference.instance``). ``background``: the label that is no
    instance (``None``: every label is one). Keras ``name`` is a framework fact (ignored by the twin check)."""

    def __init__(self, delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.001, background: int | None = 0, name: str = "discriminative_loss"):
        super().__init__(name=name)
        check_discriminative(delta_v, delta_d, alpha, beta, gamma)
        self.delta_v, self.delta_d = delta_v, delta_d
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.background = background

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss.__call__ casts y_true to the loss dtype: check the ids' dtype before it does
        check_instance_dtype("y_true", keras.backend.standardize_dtype(getattr(y_true, "dtype", "float32")))
        return _scaled_for_replicas(super().__call__(y_true, y_pred, sample_weight))

    def call(self, y_true, y_pred):
        check_embedding_target(tuple(y_pred.shape), tuple(y_true.shape), layout="NHWC",
                               input_name="y_pred", target_name="y_true")
        x = tf.convert_to_tensor(y_pred)
        e = tf.shape(x)[-1]
        n = tf.shape(x)[0]
        ids = tf.reshape(tf.cast(tf.round(tf.cast(y_true, tf.float64)), tf.int64), [-1])
        image = tf.repeat(tf.range(tf.cast(n, tf.int64)), tf.size(ids, out_type=tf.int64) // tf.cast(n, tf.int64))
        x = tf.reshape(x, [-1, e])
        keep = ids != self.background if self.background is not None else tf.ones_like(ids, dtype=tf.bool)
        x, ids, image = tf.boolean_mask(x, keep), tf.boolean_mask(ids, keep), tf.boolean_mask(image, keep)
        if tf.executing_eagerly() and int(tf.size(ids)) == 0:
            return tf.reduce_sum(y_pred) * 0.0  # no instance anywhere: 0 with a zero gradient
        bounds = tf.concat([ids, tf.zeros([1], tf.int64)], 0)  # never empty, also while tracing
        low = tf.reduce_min(bounds)
        span = tf.reduce_max(bounds) - low + 1
        keys, segment = tf.unique(image * span + (ids - low))  # one per instance, in order of first pixel
        segment_image = keys // span
        s = tf.size(keys)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(ids, dtype=x.dtype), segment, s)
        means = tf.math.unsorted_segment_sum(x, segment, s) / counts[:, None]
        pull = tf.nn.relu(_norm(x - tf.gather(means, segment)) - self.delta_v) ** 2
        variance = tf.math.unsorted_segment_sum(pull, segment, s) / counts
        segment_image = tf.cast(segment_image, tf.int32)
        same_image = tf.logical_and(segment_image[:, None] == segment_image[None, :],
                                    tf.logical_not(tf.eye(s, dtype=tf.bool)))
        push = tf.nn.relu(2 * self.delta_d - _norm(means[:, None, :] - means[None, :, :])) ** 2 * tf.cast(same_image, x.dtype)
        n32 = tf.cast(n, tf.int32)
        instances_in = tf.math.unsorted_segment_sum(tf.ones([s], dtype=x.dtype), segment_image, n32)
        present = instances_in > 0
        var_image = tf.math.unsorted_segment_sum(variance, segment_image, n32) / tf.maximum(instances_in, 1)
        dist_image = (tf.math.unsorted_segment_sum(tf.reduce_sum(push, axis=1), segment_image, n32)
                      / tf.maximum(instances_in * (instances_in - 1), 1))
        reg_image = tf.math.unsorted_segment_sum(_norm(means), segment_image, n32) / tf.maximum(instances_in, 1)
        loss = self.alpha * var_image + self.beta * dist_image + self.gamma * reg_image
        return tf.math.divide_no_nan(tf.reduce_sum(tf.boolean_mask(loss, present)),
                                     tf.reduce_sum(tf.cast(present, x.dtype)))

    def get_config(self):
        return {"name": self.name, "delta_v": self.delta_v, "delta_d": self.delta_d, "alpha": self.alpha,
                "beta": self.beta, "gamma": self.gamma, "background": self.background}
