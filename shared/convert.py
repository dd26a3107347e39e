"""``segparity convert SRC DST``: weights between the canonical checkpoint and each framework's own file.

Formats, told by the file name:

- ``.safetensors``: the canonical checkpoint (``shared/checkpoint.py``); it records the architecture spec.
- ``.pt`` / ``.pth``: a torch ``state_dict`` (``segmentation_torch.weights``; read with ``weights_only=True``).
- ``.weights.h5``: Keras ``model.save_weights`` (``segmentation_tf.weights``).

Every conversion goes through canonical tensors, so torch -> Keras is torch -> canonical -> Keras and a
round trip is bit-identical (float32 throughout, only axes permuted). Framework files do not record
the architecture: reading one needs the spec (``--arch`` and options); a canonical source carries its
own, and a spec given as well must equal it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from shared.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from shared.specs import spec_differences

FORMATS = {"canonical": (".safetensors",), "torch": (".pt", ".pth"), "tf": (".weights.h5",)}


def weight_format(path: str | os.PathLike) -> str:
    """"canonical", "torch" or "tf", from the file name; a clear error for anything else."""
    name = Path(path).name
    for fmt, suffixes in FORMATS.items():
        if name.endswith(suffixes):
            return fmt
    known = ", ".join(f"{s} ({fmt})" for fmt, suffixes in FORMATS.items() for s in suffixes)
    raise CheckpointError(f"{path}: cannot tell the weight format from the name; use one of {known}")


def _weights_module(fmt: str):
    return importlib.import_module(f"segmentation_{fmt}.weights")


def read_weights(path: str | os.PathLike, spec=None):
    """``(canonical tensors, spec)`` from any supported file; ``spec`` is required for framework files."""
    fmt = weight_format(path)
    if fmt == "canonical":
        tensors, stored = read_checkpoint(path)
        if spec is not None and spec_differences(spec, stored):
            raise CheckpointError(f"{path} holds a different architecture than the one given:\n  "
                                  + "\n  ".join(spec_differences(spec, stored)))
        return tensors, stored
    if spec is None:
        raise CheckpointError(f"{path} is a {fmt} weight file, which does not record the architecture: "
                              "give it (--arch NAME, and --preset / --model-option as it was built)")
    return _weights_module(fmt).read_native(path, spec), spec


def write_weights(path: str | os.PathLike, tensors, spec) -> Path:
    """Write canonical ``tensors`` of ``spec``'s network to ``path`` in the format its name says (atomically)."""
    fmt = weight_format(path)
    if fmt == "canonical":
        return write_checkpoint(path, tensors, spec)
    return _weights_module(fmt).write_native(path, tensors, spec)


def convert(source: str | os.PathLike, target: str | os.PathLike, spec=None):
    """Convert ``source`` to ``target`` (formats from the names); returns the spec used."""
    weight_format(target)  # a bad target name fails before anything is read
    if Path(source).resolve() == Path(target).resolve():
        raise CheckpointError(f"source and target are the same file: {source}")
    tensors, spec = read_weights(source, spec)
    write_weights(target, tensors, spec)
    return spec
