"""The canonical checkpoint: bit-identical round trips and errors that name the key."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import segmentation_tf as ktf
import segmentation_torch as kt
from segmentation_torch.harness import random_weights
from segparity.weights import checkpoint
from segparity.weights.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from tests.conftest import small_spec


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("options", [dict(batch_norm=True), dict(batch_norm=False, upsample="bilinear"),
                                     dict(padding="valid", upsample="transpose", batch_norm=False)])
def test_torch_canonical_keras_canonical_torch_is_bit_identical(tmp_path, options):
    spec = small_spec(**options)
    torch_model = kt.build_model("unet", **spec.options())
    kt.from_canonical(torch_model, random_weights(spec, seed=3))  # BN statistics non-trivial too
    kt.save_weights(torch_model, tmp_path / "a.safetensors")

    keras_model = ktf.build_model("unet", **spec.options())
    ktf.load_weights(keras_model, tmp_path / "a.safetensors")
    ktf.save_weights(keras_model, tmp_path / "b.safetensors")

    back = kt.build_model("unet", **spec.options())
    kt.load_weights(back, tmp_path / "b.safetensors")
    for key, value in torch_model.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    assert _sha(tmp_path / "a.safetensors") == _sha(tmp_path / "b.safetensors")


def test_keras_weights_land_in_the_right_axes(tmp_path):
    """A conv kernel element moves to its documented Keras position (OIHW -> HWIO, IOHW -> HWOI)."""
    spec = small_spec(batch_norm=True)
    tensors = random_weights(spec, seed=0)
    tensors["encoder.0.conv1.weight"] = np.zeros_like(tensors["encoder.0.conv1.weight"])
    tensors["encoder.0.conv1.weight"][1, 2, 0, 1] = 7.0  # out 1, in 2, row 0, column 1
    tensors["decoder.0.up.weight"] = np.zeros_like(tensors["decoder.0.up.weight"])
    tensors["decoder.0.up.weight"][3, 1, 1, 0] = 5.0  # in 3, out 1, row 1, column 0
    model = ktf.from_canonical(ktf.build_model("unet", **spec.options()), tensors)
    assert model.encoder[0].conv1.kernel.numpy()[0, 1, 2, 1] == 7.0
    assert model.decoder[0].up.kernel.numpy()[1, 0, 1, 3] == 5.0


@pytest.fixture
def saved(tmp_path):
    spec = small_spec()
    path = tmp_path / "w.safetensors"
    write_checkpoint(path, random_weights(spec, 0), spec)
    return spec, path


def test_missing_key_named(saved, tmp_path):
    spec, path = saved
    tensors, _ = read_checkpoint(path)
    del tensors["decoder.1.bn2.var"]
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"segparity": checkpoint.header_json(spec)})
    with pytest.raises(CheckpointError, match=r"missing key 'decoder.1.bn2.var' \(expected shape \(4,\)\)"):
        kt.load_weights(kt.build_model("unet", **spec.options()), tmp_path / "bad.safetensors")


def test_extra_and_misshaped_keys_named(saved, tmp_path):
    spec, path = saved
    tensors, _ = read_checkpoint(path)
    tensors["head.weight"] = np.zeros((3, 4, 3, 3), np.float32)
    tensors["head.gamma"] = np.zeros((3,), np.float32)
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"segparity": checkpoint.header_json(spec)})
    with pytest.raises(CheckpointError) as exc:
        ktf.load_weights(ktf.build_model("unet", **spec.options()), tmp_path / "bad.safetensors")
    message = str(exc.value)
    assert "key 'head.weight': expected shape (3, 4, 1, 1), found (3, 4, 3, 3)" in message
    assert "unexpected key 'head.gamma'" in message


def test_spec_mismatch_names_the_option(saved):
    _, path = saved
    other = kt.build_model("unet", in_channels=3, num_classes=3, base_channels=4, depth=3)
    with pytest.raises(CheckpointError, match=r"(?s)different architecture.*depth: expected 3, found 2"):
        kt.load_weights(other, path)


def test_corrupt_file_and_foreign_file(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt.safetensors is not a readable safetensors file"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, foreign)
    with pytest.raises(CheckpointError, match="not a segparity canonical checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        read_checkpoint(tmp_path / "nothere.safetensors")


def test_pickle_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(path)


def test_failed_write_keeps_the_old_checkpoint(saved, monkeypatch):
    spec, path = saved
    before = _sha(path)

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(path, random_weights(spec, 1), spec)
    assert _sha(path) == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_nan_weights_are_refused(saved):
    spec, path = saved
    tensors, _ = read_checkpoint(path)
    tensors["head.bias"] = np.array([0.0, np.nan, 0.0], np.float32)
    with pytest.raises(CheckpointError, match="key 'head.bias': contains NaN"):
        write_checkpoint(path, tensors, spec)
