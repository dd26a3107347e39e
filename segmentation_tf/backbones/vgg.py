"""torchvision's VGG-16 and VGG-16-BN, Keras side: twin of ``segmentation_torch/backbones/vgg.py``.

Every layer is named after torchvision's module path (``features.0``, ``features.1`` the BatchNorm in
``vgg16_bn``, ``classifier.6``) and ``features`` indexes like torch's ``nn.Sequential``. What differs from a
plain Keras port, to compute what torchvision computes:

- ``avgpool`` is torch's ``AdaptiveAvgPool2d((7, 7))``: bins ``[floor(i*H/7), ceil((i+1)*H/7))`` (they overlap
  when H is not a multiple of 7); Keras has no adaptive pooling;
- the pooled map is moved to channels-first before it is flattened, so ``classifier.0`` sees torch's (C, H, W)
  order (pitfall ``flatten_order``: with Keras's own (H, W, C) flatten the same weights give other logits);
- BatchNorm is ``segmentation_tf.layers.BatchNorm`` with torch's eps 1e-5 and Keras momentum 0.9.

Input ``(N, H, W, 3)``; ``call`` returns the logits or, with ``num_classes=None``, ``features``' output.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import batch_norm_layer, conv2d
from segparity.networks.layer_flavours import check_layers
from segparity.networks.vgg import HIDDEN, POOLED, adaptive_bins, vgg16_layers


class _Features(keras.layers.Layer):
    """torchvision's ``features``: its convs and BatchNorms under ``<name>.<index>``, indexed like ``nn.Sequential``."""

    def __init__(self, batch_norm: bool, layers: str, **kwargs):
        super().__init__(**kwargs)
        self.plan = vgg16_layers(batch_norm)
        self.layers_by_index = {}
        in_channels = 3
        for kind, index, channels in self.plan:
            if kind == "conv":
                self.layers_by_index[index] = conv2d(in_channels, channels, 3, padding=1, name=f"{self.name}.{index}")
                if batch_norm:
                    self.layers_by_index[index + 1] = batch_norm_layer(channels, eps=1e-5, momentum=0.9, layers=layers,
                                                                       name=f"{self.name}.{index + 1}")
                in_channels = channels
        self.batch_norm = batch_norm

    def __getitem__(self, index: int):
        return self.layers_by_index[index]

    def call(self, x, training=False):
        for kind, index, _ in self.plan:
            if kind == "pool":
                x = ops.max_pool(x, 2, strides=2, padding="valid")
                continue
            x = self.layers_by_index[index](x)
            if self.batch_norm:
                x = self.layers_by_index[index + 1](x, training=training)
            x = ops.relu(x)
        return x


def vgg16_features(batch_norm: bool, layers: str = "parity", **kwargs) -> _Features:
    """torchvision's ``features``, BN of flavour ``layers`` (``name`` defaults to "features")."""
    kwargs.setdefault("name", "features")
    return _Features(batch_norm, layers, **kwargs)


def _adaptive_avg_pool(x, bins: int = POOLED):
    """torch's ``AdaptiveAvgPool2d((bins, bins))`` on ``(N, H, W, C)``."""
    height, width = x.shape[1], x.shape[2]
    rows = [ops.stack([ops.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)) for c0, c1 in adaptive_bins(width, bins)], axis=1)
            for r0, r1 in adaptive_bins(height, bins)]
    return ops.stack(rows, axis=1)


class VGG16(keras.Model):
    """torchvision's ``vgg16(num_classes=...)`` (``batch_norm=False``) or ``vgg16_bn`` (``batch_norm=True``);
    ``layers``: ``segparity.networks.layer_flavours``."""

    def __init__(self, batch_norm: bool = False, num_classes: int | None = 1000, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.features = vgg16_features(batch_norm, check_layers(layers))
        self.num_classes = num_classes
        self.classifier = None
        if num_classes is not None:
            self.classifier = _Classifier(num_classes, name="classifier")

    def call(self, x, training=False):
        x = self.features(x, training=training)
        if self.classifier is None:
            return x
        pooled = ops.transpose(_adaptive_avg_pool(x), (0, 3, 1, 2))  # (N, C, 7, 7): torch's flatten order
        return self.classifier(ops.reshape(pooled, (-1, 512 * POOLED * POOLED)))


class _Classifier(keras.layers.Layer):
    """``classifier.0``, ReLU, (dropout), ``classifier.3``, ReLU, (dropout), ``classifier.6``, indexed like torch."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        sizes = {0: (512 * POOLED * POOLED, HIDDEN), 3: (HIDDEN, HIDDEN), 6: (HIDDEN, num_classes)}
        self.dense = {}
        for index, (fan_in, fan_out) in sizes.items():
            layer = keras.layers.Dense(fan_out, name=f"{self.name}.{index}")
            layer.build((None, fan_in))
            self.dense[index] = layer

    def __getitem__(self, index: int):
        return self.dense[index]

    def call(self, x):
        return self.dense[6](ops.relu(self.dense[3](ops.relu(self.dense[0](x)))))
