"""Read the weights of a Keras model's ``.h5`` file layer by layer, without Keras: the files people have from
``keras.applications`` (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``) and what Keras writes today.

Two layouts, both read with h5py (nothing is unpickled; HDF5 holds plain arrays):

- **legacy** (Keras 2, and Keras 3's ``.h5`` saving): the root (or a ``model_weights`` group, in a whole-model
  ``model.save("x.h5")``) lists ``layer_names``; each layer's group lists ``weight_names`` in the layer's own order
  (a conv: kernel, then bias).
- **Keras 3** ``model.save_weights("x.weights.h5")``: ``layers/<object name>/vars/0, 1, ...`` with the layer's name
  in the ``name`` attribute of ``vars``.

Arrays keep Keras's axes (a conv kernel is ``(kh, kw, in, out)``); the caller maps names and axes.
"""

from __future__ import annotations

import os

import numpy as np

from segparity.weights.checkpoint import CheckpointError


def _h5py():
    try:
        import h5py
    except ImportError as error:  # h5py comes with Keras; a torch-only install may lack it
        raise CheckpointError("reading a Keras .h5 weights file needs h5py: pip install h5py") from error
    return h5py


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _legacy_layers(group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for name in _decode(group.attrs["layer_names"]):
        layer = group[name]
        layers[name] = [np.asarray(layer[w]) for w in _decode(layer.attrs.get("weight_names", []))]
    return layers


def _keras3_layers(group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for key in group:
        variables = group[key].get("vars")
        if variables is None or "name" not in variables.attrs:
            continue
        name = _decode([variables.attrs["name"]])[0]
        layers[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return layers


def read_keras_h5_layers(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weights, in the layer's order, from a Keras ``.h5`` weights file (either layout); a clear
    error naming the file when it is neither."""
    h5py = _h5py()
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not an HDF5 file ({error})") from None
    with handle as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:
            return _legacy_layers(root)
        if "layers" in f:
            return _keras3_layers(f["layers"])
    raise CheckpointError(f"{path}: an HDF5 file with neither Keras weights layout (no 'layer_names' attribute, no "
                          "'layers' group)")
