"""A training loss that turns NaN stops `segparity train` (both frameworks) naming the epoch and step,
with exit status 1 and the last good checkpoint readable and resumable; files and folders a run writes
have the usual permissions, not the 0600/0700 of temporaries."""

import importlib
import json
import os
import stat

import numpy as np
import pytest

from segparity import cli
from segparity.atomic import atomic_write
from segparity.weights.checkpoint import read_checkpoint

# 12 synthetic samples -> 10 train, batch 4: 3 steps an epoch
ARGS = ["--arch", "unet", "--model-option", "base_channels=4", "--model-option", "depth=2", "--data", "synthetic",
        "--synthetic-samples", "12", "--image-size", "16", "--batch-size", "4", "--quiet"]


def _poison_after_first_epoch(monkeypatch, framework: str) -> None:
    """After epoch 1's checkpoint is taken (its weights read by ``to_canonical``), set one kernel to NaN:
    epoch 2's first step then has a NaN loss."""
    module = importlib.import_module(f"segmentation_{framework}.train")
    real = module.to_canonical
    calls = []

    def canonical_then_poison(model):
        weights = real(model)
        calls.append(1)
        if len(calls) == 1:
            if framework == "torch":
                next(model.parameters()).data.fill_(float("nan"))
            else:
                variable = model.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, dtype="float32"))
        return weights

    monkeypatch.setattr(module, "to_canonical", canonical_then_poison)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch, framework):
    out = tmp_path / "run"
    train = ["train", "--framework", framework, *ARGS, "--out", str(out)]
    with monkeypatch.context() as patch:
        _poison_after_first_epoch(patch, framework)
        status = cli.main([*train, "--epochs", "3"])
    err = capsys.readouterr().err
    assert status == 1, err
    # torch stops before step 4 (epoch 2's first); fit reports after applying it
    assert "training loss is nan at epoch 2, step 4" in err and "checkpoint of epoch 1" in err and "--resume" in err
    assert json.loads((out / "checkpoints" / "latest.json").read_text()) == {"checkpoint": "epoch_0001"}
    assert not list((out / "checkpoints").glob("epoch_0002*")) and not (out / "weights.safetensors").exists()
    weights, _ = read_checkpoint(out / "checkpoints" / "epoch_0001" / "weights.safetensors")
    assert all(np.isfinite(v).all() for v in weights.values())
    assert len((out / "metrics.csv").read_text().splitlines()) == 2  # header and epoch 1
    if framework == "torch":  # the run folder is shared code: one framework shows the stop left it resumable
        status = cli.main([*train, "--epochs", "2", "--resume"])
        assert status == 0, capsys.readouterr().err
        assert len((out / "metrics.csv").read_text().splitlines()) == 3


def test_files_and_folders_written_have_the_usual_permissions(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.json", lambda tmp: open(tmp, "w").write("{}"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        out = tmp_path / "run"
        assert cli.main(["train", "--framework", "torch", *ARGS, "--epochs", "1", "--out", str(out)]) == 0
        folders = [p for p in out.rglob("*") if p.is_dir()] + [out]
        files = [p for p in out.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"weights.safetensors", "metrics.csv", "config.json", "latest.json",
                                          "optimizer.safetensors", "learning_curves.png"}
        assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {"0o755"}, folders
        assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o644"}, files
        os.umask(0o027)
        assert stat.S_IMODE(atomic_write(tmp_path / "b.txt", lambda tmp: open(tmp, "w").write("")).stat().st_mode) == 0o640
    finally:
        os.umask(old)
    capsys.readouterr()
