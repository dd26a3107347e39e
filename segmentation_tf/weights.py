"""Canonical weights <-> a Keras model (layout table in ``segparity.weights.layout``).

For each canonical tensor: the Keras variable that holds it and Keras's axis order.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from segparity.weights.checkpoint import check_tensors, read_checkpoint, write_checkpoint
from segparity.weights.encoders import encoder_tensors
from segparity.weights.layout import layer_table, permute_axes, CANONICAL_AXES

# layer kind -> canonical tensor -> (Keras variable attribute, Keras axes)
KERAS_TENSORS = {
    "conv2d": {"weight": ("kernel", "HWIO"), "bias": ("bias", "O")},
    "conv_transpose2d": {"weight": ("kernel", "HWOI"), "bias": ("bias", "O")},
    "depthwise_conv2d": {"weight": ("kernel", "HWOI"), "bias": ("bias", "O")},  # DepthwiseConv2D (k, k, C, 1)
    "batch_norm": {"scale": ("gamma", "C"), "bias": ("beta", "C"), "mean": ("moving_mean", "C"),
                   "var": ("moving_variance", "C")},
    "linear": {"weight": ("kernel", "IO"), "bias": ("bias", "O")},
}


def get_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """Follow a torch-style attribute path (``decoder.0.up``) through the model's attributes."""
    obj = model
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def tensor_refs(model: keras.Model) -> dict[str, tuple[keras.Variable, str, str]]:
    """Canonical key -> (the model's variable, Keras axes, canonical axes), in layer-table order."""
    refs = {}
    for entry in layer_table(model.spec):
        layer = get_layer(model, entry.path)
        for tensor in entry.tensor_shapes():
            attribute, axes = KERAS_TENSORS[entry.kind][tensor]
            refs[f"{entry.path}.{tensor}"] = (getattr(layer, attribute), axes, CANONICAL_AXES[entry.kind][tensor])
    return refs


def to_canonical(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of ``model`` as float32 numpy arrays in canonical layout."""
    return {key: permute_axes(np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32), axes, canon)
            for key, (v, axes, canon) in tensor_refs(model).items()}


def from_canonical(model: keras.Model, tensors: dict[str, np.ndarray]) -> keras.Model:
    """Copy canonical ``tensors`` into ``model`` in place, after checking every key and shape."""
    check_tensors(tensors, model.spec, source="canonical tensors")
    for key, (v, axes, canon) in tensor_refs(model).items():
        v.assign(permute_axes(tensors[key], canon, axes))
    return model


def load_encoder_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Copy a torchvision classification checkpoint (``resnet50-*.pth``, ...) into ``model``'s encoder in place
    (``segparity.weights.encoders``: checked first, read without torch); every other weight is left as it is."""
    refs = tensor_refs(model)
    for key, value in encoder_tensors(model.spec, path).items():
        v, axes, canon = refs[key]
        v.assign(permute_axes(value, canon, axes))
    return model


def save_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as a canonical safetensors checkpoint (atomically)."""
    write_checkpoint(path, to_canonical(model), model.spec)


def load_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load a canonical checkpoint into ``model``; the stored spec and every key/shape are checked first."""
    tensors, _ = read_checkpoint(path, expected_spec=model.spec)
    return from_canonical(model, tensors)
