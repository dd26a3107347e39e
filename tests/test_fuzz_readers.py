"""Fuzzing what reads files: random bytes, truncated files and random-but-valid-looking contents fed to
the canonical checkpoint reader, the ``.pt``/``.pth``, ``.weights.h5`` and ``.keras`` readers (through
``segparity.parity.convert.read_weights``, what ``segparity convert`` calls) and the image/mask loaders. Only the
documented exception types come out (``CheckpointError`` for weight files, ``DatasetError`` for images),
each message naming the file. A ``.pt`` holding a pickle that would run code is refused unrun.

20 examples per test here; ``SEGPARITY_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_readers.py`` fuzzes
longer (by hand, not in CI)."""

import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage import io as skio

from segparity.weights.checkpoint import CheckpointError
from segparity.parity.convert import read_weights, write_weights
from segparity.data.images import read_image, read_mask
from segparity.data.samples import DatasetError
from segparity.networks.specs import make_spec

SPEC = make_spec("unet", in_channels=1, num_classes=2, base_channels=2, depth=1)
FUZZ = settings(max_examples=int(os.environ.get("SEGPARITY_FUZZ_EXAMPLES", "20")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".weights.h5", ".keras")


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    """One well-formed file of every kind, to truncate and mutate."""
    folder = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    from segmentation_torch.harness import random_weights

    tensors = random_weights(SPEC, 0)
    files = {}
    for suffix in WEIGHT_SUFFIXES:
        write_weights(folder / f"w{suffix}", tensors, SPEC)
        files[suffix] = (folder / f"w{suffix}").read_bytes()
    skio.imsave(folder / "i.png", (rng.random((8, 8, 3)) * 255).astype(np.uint8), check_contrast=False)
    skio.imsave(folder / "m.bmp", ((rng.random((8, 8)) > 0.5) * 255).astype(np.uint8), check_contrast=False)
    files[".png"], files[".bmp"] = (folder / "i.png").read_bytes(), (folder / "m.bmp").read_bytes()
    return files


def _read_weight_file(path):
    """``read_weights`` as ``segparity convert`` calls it: the spec given for formats that do not record it."""
    spec = None if path.name.endswith((".safetensors", ".keras")) else SPEC
    read_weights(path, spec)


def _expect_named_error(read, path, error_type):
    """``read(path)`` either succeeds or raises ``error_type`` whose message names the file."""
    try:
        read(path)
    except error_type as exc:
        assert path.name in str(exc), f"{type(exc).__name__} does not name the file: {exc}"
    # any other exception type fails the test as it propagates


def _mutate(data: bytes, draw) -> bytes:
    """Flip up to 8 bytes of ``data`` at drawn positions (mutation fuzzing of a valid file)."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        buffer[draw(st.integers(0, len(buffer) - 1))] = draw(st.integers(0, 255))
    return bytes(buffer)


@FUZZ
@given(suffix=st.sampled_from(WEIGHT_SUFFIXES), data=st.binary(max_size=512))
def test_weight_readers_on_random_bytes(tmp_path, suffix, data):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as excinfo:
        _read_weight_file(path)
    assert path.name in str(excinfo.value)


@FUZZ
@given(suffix=st.sampled_from(WEIGHT_SUFFIXES), fraction=st.floats(0.0, 0.999))
def test_weight_readers_on_truncated_files(tmp_path, valid_files, suffix, fraction):
    path = tmp_path / f"truncated{suffix}"
    whole = valid_files[suffix]
    path.write_bytes(whole[:int(len(whole) * fraction)])
    _expect_named_error(_read_weight_file, path, CheckpointError)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on a mutated protocol byte
@FUZZ
@given(suffix=st.sampled_from(WEIGHT_SUFFIXES), data=st.data())
def test_weight_readers_on_mutated_files(tmp_path, valid_files, suffix, data):
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(_mutate(valid_files[suffix], data.draw))
    _expect_named_error(_read_weight_file, path, CheckpointError)


_DTYPES = st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F8_E4M3", "XX", ""])
_HEADER_ENTRY = st.fixed_dictionaries({"dtype": _DTYPES, "shape": st.lists(st.integers(-2, 6), max_size=4),
                                       "data_offsets": st.lists(st.integers(-8, 600), min_size=0, max_size=3)})
_METADATA = st.one_of(st.none(), st.fixed_dictionaries({"segparity": st.one_of(
    st.text(max_size=40),
    st.builds(json.dumps, st.fixed_dictionaries({"format": st.sampled_from(["segparity-canonical", "x"]),
                                                 "format_version": st.integers(0, 3),
                                                 "spec": st.one_of(st.none(), st.dictionaries(st.text(max_size=8),
                                                                                              st.integers(), max_size=3),
                                                                   st.just({"name": "unet"}))})))}))


@FUZZ
@given(entries=st.dictionaries(st.text(min_size=1, max_size=12), _HEADER_ENTRY, max_size=3), metadata=_METADATA,
       payload=st.binary(max_size=600), length_lie=st.integers(-16, 16))
def test_canonical_reader_on_valid_looking_headers(tmp_path, entries, metadata, payload, length_lie):
    """A safetensors layout (8-byte header length, JSON header, data) whose fields are drawn at random."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    path = tmp_path / "looks_valid.safetensors"
    path.write_bytes(struct.pack("<Q", max(len(text) + length_lie, 0)) + text + payload)
    with pytest.raises(CheckpointError) as excinfo:
        read_weights(path)
    assert path.name in str(excinfo.value)


@FUZZ
@given(members=st.dictionaries(st.sampled_from(["config.json", "model.weights.h5", "metadata.json", "other"]),
                               st.one_of(st.binary(max_size=200), st.builds(lambda d: json.dumps(d).encode(),
                                                                            st.dictionaries(st.text(max_size=10),
                                                                                            st.text(max_size=10),
                                                                                            max_size=3))),
                               max_size=4))
def test_keras_archive_reader_on_valid_looking_zips(tmp_path, members):
    path = tmp_path / "looks_valid.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(CheckpointError) as excinfo:
        read_weights(path)
    assert path.name in str(excinfo.value)


@FUZZ
@given(suffix=st.sampled_from([".png", ".bmp", ".jpg", ".tif"]), data=st.binary(max_size=256))
def test_image_and_mask_loaders_on_random_bytes(tmp_path, suffix, data):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    for read in (read_image, read_mask):
        _expect_named_error(read, path, DatasetError)


@FUZZ
@given(kind=st.sampled_from([".png", ".bmp"]), fraction=st.floats(0.0, 0.999), data=st.data())
def test_image_and_mask_loaders_on_truncated_and_mutated_files(tmp_path, valid_files, kind, fraction, data):
    whole = valid_files[kind]
    for name, content in (("truncated", whole[:int(len(whole) * fraction)]), ("mutated", _mutate(whole, data.draw))):
        path = tmp_path / f"{name}{kind}"
        path.write_bytes(content)
        for read in (read_image, read_mask):
            _expect_named_error(read, path, DatasetError)


class _WritesAFile:
    """Unpickling this would create ``marker`` (the classic ``__reduce__`` exploit)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
def test_malicious_pickle_in_a_pt_is_refused_and_nothing_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"encoder.0.conv1.weight": _WritesAFile(marker)}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch.load's own protocol: no warning
    assert not marker.exists()
    with pytest.raises(CheckpointError) as excinfo:
        read_weights(path, SPEC)
    message = str(excinfo.value)
    assert "evil.pt" in message and "weights_only=True" in message and "will not unpickle it" in message
    assert "GLOBAL" in message and "\x1b" not in message and "False" not in message  # torch's cause, no escapes, no advice
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_WritesAFile(marker))) is not None and marker.exists()  # the payload is live


def test_fuzz_inputs_reach_the_readers(tmp_path, valid_files):
    """The fuzzing is not vacuous: the valid files read back, so mutations start from something real."""
    for suffix, content in valid_files.items():
        path = tmp_path / f"ok{suffix}"
        path.write_bytes(content)
        if suffix in (".png", ".bmp"):
            assert (read_image if suffix == ".png" else read_mask)(path).shape[:2] == (8, 8)
        else:
            tensors, spec = read_weights(path, None if suffix in (".safetensors", ".keras") else SPEC)
            assert spec == SPEC and tensors
