"""``build_model`` and ``list_models``, Keras side."""

from __future__ import annotations

import keras

from segmentation_tf.unet import UNet
from shared import specs

BUILDERS = {"unet": UNet}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(BUILDERS)


def build_model(name: str, *, in_channels: int, num_classes: int, **options) -> keras.Model:
    """Build a network by name; options are those of its spec in ``shared.specs`` (checked first).

    Returns a built ``keras.Model`` mapping ``(N, H, W, in_channels)`` to ``(N, H', W', num_classes)`` logits.
    """
    spec = specs.make_spec(name, in_channels=in_channels, num_classes=num_classes, **options)
    return BUILDERS[name](**spec.options())
