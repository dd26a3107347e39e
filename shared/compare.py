"""``segparity compare-train``: the same network trained in both frameworks, step by step, side by side.

Both runs start from one canonical checkpoint (torch's initialiser, written to ``init.safetensors``),
read the same batches in the same order (``shared.data.dataset.batch_indices`` through each
framework's adapter), use the same loss and the same update rule (``segmentation_tf.optimizers``
computes torch's). No network here has dropout and augmentation is off, so any difference is
floating-point: the per-step loss difference is written to ``steps.csv`` and plotted in
``loss_curves.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.atomic import atomic_write
from shared.plots import plot_loss_comparison
from shared.training import TrainConfig, prepare_data

# Documented agreement of the per-step training loss (docs/training.md): relative difference
# |tf - torch| / |torch| over the first SGD_STEPS steps of plain SGD on the synthetic default.
SGD_STEPS = 50
SGD_RTOL = 1e-4


@dataclass
class Comparison:
    steps: np.ndarray  # 1..N
    torch_loss: np.ndarray
    tf_loss: np.ndarray
    weight_diff: float  # max |tf - torch| over every canonical tensor after the last step

    def relative(self) -> np.ndarray:
        return np.abs(self.tf_loss - self.torch_loss) / np.maximum(np.abs(self.torch_loss), 1e-12)

    def first_step_above(self, rtol: float) -> int | None:
        """The first step whose relative loss difference exceeds ``rtol`` (None: none does)."""
        above = np.nonzero(self.relative() > rtol)[0]
        return int(self.steps[above[0]]) if len(above) else None


def compare_train(config: TrainConfig, steps: int, out: str | Path, progress: bool = True) -> Comparison:
    """Train ``config`` for ``steps`` steps in torch and in Keras from the same initial weights; write
    ``init.safetensors``, ``steps.csv`` and ``loss_curves.png`` to ``out``."""
    if config.augment:
        raise ValueError("compare-train needs augment off: both runs must see identical batches")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config, out / "split.json", progress=progress)
    torch_train = importlib.import_module("segmentation_torch.train")
    tf_train = importlib.import_module("segmentation_tf.train")
    if config.init_weights is None:
        model = torch_train.build_run(config, config.outputs())[0]
        importlib.import_module("segmentation_torch.weights").save_weights(model, out / "init.safetensors")
        config = dataclasses.replace(config, init_weights=str(out / "init.safetensors"))
    torch_loss, torch_weights = torch_train.train_steps(dataclasses.replace(config, framework="torch"), data, steps)
    tf_loss, tf_weights = tf_train.train_steps(dataclasses.replace(config, framework="tf"), data, steps)
    result = Comparison(np.arange(1, steps + 1), torch_loss, tf_loss,
                        max(float(np.abs(tf_weights[key] - torch_weights[key]).max()) for key in torch_weights))
    write_steps(result, out / "steps.csv")
    plot_loss_comparison(result.steps, torch_loss, tf_loss, out / "loss_curves.png",
                         f"{config.arch}, {config.optimizer} lr {config.lr:g}, batch {config.batch_size}, {config.data}")
    return result


def write_steps(result: Comparison, path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "torch_loss", "tf_loss", "abs_diff", "rel_diff"])
    for step, a, b, rel in zip(result.steps, result.torch_loss, result.tf_loss, result.relative()):
        writer.writerow([int(step), f"{a:.9g}", f"{b:.9g}", f"{abs(b - a):.3e}", f"{rel:.3e}"])
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def summary_table(result: Comparison, marks: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200, 500)) -> str:
    """Loss in each framework and their difference at a few steps, as a plain-text table."""
    lines = [f"{'step':>6} {'torch loss':>12} {'tf loss':>12} {'|diff|':>10} {'rel diff':>10}"]
    rel = result.relative()
    for mark in [m for m in marks if m <= len(result.steps)] + ([len(result.steps)] if len(result.steps) not in marks else []):
        i = mark - 1
        lines.append(f"{mark:>6} {result.torch_loss[i]:>12.6f} {result.tf_loss[i]:>12.6f} "
                     f"{abs(result.tf_loss[i] - result.torch_loss[i]):>10.2e} {rel[i]:>10.2e}")
    return "\n".join(lines)
