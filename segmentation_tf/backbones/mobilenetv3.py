"""torchvision's MobileNetV3-Large, Keras side: twin of ``segmentation_torch/backbones/mobilenetv3.py``.

Every layer is named after torchvision's module path (``features.4.block.1.0`` is a depthwise conv,
``features.4.block.2.fc1`` a squeeze-excite conv), and the containers index like torch's ``nn.Sequential``,
so weights move by name. What differs from a plain Keras port, to compute what torchvision computes:

- BatchNorm is ``segmentation_tf.layers.BatchNorm`` with torchvision's eps 0.001 and Keras momentum 0.99
  (torch's 0.01), not Keras's eps 1e-3 default by luck but by statement, running variance updated unbiased;
- the depthwise convs are ``DepthwiseConv2D`` padded like torch (symmetric, (k-1)/2 x dilation), never
  Keras ``"same"`` at stride 2;
- hardswish and hardsigmoid are written out as torch defines them: ``x * relu6(x + 3) / 6``, ``relu6(x + 3) / 6``.

Input ``(N, H, W, 3)``; ``call`` returns the ``classifier`` logits, or, with ``num_classes=None``,
``features``' output ``(N, H/32, W/32, 960)`` (``H/16`` when ``dilated``).
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import batch_norm_layer, conv2d, depthwise_conv2d
from segparity.networks.layer_flavours import check_layers
from segparity.networks.mobilenetv3 import (BN_EPS, BN_MOMENTUM, CLASSIFIER_CHANNELS, LAST_CONV_CHANNELS,
                                            InvertedResidualPlan, mobilenet_v3_large_plan)


def _hardswish(x):
    return x * ops.relu6(x + 3.0) / 6.0


def _hardsigmoid(x):
    return ops.relu6(x + 3.0) / 6.0


def _relu(x):
    return ops.relu(x)  # looked up at call time, so the parity harness's kink recorder sees it


ACTIVATIONS = {"RE": _relu, "HS": _hardswish}


class _Sequence(keras.layers.Layer):
    """Layers applied in order and indexed like ``torch.nn.Sequential`` (``seq[0]``), so the torch path
    ``features.0.1`` finds the same layer here."""

    def __init__(self, items: list, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.items = items
        self.activation = activation

    def __getitem__(self, index: int):
        return self.items[index]

    def call(self, x, training=False):
        for item in self.items:
            x = item(x, training=training)  # Keras passes ``training`` on only to layers whose call takes it
        return x if self.activation is None else ACTIVATIONS[self.activation](x)


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
                groups: int = 1, activation: str | None, layers: str, name: str) -> _Sequence:
    """torchvision's ``Conv2dNormActivation``: conv (no bias, padding (k-1)/2 x dilation), BN (of flavour
    ``layers``), activation; ``groups == in_channels == out_channels`` makes the conv a depthwise one."""
    padding = (kernel_size - 1) // 2 * dilation
    if groups == 1:
        conv = conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      bias=False, name=f"{name}.0")
    elif groups == in_channels == out_channels:
        conv = depthwise_conv2d(in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False,
                                name=f"{name}.0")
    else:
        raise ValueError(f"{name}: groups={groups} is neither 1 nor depthwise ({in_channels} -> {out_channels})")
    bn = batch_norm_layer(out_channels, eps=BN_EPS, momentum=1.0 - BN_MOMENTUM, layers=layers, name=f"{name}.1")
    return _Sequence([conv, bn], activation, name=name)


class SqueezeExcitation(keras.layers.Layer):
    """torchvision's ``SqueezeExcitation`` with a hardsigmoid gate: ``x * hardsigmoid(fc2(relu(fc1(mean(x)))))``."""

    def __init__(self, channels: int, squeeze_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.fc1 = conv2d(channels, squeeze_channels, 1, name=f"{self.name}.fc1")
        self.fc2 = conv2d(squeeze_channels, channels, 1, name=f"{self.name}.fc2")

    def call(self, x, training=False):
        scale = ops.mean(x, axis=(1, 2), keepdims=True)
        return _hardsigmoid(self.fc2(ops.relu(self.fc1(scale)))) * x


class InvertedResidual(keras.layers.Layer):
    """Expand (1x1, where the width changes), depthwise k x k, squeeze-excite (where used), project (1x1,
    no activation); the input added back when the stride is 1 and the width kept. BN of flavour ``layers``."""

    def __init__(self, plan: InvertedResidualPlan, layers: str, **kwargs):
        kwargs.setdefault("name", plan.path)  # the block's torch path, after the model's prefix
        super().__init__(**kwargs)
        path = f"{self.name}.block"
        items = []
        if plan.expands:
            items.append(conv_bn_act(plan.in_channels, plan.expanded_channels, 1, activation=plan.activation,
                                     layers=layers, name=f"{path}.{len(items)}"))
        items.append(conv_bn_act(plan.expanded_channels, plan.expanded_channels, plan.kernel_size,
                                 stride=plan.depthwise_stride, dilation=plan.dilation, groups=plan.expanded_channels,
                                 activation=plan.activation, layers=layers, name=f"{path}.{len(items)}"))
        if plan.use_se:
            items.append(SqueezeExcitation(plan.expanded_channels, plan.squeeze_channels, name=f"{path}.{len(items)}"))
        items.append(conv_bn_act(plan.expanded_channels, plan.out_channels, 1, activation=None, layers=layers,
                                 name=f"{path}.{len(items)}"))
        self.block = _Sequence(items, name=path)
        self.residual = plan.residual

    def call(self, x, training=False):
        out = self.block(x, training=training)
        return out + x if self.residual else out


def mobilenet_v3_large_features(dilated: bool, path: str, layers: str = "parity") -> _Sequence:
    """The ``features`` sequence (``features.0`` ... ``features.16``), BN of flavour ``layers``, its layers named
    under ``path``: "features" in the classifier, "backbone" where torchvision's segmentation builders take
    ``.features`` as the backbone."""
    plans = mobilenet_v3_large_plan(dilated)
    return _Sequence([conv_bn_act(3, plans[0].in_channels, 3, stride=2, activation="HS", layers=layers,
                                  name=f"{path}.0"),
                      *[InvertedResidual(plan, layers, name=f"{path}.{plan.index}") for plan in plans],
                      conv_bn_act(plans[-1].out_channels, LAST_CONV_CHANNELS, 1, activation="HS", layers=layers,
                                  name=f"{path}.{len(plans) + 1}")], name=path)


class MobileNetV3Large(keras.Model):
    """torchvision's ``mobilenet_v3_large(num_classes=..., dilated=...)``, channels-last; ``layers``:
    ``segparity.networks.layer_flavours``."""

    def __init__(self, dilated: bool = False, num_classes: int | None = 1000, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.features = mobilenet_v3_large_features(dilated, "features", check_layers(layers))
        self.num_classes = num_classes
        self.classifier = None if num_classes is None else _Classifier(num_classes, name="classifier")

    def call(self, x, training=False):
        x = self.features(x, training=training)
        if self.classifier is None:
            return x
        return self.classifier(ops.mean(x, axis=(1, 2)))


class _Classifier(keras.layers.Layer):
    """``classifier.0`` (Dense to 1280), hardswish, (dropout left out), ``classifier.3`` (Dense to the classes);
    indexed like torch's ``nn.Sequential`` so the torch paths find the two Dense layers."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(CLASSIFIER_CHANNELS, name="classifier.0")
        self.first.build((None, LAST_CONV_CHANNELS))
        self.last = keras.layers.Dense(num_classes, name="classifier.3")
        self.last.build((None, CLASSIFIER_CHANNELS))

    def __getitem__(self, index: int):
        return {0: self.first, 3: self.last}[index]

    def call(self, x):
        return self.last(_hardswish(self.first(x)))
