"""A training run's folder: configuration, split, per-epoch checkpoints, metrics, plots.

Layout of ``--out DIR``::

    config.json                  the TrainConfig (a resumed run must match it, epochs and device aside)
    split.json                   the train/val/test keys
    checkpoints/epoch_0003/      weights.safetensors (canonical), optimizer.safetensors, state.json
    checkpoints/latest.json      {"checkpoint": "epoch_0003"}: the last complete checkpoint
    metrics.csv                  one row per finished epoch, columns segparity.training.config.COLUMNS
    weights.safetensors          the final weights (canonical), written when the run ends
    learning_curves.png, predictions.png

Every file is written atomically; a checkpoint folder is filled under a temporary name and renamed, and
only then does ``latest.json`` point at it, so a run killed at any moment resumes from a complete
epoch, and rows in ``metrics.csv`` never run ahead of the weights.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from segparity.atomic import atomic_write, default_mode
from segparity.weights.checkpoint import read_checkpoint, write_checkpoint
from segparity.training.config import COLUMNS, TrainConfig, differences

KEEP_CHECKPOINTS = 2


class RunError(ValueError):
    """A run folder that cannot be started or resumed as asked; the message names the folder."""


@dataclass
class Checkpoint:
    """A complete epoch to resume from: ``epoch`` epochs done, ``step`` optimiser steps taken."""

    epoch: int
    step: int
    rows: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]


class RunFolder:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"

    @property
    def split_file(self) -> Path:
        return self.out / "split.json"

    def start(self, config: TrainConfig, resume: bool) -> Checkpoint | None:
        """Check the folder against ``config``; return the checkpoint to resume from (None: fresh start
        or a resumed run killed before its first checkpoint). Writes nothing.

        A folder holding a run is never overwritten: without ``resume`` it is an error.
        """
        config_file = self.out / "config.json"
        if config_file.is_file():
            if not resume:
                raise RunError(f"{self.out} already holds a training run; pass --resume to continue it "
                               f"or choose another --out")
            stored = json.loads(config_file.read_text())
            diffs = differences(stored, config)
            if diffs:
                raise RunError(f"--resume: {config_file} was written with other settings:\n  " + "\n  ".join(diffs))
            latest = self.latest()
            if latest is not None and latest.epoch >= config.epochs:
                raise RunError(f"--resume: {self.out} has already finished {latest.epoch} epochs; "
                               f"pass a larger --epochs to train further")
            return latest
        if resume:
            raise RunError(f"--resume: {self.out} holds no run to resume (no config.json)")
        return None

    def save_config(self, config: TrainConfig) -> None:
        """Write ``config.json``: from here on the folder holds a run (called once data and model are ready,
        so a run that fails on bad arguments or data leaves no run behind)."""
        text = json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n"
        atomic_write(self.out / "config.json", lambda tmp: Path(tmp).write_text(text))

    def latest(self) -> Checkpoint | None:
        pointer = self.checkpoints / "latest.json"
        if not pointer.is_file():
            return None
        try:
            folder = self.checkpoints / json.loads(pointer.read_text())["checkpoint"]
            state = json.loads((folder / "state.json").read_text())
            weights, _ = read_checkpoint(folder / "weights.safetensors")
            with safe_open(str(folder / "optimizer.safetensors"), framework="numpy") as handle:
                optimizer = {key: handle.get_tensor(key) for key in handle.keys()}
            return Checkpoint(state["epoch"], state["step"], state["rows"], weights, optimizer)
        except Exception as error:  # a checkpoint damaged by hand (ours are written atomically)
            raise RunError(f"--resume: the checkpoint named in {pointer} cannot be read: {error}") from error

    def save_epoch(self, rows: list[dict[str, Any]], step: int, weights: dict[str, np.ndarray],
                   optimizer: dict[str, np.ndarray], spec) -> None:
        """Write the checkpoint after epoch ``len(rows)``, point ``latest.json`` at it, rewrite
        ``metrics.csv`` and drop checkpoints older than the last ``KEEP_CHECKPOINTS``."""
        epoch = len(rows)
        name = f"epoch_{epoch:04d}"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.checkpoints))
        os.chmod(building, default_mode(folder=True))  # mkdtemp's 0700 would outlive the rename
        try:
            write_checkpoint(building / "weights.safetensors", weights, spec)
            tensors = {key: np.ascontiguousarray(value) for key, value in optimizer.items()}
            atomic_write(building / "optimizer.safetensors", lambda tmp: save_file(tensors, tmp))  # safetensors writes 0600
            (building / "state.json").write_text(json.dumps({"epoch": epoch, "step": step, "rows": rows}, indent=1))
            if (self.checkpoints / name).exists():  # left by a run killed after this rename, before latest.json
                shutil.rmtree(self.checkpoints / name)
            building.rename(self.checkpoints / name)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        text = json.dumps({"checkpoint": name}) + "\n"
        atomic_write(self.checkpoints / "latest.json", lambda tmp: Path(tmp).write_text(text))
        self.write_metrics(rows)
        for old in sorted(self.checkpoints.glob("epoch_*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.out / "metrics.csv", lambda tmp: Path(tmp).write_text(buffer.getvalue()))

    def save_final(self, weights: dict[str, np.ndarray], spec) -> Path:
        return write_checkpoint(self.out / "weights.safetensors", weights, spec)


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as numbers."""
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
