"""torchvision's VGG-16 (Simonyan & Zisserman 2015, configuration "D"), with and without BatchNorm, as a
framework-neutral description: the ``features`` layer list and the classifier's sizes.

Twin model files: ``segmentation_torch/backbones/vgg.py`` and ``segmentation_tf/backbones/vgg.py``. Module paths
are torchvision's: ``features.<i>`` (3x3 conv, padding 1, with bias; ``vgg16_bn`` puts a BatchNorm after each
conv, so the indices shift), ``M`` a 2x2 stride-2 max-pool, then ``avgpool`` (adaptive average pooling to 7x7),
and ``classifier.0`` (25088 -> 4096), ``classifier.3`` (4096 -> 4096), ``classifier.6`` (4096 -> classes),
ReLU and dropout between. BatchNorm is torch's default (eps 1e-5, momentum 0.1).
"""

from __future__ import annotations

CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
POOLED = 7  # avgpool output size
HIDDEN = 4096


def vgg16_layers(batch_norm: bool) -> list[tuple[str, int, int]]:
    """``features`` as (kind, index, channels): "conv" (index of the conv; its BN and ReLU follow), "pool"."""
    layers, index = [], 0
    for value in CONFIG_D:
        if value == "M":
            layers.append(("pool", index, 0))
            index += 1
        else:
            layers.append(("conv", index, value))
            index += 3 if batch_norm else 2
    return layers


def adaptive_bins(size: int, bins: int = POOLED) -> list[tuple[int, int]]:
    """torch's ``AdaptiveAvgPool2d`` bins along one axis: ``[floor(i * size / bins), ceil((i + 1) * size / bins))``."""
    return [((i * size) // bins, -((-(i + 1) * size) // bins)) for i in range(bins)]
