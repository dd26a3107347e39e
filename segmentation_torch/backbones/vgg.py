"""torchvision's VGG-16 and VGG-16-BN, PyTorch side: the same modules under the same paths, so a ``state_dict`` of
``torchvision.models.vgg16()`` / ``vgg16_bn()`` loads with ``strict=True``. The layer list comes from
``segparity.networks.vgg``; the Keras twin is ``segmentation_tf/backbones/vgg.py``.

Input ``(N, 3, H, W)``, H and W at least 32; ``forward`` returns the classifier's logits ``(N, num_classes)``,
or, with ``num_classes=None``, ``features``' output ``(N, 512, H/32, W/32)``. Dropout is left out (random masks
cannot be compared); it has no weights, so the paths are torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import batch_norm_layer
from segparity.networks.layer_flavours import check_layers
from segparity.networks.vgg import HIDDEN, POOLED, vgg16_layers


def vgg16_features(batch_norm: bool, layers: str = "parity") -> nn.Sequential:
    """torchvision's ``features``: 3x3 conv (padding 1, bias), [BN of flavour ``layers``], ReLU; 2x2 max-pools."""
    modules, in_channels = [], 3
    for kind, _, channels in vgg16_layers(batch_norm):
        if kind == "pool":
            modules.append(nn.MaxPool2d(2, 2))
            continue
        modules.append(nn.Conv2d(in_channels, channels, 3, padding=1))
        if batch_norm:
            modules.append(batch_norm_layer(channels, eps=1e-5, momentum=0.1, layers=layers))
        modules.append(nn.ReLU(inplace=True))
        in_channels = channels
    return nn.Sequential(*modules)


class VGG16(nn.Module):
    """torchvision's ``vgg16(num_classes=...)`` (``batch_norm=False``) or ``vgg16_bn`` (``batch_norm=True``);
    ``layers``: ``segparity.networks.layer_flavours``."""

    def __init__(self, batch_norm: bool = False, num_classes: int | None = 1000, layers: str = "parity"):
        super().__init__()
        self.features = vgg16_features(batch_norm, check_layers(layers))
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((POOLED, POOLED))
            self.classifier = nn.Sequential(nn.Linear(512 * POOLED * POOLED, HIDDEN), nn.ReLU(True), nn.Identity(),
                                            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(True), nn.Identity(),
                                            nn.Linear(HIDDEN, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.num_classes is None:
            return x
        return self.classifier(torch.flatten(self.avgpool(x), 1))  # (C, 7, 7) flattened C first
