"""Canonical weights <-> a Keras model (layout table in ``segparity.weights.layout``).

For each canonical tensor: the Keras variable that holds it and Keras's axis order.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

from segparity.atomic import atomic_write
from segparity.weights.checkpoint import (H5_ATTRIBUTE, CheckpointError, check_native_keys, check_tensors, header_json,
                               read_checkpoint, write_checkpoint)
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


def save_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as a canonical safetensors checkpoint (atomically)."""
    write_checkpoint(path, to_canonical(model), model.spec)


def load_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load a canonical checkpoint into ``model``; the stored spec and every key/shape are checked first."""
    tensors, _ = read_checkpoint(path, expected_spec=model.spec)
    return from_canonical(model, tensors)


def read_native(path: str | os.PathLike, spec) -> dict[str, np.ndarray]:
    """Canonical tensors from a Keras ``.weights.h5`` file, or the ``model.weights.h5`` inside a
    ``.keras`` archive, of the network ``spec`` describes.

    Every dataset of the file (its HDF5 path, shape and dtype) is checked against the file a model
    built from ``spec`` writes, before Keras loads it. A ``.keras`` archive's weights are taken out of
    the zip as data; the archive's config is never deserialised here (``segparity.parity.convert`` reads it as JSON).
    """
    from segmentation_tf.registry import build_model

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
    from segmentation_tf.registry import build_model

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
