"""``segparity convert``: canonical <-> torch state_dict <-> Keras .weights.h5, every architecture, both
directions, bit-identical round trips, and errors that name the file and key."""

import json
import pickle
import zipfile

import keras
import numpy as np
import pytest
import torch

from segmentation_tf.registry import build_model as build_keras
from segmentation_tf.weights import to_canonical as keras_canonical
from segmentation_torch.harness import random_weights
from segmentation_torch.registry import build_model as build_torch
from segmentation_torch.weights import to_canonical as torch_canonical
from segparity import cli
from segparity.weights.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from segparity.parity.convert import convert, read_weights
from segparity.networks.specs import make_spec

SPECS = [
    make_spec("unet", preset="lesson-segparity", base_channels=4),
    make_spec("unet", in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid", batch_norm=False),
    make_spec("segnet", in_channels=3, num_classes=4, encoder=((8, 8), (16,)), decoder=((8,), (8,))),
    make_spec("fcn", in_channels=3, num_classes=5, variant="8s", encoder=((8,), (8,), (16,), (16,), (16,)), fc_channels=32),
    make_spec("deeplabv3plus", in_channels=3, num_classes=4, stem_channels=8, stage_channels=(8, 8, 16, 16),
              aspp_channels=8, decoder_channels=8),
]


def _identical(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("spec", SPECS, ids=[s.describe() for s in SPECS])
def test_round_trips_both_ways_are_bit_identical(tmp_path, spec):
    weights = random_weights(spec, seed=1)
    write_checkpoint(tmp_path / "start.safetensors", weights, spec)
    convert(tmp_path / "start.safetensors", tmp_path / "a.pt")
    convert(tmp_path / "a.pt", tmp_path / "a.weights.h5", spec)
    convert(tmp_path / "a.weights.h5", tmp_path / "a.safetensors", spec)
    convert(tmp_path / "start.safetensors", tmp_path / "b.weights.h5")
    convert(tmp_path / "b.weights.h5", tmp_path / "b.pth", spec)
    convert(tmp_path / "b.pth", tmp_path / "b.safetensors", spec)
    convert(tmp_path / "a.pt", tmp_path / "c.keras", spec)
    convert(tmp_path / "c.keras", tmp_path / "c.safetensors")  # a .keras archive records its architecture
    for end in ("a", "b", "c"):
        tensors, stored = read_checkpoint(tmp_path / f"{end}.safetensors", expected_spec=spec)
        assert _identical(tensors, read_checkpoint(tmp_path / "start.safetensors")[0]), end

    # the framework files are the frameworks' own: plain torch.load / Keras load_weights read them
    torch_model = build_torch(spec.name, **spec.options())
    torch_model.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    keras_model = build_keras(spec.name, **spec.options())
    keras_model.load_weights(tmp_path / "b.weights.h5")
    assert _identical(torch_canonical(torch_model), weights) and _identical(keras_canonical(keras_model), weights)
    archive = keras.saving.load_model(tmp_path / "c.keras", compile=False)  # our own file: safe to let Keras load it
    assert archive.spec == spec and _identical(keras_canonical(archive), weights)


def _torch_file(tmp_path, spec, edit=None):
    state = build_torch(spec.name, **spec.options()).state_dict()
    if edit:
        edit(state)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    return path


def test_a_framework_file_needs_the_architecture(tmp_path):
    path = _torch_file(tmp_path, SPECS[0])
    with pytest.raises(CheckpointError, match="does not record the architecture \\(written outside segparity\\): give it"):
        read_weights(path)


def test_wrong_architecture_names_the_key_and_shapes(tmp_path):
    path = _torch_file(tmp_path, SPECS[0])
    wider = make_spec("unet", preset="lesson-segparity", base_channels=8)
    with pytest.raises(CheckpointError, match=r"key 'encoder.0.conv1.weight': expected \(8, 3, 3, 3\) float32, "
                                              r"found \(4, 3, 3, 3\) float32"):
        read_weights(path, wider)


def test_missing_extra_and_float64_keys_are_named(tmp_path):
    def edit(state):
        del state["head.bias"]
        state["head.extra"] = torch.zeros(2)
        state["head.weight"] = state["head.weight"].double()
    path = _torch_file(tmp_path, SPECS[0], edit)
    with pytest.raises(CheckpointError) as error:
        read_weights(path, SPECS[0])
    message = str(error.value)
    assert "missing key 'head.bias'" in message and "unexpected key 'head.extra'" in message
    assert "key 'head.weight': expected (1, 4, 1, 1) float32, found (1, 4, 1, 1) float64" in message


def test_num_batches_tracked_may_be_absent(tmp_path):
    path = _torch_file(tmp_path, SPECS[0], lambda s: [s.pop(k) for k in list(s) if k.endswith("num_batches_tracked")])
    tensors, _ = read_weights(path, SPECS[0])
    assert "encoder.0.bn1.scale" in tensors


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"head.weight": _Payload()}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="is not a plain tensor checkpoint") as excinfo:
        read_weights(path, SPECS[0])
    assert "unpickled!" not in capsys.readouterr().out
    message = str(excinfo.value)
    assert "segparity will not unpickle it" in message and "GLOBAL" in message and "print" in message  # torch's cause
    assert "False" not in message and "\x1b" not in message  # no advice to turn the safety off, no escape codes
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        read_weights(tmp_path / "list.pt", SPECS[0])


def test_random_bytes_in_a_pt_give_torchs_cause(tmp_path):
    """torch wraps the cause of a refusal in advice to re-run with ``weights_only=False`` (and, for a pickle
    that names code, bold terminal escapes); the message keeps the cause only."""
    path = tmp_path / "x.pt"
    path.write_bytes(bytes([237]) + bytes(range(200)))
    with pytest.raises(CheckpointError) as excinfo:
        read_weights(path, SPECS[0])
    message = str(excinfo.value)
    assert message.startswith(f"{path} is not a plain tensor checkpoint") and "Unsupported operand 237" in message
    assert "weights_only` set to `False" not in message and "will not unpickle it" in message


def test_keras_file_with_other_layers_is_named(tmp_path):
    path = tmp_path / "k.weights.h5"
    build_keras("unet", **make_spec("unet", preset="lesson-segparity", base_channels=8).options()).save_weights(path)
    with pytest.raises(CheckpointError, match=r"k.weights.h5 does not match unet(.|\n)*\n  key 'bottleneck/conv1/vars/0': "
                                              r"expected \(3, 3, 32, 64\) float32, found \(3, 3, 64, 128\) float32"):
        read_weights(path, SPECS[0])


def test_cli_converts_and_reports_errors_in_one_line(tmp_path, capsys):
    write_checkpoint(tmp_path / "w.safetensors", random_weights(SPECS[0], seed=0), SPECS[0])
    assert cli.main(["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "w.pt")]) == 0
    assert "w.pt: unet(depth=4, padding='same'), 19 layers" in capsys.readouterr().out
    args = ["convert", str(tmp_path / "w.pt"), str(tmp_path / "w.weights.h5"), "--arch", "unet", "--preset", "lesson-segparity",
            "--model-option", "base_channels=4"]  # flags that agree with what w.pt records
    assert cli.main(args) == 0
    capsys.readouterr()
    torch.save(torch.load(tmp_path / "w.pt", weights_only=True), tmp_path / "plain.pt")  # as torch writes it
    assert cli.main(["convert", str(tmp_path / "plain.pt"), str(tmp_path / "x.safetensors")]) == 2
    assert "segparity convert: error:" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "w.npz")]) == 2
    assert "cannot tell the weight format from the name" in capsys.readouterr().err
    other = ["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "y.pt"), "--arch", "unet", "--preset", "lesson-segparity"]
    assert cli.main(other) == 2
    assert "flags disagree with it (leave them out to use the file's):\n  base_channels: " in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.pt").exists()


def _rewrite_config(source, target, edit):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.namelist():
            data = old.read(item)
            if item == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            new.writestr(item, data)


def test_keras_archives_are_read_as_data_and_checked(tmp_path):
    spec = SPECS[2]
    write_checkpoint(tmp_path / "w.safetensors", random_weights(spec, seed=0), spec)
    convert(tmp_path / "w.safetensors", tmp_path / "w.keras")
    with pytest.raises(CheckpointError, match=r"holds a different architecture than the one given:\n  num_classes"):
        read_weights(tmp_path / "w.keras", make_spec("segnet", in_channels=3, num_classes=5, encoder=((8, 8), (16,)),
                                                     decoder=((8,), (8,))))
    _rewrite_config(tmp_path / "w.keras", tmp_path / "dense.keras",
                    lambda c: c.update(registered_name="keras>Dense", class_name="Dense"))
    with pytest.raises(CheckpointError, match=r"holds a 'keras>Dense' model, not one of segparity's \(segparity>UNet"):
        read_weights(tmp_path / "dense.keras")
    _rewrite_config(tmp_path / "w.keras", tmp_path / "head.keras", lambda c: c["config"].update(head_kernel_size=1))
    with pytest.raises(CheckpointError, match=r"head.keras does not match segnet(.|\n)*key 'head/vars/0': expected "
                                              r"\(1, 1, 8, 4\) float32, found \(3, 3, 8, 4\) float32"):
        read_weights(tmp_path / "head.keras")  # the config says one thing, the weights another: named
    _rewrite_config(tmp_path / "w.keras", tmp_path / "bad.keras", lambda c: c["config"].update(decoder=[[16], [8]]))
    with pytest.raises(CheckpointError, match="bad.keras: config.json does not describe a valid SegNet"):
        read_weights(tmp_path / "bad.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.keras is not a Keras .keras archive with a config.json"):
        read_weights(tmp_path / "junk.keras")
