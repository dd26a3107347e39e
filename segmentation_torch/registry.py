"""``build_model`` and ``list_models``, PyTorch side."""

from __future__ import annotations

from torch import nn

from segmentation_torch.unet import UNet
from shared import specs

BUILDERS = {"unet": UNet}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(BUILDERS)


def build_model(name: str, *, in_channels: int, num_classes: int, **options) -> nn.Module:
    """Build a network by name; options are those of its spec in ``shared.specs`` (checked first).

    Returns an ``nn.Module`` mapping ``(N, in_channels, H, W)`` to ``(N, num_classes, H', W')`` logits.
    """
    spec = specs.make_spec(name, in_channels=in_channels, num_classes=num_classes, **options)
    return BUILDERS[name](**spec.options())
