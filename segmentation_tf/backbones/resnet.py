"""torchvision's ResNet-18/34/50/101 (v1.5), Keras side: twin of ``segmentation_torch/backbones/resnet.py``.

Every layer is named after torchvision's module path (``conv1``, ``layer3.0.downsample.0``, ``fc``), so
weights move by name. What differs from a plain Keras port, to compute what torchvision computes:

- convolutions pad like ``torch.nn.Conv2d`` (``segmentation_tf.layers.conv2d``): Keras ``"same"`` at
  stride 2 pads the odd pixel only at the bottom/right (pitfall ``tf_same_padding_stride2``);
- the 3x3 stride-2 max-pool pads with -inf on every side, as ``torch.nn.MaxPool2d(3, 2, padding=1)``;
- BatchNorm (``layers="parity"``) is ``segmentation_tf.layers.BatchNorm`` with torchvision's eps 1e-5 and Keras momentum
  0.9 (torch's 0.1), the running variance updated unbiased as torch does;
- the unpadded 1x1 stride-2 ``downsample`` conv is a strided slice and a stride-1 conv (``conv2d``: a
  TensorFlow bug avoided, pitfall ``tf_onednn_strided_pointwise_weight_grad``).

Input ``(N, H, W, 3)``; ``call`` returns ``fc`` logits ``(N, num_classes)`` or, with ``num_classes=None``,
``layer4``'s output ``(N, H', W', C)``; ``features(x)`` returns every stage's output.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import batch_norm_layer, conv2d
from segparity.networks.layer_flavours import check_layers
from segparity.networks.resnet import BlockPlan, resnet_block_type, resnet_plan

BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # torchvision's eps; Keras momentum = 1 - torch's 0.1


def _bn(channels: int, layers: str, name: str) -> keras.layers.Layer:
    return batch_norm_layer(channels, eps=BN_EPS, momentum=BN_MOMENTUM, layers=layers, name=name)


def _conv(in_channels: int, out_channels: int, kernel_size: int, name: str, stride: int = 1,
          dilation: int = 1) -> keras.layers.Conv2D:
    """torchvision's conv1x1 / conv3x3: no bias, padding = dilation for 3x3."""
    padding = dilation if kernel_size == 3 else 0
    return conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                  bias=False, name=name)


def _downsample(plan: BlockPlan, layers: str, block: str) -> list | None:
    if not plan.downsample:
        return None
    path = f"{block}.downsample"
    return [_conv(plan.in_channels, plan.out_channels, 1, f"{path}.0", plan.stride),
            _bn(plan.out_channels, layers, f"{path}.1")]


def _shortcut(downsample: list | None, x, training):
    return x if downsample is None else downsample[1](downsample[0](x), training=training)


class BasicBlock(keras.layers.Layer):
    """Two 3x3 conv-BN, ReLU after the sum with the shortcut; BN of flavour ``layers``."""

    def __init__(self, plan: BlockPlan, layers: str, **kwargs):
        kwargs.setdefault("name", plan.path)  # the block's torch path, after the model's prefix
        super().__init__(**kwargs)
        path = self.name
        self.conv1 = _conv(plan.in_channels, plan.width, 3, f"{path}.conv1", plan.stride, plan.dilation)
        self.bn1 = _bn(plan.width, layers, f"{path}.bn1")
        self.conv2 = _conv(plan.width, plan.width, 3, f"{path}.conv2", dilation=plan.dilation)
        self.bn2 = _bn(plan.width, layers, f"{path}.bn2")
        self.downsample = _downsample(plan, layers, path)

    def call(self, x, training=False):
        identity = _shortcut(self.downsample, x, training)
        out = ops.relu(self.bn1(self.conv1(x), training=training))
        return ops.relu(self.bn2(self.conv2(out), training=training) + identity)


class Bottleneck(keras.layers.Layer):
    """1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU (the stride and dilation), 1x1 conv-BN, ReLU after the sum; BN of
    flavour ``layers``."""

    def __init__(self, plan: BlockPlan, layers: str, **kwargs):
        kwargs.setdefault("name", plan.path)  # the block's torch path, after the model's prefix
        super().__init__(**kwargs)
        path = self.name
        self.conv1 = _conv(plan.in_channels, plan.width, 1, f"{path}.conv1")
        self.bn1 = _bn(plan.width, layers, f"{path}.bn1")
        self.conv2 = _conv(plan.width, plan.width, 3, f"{path}.conv2", plan.stride, plan.dilation)
        self.bn2 = _bn(plan.width, layers, f"{path}.bn2")
        self.conv3 = _conv(plan.width, plan.out_channels, 1, f"{path}.conv3")
        self.bn3 = _bn(plan.out_channels, layers, f"{path}.bn3")
        self.downsample = _downsample(plan, layers, path)

    def call(self, x, training=False):
        identity = _shortcut(self.downsample, x, training)
        out = ops.relu(self.bn1(self.conv1(x), training=training))
        out = ops.relu(self.bn2(self.conv2(out), training=training))
        return ops.relu(self.bn3(self.conv3(out), training=training) + identity)


def _max_pool_3x3_stride2(x):
    """``torch.nn.MaxPool2d(3, stride=2, padding=1)``: -inf padding on every side, then a valid max-pool."""
    x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float("-inf"))
    return ops.max_pool(x, 3, strides=2, padding="valid")


class ResNet(keras.Model):
    """torchvision's ``resnet<depth>(num_classes=..., replace_stride_with_dilation=...)``, channels-last. Not
    torchvision's arguments: ``dilation_rule`` (``segparity.networks.resnet.resnet_plan``), ``in_channels``
    (``conv1``'s input) and ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, depth: int = 50, replace_stride_with_dilation: tuple = (False, False, False),
                 num_classes: int | None = 1000, dilation_rule: str = "torchvision", in_channels: int = 3,
                 layers: str = "parity", **kwargs):
        prefix = f"{kwargs['name']}." if kwargs.get("name") else ""  # inside a model: its torch path, e.g. "backbone"
        super().__init__(**kwargs)
        check_layers(layers)
        plans = resnet_plan(depth, replace_stride_with_dilation, dilation_rule)
        block = BasicBlock if resnet_block_type(depth) == "basic" else Bottleneck
        self.conv1 = conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False, name=f"{prefix}conv1")
        self.bn1 = _bn(64, layers, f"{prefix}bn1")
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            [block(p, layers, name=prefix + p.path) for p in plans if p.stage == stage] for stage in range(1, 5))
        self.num_classes = num_classes
        self.fc = None
        if num_classes is not None:
            self.fc = keras.layers.Dense(num_classes, name=f"{prefix}fc")
            self.fc.build((None, plans[-1].out_channels))

    def features(self, x, training=False) -> dict:
        """Every stage's output: ``layer1`` at stride 4 ... ``layer4`` at stride 32 (or less, dilated)."""
        x = _max_pool_3x3_stride2(ops.relu(self.bn1(self.conv1(x), training=training)))
        out = {}
        for stage, blocks in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            for layer in blocks:
                x = layer(x, training=training)
            out[f"layer{stage}"] = x
        return out

    def call(self, x, training=False):
        x = self.features(x, training=training)["layer4"]
        if self.fc is None:
            return x
        return self.fc(ops.mean(x, axis=(1, 2)))
