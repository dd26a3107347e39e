"""The canonical checkpoint: a safetensors file both framework packages read and write.

File = tensors named and shaped as ``segparity.weights.layout.expected_tensors(spec)`` (float32), and one
metadata entry ``"segparity"`` whose value is sorted JSON::

    {"format": "segparity.canonical", "format_version": "1", "spec": {"name": "unet", "options": {...}}}

One entry, not three: safetensors writes metadata entries in hash-map order, so several entries would
make two saves of the same weights differ byte for byte; with one, equal weights give equal files.
No pickle anywhere: safetensors stores raw little-endian arrays and a JSON header.
Writes are atomic (temporary file in the same folder, then ``os.replace``), so an interrupted save
never leaves a truncated checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from segparity.atomic import atomic_write
from segparity.weights.layout import expected_tensors
from segparity.networks.specs import spec_differences, spec_from_dict, spec_to_dict
from segparity.validation import printable

FORMAT = "segparity.canonical"
FORMAT_VERSION = "1"
METADATA_KEY = "segparity"
# The same header, recorded in the framework files segparity writes (shared/parity/convert.py reads them):
TORCH_RECORD = "extra/segparity.json"  # a record in a torch .pt zip, after torch's own "<archive>/" prefix
H5_ATTRIBUTE = "segparity"  # a root attribute of a Keras .weights.h5 file


class CheckpointError(ValueError):
    """A checkpoint does not match the model: names the file, keys and shapes.

    The message is made printable (``segparity.validation.printable``): text quoted from another library's
    error keeps no terminal escape codes.
    """

    def __init__(self, message: str):
        super().__init__(printable(message))


def check_tensors(tensors: dict[str, np.ndarray], spec, source: str) -> None:
    """Raise ``CheckpointError`` listing every missing, unexpected, mis-shaped or non-float32 tensor."""
    expected = expected_tensors(spec)
    problems: list[str] = []
    for key, shape in expected.items():
        if key not in tensors:
            problems.append(f"missing key {key!r} (expected shape {shape})")
        elif tuple(tensors[key].shape) != shape:
            problems.append(f"key {key!r}: expected shape {shape}, found {tuple(tensors[key].shape)}")
        elif tensors[key].dtype != np.float32:
            problems.append(f"key {key!r}: expected dtype float32, found {tensors[key].dtype}")
    for key in tensors:
        if key not in expected:
            problems.append(f"unexpected key {key!r} (shape {tuple(tensors[key].shape)})")
    for key, array in tensors.items():
        if key in expected and array.dtype == np.float32 and not np.all(np.isfinite(array)):
            problems.append(f"key {key!r}: contains NaN or infinity")
    if problems:
        raise CheckpointError(f"{source} does not match {spec.name} {spec.options()}:\n  " + "\n  ".join(problems))


def check_native_keys(expected: dict[str, tuple], found: dict[str, tuple], optional: list[str], *, source: str,
                      describe: str) -> None:
    """Compare a framework file's keys with a freshly built model's: ``{key: (shape, dtype)}`` each.

    Raises ``CheckpointError`` naming ``source`` and every missing, unexpected or mis-shaped key
    (``optional`` keys may be absent).
    """
    missing = [k for k in expected if k not in found and k not in optional]
    extra = [k for k in found if k not in expected]
    wrong = [f"{k!r}: expected {expected[k][0]} {expected[k][1]}, found {found[k][0]} {found[k][1]}"
             for k in expected if k in found and found[k] != expected[k]]
    problems = ([f"missing key {k!r}" for k in missing] + [f"unexpected key {k!r}" for k in extra]
                + [f"key {line}" for line in wrong])
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise CheckpointError(f"{source} does not match {describe}:\n  " + "\n  ".join(shown))


def header_json(spec) -> str:
    """The metadata value written for ``spec``."""
    return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec_to_dict(spec)}, sort_keys=True)


def spec_from_header(text, *, source: str):
    """The spec in a ``header_json`` text (a canonical checkpoint's metadata, or the record segparity adds to
    the ``.pt`` and ``.weights.h5`` files it writes); errors name ``source``."""
    try:
        header = json.loads(text)
        found_format = header["format"]
    except (KeyError, TypeError, ValueError):
        header, found_format = {}, None
    if found_format != FORMAT:
        raise CheckpointError(f"{source} is not a segparity canonical checkpoint (no {METADATA_KEY!r} metadata "
                              f"with format {FORMAT!r}); convert other weight files with the framework packages")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{source}: format_version {header.get('format_version')!r} is not supported "
                              f"(this version reads {FORMAT_VERSION!r})")
    try:
        return spec_from_dict(header.get("spec"), source=source)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the recorded architecture is not valid: {exc}") from None


def write_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray], spec) -> Path:
    """Check ``tensors`` against ``spec`` and write them atomically to ``path``."""
    path = Path(path)
    check_tensors(tensors, spec, source=f"tensors to write to {path}")
    ordered = {key: np.ascontiguousarray(tensors[key]) for key in expected_tensors(spec)}
    metadata = {METADATA_KEY: header_json(spec)}
    return atomic_write(path, lambda tmp: save_file(ordered, tmp, metadata=metadata))


def _metadata(path: Path) -> dict:
    """The safetensors metadata of ``path``, after checking the file is there and readable."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ValueError, TypeError... (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None


def read_checkpoint_spec(path: str | os.PathLike):
    """The spec a canonical checkpoint records, from its header alone (no tensor is read)."""
    path = Path(path)
    metadata = _metadata(path)
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} is not a segparity canonical checkpoint (no {METADATA_KEY!r} metadata "
                              f"with format {FORMAT!r}); convert other weight files with the framework packages")
    return spec_from_header(metadata[METADATA_KEY], source=str(path))


def read_checkpoint(path: str | os.PathLike, expected_spec=None):
    """Read ``path``; return ``(tensors, spec)``.

    With ``expected_spec``, the stored spec must equal it and every tensor must match its layer
    table; errors name the file, the option or key, and the expected and found values.
    """
    path = Path(path)
    spec = read_checkpoint_spec(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ValueError, TypeError... (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    if expected_spec is not None:
        diffs = spec_differences(expected_spec, spec)
        if diffs:
            raise CheckpointError(f"{path} holds a different architecture than the model:\n  " + "\n  ".join(diffs))
    check_tensors(tensors, spec, source=str(path))
    return tensors, spec
