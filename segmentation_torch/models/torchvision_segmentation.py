"""torchvision's segmentation models, PyTorch side: ``fcn_resnet50/101``, ``deeplabv3_resnet50/101``,
``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``, with torchvision's arguments
(``num_classes``, ``aux_loss``) and module paths, so a ``state_dict`` of torchvision's own builder loads with
``strict=True``. The Keras twin is ``segmentation_tf/models/torchvision_segmentation.py``.

Input ``(N, 3, H, W)``, any size; output an ``OrderedDict``: ``"out"`` ``(N, num_classes, H, W)`` and, with
``aux_loss``, ``"aux"`` (the same size), both resized bilinearly with ``align_corners=False`` as torchvision.
Dropout is left out (random masks cannot be compared; it has no weights, so the paths are torchvision's).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from segmentation_torch.backbones.mobilenetv3 import mobilenet_v3_large_features
from segmentation_torch.backbones.resnet import ResNet
from segmentation_torch.layers import batch_norm_layer
from segparity.networks.layer_flavours import check_layers
from segparity.networks.mobilenetv3 import segmentation_layers
from segparity.networks.specs import make_spec
from segparity.networks.torchvision_segmentation import ASPP_RATES, LRASPP_CHANNELS, RESNET_DILATION
from segparity.validation import check_image_batch

BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # the heads' nn.BatchNorm2d defaults (MobileNetV3's own BN differs)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                  layers: str = "parity") -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size // 2) * dilation, dilation=dilation,
                      bias=False), batch_norm_layer(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM, layers=layers),
            nn.ReLU()]


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 conv-BN-ReLU to in/4 channels, (dropout), 1x1 conv to the classes."""

    def __init__(self, in_channels: int, channels: int, layers: str = "parity"):
        inter = in_channels // 4
        super().__init__(*_conv_bn_relu(in_channels, inter, 3, layers=layers), nn.Identity(),
                         nn.Conv2d(inter, channels, 1))


class ASPPPooling(nn.Sequential):
    """Image pooling: global mean, 1x1 conv-BN-ReLU, resized back (bilinear from 1x1: a broadcast)."""

    def __init__(self, in_channels: int, out_channels: int, layers: str = "parity"):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels, 1, layers=layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """torchvision's ``ASPP``: a 1x1 branch, three 3x3 atrous branches, image pooling, concatenated and projected."""

    def __init__(self, in_channels: int, atrous_rates: tuple, out_channels: int = 256, layers: str = "parity"):
        super().__init__()
        branches = [nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 1, layers=layers))]
        branches += [nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 3, rate, layers))
                     for rate in atrous_rates]
        branches.append(ASPPPooling(in_channels, out_channels, layers))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out_channels, out_channels, 1, layers=layers),
                                     nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """torchvision's ``DeepLabHead``: ASPP (rates 12, 24, 36), 3x3 conv-BN-ReLU, 1x1 conv to the classes."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: tuple = ASPP_RATES, layers: str = "parity"):
        super().__init__(ASPP(in_channels, atrous_rates, layers=layers), *_conv_bn_relu(256, 256, 3, layers=layers),
                         nn.Conv2d(256, num_classes, 1))


class LRASPPHead(nn.Module):
    """torchvision's ``LRASPPHead``: ``cbr`` (1x1 conv-BN-ReLU) of the high features times ``scale`` (global mean,
    1x1 conv, sigmoid), resized to the low features, classified and added to the low features' classification."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = LRASPP_CHANNELS,
                 layers: str = "parity"):
        super().__init__()
        self.cbr = nn.Sequential(*_conv_bn_relu(high_channels, inter_channels, 1, layers=layers))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, features: dict) -> torch.Tensor:
        low, high = features["low"], features["high"]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class TorchvisionSegmentation(nn.Module):
    """torchvision's segmentation model ``arch`` (a name of ``segparity.networks.torchvision_segmentation``):
    ``backbone`` (torchvision's paths), ``classifier`` and, with ``aux_loss``, ``aux_classifier``; the backbone's
    features go to them and both results are resized to the input. ``layers``: ``segparity.networks.layer_flavours``
    (segparity's ``BatchNorm`` or ``nn.BatchNorm2d``: the same ``state_dict``)."""

    def __init__(self, arch: str, num_classes: int = 21, aux_loss: bool = False, layers: str = "parity"):
        super().__init__()
        self.spec = spec = make_spec(arch, num_classes=num_classes, aux_loss=aux_loss)
        self.layer_flavour = check_layers(layers)
        if spec.backbone.startswith("resnet"):
            self.backbone = ResNet(int(spec.backbone[len("resnet"):]), RESNET_DILATION, num_classes=None, layers=layers)
            self.out_layer, self.aux_layer, high, low = "layer4", "layer3", 2048, 1024
        else:
            self.backbone = mobilenet_v3_large_features(True, "backbone", layers)
            self.out_layer, self.aux_layer, high, low = segmentation_layers()
        if spec.head == "fcn":
            self.classifier = FCNHead(high, num_classes, layers)
        elif spec.head == "deeplabv3":
            self.classifier = DeepLabHead(high, num_classes, ASPP_RATES, layers)
        else:
            self.classifier = LRASPPHead(low, high, num_classes, LRASPP_CHANNELS, layers)
        self.aux_classifier = FCNHead(low, num_classes, layers) if aux_loss else None

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.backbone, ResNet):
            return self.backbone.features(x)
        out = {}
        for index, module in enumerate(self.backbone):
            x = out[str(index)] = module(x)
        return out

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(next(self.parameters()).dtype).removeprefix("torch."))
        size = x.shape[-2:]
        features = self._features(x)
        result = OrderedDict()
        if self.spec.head == "lraspp":  # the head takes the low (aux_layer) and the high features
            out = self.classifier({"low": features[self.aux_layer], "high": features[self.out_layer]})
        else:
            out = self.classifier(features[self.out_layer])
        result["out"] = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features[self.aux_layer])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result



def fcn_resnet50(num_classes: int = 21, aux_loss: bool = False,
                 layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``fcn_resnet50``: ResNet-50 at output stride 8, ``FCNHead``."""
    return TorchvisionSegmentation("fcn_resnet50", num_classes, aux_loss, layers)


def fcn_resnet101(num_classes: int = 21, aux_loss: bool = False,
                  layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``fcn_resnet101``: ResNet-101 at output stride 8, ``FCNHead``."""
    return TorchvisionSegmentation("fcn_resnet101", num_classes, aux_loss, layers)


def deeplabv3_resnet50(num_classes: int = 21, aux_loss: bool = False,
                       layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``deeplabv3_resnet50``: ResNet-50 at output stride 8, ``DeepLabHead``."""
    return TorchvisionSegmentation("deeplabv3_resnet50", num_classes, aux_loss, layers)


def deeplabv3_resnet101(num_classes: int = 21, aux_loss: bool = False,
                        layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``deeplabv3_resnet101``: ResNet-101 at output stride 8, ``DeepLabHead``."""
    return TorchvisionSegmentation("deeplabv3_resnet101", num_classes, aux_loss, layers)


def deeplabv3_mobilenet_v3_large(num_classes: int = 21, aux_loss: bool = False,
                                 layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``deeplabv3_mobilenet_v3_large``: the dilated MobileNetV3-Large features, ``DeepLabHead``
    on ``backbone.16`` (960 channels), the auxiliary ``FCNHead`` on ``backbone.4`` (40 channels)."""
    return TorchvisionSegmentation("deeplabv3_mobilenet_v3_large", num_classes, aux_loss, layers)


def lraspp_mobilenet_v3_large(num_classes: int = 21, aux_loss: bool = False,
                              layers: str = "parity") -> TorchvisionSegmentation:
    """torchvision's ``lraspp_mobilenet_v3_large``: the dilated MobileNetV3-Large features, ``LRASPPHead`` on
    ``backbone.4`` (low, 40 channels) and ``backbone.16`` (high, 960). No auxiliary head, as torchvision."""
    return TorchvisionSegmentation("lraspp_mobilenet_v3_large", num_classes, aux_loss, layers)
