"""One set of model flags for every command (``shared/model_flags.py``), and a file that records its
architecture is enough: ``convert``, ``diff`` and ``report --weights`` take it from the file, and a flag given
as well must agree with it, else one error names the option, the file's value and the flag's."""

import json
import zipfile

import h5py
import pytest
import torch

import segmentation_torch as st
from segparity import cli
from segparity.weights.checkpoint import H5_ATTRIBUTE, CheckpointError
from segparity.parity.convert import recorded_spec

MODEL_FLAGS = ("--arch", "--preset", "--in-channels", "--num-classes", "--model-option")
COMMANDS = ("report", "train", "compare-train", "convert", "diff")


def _flags(command: str) -> dict:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.option_strings[0]: a for a in sub._actions if a.option_strings and a.option_strings[0] in MODEL_FLAGS}


def test_every_command_takes_the_same_model_flags_with_the_same_defaults():
    reference = _flags("diff")
    for command in COMMANDS:
        flags = _flags(command)
        assert list(flags) == list(MODEL_FLAGS), command
        for name, action in flags.items():
            same = ("default", "type", "help", "choices", "required", "metavar")
            assert {k: getattr(action, k) for k in same} == {k: getattr(reference[name], k) for k in same}, (command, name)
            assert action.default is None  # "not given": the file's, then the preset's, then the network's default
        assert flags["--arch"].nargs == ("+" if command == "report" else None)


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def canonical(tmp_path):
    model = st.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2)
    path = tmp_path / "unet.safetensors"
    st.save_weights(model, path)
    return path


def test_pt_and_weights_h5_written_by_segparity_record_the_spec_and_convert_needs_no_flags(tmp_path, capsys, canonical):
    for name in ("unet.pt", "unet.weights.h5", "back.safetensors"):
        source = {"unet.pt": canonical, "unet.weights.h5": tmp_path / "unet.pt",
                  "back.safetensors": tmp_path / "unet.weights.h5"}[name]
        status, out, err = _run(capsys, "convert", source, tmp_path / name)
        assert status == 0, err
    assert (tmp_path / "back.safetensors").read_bytes() == canonical.read_bytes()
    spec = recorded_spec(canonical)
    assert recorded_spec(tmp_path / "unet.pt") == spec == recorded_spec(tmp_path / "unet.weights.h5")
    with zipfile.ZipFile(tmp_path / "unet.pt") as archive:  # where torch keeps extra files; torch.load ignores it
        assert [n.split("/", 1)[1] for n in archive.namelist() if n.endswith("segparity.json")] == ["extra/segparity.json"]
    state = torch.load(tmp_path / "unet.pt", weights_only=True)  # still a plain state_dict
    st.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2).load_state_dict(state)
    with h5py.File(tmp_path / "unet.weights.h5", "r") as handle:
        assert json.loads(handle.attrs[H5_ATTRIBUTE])["spec"]["name"] == "unet"


def test_a_pt_written_elsewhere_needs_arch_and_says_so(tmp_path, capsys):
    model = st.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    status, _, err = _run(capsys, "convert", tmp_path / "plain.pt", tmp_path / "plain.safetensors")
    assert status == 2 and "plain.pt does not record the architecture: give --arch NAME" in err
    status, _, err = _run(capsys, "convert", tmp_path / "plain.pt", tmp_path / "plain.safetensors", "--arch", "unet",
                          "--model-option", "base_channels=4", "--model-option", "depth=2")  # in_channels 3, 2 classes
    assert status == 0, err


def test_flags_that_disagree_with_the_file_name_both_values(tmp_path, capsys, canonical):
    status, _, err = _run(capsys, "diff", "--arch", "unet", "--weights", canonical, "--model-option", "depth=3")
    assert status == 2 and "depth: " + str(canonical) + " records 2, --model-option depth=3 gives 3" in err
    status, _, err = _run(capsys, "convert", canonical, tmp_path / "x.pt", "--arch", "unet", "--preset", "lesson-segparity")
    assert status == 2 and "num_classes: " + str(canonical) + " records 2, --preset lesson-segparity gives 1" in err
    status, _, err = _run(capsys, "report", "--arch", "segnet", "--weights", canonical)
    assert status == 2 and "records a unet" in err and "--arch gives segnet" in err
    with pytest.raises(CheckpointError, match="records a unet"):
        from segparity.model_flags import resolve_spec

        resolve_spec(cli.build_parser().parse_args(["diff", "--arch", "fcn"]), recorded_spec(canonical),
                     source=str(canonical))


def test_diff_and_report_take_the_architecture_from_the_weights(tmp_path, capsys, canonical):
    status, out, err = _run(capsys, "diff", "--weights", canonical, "--size", "32", "--no-floor")
    assert status == 0, err
    assert "layer diff of unet(depth=2, padding='same')" in out
    status, out, err = _run(capsys, "diff", "--arch", "unet", "--weights", canonical, "--size", "32", "--no-floor",
                            "--model-option", "base_channels=4", "--in-channels", "3")  # agreeing flags are fine
    assert status == 0, err
    status, out, err = _run(capsys, "report", "--weights", canonical)
    assert status == 0, err
    assert "unet [unet(depth=2, padding='same') 2x3x32x32 w:unet.safetensors]" in out
    assert "(1 configuration," in out
