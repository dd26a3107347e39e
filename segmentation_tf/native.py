"""Keras's own weight files (``.weights.h5``, ``.keras``) <-> canonical tensors, for ``segparity convert``.

Apart from ``segmentation_tf/weights.py`` because it builds models (``registry.build_model``), and the registry
loads encoder weights through ``weights``: one direction of imports. Twin: ``segmentation_torch/native.py``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from segmentation_tf.registry import build_model
from segmentation_tf.weights import from_canonical, to_canonical
from segparity.atomic import atomic_write
from segparity.weights.checkpoint import H5_ATTRIBUTE, CheckpointError, check_native_keys, header_json

def read_native(path: str | os.PathLike, spec) -> dict[str, np.ndarray]:
    """Canonical tensors from a Keras ``.weights.h5`` file, or the ``model.weights.h5`` inside a
    ``.keras`` archive, of the network ``spec`` describes.

    Every dataset of the file (its HDF5 path, shape and dtype) is checked against the file a model
    built from ``spec`` writes, before Keras loads it. A ``.keras`` archive's weights are taken out of
    the zip as data; the archive's config is never deserialised here (``segparity.parity.convert`` reads it as JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weight file not found: {path}")
    if not path.name.endswith((".weights.h5", ".keras")):
        raise CheckpointError(f"{path}: Keras weight files end with .weights.h5 or .keras")
    model = build_model(spec.name, **spec.options())
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference.weights.h5"
        model.save_weights(reference)
        expected = _h5_datasets(reference, "reference")
        weights = path if path.name.endswith(".weights.h5") else _archive_weights(path, Path(folder))
        check_native_keys(expected, _h5_datasets(weights, str(path)), [], source=str(path), describe=spec.describe())
        try:
            model.load_weights(weights)
        except Exception as exc:  # noqa: BLE001 - names and shapes were right, the data is damaged
            raise CheckpointError(f"{path}: the weights cannot be read: {exc}") from None
    return to_canonical(model)


def _archive_weights(path: Path, folder: Path) -> Path:
    """Copy ``model.weights.h5`` out of the ``.keras`` zip at ``path`` into ``folder``."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many types (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a .keras archive holding model.weights.h5: {exc}") from None
    target = folder / "archive.weights.h5"
    target.write_bytes(data)
    return target


def write_native(path: str | os.PathLike, tensors: dict[str, np.ndarray], spec) -> Path:
    """Write canonical ``tensors`` as a Keras ``.weights.h5`` file (``model.save_weights``, ``spec`` recorded
    in the root attribute ``segparity``, which ``load_weights`` ignores) or a ``.keras`` model archive
    (``model.save``: config and weights), atomically."""
    name = str(path)
    if not name.endswith((".weights.h5", ".keras")):
        raise CheckpointError(f"{path}: Keras weight files must end with .weights.h5 or .keras")
    model = from_canonical(build_model(spec.name, **spec.options()), tensors)
    if name.endswith(".keras"):
        return atomic_write(path, model.save, suffix=".keras")

    def save(tmp: str) -> None:
        import h5py

        model.save_weights(tmp)
        with h5py.File(tmp, "a") as handle:  # the spec, where load_weights does not look (segparity.parity.convert)
            handle.attrs[H5_ATTRIBUTE] = header_json(spec)

    return atomic_write(path, save, suffix=".weights.h5")


def _h5_datasets(path: Path, source: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """HDF5 dataset path -> (shape, dtype) of every array in a ``.weights.h5`` file."""
    import h5py

    found: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: found.__setitem__(name, (tuple(item.shape), str(item.dtype)))
                              if isinstance(item, h5py.Dataset) else None)
    except Exception as exc:  # noqa: BLE001 - h5py raises many types on a damaged file (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{source} is not a readable HDF5 (.weights.h5) file: {exc}") from None
    return found
