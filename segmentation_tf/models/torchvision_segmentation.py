"""torchvision's segmentation models, Keras side: twin of ``segmentation_torch/models/torchvision_segmentation.py``.

Every layer is named after torchvision's module path (``backbone.layer4.2.conv3``, ``classifier.0.convs.4.1``,
``aux_classifier.4``), and the containers index like torch's ``nn.Sequential``, so weights move by name.
Besides the backbones' own differences (``segmentation_tf/backbones/``), the heads pad like torch, keep the
heads' BatchNorm at torch's eps 1e-5 (while MobileNetV3's is 0.001: one model, two epsilons), and resize with
half-pixel bilinear (torch's ``align_corners=False``), the image-pooling branch from 1x1 included.

Input ``(N, H, W, 3)``, any size; output a dict: ``"out"`` ``(N, H, W, num_classes)`` and, with ``aux_loss``,
``"aux"``. Dropout is left out, as in the torch twin.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.backbones.mobilenetv3 import mobilenet_v3_large_features
from segmentation_tf.backbones.resnet import ResNet
from segmentation_tf.layers import batch_norm_layer, conv2d, resize_bilinear
from segparity.networks.layer_flavours import check_layers
from segparity.networks.mobilenetv3 import segmentation_layers
from segparity.networks.specs import make_spec
from segparity.networks.torchvision_segmentation import ASPP_RATES, LRASPP_CHANNELS, RESNET_DILATION
from segparity.validation import check_image_batch

BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # the heads' torch defaults (eps 1e-5, torch momentum 0.1), Keras convention


class _ConvBNReLU(keras.layers.Layer):
    """``[conv, BN, ReLU]`` under one torch path, indexed like ``nn.Sequential`` (``[first]`` the conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, first: int = 0,
                 layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.first = first
        self.conv = conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size // 2) * dilation,
                           dilation=dilation, bias=False, name=f"{self.name}.{first}")
        self.bn = batch_norm_layer(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM, layers=layers,
                                   name=f"{self.name}.{first + 1}")

    def __getitem__(self, index: int):
        return {self.first: self.conv, self.first + 1: self.bn}[index]

    def call(self, x, training=False):
        return ops.relu(self.bn(self.conv(x), training=training))


class FCNHead(keras.layers.Layer):
    """torchvision's ``FCNHead``: 3x3 conv-BN-ReLU to in/4 channels (``.0``, ``.1``), 1x1 conv (``.4``)."""

    def __init__(self, in_channels: int, channels: int, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        inter = in_channels // 4
        self.cbr = _ConvBNReLU(in_channels, inter, 3, layers=layers, name=self.name)
        self.classify = conv2d(inter, channels, 1, name=f"{self.name}.4")

    def __getitem__(self, index: int):
        return self.classify if index == 4 else self.cbr[index]

    def call(self, x, training=False):
        return self.classify(self.cbr(x, training=training))


class ASPPPooling(keras.layers.Layer):
    """Image pooling: global mean, 1x1 conv-BN-ReLU (``.1``, ``.2``), resized back from 1x1."""

    def __init__(self, in_channels: int, out_channels: int, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.cbr = _ConvBNReLU(in_channels, out_channels, 1, first=1, layers=layers, name=self.name)

    def __getitem__(self, index: int):
        return self.cbr[index]

    def call(self, x, training=False):
        pooled = self.cbr(ops.mean(x, axis=(1, 2), keepdims=True), training=training)
        return resize_bilinear(pooled, ops.shape(x)[1], ops.shape(x)[2])


class ASPP(keras.layers.Layer):
    """torchvision's ``ASPP``: ``convs.0`` 1x1, ``convs.1..3`` 3x3 atrous, ``convs.4`` image pooling, ``project``."""

    def __init__(self, in_channels: int, atrous_rates: tuple, out_channels: int = 256, layers: str = "parity",
                 **kwargs):
        super().__init__(**kwargs)
        path = f"{self.name}.convs"
        self.convs = [_ConvBNReLU(in_channels, out_channels, 1, layers=layers, name=f"{path}.0"),
                      *[_ConvBNReLU(in_channels, out_channels, 3, rate, layers=layers, name=f"{path}.{i}")
                        for i, rate in enumerate(atrous_rates, start=1)],
                      ASPPPooling(in_channels, out_channels, layers, name=f"{path}.{len(atrous_rates) + 1}")]
        self.project = _ConvBNReLU(len(self.convs) * out_channels, out_channels, 1, layers=layers,
                                   name=f"{self.name}.project")

    def call(self, x, training=False):
        return self.project(ops.concatenate([conv(x, training=training) for conv in self.convs], axis=-1),
                            training=training)


class DeepLabHead(keras.layers.Layer):
    """torchvision's ``DeepLabHead``: ASPP (``.0``), 3x3 conv-BN-ReLU (``.1``, ``.2``), 1x1 conv (``.4``)."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: tuple = ASPP_RATES, layers: str = "parity",
                 **kwargs):
        super().__init__(**kwargs)
        self.aspp = ASPP(in_channels, atrous_rates, layers=layers, name=f"{self.name}.0")
        self.cbr = _ConvBNReLU(256, 256, 3, first=1, layers=layers, name=self.name)
        self.classify = conv2d(256, num_classes, 1, name=f"{self.name}.4")

    def __getitem__(self, index: int):
        return {0: self.aspp, 4: self.classify}.get(index) or self.cbr[index]

    def call(self, x, training=False):
        return self.classify(self.cbr(self.aspp(x, training=training), training=training))


class _Scale(keras.layers.Layer):
    """LR-ASPP's ``scale``: global mean, 1x1 conv (``.1``, no bias), sigmoid."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv2d(in_channels, out_channels, 1, bias=False, name=f"{self.name}.1")

    def __getitem__(self, index: int):
        return {1: self.conv}[index]

    def call(self, x):
        return ops.sigmoid(self.conv(ops.mean(x, axis=(1, 2), keepdims=True)))


class LRASPPHead(keras.layers.Layer):
    """torchvision's ``LRASPPHead``: ``cbr`` of the high features times ``scale``, resized to the low features,
    ``high_classifier``, plus ``low_classifier`` of the low features."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = LRASPP_CHANNELS,
                 layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.cbr = _ConvBNReLU(high_channels, inter_channels, 1, layers=layers, name=f"{self.name}.cbr")
        self.scale = _Scale(high_channels, inter_channels, name=f"{self.name}.scale")
        self.low_classifier = conv2d(low_channels, num_classes, 1, name=f"{self.name}.low_classifier")
        self.high_classifier = conv2d(inter_channels, num_classes, 1, name=f"{self.name}.high_classifier")

    def call(self, features: dict, training=False):
        low, high = features["low"], features["high"]
        x = self.cbr(high, training=training) * self.scale(high)
        x = resize_bilinear(x, ops.shape(low)[1], ops.shape(low)[2])
        return self.low_classifier(low) + self.high_classifier(x)


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>TorchvisionSegmentation"
class TorchvisionSegmentation(keras.Model):
    """torchvision's segmentation model ``arch`` (a name of ``segparity.networks.torchvision_segmentation``):
    ``backbone`` (torchvision's paths), ``classifier`` and, with ``aux_loss``, ``aux_classifier``; the backbone's
    features go to them and both results are resized to the input. ``layers``: ``segparity.networks.layer_flavours``."""

    def __init__(self, arch: str, num_classes: int = 21, aux_loss: bool = False, layers: str = "parity", **kwargs):
        kwargs.setdefault("name", arch)
        super().__init__(**kwargs)
        self.spec = spec = make_spec(arch, num_classes=num_classes, aux_loss=aux_loss)
        self.layer_flavour = check_layers(layers)
        if spec.backbone.startswith("resnet"):
            self.backbone = ResNet(int(spec.backbone[len("resnet"):]), RESNET_DILATION, num_classes=None,
                                   layers=layers, name="backbone")
            self.out_layer, self.aux_layer, high, low = "layer4", "layer3", 2048, 1024
        else:
            self.backbone = mobilenet_v3_large_features(True, "backbone", layers)
            self.out_layer, self.aux_layer, high, low = segmentation_layers()
        if spec.head == "fcn":
            self.classifier = FCNHead(high, num_classes, layers, name="classifier")
        elif spec.head == "deeplabv3":
            self.classifier = DeepLabHead(high, num_classes, ASPP_RATES, layers, name="classifier")
        else:
            self.classifier = LRASPPHead(low, high, num_classes, LRASPP_CHANNELS, layers, name="classifier")
        self.aux_classifier = FCNHead(low, num_classes, layers, name="aux_classifier") if aux_loss else None
        self.built = True  # every layer with weights was built by its constructor (conv2d, BatchNorm, Dense)

    def _features(self, x, training):
        if isinstance(self.backbone, ResNet):
            return self.backbone.features(x, training=training)
        out = {}
        for index, layer in enumerate(self.backbone.items):
            x = out[str(index)] = layer(x, training=training)
        return out

    def call(self, x, training=False):
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        features = self._features(x, training)
        if self.spec.head == "lraspp":  # the head takes the low (aux_layer) and the high features
            out = self.classifier({"low": features[self.aux_layer], "high": features[self.out_layer]}, training=training)
        else:
            out = self.classifier(features[self.out_layer], training=training)
        result = {"out": resize_bilinear(out, height, width)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features[self.aux_layer], training=training)
            result["aux"] = resize_bilinear(aux, height, width)
        return result

    def get_config(self):
        return {"name": self.name, "arch": self.spec.name, "num_classes": self.spec.num_classes,
                "aux_loss": self.spec.aux_loss, "layers": self.layer_flavour}


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
