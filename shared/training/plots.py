"""PNG figures of a run (matplotlib, Agg backend, written atomically): learning curves, prediction overlays,
and the two frameworks' loss curves of ``segparity compare-train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segparity.plotting import pyplot, save_png
from segparity.training.config import METRICS


# label k's tint in overlays and legends (0, background, is left untinted)
CLASS_COLOURS = np.array([[0, 0, 0], [1, 0.1, 0.1], [0.1, 0.9, 0.1], [0.2, 0.4, 1], [1, 0.9, 0], [1, 0, 1],
                          [0, 1, 1]], dtype=np.float32)




def plot_learning_curves(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Loss (left) and the ``METRICS`` (right) per epoch: train solid, validation dashed, a marker at every
    epoch (so one epoch draws a point), whole-number epoch ticks, each legend outside its data."""
    return save_png(learning_curves_figure(rows, title), path)


def learning_curves_figure(rows: list[dict[str, Any]], title: str):
    """The figure ``plot_learning_curves`` saves (returned open, for tests to inspect)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    epochs = [row["epoch"] for row in rows]
    left.plot(epochs, [row["loss"] for row in rows], "o-", color="C0", label="train")
    left.plot(epochs, [row["val_loss"] for row in rows], "s--", color="C0", label="validation")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    for metric, colour in zip(METRICS, ("C0", "C1", "C2")):
        right.plot(epochs, [row[metric] for row in rows], "o-", color=colour, label=f"train {metric}")
        right.plot(epochs, [row[f"val_{metric}"] for row in rows], "s--", color=colour, label=f"val {metric}")
    right.set(xlabel="epoch", ylim=(0, 1.02), title="metrics")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(min(epochs, default=1) - 0.5, max(epochs, default=1) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0)
    figure.suptitle(title)
    return figure


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``image (H, W, 3)`` in [0, 1] with each foreground label tinted its own colour (``CLASS_COLOURS``)."""
    tint = CLASS_COLOURS[np.minimum(labels, len(CLASS_COLOURS) - 1)]
    mixed = np.where((labels > 0)[..., None], (1 - alpha) * image + alpha * tint, image)
    return np.clip(mixed, 0.0, 1.0)


def plot_predictions(images: np.ndarray, masks: np.ndarray, predictions: np.ndarray, path: str | Path,
                     title: str, class_names: list[str] | None = None) -> Path:
    """A grid, one row per image: input, ground truth overlay, prediction overlay, with a legend of the
    class colours below. ``images (N, H, W, 3)`` in [0, 1], ``masks`` and ``predictions (N, H, W)`` integer
    labels; ``class_names[k]`` names label ``k`` (default "class k")."""
    return save_png(predictions_figure(images, masks, predictions, title, class_names), path)


def predictions_figure(images: np.ndarray, masks: np.ndarray, predictions: np.ndarray, title: str,
                       class_names: list[str] | None = None):
    """The figure ``plot_predictions`` saves (returned open, for tests to inspect)."""
    from matplotlib.patches import Patch

    plt = pyplot()
    n = len(images)
    figure, axes = plt.subplots(n, 3, figsize=(7.5, 2.4 * n + 0.8), squeeze=False, layout="constrained")
    for i in range(n):
        shown = np.clip(images[i], 0.0, 1.0)
        for ax, picture, name in zip(axes[i], (shown, overlay(shown, masks[i]), overlay(shown, predictions[i])),
                                     ("input", "ground truth", "prediction")):
            ax.imshow(picture)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name)
    labels = int(max(np.max(masks, initial=0), np.max(predictions, initial=0))) + 1
    names = list(class_names or []) + [f"class {k}" for k in range(len(class_names or []), labels)]
    handles = [Patch(facecolor="none", edgecolor="grey", label=f"0 {names[0]} (image untinted)")]
    handles += [Patch(color=CLASS_COLOURS[min(k, len(CLASS_COLOURS) - 1)], label=f"{k} {names[k]}")
                for k in range(1, max(labels, len(class_names or [])))]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    figure.suptitle(title)
    return figure


def plot_loss_comparison(result, path: str | Path, title: str) -> Path:
    """Both frameworks' per-step training loss (top); their relative difference, torch's own float32
    drift and the allowed bound, log scale (bottom). ``result`` is a ``segparity.parity.compare_train.Comparison``."""
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(result.steps, result.torch_loss, "-", label="torch")
    top.plot(result.steps, result.tf_loss, "--", label="tf (Keras)")
    top.set(ylabel="training loss", title=title)
    top.legend()
    bottom.semilogy(result.steps, np.maximum(result.relative(), 1e-12), "-", color="C3", label="|tf - torch| / |torch|")
    if result.reference_loss is not None:
        bottom.semilogy(result.steps, np.maximum(result.floor(), 1e-12), "-", color="C7", alpha=0.7,
                        label="torch float32 vs float64")
        bottom.semilogy(result.steps, result.allowed(), ":", color="k", label="allowed (SGD)")
    bottom.set(xlabel="step", ylabel="relative difference")
    bottom.legend(fontsize=8)
    return save_png(figure, path)


def plot_run(out: str | Path, rows: list[dict[str, Any]], val, predict, title: str, preview: int = 6,
             class_names: list[str] | None = None) -> None:
    """``learning_curves.png`` and ``predictions.png`` of a finished run in ``out``: ``val`` is the
    validation ``ArrayDataset``, ``predict(images (N, H, W, C)) -> labels (N, H, W)`` the framework's,
    ``class_names`` the legend's names of the labels (``segparity.training.config.class_names``)."""
    plot_learning_curves(rows, Path(out) / "learning_curves.png", title)
    inputs, masks = val.batch(np.arange(min(preview, len(val))), epoch=0)
    plot_predictions(val.images[:preview], masks, predict(inputs), Path(out) / "predictions.png", title, class_names)


def _segments(panoptic: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` panoptic map -> ``(H, W)`` one integer per (class, instance) segment."""
    return panoptic[..., 0].astype(np.int64) * (int(panoptic[..., 1].max()) + 1) + panoptic[..., 1]


def plot_panoptic(images: np.ndarray, maps: dict[str, np.ndarray], path: str | Path, title: str,
                  style: str = "panoptic") -> Path:
    """A grid, one row per image: the input, then each of ``maps`` (name -> ``(N, H, W, 2)`` panoptic map).

    ``style="instances"``: every thing instance its own colour (instance id 0 left as the image);
    ``style="panoptic"``: each class tinted as in ``overlay``, segment borders drawn in white.
    """
    from skimage.color import label2rgb
    from skimage.segmentation import mark_boundaries

    plt = pyplot()
    n, names = len(images), list(maps)
    figure, axes = plt.subplots(n, 1 + len(names), figsize=(2.5 * (1 + len(names)), 2.5 * n), squeeze=False)
    for i in range(n):
        shown = np.clip(images[i], 0.0, 1.0)
        pictures = [shown]
        for name in names:
            panoptic = maps[name][i]
            if style == "instances":
                pictures.append(label2rgb(panoptic[..., 1], image=shown, bg_label=0, alpha=0.55, saturation=1.0))
            else:
                pictures.append(mark_boundaries(overlay(shown, panoptic[..., 0]), _segments(panoptic), color=(1, 1, 1)))
        for ax, picture, name in zip(axes[i], pictures, ["input", *names]):
            ax.imshow(np.clip(picture, 0.0, 1.0))
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name.replace("_", " "), fontsize=9)
    figure.suptitle(title)
    return save_png(figure, path)
