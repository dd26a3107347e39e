"""torchvision's segmentation models (``torchvision.models.segmentation``) as specs: ``fcn_resnet50``,
``fcn_resnet101``, ``deeplabv3_resnet50``, ``deeplabv3_resnet101``, ``deeplabv3_mobilenet_v3_large`` and
``lraspp_mobilenet_v3_large``, each with torchvision's arguments ``num_classes`` (default 21) and ``aux_loss``.

Twin model files: ``segmentation_torch/models/torchvision_segmentation.py`` and
``segmentation_tf/models/torchvision_segmentation.py``. The layer table's paths are torchvision's ``state_dict``
keys without the tensor name (``backbone.layer1.0.conv1``, ``classifier.0.convs.4.1``, ``aux_classifier.4``), in
``state_dict`` order, so a checkpoint of torchvision's own builder is a canonical checkpoint without renaming.

Heads (torchvision's, dropout left out):

- ``FCNHead`` (``classifier`` of FCN, every ``aux_classifier``): ``.0`` 3x3 conv to in/4 channels, ``.1`` BN,
  ReLU, (``.3`` dropout), ``.4`` 1x1 conv with bias to the classes.
- ``DeepLabHead``: ``.0`` ASPP (``convs.0`` 1x1, ``convs.1..3`` 3x3 at rates 12, 24, 36, ``convs.4`` image
  pooling: mean, ``.1`` 1x1 conv, ``.2`` BN, ReLU, bilinear back; ``project`` 1x1 of the five concatenated),
  ``.1`` 3x3 conv, ``.2`` BN, ReLU, ``.4`` 1x1 conv with bias.
- ``LRASPPHead``: ``cbr`` (1x1 conv-BN-ReLU to 128) of the high features times ``scale`` (mean, ``.1`` 1x1 conv
  without bias, sigmoid), resized to the low features, ``high_classifier`` of that plus ``low_classifier`` of the
  low features.

The heads' BatchNorm is torch's default (eps 1e-5, momentum 0.1); MobileNetV3's own is eps 0.001, momentum 0.01.
Every output is resized to the input size (bilinear, half-pixel centres), so any input size works. The training
loss adds ``AUX_LOSS_WEIGHT`` (0.5, torchvision's reference ``train.py``) times the auxiliary output's loss.
Training-mode BatchNorm in the image-pooling branch sees one value per image and channel: batches of 2 or more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segparity.networks.checks import check_bool, check_int
from segparity.networks.mobilenetv3 import (mobilenet_v3_large_layer_sizes, mobilenet_v3_large_layer_table,
                                            segmentation_layers)
from segparity.networks.resnet import resnet_layer_sizes, resnet_layer_table
from segparity.weights.layout import LayerEntry

AUX_LOSS_WEIGHT = 0.5  # torchvision's references/segmentation/train.py: losses["out"] + 0.5 * losses["aux"]
ASPP_RATES = (12, 24, 36)
ASPP_CHANNELS = 256
LRASPP_CHANNELS = 128
RESNET_DILATION = (False, True, True)  # output stride 8, as torchvision's segmentation builders


@dataclass(frozen=True)
class TorchvisionSegmentationSpec:
    """One of torchvision's segmentation models; the subclasses name it (``name``), its ``backbone`` and ``head``."""

    in_channels: int = 3  # torchvision's backbones take RGB: 3 only
    num_classes: int = 21  # channels of "out" (and "aux"), torchvision's default
    aux_loss: bool = False  # add the auxiliary FCNHead ("aux" output); lraspp_mobilenet_v3_large has none

    name = ""
    backbone = ""  # "resnet50", "resnet101" or "mobilenet_v3_large"
    head = ""  # "fcn", "deeplabv3" or "lraspp"
    embedding_dim = 0  # no instance embedding (not an option: torchvision's models have one output head)

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        if self.in_channels != 3:
            raise ValueError(f"{self.name} takes RGB images as torchvision builds it: in_channels must be 3, "
                             f"got {self.in_channels}")
        check_int("num_classes", self.num_classes, 1)
        check_bool("aux_loss", self.aux_loss)
        if self.head == "lraspp" and self.aux_loss:
            raise ValueError(f"{self.name} has no auxiliary head (torchvision raises the same): aux_loss=False")

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def builder_arguments(self) -> dict[str, Any]:
        """The arguments of torchvision's builder (and of segparity's twins): ``num_classes`` and ``aux_loss``."""
        return {"num_classes": self.num_classes, "aux_loss": self.aux_loss}

    def output_size(self, size: int) -> int | None:
        return size if size >= 1 else None

    def size_rule(self) -> str:
        return "any height and width >= 1 (the outputs are resized to the input)"

    def describe(self) -> str:
        return f"{self.name}(num_classes={self.num_classes}, aux_loss={self.aux_loss})"

    def layer_table(self) -> list[LayerEntry]:
        return [entry for entry, _ in self._layers_and_sides(1)]

    def layer_sizes(self, size: int) -> dict[str, int]:
        return {entry.path: side for entry, side in self._layers_and_sides(size)}

    def _layers_and_sides(self, size: int) -> list[tuple[LayerEntry, int]]:
        """Every layer with weights in ``state_dict`` order, with its output side for a ``size``-wide input."""
        if self.backbone.startswith("resnet"):
            depth = int(self.backbone[len("resnet"):])
            sides, stages = resnet_layer_sizes(depth, RESNET_DILATION, size, "backbone.")
            layers = [(e, sides[e.path]) for e in resnet_layer_table(depth, RESNET_DILATION, "backbone.")]
            high, high_side, low, low_side = 2048, stages["layer4"], 1024, stages["layer3"]
        else:
            sides = mobilenet_v3_large_layer_sizes(True, size, "backbone.")
            layers = [(e, sides[e.path]) for e in mobilenet_v3_large_layer_table(True, "backbone.")]
            high_index, low_index, high, low = segmentation_layers()
            high_side, low_side = _features_side(sides, high_index), _features_side(sides, low_index)
        if self.head == "fcn":
            layers += fcn_head("classifier", high, self.num_classes, high_side)
        elif self.head == "deeplabv3":
            layers += deeplab_head("classifier", high, self.num_classes, high_side)
        else:
            layers += lraspp_head("classifier", low, high, self.num_classes, low_side, high_side)
        if self.aux_loss:
            layers += fcn_head("aux_classifier", low, self.num_classes, low_side)
        return layers


def _features_side(sides: dict[str, int], index: str) -> int:
    """Output side of MobileNetV3's ``backbone.<index>``: that of its last layer."""
    return [side for path, side in sides.items() if path.startswith(f"backbone.{index}.")][-1]


def _conv_bn(path: str, first: int, cin: int, cout: int, k: int, side: int) -> list[tuple[LayerEntry, int]]:
    """A conv without bias at ``path.<first>`` and its BN at ``path.<first + 1>``."""
    return [(LayerEntry(f"{path}.{first}", "conv2d", cin, cout, k, bias=False), side),
            (LayerEntry(f"{path}.{first + 1}", "batch_norm", cout, cout), side)]


def fcn_head(path: str, cin: int, num_classes: int, side: int) -> list[tuple[LayerEntry, int]]:
    """torchvision's ``FCNHead`` at ``path``."""
    inter = cin // 4
    return _conv_bn(path, 0, cin, inter, 3, side) + [(LayerEntry(f"{path}.4", "conv2d", inter, num_classes, 1), side)]


def deeplab_head(path: str, cin: int, num_classes: int, side: int) -> list[tuple[LayerEntry, int]]:
    """torchvision's ``DeepLabHead`` (ASPP at ``path.0``) at ``path``."""
    c = ASPP_CHANNELS
    layers = _conv_bn(f"{path}.0.convs.0", 0, cin, c, 1, side)
    for i in range(1, len(ASPP_RATES) + 1):
        layers += _conv_bn(f"{path}.0.convs.{i}", 0, cin, c, 3, side)
    layers += _conv_bn(f"{path}.0.convs.{len(ASPP_RATES) + 1}", 1, cin, c, 1, 1)  # image pooling, on the 1x1 mean
    layers += _conv_bn(f"{path}.0.project", 0, (len(ASPP_RATES) + 2) * c, c, 1, side)
    layers += _conv_bn(path, 1, c, c, 3, side)
    return layers + [(LayerEntry(f"{path}.4", "conv2d", c, num_classes, 1), side)]


def lraspp_head(path: str, low: int, high: int, num_classes: int, low_side: int,
                high_side: int) -> list[tuple[LayerEntry, int]]:
    """torchvision's ``LRASPPHead`` at ``path``."""
    c = LRASPP_CHANNELS
    return _conv_bn(f"{path}.cbr", 0, high, c, 1, high_side) + [
        (LayerEntry(f"{path}.scale.1", "conv2d", high, c, 1, bias=False), 1),
        (LayerEntry(f"{path}.low_classifier", "conv2d", low, num_classes, 1), low_side),
        (LayerEntry(f"{path}.high_classifier", "conv2d", c, num_classes, 1), low_side)]


@dataclass(frozen=True)
class FCNResNet50Spec(TorchvisionSegmentationSpec):
    name, backbone, head = "fcn_resnet50", "resnet50", "fcn"


@dataclass(frozen=True)
class FCNResNet101Spec(TorchvisionSegmentationSpec):
    name, backbone, head = "fcn_resnet101", "resnet101", "fcn"


@dataclass(frozen=True)
class DeepLabV3ResNet50Spec(TorchvisionSegmentationSpec):
    name, backbone, head = "deeplabv3_resnet50", "resnet50", "deeplabv3"


@dataclass(frozen=True)
class DeepLabV3ResNet101Spec(TorchvisionSegmentationSpec):
    name, backbone, head = "deeplabv3_resnet101", "resnet101", "deeplabv3"


@dataclass(frozen=True)
class DeepLabV3MobileNetV3LargeSpec(TorchvisionSegmentationSpec):
    name, backbone, head = "deeplabv3_mobilenet_v3_large", "mobilenet_v3_large", "deeplabv3"


@dataclass(frozen=True)
class LRASPPMobileNetV3LargeSpec(TorchvisionSegmentationSpec):
    name, backbone, head = "lraspp_mobilenet_v3_large", "mobilenet_v3_large", "lraspp"


TORCHVISION_SPECS = {spec.name: spec for spec in (FCNResNet50Spec, FCNResNet101Spec, DeepLabV3ResNet50Spec,
                                                  DeepLabV3ResNet101Spec, DeepLabV3MobileNetV3LargeSpec,
                                                  LRASPPMobileNetV3LargeSpec)}
