"""torch's own weight files (``.pt`` / ``.pth`` ``state_dict``) <-> canonical tensors, for ``segparity convert``.

Apart from ``segmentation_torch/weights.py`` because it builds models (``registry.build_model``), and the registry
loads encoder weights through ``weights``: one direction of imports. Twin: ``segmentation_tf/native.py``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from segmentation_torch.registry import build_model
from segmentation_torch.weights import from_canonical, to_canonical
from segparity.atomic import atomic_write
from segparity.weights.checkpoint import TORCH_RECORD, CheckpointError, check_native_keys, header_json
from segparity.validation import printable

def read_native(path: str | os.PathLike, spec) -> dict[str, np.ndarray]:
    """Canonical tensors from a torch ``state_dict`` file of the network ``spec`` describes.

    The file is read with ``torch.load(weights_only=True)``: no arbitrary object is unpickled. Keys,
    shapes and dtypes (float32) are checked against a model built from ``spec`` before anything is
    copied; ``num_batches_tracked`` may be absent (canonical checkpoints do not keep it).
    """
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
    model = from_canonical(build_model(spec.name, **spec.options()), tensors)

    def save(tmp: str) -> None:
        torch.save(model.state_dict(), tmp)
        with zipfile.ZipFile(tmp, "a") as archive:  # the spec, where torch.load does not look (segparity.parity.convert)
            prefix = archive.namelist()[0].split("/", 1)[0]
            archive.writestr(f"{prefix}/{TORCH_RECORD}", header_json(spec))

    return atomic_write(path, save)
