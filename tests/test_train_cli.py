"""`segparity train` and `segparity compare-train` from the command line, on PH2 and MADS trees in their
real layouts (made here) and on synthetic data: bad data is named or, with --skip-bad, counted."""

import csv
import json

import numpy as np
import pytest
from skimage import io

from segparity import cli
from tests.test_data_files import make_mads, make_ph2

IDS = tuple(f"IMD{i:03d}" for i in range(2, 12))
NAMES = tuple(f"p_{i:03d}" for i in range(10))
TINY = ["--image-size", "16", "--batch-size", "4", "--epochs", "1", "--quiet"]


def _mads_folder(root):
    return root / "segmentation_full_body_mads_dataset_1192_img" / "segmentation_full_body_mads_dataset_1192_img"


def _run(capsys, *argv):
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_lesson_preset_trains_on_ph2(tmp_path, capsys):
    root = make_ph2(tmp_path / "ph2", ids=IDS)
    status, out, err = _run(capsys, "train", "--framework", "tf", "--arch", "unet", "--preset", "lesson-segparity",
                            "--data", f"ph2:{root}", "--out", str(tmp_path / "run"), *TINY)
    assert status == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["loss"], config["optimizer"], config["lr"], config["weight_decay"], config["seed"]) == \
        ("bce", "adam", 1e-3, 1e-6, 42)
    assert config["image_size"] == 16  # explicit argument over the preset's 256
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (9, 1, 0)  # the lesson's 90%
    assert "val_iou" in out


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_image_without_mask_is_named_or_skipped_and_counted(tmp_path, capsys, framework):
    root = make_ph2(tmp_path / "ph2", ids=IDS)
    lesion = root / "PH2Dataset" / "PH2 Dataset images" / "IMD005" / "IMD005_lesion" / "IMD005_lesion.bmp"
    lesion.unlink()
    args = ["train", "--framework", framework, "--arch", "unet", "--model-option", "base_channels=4",
            "--model-option", "depth=2", "--data", f"ph2:{root}", *TINY]
    status, _, err = _run(capsys, *args, "--out", str(tmp_path / "stops"))
    assert status == 2 and "IMD005" in err and "--skip-bad" in err
    assert not (tmp_path / "stops" / "config.json").exists()  # no run left behind
    status, _, err = _run(capsys, *args, "--skip-bad", "--out", str(tmp_path / "skips"))
    assert status == 0 and "IMD005" in err and "left out 1 bad pair(s); training on 9" in err
    split = json.loads((tmp_path / "skips" / "split.json").read_text())
    assert "IMD005" not in sum(split.values(), [])


def test_corrupt_image_and_odd_mask_values_are_named_or_skipped(tmp_path, capsys):
    root = make_mads(tmp_path / "mads", names=NAMES)
    folder = _mads_folder(root)
    (folder / "images" / "p_003.png").write_bytes(b"not a png at all")
    odd = np.zeros((12, 16), np.uint8)
    odd[2:5, 2:5] = 128
    io.imsave(folder / "masks" / "p_007.png", odd, check_contrast=False)
    args = ["train", "--framework", "torch", "--arch", "unet", "--model-option", "base_channels=4",
            "--model-option", "depth=2", "--data", f"mads:{root}", *TINY]
    status, _, err = _run(capsys, *args, "--out", str(tmp_path / "a"))
    assert status == 2 and "p_003.png" in err
    status, _, err = _run(capsys, *args, "--skip-bad", "--out", str(tmp_path / "b"))
    assert status == 0 and "p_003.png" in err and "p_007.png" in err and "holds values 0, 128" in err
    assert "left out 2 bad pair(s); training on 8" in err


@pytest.mark.parametrize("data, message", [("ph2:{empty}", "no 'PH2 Dataset images' folder"), ("mads:{missing}", "does not exist"),
                                           ("kaggle:{empty}", "data must be")])
def test_empty_or_wrong_folders_are_named(tmp_path, capsys, data, message):
    (tmp_path / "empty").mkdir()
    data = data.format(empty=tmp_path / "empty", missing=tmp_path / "missing")
    status, _, err = _run(capsys, "train", "--framework", "torch", "--arch", "unet", "--data", data,
                          "--out", str(tmp_path / "run"), *TINY)
    assert status == 2 and message in err, err
    assert err.startswith("segparity train: error:") and "Traceback" not in err


def test_resume_from_the_command_line(tmp_path, capsys):
    args = ["train", "--framework", "torch", "--arch", "unet", "--model-option", "base_channels=4",
            "--model-option", "depth=2", "--synthetic-samples", "16", "--out", str(tmp_path), *TINY]
    assert _run(capsys, *args)[0] == 0
    status, _, err = _run(capsys, *args)
    assert status == 2 and "already holds a training run" in err
    status, out, _ = _run(capsys, *[a if a != "1" else "2" for a in args], "--resume")
    assert status == 0 and "after 2 epochs" in out
    assert len(list(csv.DictReader(open(tmp_path / "metrics.csv")))) == 2
    # the run folder records every setting: --resume needs only --out and what changes (--epochs)
    status, out, err = _run(capsys, "train", "--framework", "torch", "--resume", "--epochs", "3", "--quiet",
                            "--out", str(tmp_path))
    assert status == 0 and "after 3 epochs" in out, err
    status, _, err = _run(capsys, "train", "--framework", "torch", "--resume", "--epochs", "4", "--out", str(tmp_path),
                          "--model-option", "depth=3")  # a flag given must agree with the run's
    assert status == 2 and "model_options: stored {'base_channels': 4, 'depth': 2}, now {'base_channels': 4, 'depth': 3}" in err


def test_compare_train_writes_steps_and_plot(tmp_path, capsys):
    status, out, err = _run(capsys, "compare-train", "--arch", "unet", "--model-option", "base_channels=4",
                            "--model-option", "depth=2", "--optimizer", "sgd", "--lr", "0.05",
                            "--synthetic-samples", "24", "--image-size", "16", "--batch-size", "4",
                            "--steps", "12", "--out", str(tmp_path), "--quiet")
    assert status == 0, out + err
    rows = list(csv.DictReader(open(tmp_path / "steps.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert float(rows[0]["abs_diff"]) <= 1e-6  # same weights, same first batch
    for row in rows:
        assert float(row["rel_diff"]) <= float(row["allowed"])
        assert float(row["allowed"]) >= 1e-4 and float(row["torch_float32_drift"]) < 1e-3
    assert io.imread(tmp_path / "loss_curves.png").ndim == 3
    assert "2 x that drift: none" in out
