"""Read a ``torch.save`` file of tensors without torch: the zip archive's ``data.pkl`` through a restricted
unpickler, each tensor's bytes from ``data/<key>``, as numpy arrays.

So the Keras side can read the ``.pth`` files people have (``segmentation_tf.build_model(...,
encoder_weights=PATH)``) without importing torch, and so both frameworks read them the same way. Only what a
``state_dict`` of tensors needs is accepted: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
torch's storage classes; any other global (``os.system``, a model class) is refused, naming it, before anything
runs, as ``torch.load(weights_only=True)`` refuses it. torch's legacy (pre-1.6, non-zip) format is not read: the
error says how to re-save the file.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from segparity.weights.checkpoint import CheckpointError

# torch's storage classes, as a pickled tensor names them -> numpy dtype (little-endian, as torch writes them)
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_unused) -> np.ndarray:
    """torch's ``_rebuild_tensor_v2``: ``size`` elements of ``storage`` from ``offset`` with ``stride`` (in elements).
    Every element must lie inside the storage (checked first: a damaged file must not read outside it)."""
    numbers = [offset, *size, *stride]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or len(size) != len(stride):
        raise CheckpointError(f"a tensor record with offset {offset!r}, size {size!r}, stride {stride!r}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(storage):
        raise CheckpointError(f"a tensor of size {tuple(size)} at offset {offset} reaches element {last} of a "
                              f"storage of {len(storage)}")
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    strides = [s * storage.itemsize for s in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=strides).copy()


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise CheckpointError(f"{self.source} is not a plain tensor checkpoint: it names the global {module}.{name}. "
                              "segparity will not unpickle it; save the weights as model.state_dict()")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise CheckpointError(f"{self.source}: an unexpected storage record {pid!r}")
        _, storage_type, key, _location, _numel = pid
        data = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(data, dtype=STORAGE_DTYPES[storage_type])


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``name -> array`` mapping a ``torch.save(state_dict)`` zip file holds (read without torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch weight file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a torch zip file (torch >= 1.6 writes one); if it is torch's legacy "
                              "format, re-save it with torch.save(torch.load(path, weights_only=True), path)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(f"{path} is a zip file without one <archive>/data.pkl: not a torch.save file")
            prefix = pickles[0][:-len("/data.pkl")]
            with archive.open(pickles[0]) as handle:
                state = _StateDictUnpickler(handle, archive, prefix, str(path)).load()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle raises many types
        raise CheckpointError(f"{path} cannot be read as a torch state_dict: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict (a mapping of names to tensors)")
    return dict(state)
