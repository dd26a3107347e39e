"""``build_model`` and ``list_models``, Keras side."""

from __future__ import annotations

import os

import keras

from segmentation_tf.deeplab import DeepLabV3Plus
from segmentation_tf.fcn import FCN
from segmentation_tf.lesson import LessonSegNet, LessonUNet
from segmentation_tf.segnet import SegNet
from segmentation_tf.models import torchvision_segmentation
from segmentation_tf.unet import UNet
from segmentation_tf.weights import load_encoder_weights
from segparity.networks import specs
from segparity.networks.layer_flavours import check_layers

# segparity's own networks, then torchvision's segmentation models (torchvision's builder names and arguments)
BUILDERS = {"deeplabv3plus": DeepLabV3Plus, "fcn": FCN, "segnet": SegNet, "unet": UNet,
            "lesson_segnet": LessonSegNet, "lesson_unet": LessonUNet,
            **{name: getattr(torchvision_segmentation, name) for name in specs.TORCHVISION_SPECS}}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(BUILDERS)


def build_model(name: str, *, in_channels: int | None = None, num_classes: int | None = None,
                preset: str | None = None, encoder_weights: str | os.PathLike | None = None,
                layers: str = "parity", **options) -> keras.Model:
    """Build a network by name; options are those of its spec in ``segparity.networks`` (checked first).

    ``preset`` names a set of options in ``segparity.networks.specs.PRESETS`` (``"paper"``, ``"lesson-segparity"``, ``"lesson-pytorch"``); explicit
    arguments override it. ``in_channels`` and ``num_classes`` are required unless the preset sets them;
    torchvision's models (``deeplabv3_resnet50``, ...) take torchvision's ``num_classes`` (default 21) and ``aux_loss``
    and return a dict, ``"out"`` (and ``"aux"``) at the input size. ``encoder_weights``: a torchvision classification
    checkpoint (``resnet50-*.pth``, ``mobilenet_v3_large-*.pth``) for their backbone, the classifier head left out
    (``segparity.weights.encoders``; nothing is downloaded).
    ``layers``: ``"parity"`` (segparity's exact BatchNorm) or ``"stock"`` (the framework's own: ``nn.BatchNorm2d``,
    ``keras.layers.BatchNormalization``), the same weights under the same names (``segparity.networks.layer_flavours``).

    Returns a built ``keras.Model`` mapping ``(N, H, W, in_channels)`` to ``(N, H', W', num_classes)`` logits.
    With ``embedding_dim=K > 0`` (instance segmentation) it returns ``(logits, embedding)``, the embedding
    ``(N, H', W', embedding_dim)``: the head's last K channels (``split_outputs`` in ``layers``).
    """
    spec = specs.make_spec(name, in_channels=in_channels, num_classes=num_classes, preset=preset, **options)
    check_layers(layers)
    model = BUILDERS[spec.name](**specs.builder_arguments(spec), layers=layers)  # a preset may name another network
    if encoder_weights is not None:
        load_encoder_weights(model, encoder_weights)
    return model
