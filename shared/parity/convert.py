"""``segparity convert SRC DST``: weights between the canonical checkpoint and each framework's own file.

Formats, told by the file name:

- ``.safetensors``: the canonical checkpoint (``shared/weights/checkpoint.py``); it records the architecture spec.
- ``.pt`` / ``.pth``: a torch ``state_dict`` (``segmentation_torch.native``; read with ``weights_only=True``).
- ``.weights.h5``: Keras ``model.save_weights`` (``segmentation_tf.native``).
- ``.keras``: a Keras model archive (``model.save``): a zip of ``config.json`` (the model's class and
  constructor arguments, i.e. the spec) and ``model.weights.h5``. segparity reads ``config.json`` as
  JSON and the weights as HDF5 data; it never calls ``keras.saving.load_model`` on a file it is handed,
  so nothing in the archive is deserialised or run.

Every conversion goes through canonical tensors, so torch -> Keras is torch -> canonical -> Keras and a
round trip is bit-identical (float32 throughout, only axes permuted).

The architecture travels with the weights: a canonical file and a ``.keras`` archive carry it, and the
``.pt`` and ``.weights.h5`` files segparity writes record it too, in the place each format leaves for
extra data, where torch and Keras do not look: a ``<archive>/extra/segparity.json`` record in the ``.pt``
zip (torch's own ``extra/`` convention, ``torch.load`` ignores it) and a root attribute ``segparity`` in the
HDF5 file (``model.load_weights`` ignores it); both hold the canonical header JSON
(``segparity.weights.checkpoint.header_json``). A ``.pt`` or ``.weights.h5`` written elsewhere records nothing, and
reading one needs the spec (``--arch`` and options). Where a file records one, a spec given as well must
equal it.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from pathlib import Path

from segparity.weights.checkpoint import (H5_ATTRIBUTE, TORCH_RECORD, CheckpointError, read_checkpoint, read_checkpoint_spec,
                               spec_from_header, write_checkpoint)
from segparity.networks.specs import make_spec, spec_differences

FILE_KINDS = {"canonical": "checkpoint", "torch": "torch weight", "tf": "Keras weight"}  # for messages
FORMATS = {"canonical": (".safetensors",), "torch": (".pt", ".pth"), "tf": (".weights.h5", ".keras")}
# Keras model class (as registered: "segparity>UNet") -> registered architecture name; torchvision's six models share
# one class, whose "arch" argument names the architecture
KERAS_CLASSES = {"UNet": "unet", "SegNet": "segnet", "FCN": "fcn", "DeepLabV3Plus": "deeplabv3plus",
                 "TorchvisionSegmentation": None}


def weight_format(path: str | os.PathLike) -> str:
    """"canonical", "torch" or "tf", from the file name; a clear error for anything else."""
    name = Path(path).name
    for fmt, suffixes in FORMATS.items():
        if name.endswith(suffixes):
            return fmt
    known = ", ".join(f"{s} ({fmt})" for fmt, suffixes in FORMATS.items() for s in suffixes)
    raise CheckpointError(f"{path}: cannot tell the weight format from the name; use one of {known}")


def _weights_module(fmt: str):
    """The framework's own-file reader and writer (``segmentation_torch/native.py``, ``segmentation_tf/native.py``)."""
    return importlib.import_module(f"segmentation_{fmt}.native")


def keras_archive_spec(path: str | os.PathLike):
    """The spec recorded in a ``.keras`` archive's ``config.json`` (read as JSON, nothing deserialised)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except Exception as exc:  # noqa: BLE001 - a damaged zip or config raises many types (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a Keras .keras archive with a config.json (JSON): {exc}") from None
    registered = config.get("registered_name") if isinstance(config, dict) else None
    package, _, class_name = str(registered).partition(">")
    if package != "segparity" or class_name not in KERAS_CLASSES:
        known = ", ".join(f"segparity>{c}" for c in KERAS_CLASSES)
        raise CheckpointError(f"{path} holds a {registered!r} model, not one of segparity's ({known})")
    arguments = config.get("config")
    if not isinstance(arguments, dict):
        raise CheckpointError(f"{path}: config.json has no constructor arguments (\"config\") for {class_name}")
    # "layers" is the model's layer flavour (segparity.networks.layer_flavours), not part of the spec: both flavours
    # hold the same weights
    options = {k: v for k, v in arguments.items() if k not in ("name", "trainable", "dtype", "layers")}

    arch = KERAS_CLASSES[class_name] or options.pop("arch", None)
    try:
        return make_spec(str(arch), **options)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config.json does not describe a valid {class_name}: {exc}") from None


def _check_same(path, given, stored):
    if given is not None and spec_differences(given, stored):
        raise CheckpointError(f"{path} holds a different architecture than the one given:\n  "
                              + "\n  ".join(spec_differences(given, stored)))


def _torch_record(path: Path):
    """The spec in a ``.pt`` zip's ``extra/segparity.json`` record, or None (read with zipfile, no unpickling)."""
    if not zipfile.is_zipfile(path):
        return None  # torch's legacy (non-zip) format, or not a torch file: read_native says which
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.split("/", 1)[-1] == TORCH_RECORD]
            text = archive.read(names[0]) if names else None
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many types (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a readable torch zip file: {exc}") from None
    return None if text is None else spec_from_header(text, source=f"{path} ({TORCH_RECORD})")


def _h5_record(path: Path):
    """The spec in a ``.weights.h5`` file's root attribute ``segparity``, or None."""
    import h5py  # comes with Keras; only .weights.h5 files need it

    try:
        with h5py.File(path, "r") as handle:
            text = handle.attrs.get(H5_ATTRIBUTE)
    except Exception as exc:  # noqa: BLE001 - h5py raises many types on a damaged file (tests/test_fuzz_readers.py)
        raise CheckpointError(f"{path} is not a readable HDF5 (.weights.h5) file: {exc}") from None
    return None if text is None else spec_from_header(text, source=f"{path} (attribute {H5_ATTRIBUTE!r})")


def recorded_spec(path: str | os.PathLike):
    """The architecture spec ``path`` records, or None for a ``.pt`` / ``.weights.h5`` written elsewhere."""
    fmt = weight_format(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{FILE_KINDS[fmt]} file not found: {path}")
    if fmt == "canonical":
        return read_checkpoint_spec(path)
    if path.name.endswith(".keras"):
        return keras_archive_spec(path)
    return _torch_record(path) if fmt == "torch" else _h5_record(path)


def read_weights(path: str | os.PathLike, spec=None):
    """``(canonical tensors, spec)`` from any supported file. The spec is the one the file records
    (``recorded_spec``), and ``spec``, when given, must equal it; a file that records none needs ``spec``."""
    fmt = weight_format(path)
    if fmt == "canonical":
        tensors, stored = read_checkpoint(path)
        _check_same(path, spec, stored)
        return tensors, stored
    stored = recorded_spec(path)
    if stored is not None:
        _check_same(path, spec, stored)
    elif spec is None:
        raise CheckpointError(f"{path} is a {fmt} weight file that does not record the architecture (written "
                              "outside segparity): give it (--arch NAME, and --preset / --model-option as it was built)")
    return _weights_module(fmt).read_native(path, stored or spec), stored or spec


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
