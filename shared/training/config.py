"""What a training run is, framework-neutrally: its configuration, its data, its loss, its metric columns.

``segmentation_torch/train.py`` and ``segmentation_tf/train.py`` both start from a ``TrainConfig``,
get their arrays from ``prepare_data`` and write the same ``COLUMNS`` to ``metrics.csv``, so two runs
differ only in the framework.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segparity.data.dataset import ArrayDataset, load_samples, synthetic_dataset
from segparity.data.mads import find_mads
from segparity.data.ph2 import find_ph2
from segparity.data.preprocess import Augment
from segparity.data.samples import DatasetError, Skipped
from segparity.data.splits import load_split, save_split, split_keys
from segparity.networks.geometry import nearest_sizes
from segparity.networks.specs import make_spec
from segparity.networks.torchvision_segmentation import TORCHVISION_SPECS
from segparity.data.synthetic import TASKS, synthetic_class_names, task_classes

FRAMEWORKS = ("torch", "tf")
OPTIMIZERS = ("sgd", "adam")
DATASETS = ("synthetic", "ph2", "mads")
# CLI loss name -> loss class in segmentation_{torch,tf}/losses.py
LOSSES = {"bce": "BinaryCrossEntropyLoss", "ce": "CrossEntropyLoss", "dice": "DiceLoss", "jaccard": "JaccardLoss",
          "tversky": "TverskyLoss", "focal": "FocalLoss", "lovasz": "LovaszLoss"}
METRICS = ("iou", "dice", "accuracy")  # mean IoU, mean Dice, pixel accuracy, as in segparity.reference.metrics
COLUMNS = ("epoch", "loss", *METRICS, "val_loss", *(f"val_{m}" for m in METRICS), "lr", "seconds")

# The PH2 lesson's two exercises' training set-ups (../lesson-notes, docs/lesson.md), set by the model presets of
# the same name; explicit arguments override them. The exercises seed numpy's and their framework's generators with
# 42; segparity's seed 42 draws its own split and batch order (segparity.data.splits), so the sets are not the
# exercises' images. One logit; on synthetic data a binary set (disks on a noisy background, the lesion's stand-in).
# "lesson-segparity" (segparity's version of the network) trains with the PyTorch set-up.
_PYTORCH_EXERCISE = dict(num_classes=1, synthetic_classes=2, image_size=256, loss="bce", optimizer="adam", lr=1e-3,
                         weight_decay=1e-6, batch_size=32, epochs=30, split=(0.9, 0.1, 0.0), seed=42)
LESSON_TRAINING: dict[str, dict[str, Any]] = {
    "lesson-pytorch": _PYTORCH_EXERCISE,
    # Adam(learning_rate=3e-4, decay=8e-9): Keras 2's legacy decay; predictions thresholded as logits > 0.5
    "lesson-tf": dict(num_classes=1, synthetic_classes=2, image_size=256, loss="bce", optimizer="adam", lr=3e-4,
                      lr_decay=8e-9, batch_size=64, epochs=100, split=(0.8, 0.2, 0.0), seed=42, threshold=0.5),
    "lesson-segparity": _PYTORCH_EXERCISE,
}


def decayed_lr(lr: float, lr_decay: float, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) under Keras 2's legacy ``decay`` argument:
    ``lr * (1 / (1 + lr_decay * step))``, in Python floats (float64), as Keras 2 wrote it. ``lr_decay=0``
    keeps ``lr``. Both frameworks' ``optimizers.legacy_decay`` (torch: ``LambdaLR`` stepped per batch; Keras 3: a
    float64 schedule)."""
    return lr * (1.0 / (1.0 + lr_decay * step))


@dataclass(frozen=True)
class TrainConfig:
    """Every choice that changes a run's numbers (``device``, ``epochs`` and ``framework`` aside, a resumed run must
    match)."""

    framework: str  # "torch" or "tf"
    arch: str  # a name from segparity.networks.specs.list_models()
    data: str = "synthetic"  # "synthetic", "ph2:DIR" or "mads:DIR"
    preset: str | None = None  # model preset (segparity.networks.specs.PRESETS); the lesson's also set LESSON_TRAINING
    model_options: dict[str, Any] = field(default_factory=dict)  # extra build_model options, e.g. base_channels
    task: str = "semantic"  # "instance" / "panoptic": logits plus an embedding (synthetic data only), see segparity.reference.panoptic
    embedding_dim: int = 8  # instance and panoptic tasks: channels of the embedding (build_model's embedding_dim)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0  # L2 added to the gradient (torch's coupled form) in both frameworks
    lr_decay: float = 0.0  # Keras 2's legacy per-step decay: step t uses lr / (1 + lr_decay * t) (decayed_lr)
    loss: str | None = None  # a LOSSES name; None: "bce" for one output channel, "ce" otherwise
    image_size: int = 64  # images are resized (PH2, MADS) or drawn (synthetic) at image_size x image_size
    num_classes: int | None = None  # network outputs; None: synthetic_classes, or 1 (one logit) for PH2/MADS
    synthetic_classes: int = 3  # label classes of the synthetic data, background included
    synthetic_samples: int = 512
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test fractions
    seed: int = 0  # split, batch order, augmentation, synthetic data and the framework's initialiser
    augment: bool = False  # random flips and 90-degree rotations, seeded by (seed, epoch, index)
    skip_bad: bool = False  # leave out unreadable pairs (counted in the log) instead of stopping
    mask_threshold: int | None = None  # foreground = mask value > threshold, for lossily saved masks
    threshold: float | None = None  # one output channel: label 1 where it is above this; None: label_threshold()
    init_weights: str | None = None  # canonical checkpoint to start from instead of the framework's initialiser
    sync_batchnorm: bool = False  # distributed runs: BatchNorm statistics over the global batch (segparity.training.distributed)
    device: str = "cpu"

    def __post_init__(self) -> None:
        _choice("framework", self.framework, FRAMEWORKS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.loss is not None:
            _choice("loss", self.loss, tuple(LOSSES))
        for name in ("epochs", "batch_size", "image_size", "synthetic_classes", "synthetic_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.synthetic_classes < 2:
            raise ValueError(f"synthetic_classes must be >= 2 (background and one shape), got {self.synthetic_classes}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum!r}, {self.weight_decay!r}")
        if not self.lr_decay >= 0:
            raise ValueError(f"lr_decay must be >= 0, got {self.lr_decay!r}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        if self.threshold is not None and self.outputs() != 1:
            raise ValueError(f"threshold {self.threshold}: only a one-channel output is thresholded; this network has "
                             f"{self.outputs()} output channels, labelled by argmax")
        parse_data(self.data)
        _choice("task", self.task, TASKS)
        if self.task != "semantic":
            if parse_data(self.data)[0] != "synthetic":
                raise ValueError(f"task {self.task!r} needs instance masks: only --data synthetic has them, got {self.data!r}")
            if "embedding_dim" in self.model_options:
                raise ValueError("give the embedding size as embedding_dim (--embedding-dim), not as a model option")
            if not isinstance(self.embedding_dim, int) or self.embedding_dim < 1:
                raise ValueError(f"embedding_dim must be a positive integer, got {self.embedding_dim!r}")
            task_classes(self.task, self.synthetic_classes)
        loss_description(self)
        if self.arch in TORCHVISION_SPECS:
            raise ValueError(f"arch {self.arch!r}: segparity train does not train torchvision's models yet (a dict "
                             "output and an auxiliary loss); their training parity is `segparity report --arch "
                             f"{self.arch}` (loss, gradients, one SGD and one Adam step)")
        spec = make_spec(self.arch, in_channels=3, num_classes=self.outputs(), preset=self.preset, **self.build_options())
        out = spec.output_size(self.image_size)
        if out is None:
            nearest = ", ".join(map(str, nearest_sizes(self.image_size, spec.output_size)))
            raise ValueError(f"image_size {self.image_size} cannot go through {spec.describe()}: it needs "
                             f"{spec.size_rule()}; nearest valid sizes: {nearest}")
        if out != self.image_size:
            raise ValueError(f"{spec.describe()} maps {self.image_size}x{self.image_size} images to {out}x{out} logits; "
                             f"training needs logits the size of the mask (use padding='same')")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "split": list(self.split)}

    def build_options(self) -> dict[str, Any]:
        """``build_model`` options besides ``in_channels``, ``num_classes`` and ``preset``: the model options,
        and ``embedding_dim`` for the instance and panoptic tasks."""
        if self.task == "semantic":
            return dict(self.model_options)
        return {**self.model_options, "embedding_dim": self.embedding_dim}

    def label_threshold(self) -> float:
        """Where a one-channel output becomes label 1 (metrics, pictures): ``threshold`` if given, else 0.5 for a
        network that ends in a sigmoid (the PyTorch exercise's, ``output_sigmoid``) and 0 for logits."""
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.ends_in_sigmoid() else 0.0

    def ends_in_sigmoid(self) -> bool:
        """Whether the network's output is a probability (``output_sigmoid``, the PyTorch exercise's) not a logit."""
        spec = make_spec(self.arch, in_channels=3, num_classes=self.outputs(), preset=self.preset, **self.build_options())
        return bool(getattr(spec, "output_sigmoid", False))

    def outputs(self) -> int:
        """Network output channels."""
        if self.num_classes is not None:
            return self.num_classes
        return self.synthetic_classes if parse_data(self.data)[0] == "synthetic" else 1

    def loss_name(self) -> str:
        return self.loss or ("bce" if self.outputs() == 1 else "ce")


def _choice(name: str, value, known: tuple) -> None:
    if value not in known:
        raise ValueError(f"{name} must be one of {', '.join(map(str, known))}, got {value!r}")


def make_config(framework: str, arch: str, preset: str | None = None, **given: Any) -> TrainConfig:
    """``TrainConfig`` from the arguments given (None means not given): given > the lesson presets' training
    set-ups (``LESSON_TRAINING``) > defaults."""
    values = {key: value for key, value in given.items() if value is not None}
    values = {**LESSON_TRAINING.get(preset, {}), **values}
    return TrainConfig(framework=framework, arch=arch, preset=preset, **values)


def differences(stored: dict[str, Any], config: TrainConfig) -> list[str]:
    """Settings of ``config`` that differ from a stored run's (``epochs``, ``device`` and ``framework`` may change
    on resume: a run resumes in the other framework through the canonical weights and optimiser state)."""
    now = json.loads(json.dumps(config.to_dict()))
    # a setting added after the run was stored (lr_decay, threshold) had its default then
    stored = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)
                 if f.default is not dataclasses.MISSING and f.name not in stored}, **stored}
    return [f"{key}: stored {stored.get(key)!r}, now {now[key]!r}" for key in now
            if key not in ("epochs", "device", "framework") and stored.get(key) != now[key]]


def parse_data(text: str) -> tuple[str, Path | None]:
    """``"synthetic"`` -> ("synthetic", None); ``"ph2:DIR"`` / ``"mads:DIR"`` -> (name, Path(DIR))."""
    name, _, folder = text.partition(":")
    if name not in DATASETS or (name == "synthetic") != (folder == ""):
        raise ValueError(f"data must be 'synthetic', 'ph2:DIR' or 'mads:DIR', got {text!r}")
    return name, Path(folder) if folder else None


def loss_description(config: TrainConfig) -> tuple[str, dict[str, Any]]:
    """``(class name, kwargs)`` of the run's loss, for ``segparity.reference.losses.build``: binary mode for one
    output channel, multiclass otherwise (BCE needs one output: use "ce" for several)."""
    name, outputs = config.loss_name(), config.outputs()
    if name == "bce" and outputs != 1:
        raise ValueError(f"loss 'bce' needs a network with one output channel, this one has {outputs}; use --loss ce")
    if name == "ce":
        if outputs == 1:
            raise ValueError("loss 'ce' needs at least two output channels; use --loss bce for one")
        return LOSSES[name], {}
    return LOSSES[name], {} if name == "bce" else {"mode": "binary" if outputs == 1 else "multiclass"}


@dataclass
class TrainData:
    """The run's train and validation sets, the number of label classes, and the pairs left out."""

    train: ArrayDataset
    val: ArrayDataset
    num_labels: int
    skipped: list[str]
    things: tuple[int, ...] = ()  # instance and panoptic tasks: the classes with instances...
    stuffs: tuple[int, ...] = ()  # ...and those without (segparity.data.synthetic.task_classes)


def prepare_data(config: TrainConfig, split_file: Path, resume: bool = False, progress: bool = True,
                 save: bool = True) -> TrainData:
    """Load (or draw) the data, split it by ``config.seed`` and store the split in ``split_file`` (unless not
    ``save``: a distributed run's processes other than rank 0); when resuming, the stored split is read and
    checked against the data instead."""
    name, folder = parse_data(config.data)
    size = (config.image_size, config.image_size)
    skipped = Skipped(config.skip_bad)
    if name == "synthetic":
        data = synthetic_dataset(config.synthetic_samples, size, config.synthetic_classes, config.seed, task=config.task)
        num_labels = config.synthetic_classes
    else:
        samples, found_bad = (find_ph2 if name == "ph2" else find_mads)(folder, skip_bad=config.skip_bad)
        skipped.problems.extend(found_bad)
        data = load_samples(samples, size, skipped, config.mask_threshold, progress)
        num_labels = 2
        for problem in skipped.problems:
            print(f"skipped: {problem}", file=sys.stderr)
        if skipped.problems:
            print(f"--skip-bad: left out {len(skipped.problems)} bad pair(s); training on {len(data)}", file=sys.stderr)
    if config.outputs() not in (1, num_labels):
        raise ValueError(f"num_classes {config.outputs()} does not fit data with {num_labels} label classes "
                         f"(use {num_labels}, or 1 for a binary one-logit network)")
    if resume:
        split = load_split(split_file, list(data.keys))
    else:
        split = split_keys(list(data.keys), config.split, config.seed)
    if not split["train"] or not split["val"]:
        raise DatasetError(f"the split {config.split} of {len(data)} samples leaves an empty train or val set")
    if not resume and save:
        save_split(split, split_file)
    augment = Augment(hflip=True, vflip=True, rot90=True) if config.augment else Augment()
    train = dataclasses.replace(data.subset(split["train"]), augment=augment, seed=config.seed)
    things, stuffs = task_classes(config.task, num_labels) if config.task != "semantic" else ((), ())
    return TrainData(train, data.subset(split["val"]), num_labels, list(skipped.problems), things, stuffs)


def class_names(config: TrainConfig) -> list[str]:
    """What each label of ``config``'s data is, for picture legends: the synthetic shapes, or PH2's lesion and
    MADS's person against the background."""
    kind = parse_data(config.data)[0]
    if kind == "synthetic":
        return synthetic_class_names(config.synthetic_classes, config.task)
    return ["background", "lesion" if kind == "ph2" else "person"]


def epoch_row(epoch: int, train: dict[str, float], val: dict[str, float], lr: float, seconds: float) -> dict[str, Any]:
    """One ``metrics.csv`` row: ``train`` and ``val`` map "loss" and each of ``METRICS`` to a number."""
    row = {"epoch": epoch + 1, **{key: float(train[key]) for key in ("loss", *METRICS)},
           **{f"val_{key}": float(val[key]) for key in ("loss", *METRICS)}, "lr": lr, "seconds": seconds}
    return {column: row[column] for column in COLUMNS}


class NonFiniteLossError(RuntimeError):
    """A training loss turned NaN or infinite: the run stops there, its last complete checkpoint kept."""


def check_finite_loss(loss: float, *, epoch: int, step: int, epochs_saved: int, out, cause: str = "") -> None:
    """Raise ``NonFiniteLossError`` if the training loss of optimiser step ``step`` (1-based, counted over
    the whole run) in epoch ``epoch`` (1-based) is NaN or infinite, naming both and what is kept in ``out``.
    ``cause``: what made it so, when known (e.g. the model's output holds NaN)."""
    if math.isfinite(loss):
        return
    kept = (f"the checkpoint of epoch {epochs_saved} in {out}/checkpoints is kept and resumes with --resume"
            if epochs_saved else f"no epoch finished, so {out} holds no checkpoint")
    raise NonFiniteLossError(f"training loss is {loss} at epoch {epoch}, step {step}{f' ({cause})' if cause else ''}; "
                             f"nothing of that epoch was saved: {kept} (a lower --lr may help)")
