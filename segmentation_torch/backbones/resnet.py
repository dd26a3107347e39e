"""torchvision's ResNet-18/34/50/101 (v1.5), PyTorch side: the same modules under the same paths, so a
``state_dict`` of ``torchvision.models.resnet50()`` loads with ``strict=True``. The block plan (strides,
dilations, downsampling) comes from ``segparity.networks.resnet``; the Keras twin is
``segmentation_tf/backbones/resnet.py``.

Input ``(N, 3, H, W)``; ``forward`` returns the ``fc`` logits ``(N, num_classes)``, or, with
``num_classes=None`` (no ``avgpool``/``fc``, as torchvision's segmentation backbones), ``layer4``'s output;
``features(x)`` returns every stage's output in a dict (``"layer1"`` ... ``"layer4"``).
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import batch_norm_layer
from segparity.networks.layer_flavours import check_layers
from segparity.networks.resnet import BlockPlan, resnet_block_type, resnet_plan

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torchvision's nn.BatchNorm2d defaults


def _bn(channels: int, layers: str) -> nn.BatchNorm2d:
    return batch_norm_layer(channels, eps=BN_EPS, momentum=BN_MOMENTUM, layers=layers)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """torchvision's conv1x1 / conv3x3: no bias, padding = dilation for 3x3."""
    padding = dilation if kernel_size == 3 else 0
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                     bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN, ReLU after the sum with the shortcut; BN of flavour ``layers``."""

    def __init__(self, plan: BlockPlan, layers: str):
        super().__init__()
        self.conv1 = _conv(plan.in_channels, plan.width, 3, plan.stride, plan.dilation)
        self.bn1 = _bn(plan.width, layers)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(plan.width, plan.width, 3, dilation=plan.dilation)
        self.bn2 = _bn(plan.width, layers)
        self.downsample = (nn.Sequential(_conv(plan.in_channels, plan.out_channels, 1, plan.stride),
                                         _bn(plan.out_channels, layers)) if plan.downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU (the stride and dilation), 1x1 conv-BN, ReLU after the sum; BN of
    flavour ``layers``."""

    def __init__(self, plan: BlockPlan, layers: str):
        super().__init__()
        self.conv1 = _conv(plan.in_channels, plan.width, 1)
        self.bn1 = _bn(plan.width, layers)
        self.conv2 = _conv(plan.width, plan.width, 3, plan.stride, plan.dilation)
        self.bn2 = _bn(plan.width, layers)
        self.conv3 = _conv(plan.width, plan.out_channels, 1)
        self.bn3 = _bn(plan.out_channels, layers)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(_conv(plan.in_channels, plan.out_channels, 1, plan.stride),
                                         _bn(plan.out_channels, layers)) if plan.downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ``resnet<depth>(num_classes=..., replace_stride_with_dilation=...)``. Not torchvision's arguments:
    ``dilation_rule`` (``segparity.networks.resnet.resnet_plan``), ``in_channels`` (``conv1``'s input) and ``layers``
    (``segparity.networks.layer_flavours``: segparity's ``BatchNorm``, the same ``state_dict``, or ``nn.BatchNorm2d``)."""

    def __init__(self, depth: int = 50, replace_stride_with_dilation: tuple = (False, False, False),
                 num_classes: int | None = 1000, dilation_rule: str = "torchvision", in_channels: int = 3,
                 layers: str = "parity"):
        super().__init__()
        check_layers(layers)
        plans = resnet_plan(depth, replace_stride_with_dilation, dilation_rule)
        block = BasicBlock if resnet_block_type(depth) == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(64, layers)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for stage in range(1, 5):
            setattr(self, f"layer{stage}", nn.Sequential(*[block(p, layers) for p in plans if p.stage == stage]))
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(plans[-1].out_channels, num_classes)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output: ``layer1`` at stride 4 ... ``layer4`` at stride 32 (or less, dilated)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for stage in range(1, 5):
            x = out[f"layer{stage}"] = getattr(self, f"layer{stage}")(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)["layer4"]
        if self.num_classes is None:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))
