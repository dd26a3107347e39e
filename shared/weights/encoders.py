"""Encoder weights from a torchvision classification checkpoint: ``build_model(..., encoder_weights=PATH)``.

torchvision's segmentation models hold a classification backbone under ``backbone.``: ResNet-50/101 by its own
paths (``backbone.layer1.0.conv1`` is ``resnet50``'s ``layer1.0.conv1``), MobileNetV3-Large by its ``features``
(``backbone.4.block.2.fc1`` is ``mobilenet_v3_large``'s ``features.4.block.2.fc1``). A ``state_dict`` of the
classifier (``resnet50-*.pth``, ``mobilenet_v3_large-*.pth``) gives every encoder tensor; its classification head
(``fc``, ``classifier``) is left out. Every tensor's axes are torch's, which are the canonical ones
(``segparity.weights.layout``). The file is read without torch (``segparity.weights.torch_zip``), so both
frameworks read it the same way.
"""

from __future__ import annotations

import os

import numpy as np

from segparity.networks.mobilenetv3 import mobilenet_v3_large_layer_table
from segparity.networks.resnet import resnet_layer_table
from segparity.weights.checkpoint import CheckpointError
from segparity.weights.torch_zip import read_torch_state_dict

PREFIX = "backbone."
CLASSIFIER_KEYS = ("fc.", "classifier.")  # the classification heads, not part of any encoder
TORCH_NAMES = {"batch_norm": {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}}


def encoder_layers(spec) -> tuple[str, list]:
    """``(torchvision classification builder, encoder layer table)`` of ``spec``'s network; a clear error for a
    network whose encoder is not a torchvision backbone."""
    backbone = getattr(spec, "backbone", "")
    if backbone.startswith("resnet"):  # the classifier's own stride plan: same weights as the dilated encoder
        return backbone, resnet_layer_table(int(backbone[len("resnet"):]), (False, False, False))
    if backbone == "mobilenet_v3_large":
        return backbone, mobilenet_v3_large_layer_table(False)
    raise CheckpointError(f"encoder_weights: {spec.describe()} has no torchvision encoder; torchvision's segmentation "
                          "models take one (fcn_resnet50/101, deeplabv3_resnet50/101, deeplabv3_mobilenet_v3_large, "
                          "lraspp_mobilenet_v3_large)")


def file_key(path: str, kind: str, tensor: str) -> str:
    """The classification checkpoint's key of one canonical tensor of the encoder."""
    return f"{path}.{TORCH_NAMES.get(kind, {}).get(tensor, tensor)}"


def canonical_path(backbone: str, path: str) -> str:
    """The segmentation model's layer path of the classifier's layer ``path``."""
    return PREFIX + (path[len("features."):] if backbone == "mobilenet_v3_large" else path)


def encoder_tensors(spec, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Canonical tensors (``backbone.*`` keys) of ``spec``'s encoder from the classification checkpoint at ``path``.

    Every encoder tensor must be in the file with its shape, and every other key must be the classification head's
    or a ``num_batches_tracked``; the first that is not names itself and the backbone expected.
    """
    backbone, layers = encoder_layers(spec)
    state = read_torch_state_dict(path)
    wanted = {}
    for entry in layers:
        for tensor, shape in entry.tensor_shapes().items():
            key = file_key(entry.path, entry.kind, tensor)
            if key not in state:
                raise CheckpointError(f"{path}: key {key!r} of torchvision's {backbone} is missing (encoder of "
                                      f"{spec.describe()}); is this a {backbone} checkpoint?")
            if tuple(state[key].shape) != shape:
                raise CheckpointError(f"{path}: key {key!r} has shape {tuple(state[key].shape)}, torchvision's {backbone} "
                                      f"has {shape} (encoder of {spec.describe()})")
            wanted[key] = f"{canonical_path(backbone, entry.path)}.{tensor}"
    for key in state:
        if key not in wanted and not key.startswith(CLASSIFIER_KEYS) and not key.endswith("num_batches_tracked"):
            raise CheckpointError(f"{path}: key {key!r} is not part of torchvision's {backbone} (encoder of "
                                  f"{spec.describe()})")
    return {canonical: np.asarray(state[key], dtype=np.float32) for key, canonical in wanted.items()}
