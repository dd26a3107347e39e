"""Encoder weights from a classification checkpoint: ``build_model(..., encoder_weights=PATH)``.

Which networks take which file, and where each tensor goes (every tensor's axes are torch's, which are the
canonical ones, ``segparity.weights.layout``):

- torchvision's segmentation models hold their backbone under ``backbone.``: ResNet-50/101 by its own paths
  (``backbone.layer1.0.conv1`` is ``resnet50``'s ``layer1.0.conv1``), MobileNetV3-Large by its ``features``
  (``backbone.4.block.2.fc1`` is ``mobilenet_v3_large``'s ``features.4.block.2.fc1``).
- segparity's DeepLabV3+ with ``backbone="resnet18"`` (34, 50, 101) holds it under ``encoder.``.
- segparity's FCN and SegNet on the VGG-16 encoder (the default, with ``in_channels=3``) take ``vgg16`` (without
  BatchNorm) or ``vgg16_bn`` (``batch_norm=True``): ``features.<i>`` is ``encoder.<stage>.<j>.conv`` (and ``.bn``).
  ``vgg16_bn``'s convs have a bias that BatchNorm follows; segparity's conv-BN units have none, so the bias is
  folded into the BatchNorm's running mean (``running_mean - bias``): the same output in eval mode, and in train
  mode, where the batch mean cancels the bias, the same running mean after every step. FCN without BatchNorm also
  takes ``classifier.0``/``classifier.3`` as its convolutionalised ``fc6.conv`` (7x7) and ``fc7.conv`` (1x1), the paper's
  initialisation, when the file has them (a ``vgg16`` ``.pth`` does; a features-only file leaves them as built).
- A ``keras.applications.VGG16(include_top=False)`` weights ``.h5`` (``block1_conv1`` ...,
  ``segparity.weights.keras_h5``) is read as ``vgg16``'s ``features``, its kernels moved to torch's axes.

The classification head (``fc``, ``classifier``) is never part of an encoder; ``num_batches_tracked`` is ignored.
A ``.pth`` is read without torch (``segparity.weights.torch_zip``), so both frameworks read it the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segparity.networks.mobilenetv3 import mobilenet_v3_large_layer_table
from segparity.networks.resnet import resnet_layer_table
from segparity.networks.segnet import VGG16_ENCODER
from segparity.networks.vgg import vgg16_layers
from segparity.weights.checkpoint import CheckpointError
from segparity.weights.keras_h5 import read_keras_h5_layers
from segparity.weights.torch_zip import read_torch_state_dict

CLASSIFIER_KEYS = ("fc.", "classifier.")  # the classification heads, not part of any encoder
TORCH_NAMES = {"batch_norm": {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}}
TORCHVISION_MODELS = ("fcn_resnet50/101, deeplabv3_resnet50/101, deeplabv3_mobilenet_v3_large, "
                      "lraspp_mobilenet_v3_large")


@dataclass(frozen=True)
class EncoderTensor:
    """One canonical tensor of a network's encoder and where it comes from in the classification checkpoint."""

    file_key: str  # the checkpoint's key (torchvision's state_dict name)
    canonical: str  # the segmentation network's canonical key
    shape: tuple  # the canonical shape
    file_shape: tuple  # the shape in the file (fc6 is classifier.0 reshaped)
    minus: str | None = None  # a file key subtracted: vgg16_bn's conv bias folded into the BatchNorm's running mean
    optional: bool = False  # left as built when the file does not have it (FCN's fc6/fc7)


def _entries(layers, canonical_path) -> list[EncoderTensor]:
    """One ``EncoderTensor`` per tensor of ``layers`` (layer table entries at the checkpoint's paths)."""
    out = []
    for entry in layers:
        for tensor, shape in entry.tensor_shapes().items():
            key = f"{entry.path}.{TORCH_NAMES.get(entry.kind, {}).get(tensor, tensor)}"
            out.append(EncoderTensor(key, f"{canonical_path(entry.path)}.{tensor}", shape, shape))
    return out


def _vgg_entries(spec) -> list[EncoderTensor]:
    """torchvision's ``vgg16``/``vgg16_bn`` ``features`` -> ``encoder.<stage>.<j>``; FCN's fc6/fc7 from the classifier."""
    bn = spec.batch_norm
    out, stage, j, cin = [], 0, 0, spec.in_channels
    for kind, index, channels in vgg16_layers(bn):
        if kind == "pool":
            stage, j = stage + 1, 0
            continue
        unit = f"encoder.{stage}.{j}"
        weight = (channels, cin, 3, 3)
        out.append(EncoderTensor(f"features.{index}.weight", f"{unit}.conv.weight", weight, weight))
        if bn:
            bn_key = f"features.{index + 1}"
            for tensor, name in TORCH_NAMES["batch_norm"].items():
                minus = f"features.{index}.bias" if tensor == "mean" else None
                out.append(EncoderTensor(f"{bn_key}.{name}", f"{unit}.bn.{tensor}", (channels,), (channels,), minus))
        else:
            out.append(EncoderTensor(f"features.{index}.bias", f"{unit}.conv.bias", (channels,), (channels,)))
        j, cin = j + 1, channels
    if spec.name == "fcn" and not bn and spec.fc_channels == 4096 and spec.fc_kernel_size == 7:
        k = spec.fc_kernel_size
        for file_layer, layer, shape in (("classifier.0", "fc6", (4096, 512, k, k)), ("classifier.3", "fc7", (4096, 4096, 1, 1))):
            out.append(EncoderTensor(f"{file_layer}.weight", f"{layer}.conv.weight", shape, (shape[0], int(np.prod(shape[1:]))),
                                     optional=True))
            out.append(EncoderTensor(f"{file_layer}.bias", f"{layer}.conv.bias", (4096,), (4096,), optional=True))
    return out


def encoder_plan(spec) -> tuple[str, list[EncoderTensor]]:
    """``(torchvision classification builder, where each encoder tensor comes from)`` for ``spec``'s network; a clear
    error for a network whose encoder is not a torchvision backbone."""
    backbone = getattr(spec, "backbone", None) or ""
    if spec.name == "deeplabv3plus" and backbone:
        layers = resnet_layer_table(spec.depth(), (False, False, False), in_channels=spec.in_channels)
        return backbone, _entries(layers, lambda path: "encoder." + path)
    if backbone.startswith("resnet"):  # torchvision's models: the classifier's own stride plan, the same weights
        return backbone, _entries(resnet_layer_table(int(backbone[len("resnet"):]), (False, False, False)),
                                  lambda path: "backbone." + path)
    if backbone == "mobilenet_v3_large":
        return backbone, _entries(mobilenet_v3_large_layer_table(False),
                                  lambda path: "backbone." + path[len("features."):])
    if spec.name in ("fcn", "segnet") and spec.encoder == VGG16_ENCODER:
        return ("vgg16_bn" if spec.batch_norm else "vgg16"), _vgg_entries(spec)
    if spec.name in ("fcn", "segnet"):
        raise CheckpointError(f"encoder_weights: {spec.describe()} has encoder {spec.encoder}, not VGG-16's "
                              f"{VGG16_ENCODER}; only the VGG-16 encoder takes torchvision's vgg16 / vgg16_bn weights")
    raise CheckpointError(f"encoder_weights: {spec.describe()} has no torchvision encoder; these take one: "
                          f"{TORCHVISION_MODELS}, deeplabv3plus(backbone='resnet18'/'resnet34'/'resnet50'/'resnet101'), "
                          "fcn and segnet on the VGG-16 encoder")


def _read_keras_vgg16(path: str | os.PathLike, backbone: str) -> dict[str, np.ndarray]:
    """A ``keras.applications.VGG16`` weights ``.h5`` as torchvision ``vgg16`` ``features`` keys, torch's axes."""
    if backbone != "vgg16":
        raise CheckpointError(f"{path}: a Keras .h5 is read as keras.applications.VGG16, which has no BatchNorm; this "
                              f"network's encoder is torchvision's {backbone} (give its .pth, or build with "
                              "batch_norm=False)" if backbone == "vgg16_bn" else
                              f"{path}: a Keras .h5 is read as keras.applications.VGG16; this network's encoder is "
                              f"torchvision's {backbone}, which needs its .pth")
    layers = read_keras_h5_layers(path)
    state, stage, j = {}, 1, 1
    for kind, index, _ in vgg16_layers(False):
        if kind == "pool":
            stage, j = stage + 1, 1
            continue
        name = f"block{stage}_conv{j}"
        if name not in layers:
            raise CheckpointError(f"{path}: layer {name!r} of keras.applications.VGG16 is missing; is this a VGG16 "
                                  "weights file?")
        if len(layers[name]) != 2:
            raise CheckpointError(f"{path}: layer {name!r} has {len(layers[name])} weights, keras.applications.VGG16's "
                                  "has 2 (kernel, bias)")
        kernel, bias = layers[name]
        state[f"features.{index}.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))  # HWIO -> OIHW
        state[f"features.{index}.bias"] = bias
        j += 1
    return state


def _check(path, state: dict, plan: list[EncoderTensor], backbone: str, spec) -> None:
    """Every wanted tensor is there with its shape; every other key is the classifier's or ``num_batches_tracked``."""
    for item in plan:
        for key, shape in ((item.file_key, item.file_shape), (item.minus, (item.shape[0],))):
            if key is None or (item.optional and item.file_key not in state):
                continue
            if key not in state:
                raise CheckpointError(f"{path}: key {key!r} of torchvision's {backbone} is missing (encoder of "
                                      f"{spec.describe()}); is this a {backbone} checkpoint?")
            if tuple(state[key].shape) != shape:
                raise CheckpointError(f"{path}: key {key!r} has shape {tuple(state[key].shape)}, torchvision's "
                                      f"{backbone} has {shape} (encoder of {spec.describe()})")
    used = {item.file_key for item in plan} | {item.minus for item in plan if item.minus}
    for key in state:
        if key not in used and not key.startswith(CLASSIFIER_KEYS) and not key.endswith("num_batches_tracked"):
            raise CheckpointError(f"{path}: key {key!r} is not part of torchvision's {backbone} (encoder of "
                                  f"{spec.describe()})")


def encoder_tensors(spec, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Canonical tensors of ``spec``'s encoder from the classification checkpoint at ``path`` (a torchvision ``.pth``,
    or for VGG-16 a Keras ``.h5``).

    Every encoder tensor must be in the file with its shape, and every other key must be the classification head's
    or a ``num_batches_tracked``; the first that is not names itself and the backbone expected.
    """
    backbone, plan = encoder_plan(spec)
    if Path(path).suffix.lower() in (".h5", ".hdf5"):
        state = _read_keras_vgg16(path, backbone)
    else:
        state = read_torch_state_dict(path)
    _check(path, state, plan, backbone, spec)
    out = {}
    for item in plan:
        if item.file_key not in state:  # optional, and absent
            continue
        value = np.asarray(state[item.file_key], dtype=np.float32).reshape(item.shape)
        if item.minus is not None:
            value = value - np.asarray(state[item.minus], dtype=np.float32)
        out[item.canonical] = value
    return out
