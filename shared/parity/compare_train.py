"""``segparity compare-train``: the same network trained in both frameworks, step by step, side by side.

Both runs start from one canonical checkpoint (torch's initialiser, written to ``init.safetensors``),
read the same batches in the same order (``segparity.data.dataset.batch_indices`` through each
framework's adapter), use the same loss and the same update rule (``segmentation_tf.optimizers``
computes torch's). No network here has dropout and augmentation is off, so any difference is
floating-point: the per-step loss difference is written to ``steps.csv`` and plotted in
``loss_curves.png``, next to torch's own float32 drift (torch float32 against torch float64, same
weights and batches), which is what the difference is judged against.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segparity.atomic import atomic_write
from segparity.training.plots import plot_loss_comparison
from segparity.training.config import TrainConfig, prepare_data

# Documented agreement of the per-step training loss (docs/training.md), over the first SGD_STEPS
# steps of plain SGD: |tf - torch| / |torch| <= SGD_RTOL + 2 * (torch's own float32 drift so far),
# where the drift is |torch float32 - torch float64| / |torch float64| on the same run, its running
# maximum up to that step. The same rule as the parity report's atol (docs/pitfalls.md, float32_floor).
SGD_STEPS = 50
SGD_RTOL = 1e-4


@dataclass
class Comparison:
    steps: np.ndarray  # 1..N
    torch_loss: np.ndarray
    tf_loss: np.ndarray
    reference_loss: np.ndarray | None  # torch in float64 on the same run (None when the run is float64)
    weight_diff: float  # max |tf - torch| over every canonical tensor after the last step

    def relative(self) -> np.ndarray:
        """|tf - torch| / |torch| per step."""
        return np.abs(self.tf_loss - self.torch_loss) / np.maximum(np.abs(self.torch_loss), 1e-12)

    def floor(self) -> np.ndarray:
        """torch's own float32 drift per step: |torch - torch float64| / |torch float64| (0 in float64)."""
        if self.reference_loss is None:
            return np.zeros_like(self.torch_loss)
        return np.abs(self.torch_loss - self.reference_loss) / np.maximum(np.abs(self.reference_loss), 1e-12)

    def allowed(self) -> np.ndarray:
        """The documented per-step bound: ``SGD_RTOL + 2 * running max of floor()``."""
        return SGD_RTOL + 2 * np.maximum.accumulate(self.floor())

    def first_step_outside(self) -> int | None:
        """The first step whose relative difference exceeds ``allowed()`` (None: none does)."""
        outside = np.nonzero(self.relative() > self.allowed())[0]
        return int(self.steps[outside[0]]) if len(outside) else None

    def first_step_above(self, rtol: float) -> int | None:
        """The first step whose relative difference exceeds ``rtol`` (None: none does)."""
        above = np.nonzero(self.relative() > rtol)[0]
        return int(self.steps[above[0]]) if len(above) else None


def compare_train(config: TrainConfig, steps: int, out: str | Path, dtype: str = "float32",
                  progress: bool = True) -> Comparison:
    """Train ``config`` for ``steps`` steps in torch and in Keras from the same initial weights, in
    ``dtype``; in float32, torch also runs in float64 to measure its own drift. Writes
    ``init.safetensors``, ``steps.csv`` and ``loss_curves.png`` to ``out``."""
    if config.augment:
        raise ValueError("compare-train needs augment off: both runs must see identical batches")
    if config.task != "semantic":
        raise ValueError(f"compare-train compares semantic training; task {config.task!r} is checked by the "
                         f"parity report's two-headed U-Net rows (embedding, discriminative loss, its gradients)")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    out = Path(out)
    if (out / "config.json").exists():
        raise ValueError(f"{out} holds a training run (config.json); choose another --out for compare-train")
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config, out / "split.json", progress=progress)
    torch_train = importlib.import_module("segmentation_torch.train")
    tf_train = importlib.import_module("segmentation_tf.train")
    if config.init_weights is None:
        model = torch_train.build_run(config, config.outputs())[0]
        importlib.import_module("segmentation_torch.weights").save_weights(model, out / "init.safetensors")
        config = dataclasses.replace(config, init_weights=str(out / "init.safetensors"))
    runs = [("torch", dtype), ("tf", dtype)] + ([("torch", "float64")] if dtype == "float32" else [])
    results = {}
    for framework, precision in tqdm(runs, desc="compare-train", unit="run", disable=not progress or None):
        trainer = torch_train if framework == "torch" else tf_train
        results[framework, precision] = trainer.train_steps(dataclasses.replace(config, framework=framework),
                                                           data, steps, precision)
    (torch_loss, torch_weights), (tf_loss, tf_weights) = results["torch", dtype], results["tf", dtype]
    reference = results["torch", "float64"][0] if dtype == "float32" else None
    result = Comparison(np.arange(1, steps + 1), torch_loss, tf_loss, reference,
                        max(float(np.abs(tf_weights[key] - torch_weights[key]).max()) for key in torch_weights))
    write_steps(result, out / "steps.csv")
    plot_loss_comparison(result, out / "loss_curves.png",
                         f"{config.arch}, {config.optimizer} lr {config.lr:g}, batch {config.batch_size}, {dtype}")
    return result


def write_steps(result: Comparison, path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "torch_loss", "tf_loss", "abs_diff", "rel_diff", "torch_float32_drift", "allowed"])
    for row in zip(result.steps, result.torch_loss, result.tf_loss, result.relative(), result.floor(), result.allowed()):
        step, a, b, rel, floor, allowed = row
        writer.writerow([int(step), f"{a:.9g}", f"{b:.9g}", f"{abs(b - a):.3e}", f"{rel:.3e}", f"{floor:.3e}", f"{allowed:.3e}"])
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def summary_table(result: Comparison, marks: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200, 500)) -> str:
    """Loss in each framework and their difference at a few steps, as a plain-text table."""
    lines = [f"{'step':>6} {'torch loss':>12} {'tf loss':>12} {'|diff|':>10} {'rel diff':>10} {'torch drift':>11} {'allowed':>9}"]
    rel, floor, allowed = result.relative(), result.floor(), result.allowed()
    for mark in [m for m in marks if m <= len(result.steps)] + ([len(result.steps)] if len(result.steps) not in marks else []):
        i = mark - 1
        lines.append(f"{mark:>6} {result.torch_loss[i]:>12.6f} {result.tf_loss[i]:>12.6f} "
                     f"{abs(result.tf_loss[i] - result.torch_loss[i]):>10.2e} {rel[i]:>10.2e} {floor[i]:>11.2e} {allowed[i]:>9.2e}")
    return "\n".join(lines)
