"""Canonical weights <-> a PyTorch model (layout table in ``segparity.weights.layout``).

For each canonical tensor: the torch attribute that holds it and torch's axis order.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from segparity.weights.checkpoint import check_tensors, read_checkpoint, write_checkpoint
from segparity.weights.encoders import encoder_tensors
from segparity.weights.layout import layer_table, permute_axes, CANONICAL_AXES

# layer kind -> canonical tensor -> (torch attribute, torch axes)
TORCH_TENSORS = {
    "conv2d": {"weight": ("weight", "OIHW"), "bias": ("bias", "O")},
    "conv_transpose2d": {"weight": ("weight", "IOHW"), "bias": ("bias", "O")},
    "depthwise_conv2d": {"weight": ("weight", "OIHW"), "bias": ("bias", "O")},  # Conv2d(groups=channels)
    "batch_norm": {"scale": ("weight", "C"), "bias": ("bias", "C"), "mean": ("running_mean", "C"),
                   "var": ("running_var", "C")},
    "linear": {"weight": ("weight", "OI"), "bias": ("bias", "O")},
}


def get_layer(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a torch attribute path (``decoder.0.up``); the Keras layer of the same name."""
    return model.get_submodule(path)


def tensor_refs(model: nn.Module) -> dict[str, tuple[torch.Tensor, str, str]]:
    """Canonical key -> (the model's tensor, torch axes, canonical axes), in layer-table order."""
    refs = {}
    for entry in layer_table(model.spec):
        layer = get_layer(model, entry.path)
        for tensor in entry.tensor_shapes():
            attribute, axes = TORCH_TENSORS[entry.kind][tensor]
            refs[f"{entry.path}.{tensor}"] = (getattr(layer, attribute), axes, CANONICAL_AXES[entry.kind][tensor])
    return refs


def to_canonical(model: nn.Module) -> dict[str, np.ndarray]:
    """Every weight of ``model`` as float32 numpy arrays in canonical layout."""
    return {key: permute_axes(t.detach().cpu().numpy().astype(np.float32), axes, canon)
            for key, (t, axes, canon) in tensor_refs(model).items()}


def from_canonical(model: nn.Module, tensors: dict[str, np.ndarray]) -> nn.Module:
    """Copy canonical ``tensors`` into ``model`` in place, after checking every key and shape."""
    check_tensors(tensors, model.spec, source="canonical tensors")
    with torch.no_grad():
        for key, (t, axes, canon) in tensor_refs(model).items():
            t.copy_(torch.from_numpy(permute_axes(tensors[key], canon, axes)))
    return model


def load_encoder_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Copy a torchvision classification checkpoint (``resnet50-*.pth``, ...) into ``model``'s encoder in place
    (``segparity.weights.encoders``: checked first, read without unpickling); every other weight is left as it is."""
    refs = tensor_refs(model)
    with torch.no_grad():
        for key, value in encoder_tensors(model.spec, path).items():
            t, axes, canon = refs[key]
            t.copy_(torch.from_numpy(permute_axes(value, canon, axes)))
    return model


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as a canonical safetensors checkpoint (atomically)."""
    write_checkpoint(path, to_canonical(model), model.spec)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a canonical checkpoint into ``model``; the stored spec and every key/shape are checked first."""
    tensors, _ = read_checkpoint(path, expected_spec=model.spec)
    return from_canonical(model, tensors)
