"""Building blocks with every numeric convention explicit. Tensors are ``(N, H, W, C)``."""

from __future__ import annotations

import keras
from keras import ops


class BatchNorm(keras.layers.Layer):
    """BatchNorm over the channel axis with ``torch.nn.BatchNorm2d``'s semantics.

    ``momentum`` is Keras's convention: moving = momentum * moving + (1 - momentum) * batch
    (so Keras momentum = 1 - torch momentum). It differs from ``keras.layers.BatchNormalization`` on
    purpose in one place: ``moving_variance`` is updated with the *unbiased* batch variance
    (times n / (n - 1), n = N*H*W), as torch does; normalisation uses the biased variance in both.
    Batch mean and variance are accumulated in float64, as torch's CPU kernel does.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float, **kwargs):
        super().__init__(**kwargs)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.gamma = self.add_weight(shape=(num_features,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(num_features,), initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=(num_features,), initializer="zeros", name="moving_mean",
                                           trainable=False)
        self.moving_variance = self.add_weight(shape=(num_features,), initializer="ones", name="moving_variance",
                                               trainable=False)
        self.built = True

    def call(self, x, training=False):
        if training:
            static = x.shape[0] is not None and x.shape[1] is not None and x.shape[2] is not None
            if static and x.shape[0] * x.shape[1] * x.shape[2] == 1:  # the check torch makes
                raise ValueError(f"Expected more than 1 value per channel when training, got input shape {tuple(x.shape)}")
            # torch's CPU kernel accumulates batch statistics in float64; float32 sums here put
            # train-mode logits ~6x further from the exact value (pitfall "bn_stats_accumulation").
            mean, variance = ops.moments(ops.cast(x, "float64"), axes=[0, 1, 2])
            mean, variance = ops.cast(mean, x.dtype), ops.cast(variance, x.dtype)
            shape = ops.shape(x)
            n = ops.cast(shape[0] * shape[1] * shape[2], x.dtype)
            unbiased = variance * n / ops.maximum(n - 1.0, 1.0)
            self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1.0 - self.momentum) * unbiased)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return (x - mean) * ops.rsqrt(variance + self.eps) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


def conv3x3(in_channels: int, out_channels: int, *, padding: str, bias: bool, name: str) -> keras.layers.Conv2D:
    """3x3 convolution, stride 1, built for ``in_channels``. At stride 1 Keras ``"same"`` pads 1 on
    every side, exactly torch's ``padding=1``; ``"valid"`` pads nothing."""
    layer = keras.layers.Conv2D(out_channels, 3, padding=padding, use_bias=bias, name=name)
    layer.build((None, None, None, in_channels))
    return layer


def upsample_bilinear_2x(x):
    """x2 bilinear resize with half-pixel centres (torch's ``align_corners=False``), edges clamped.

    Spelled out because ``keras.layers.UpSampling2D`` defaults to nearest-neighbour interpolation.
    """
    shape = ops.shape(x)
    return ops.image.resize(x, (2 * shape[1], 2 * shape[2]), interpolation="bilinear", antialias=False,
                            data_format="channels_last")


def center_crop(x, height: int, width: int):
    """Crop the centre ``height x width`` of ``x``; the extra row/column, if odd, is cut at the bottom/right."""
    top = (ops.shape(x)[1] - height) // 2
    left = (ops.shape(x)[2] - width) // 2
    return x[:, top:top + height, left:left + width, :]
