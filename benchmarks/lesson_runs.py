"""The PH2 lesson's two training set-ups, short, on the synthetic lesion set, each beside the same run with
segparity's corrected defaults: the run table and picture of ``docs/lesson.md``.

    python -m benchmarks.lesson_runs --out runs/lesson [--image-size 64] [--samples 200] [--arch segnet unet]
        [--json benchmarks/results/lesson-runs.json] [--png docs/images/lesson_runs.png]

For each network (``segnet``, ``unet``), each exercise and each framework, two ``segparity train`` runs:

- ``exercise``: the exercise's preset (``lesson-pytorch`` / ``lesson-tf``): its network, quirks and training set-up
  (``segparity.training.config.LESSON_TRAINING``), at ``--image-size`` instead of 256, on ``--samples`` synthetic
  images (200, PH2's count, so the splits hold PH2's numbers of images: 180 / 20 and 160 / 40);
- ``corrected``: the same set-up with segparity's defaults where the exercise has a quirk: the network
  ``lesson-segparity`` (one logit, conv -> BN -> ReLU, up-sample then convolve, BN eps 1e-5 and momentum 0.1 in both
  frameworks, skips kept rather than recomputed) and labels at logit 0.

Each run is a run folder as ``segparity train`` writes it (``metrics.csv``, checkpoints, ``learning_curves.png``,
``predictions.png``) under ``OUT/<arch>-<exercise>-<variant>-<framework>``; a finished one is read, not retrained,
so the script resumes where it stopped. The JSON holds every run's set-up, its per-epoch rows and its lesion
(foreground) Dice and IoU on the held-out split from its final weights (``final_scores``: as labelled, at logit 0
for the ``lesson-tf`` exercise, and with BatchNorm on batch statistics). The figure draws validation
Dice per epoch. Each framework starts from its own initialiser (``seed`` 42), as the exercises do.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from segparity.atomic import atomic_write
from segparity.parity.machine import cpu_model
from segparity.plotting import pyplot, save_png
from segparity.training.config import LESSON_TRAINING, TrainConfig, make_config, prepare_data
from segparity.training.runs import read_metrics

EXERCISES = ("lesson-pytorch", "lesson-tf")
VARIANTS = ("exercise", "corrected")
FRAMEWORKS = ("torch", "tf")


def run_config(arch: str, exercise: str, variant: str, framework: str, image_size: int, samples: int) -> TrainConfig:
    """The run's ``TrainConfig``: the exercise's preset, or ``lesson-segparity`` with the exercise's set-up except
    its label threshold (so logit 0)."""
    common = dict(image_size=image_size, synthetic_samples=samples)
    if variant == "exercise":
        return make_config(framework, arch, preset=exercise, **common)
    setup = {key: value for key, value in LESSON_TRAINING[exercise].items() if key != "threshold"}
    return make_config(framework, arch, preset="lesson-segparity", **{**setup, **common})


def lesion_scores(labels: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Dice and IoU of label 1 (the lesion) over all pixels of the split."""
    tp = float(np.sum((labels == 1) & (masks == 1)))
    fp = float(np.sum((labels == 1) & (masks == 0)))
    fn = float(np.sum((labels == 0) & (masks == 1)))
    return {"dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0}


def held_out_outputs(config: TrainConfig, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's final weights on its validation split: the one output channel ``(N, H, W)`` with BatchNorm in
    inference mode (its running statistics, as the run's metrics use it) and in training mode (the statistics of
    each batch of ``batch_size`` held-out images), and the masks."""
    data = prepare_data(config, out / "split.json", resume=True, progress=False)
    images, size = data.val.images, config.batch_size
    if config.framework == "torch":
        import torch

        from segmentation_torch.registry import build_model
        from segmentation_torch.weights import load_weights
        model = load_weights(build_model(config.arch, in_channels=3, num_classes=config.outputs(), preset=config.preset,
                                         **config.build_options()), out / "weights.safetensors")
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        with torch.no_grad():
            inference = model.eval()(x)[:, 0].numpy()
            batches = np.concatenate([model.train()(x[i:i + size])[:, 0].numpy() for i in range(0, len(x), size)])
    else:
        import keras

        from segmentation_tf.registry import build_model
        from segmentation_tf.weights import load_weights
        model = load_weights(build_model(config.arch, in_channels=3, num_classes=config.outputs(), preset=config.preset,
                                         **config.build_options()), out / "weights.safetensors")
        inference = keras.ops.convert_to_numpy(model(images, training=False))[..., 0]
        batches = np.concatenate([keras.ops.convert_to_numpy(model(images[i:i + size], training=True))[..., 0]
                                  for i in range(0, len(images), size)])
    return inference, batches, data.val.masks


def final_scores(config: TrainConfig, out: Path) -> dict[str, dict[str, float]]:
    """Lesion Dice and IoU of the run's final weights on its held-out split: ``run`` as its metrics label them;
    ``logit 0`` for a logit labelled elsewhere (the TF exercise's ``logits > 0.5``); ``batch statistics``: the same
    labels with BatchNorm on each held-out batch's statistics instead of the running ones."""
    inference, batches, masks = held_out_outputs(config, out)
    threshold = config.label_threshold()
    scores = {"run": lesion_scores((inference > threshold).astype(np.int64), masks)}
    if threshold != 0.0 and not config.ends_in_sigmoid():
        scores["logit 0"] = lesion_scores((inference > 0).astype(np.int64), masks)
    scores["batch statistics"] = lesion_scores((batches > threshold).astype(np.int64), masks)
    return scores


def run_one(config: TrainConfig, out: Path) -> dict[str, Any]:
    """Train (or, when ``out`` already holds the finished run, read it: the script resumes where it stopped) and
    score. ``seconds``: the run's epochs, as ``metrics.csv`` times them (training, validation, checkpoint)."""
    if not (out / "weights.safetensors").is_file():
        if config.framework == "torch":
            from segmentation_torch.train import train
        else:
            from segmentation_tf.train import train
        train(config, out, resume=(out / "config.json").is_file(), progress=False)
    rows = read_metrics(out / "metrics.csv")
    return {"config": config.to_dict(), "label_threshold": config.label_threshold(), "rows": rows,
            "lesion": final_scores(config, out), "seconds": sum(row["seconds"] for row in rows)}


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Validation mean Dice per epoch: one panel per network and exercise; exercise solid, corrected
    dashed; torch blue, tf orange."""
    archs = sorted({run["arch"] for run in runs})
    plt = pyplot()
    figure, axes = plt.subplots(len(archs), len(EXERCISES), figsize=(12, 3.6 * len(archs)), layout="constrained",
                                squeeze=False)
    for row, arch in enumerate(archs):
        for col, exercise in enumerate(EXERCISES):
            ax = axes[row][col]
            for run in runs:
                if (run["arch"], run["exercise"]) != (arch, exercise):
                    continue
                epochs = [r["epoch"] for r in run["rows"]]
                ax.plot(epochs, [r["val_dice"] for r in run["rows"]], "-" if run["variant"] == "exercise" else "--",
                        color="C0" if run["framework"] == "torch" else "C1",
                        label=f"{run['framework']}, {run['variant']}")
            ax.set(title=f"{arch}, {exercise} set-up", xlabel="epoch", ylabel="val mean Dice", ylim=(0, 1.02))
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
    figure.suptitle("The lesson's set-ups on the synthetic lesion set: the exercise's network and quirks (solid) "
                    "and segparity's corrected defaults (dashed)")
    return save_png(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lesson_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the run folders")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--arch", nargs="+", default=["segnet", "unet"], choices=("segnet", "unet"))
    parser.add_argument("--framework", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--json", type=Path, help="write the summary here (default OUT/lesson_runs.json)")
    parser.add_argument("--png", type=Path, help="write the figure here (default OUT/lesson_runs.png)")
    args = parser.parse_args(argv)
    runs = []
    for arch in args.arch:
        for exercise in EXERCISES:
            for variant in VARIANTS:
                for framework in args.framework:
                    config = run_config(arch, exercise, variant, framework, args.image_size, args.samples)
                    out = args.out / f"{arch}-{exercise}-{variant}-{framework}"
                    result = run_one(config, out)
                    runs.append({"arch": arch, "exercise": exercise, "variant": variant, "framework": framework,
                                 **result})
                    last = result["rows"][-1]
                    print(f"{arch} {exercise} {variant} {framework}: loss {result['rows'][0]['loss']:.4f} -> "
                          f"{last['loss']:.4f}, val_loss {last['val_loss']:.4f}, lesion Dice "
                          f"{result['lesion']['run']['dice']:.3f}, IoU {result['lesion']['run']['iou']:.3f} "
                          f"({result['seconds']:.0f} s)", flush=True)
    environment = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "python": platform.python_version(),
                   **{name: metadata.version(name) for name in ("torch", "tensorflow", "keras", "numpy")},
                   "image_size": args.image_size, "samples": args.samples}
    document = {"environment": environment, "runs": runs}
    json_path = args.json or args.out / "lesson_runs.json"
    payload = json.dumps(document, indent=1) + "\n"
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(payload))
    plot(runs, args.png or args.out / "lesson_runs.png")
    print(f"summary in {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
