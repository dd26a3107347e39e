"""Canonical weights <-> a PyTorch model (layout table in ``segparity.weights.layout``).

For each canonical tensor: the torch attribute that holds it and torch's axis order.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segparity.atomic import atomic_write
from segparity.weights.checkpoint import (TORCH_RECORD, CheckpointError, check_native_keys, check_tensors, header_json,
                               read_checkpoint, write_checkpoint)
from segparity.weights.layout import layer_table, permute_axes, CANONICAL_AXES
from segparity.validation import printable

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


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as a canonical safetensors checkpoint (atomically)."""
    write_checkpoint(path, to_canonical(model), model.spec)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a canonical checkpoint into ``model``; the stored spec and every key/shape are checked first."""
    tensors, _ = read_checkpoint(path, expected_spec=model.spec)
    return from_canonical(model, tensors)


def read_native(path: str | os.PathLike, spec) -> dict[str, np.ndarray]:
    """Canonical tensors from a torch ``state_dict`` file of the network ``spec`` describes.

    The file is read with ``torch.load(weights_only=True)``: no arbitrary object is unpickled. Keys,
    shapes and dtypes (float32) are checked against a model built from ``spec`` before anything is
    copied; ``num_batches_tracked`` may be absent (canonical checkpoints do not keep it).
    """
    from segmentation_torch.registry import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch weight file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file makes torch.load raise many types (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a plain tensor checkpoint (a state_dict of tensors): "
                              f"torch.load(weights_only=True) refused it: {_refusal_cause(exc)}. segparity will not "
                              "unpickle it; save the weights as model.state_dict() or as a .safetensors file") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict (a mapping of names to tensors)")
    model = build_model(spec.name, **spec.options())
    expected = {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in model.state_dict().items()}
    found = {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in state.items()}
    optional = [key for key in expected if key.endswith("num_batches_tracked")]
    check_native_keys(expected, found, optional, source=str(path), describe=spec.describe())
    model.load_state_dict(dict(state), strict=False)  # every required key and shape checked above
    return to_canonical(model)


def _refusal_cause(exc: BaseException) -> str:
    """torch's own reason for refusing a file under ``weights_only=True``, in one line.

    torch's message wraps the reason (``Unsupported operand 237``, ``Unsupported global: GLOBAL eval``) in
    advice that ends with re-running with ``weights_only=False``, and bold terminal escapes; only the reason
    is kept (segparity never turns the safety off).
    """
    text = printable(str(exc))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    elif text.startswith("Weights only load failed"):
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        text = paragraphs[1] if len(paragraphs) > 1 else ""
    else:
        text = f"{type(exc).__name__}: {text}"
    text = " ".join(text.split("Check the documentation of torch.load")[0].split())
    text = text.split(" Please use `torch.serialization.")[0].rstrip(". ")
    return text[:300] or type(exc).__name__


def write_native(path: str | os.PathLike, tensors: dict[str, np.ndarray], spec) -> Path:
    """Write canonical ``tensors`` as a torch ``state_dict`` file (``torch.save``, atomically), recording
    ``spec`` in the zip's ``extra/segparity.json`` (``segparity.parity.convert``; ``torch.load`` ignores it)."""
    from segmentation_torch.registry import build_model

    model = from_canonical(build_model(spec.name, **spec.options()), tensors)

    def save(tmp: str) -> None:
        torch.save(model.state_dict(), tmp)
        with zipfile.ZipFile(tmp, "a") as archive:  # the spec, where torch.load does not look (segparity.parity.convert)
            prefix = archive.namelist()[0].split("/", 1)[0]
            archive.writestr(f"{prefix}/{TORCH_RECORD}", header_json(spec))

    return atomic_write(path, save)
