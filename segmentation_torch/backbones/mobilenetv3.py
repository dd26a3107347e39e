"""torchvision's MobileNetV3-Large, PyTorch side: the same modules under the same paths, so a ``state_dict``
of ``torchvision.models.mobilenet_v3_large()`` loads with ``strict=True``. The block plan comes from
``segparity.networks.mobilenetv3``; the Keras twin is ``segmentation_tf/backbones/mobilenetv3.py``.

Input ``(N, 3, H, W)``; ``forward`` returns the ``classifier`` logits ``(N, num_classes)``, or, with
``num_classes=None`` (no ``avgpool``/``classifier``, as the segmentation builders use it), ``features``'
output ``(N, 960, H/32, W/32)`` (``H/16`` when ``dilated``). Dropout is left out (random masks cannot be
compared); torchvision's sits between ``classifier.1`` and ``classifier.3``, so the paths are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import batch_norm_layer, depthwise_conv2d
from segparity.networks.layer_flavours import check_layers
from segparity.networks.mobilenetv3 import (BN_EPS, BN_MOMENTUM, CLASSIFIER_CHANNELS, LAST_CONV_CHANNELS,
                                            InvertedResidualPlan, mobilenet_v3_large_plan)

ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
                groups: int = 1, activation: str | None, layers: str) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: conv (no bias, padding (k-1)/2 x dilation), BN (of flavour
    ``layers``), activation; ``groups == in_channels == out_channels`` makes the conv a depthwise one."""
    padding = (kernel_size - 1) // 2 * dilation
    if groups == 1:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=False)
    elif groups == in_channels == out_channels:
        conv = depthwise_conv2d(in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
    else:
        raise ValueError(f"groups={groups} is neither 1 nor depthwise ({in_channels} -> {out_channels})")
    modules = [conv, batch_norm_layer(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM, layers=layers)]
    if activation is not None:
        modules.append(ACTIVATIONS[activation](inplace=True))
    return nn.Sequential(*modules)


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` with a hardsigmoid gate: ``x * hardsigmoid(fc2(relu(fc1(mean(x)))))``."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """Expand (1x1, where the width changes), depthwise k x k, squeeze-excite (where used), project (1x1,
    no activation); the input added back when the stride is 1 and the width kept. BN of flavour ``layers``."""

    def __init__(self, plan: InvertedResidualPlan, layers: str):
        super().__init__()
        modules = []
        if plan.expands:
            modules.append(conv_bn_act(plan.in_channels, plan.expanded_channels, 1, activation=plan.activation,
                                       layers=layers))
        modules.append(conv_bn_act(plan.expanded_channels, plan.expanded_channels, plan.kernel_size,
                                   stride=plan.depthwise_stride, dilation=plan.dilation, groups=plan.expanded_channels,
                                   activation=plan.activation, layers=layers))
        if plan.use_se:
            modules.append(SqueezeExcitation(plan.expanded_channels, plan.squeeze_channels))
        modules.append(conv_bn_act(plan.expanded_channels, plan.out_channels, 1, activation=None, layers=layers))
        self.block = nn.Sequential(*modules)
        self.residual = plan.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


def mobilenet_v3_large_features(dilated: bool, path: str, layers: str = "parity") -> nn.Sequential:
    """The ``features`` sequence (``features.0`` ... ``features.16``), BN of flavour ``layers``. ``path`` is where
    it sits in a model ("features", or "backbone" in torchvision's segmentation builders): torch names modules by
    nesting, so it is not needed here; the Keras twin names its layers with it."""
    plans = mobilenet_v3_large_plan(dilated)
    return nn.Sequential(conv_bn_act(3, plans[0].in_channels, 3, stride=2, activation="HS", layers=layers),
                         *[InvertedResidual(plan, layers) for plan in plans],
                         conv_bn_act(plans[-1].out_channels, LAST_CONV_CHANNELS, 1, activation="HS", layers=layers))


class MobileNetV3Large(nn.Module):
    """torchvision's ``mobilenet_v3_large(num_classes=..., dilated=...)``; ``layers``: ``segparity.networks.layer_flavours``."""

    def __init__(self, dilated: bool = False, num_classes: int | None = 1000, layers: str = "parity"):
        super().__init__()
        self.features = mobilenet_v3_large_features(dilated, "features", check_layers(layers))
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(LAST_CONV_CHANNELS, CLASSIFIER_CHANNELS), nn.Hardswish(inplace=True),
                                            nn.Identity(), nn.Linear(CLASSIFIER_CHANNELS, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.num_classes is None:
            return x
        return self.classifier(torch.flatten(self.avgpool(x), 1))
