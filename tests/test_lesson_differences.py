"""docs/lesson.md's table of the differences between the lesson's two exercises: every number it quotes is
measured here (or, for the training runs, read from the checked-in ``benchmarks/results/2026-12-06-lesson-runs.json``
that ``python -m benchmarks.lesson_runs`` wrote), and the page must quote the measured value.

Network effects are measured on the PyTorch exercise's SegNet (``segnet``, preset ``lesson-pytorch``, torch seed 0)
written out below as a function in which each of the TensorFlow exercise's choices can be switched on alone, on 8
synthetic lesion images (64x64, training-mode BatchNorm, as training sees it): the change of the output logits
(before the sigmoid), max abs over the output's own largest magnitude. The function with no switch on is checked
against segparity's model first, so the switches act on the exercise's real network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmentation_torch import build_model
from segparity.data.dataset import synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "lesson.md"
RUNS = ROOT / "benchmarks" / "results" / "2026-12-06-lesson-runs.json"
TF_CHOICES = ("bn_before_relu", "conv_before_upsample", "keras_eps", "half_pixel")


def segnet_logits(model, x: torch.Tensor, *, bn_before_relu=False, conv_before_upsample=False, keras_eps=False,
                  half_pixel=False) -> torch.Tensor:
    """The PyTorch exercise's SegNet as a function of ``model``'s weights (training-mode BatchNorm, no running
    statistics touched), logits before its sigmoid; each switch takes the TensorFlow exercise's choice instead."""
    eps = 1e-3 if keras_eps else 1e-5

    def bn(name, y):
        layer = getattr(model, name)
        return F.batch_norm(y, None, None, layer.weight, layer.bias, training=True, eps=eps)

    def act_bn(name, y):
        return F.relu(bn(name, y)) if bn_before_relu else bn(name, F.relu(y))

    def up(y):
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=not half_pixel)

    def conv(name, y):
        return getattr(model, name)(y)

    for i in range(4):
        x = F.max_pool2d(act_bn(f"bn{i}", conv(f"enc_conv{i}", x)), 2)
    x = conv("bottleneck_conv", x)
    for i in range(3):
        x = up(conv(f"dec_conv{i}", x)) if conv_before_upsample else conv(f"dec_conv{i}", up(x))
        x = act_bn(f"dec_bn{i}", x)
    return conv("dec_conv3", up(x))


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    return measure()


def measure() -> dict[str, float]:
    """Every network number of the table (``python -c "from tests.test_lesson_differences import measure; ..."``)."""
    torch.manual_seed(0)
    model = build_model("segnet", preset="lesson-pytorch").train()
    data = synthetic_dataset(8, (64, 64), 2, seed=0)
    x = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(data.masks).float()[:, None]
    values: dict[str, float] = {}
    with torch.no_grad():
        base = segnet_logits(model, x)
        # the function is the exercise's network: segparity's model (ending in its sigmoid) gives sigmoid(base)
        torch.testing.assert_close(model(x), torch.sigmoid(base), rtol=1e-5, atol=1e-6)
        scale = float(base.abs().max())
        for choice in TF_CHOICES:
            values[choice] = float((segnet_logits(model, x, **{choice: True}) - base).abs().max()) / scale
        values["all_four"] = float((segnet_logits(model, x, **dict.fromkeys(TF_CHOICES, True)) - base).abs().max()) / scale
    # sigmoid, then a with-logits loss: the floor a perfect prediction cannot go below, and the gradient it leaves
    perfect = y.clone()
    values["floor_perfect"] = float(F.binary_cross_entropy_with_logits(perfect, y))
    values["floor_foreground"] = float(F.binary_cross_entropy_with_logits(torch.ones(1), torch.ones(1)))
    values["floor_background"] = float(F.binary_cross_entropy_with_logits(torch.zeros(1), torch.zeros(1)))
    values["lesion_fraction"] = float(y.mean())
    z = base.clone().requires_grad_(True)
    twice = torch.autograd.grad(F.binary_cross_entropy_with_logits(torch.sigmoid(z), y), z)[0]
    once = torch.autograd.grad(F.binary_cross_entropy_with_logits(z, y), z)[0]
    values["gradient_ratio"] = float(twice.abs().mean() / once.abs().mean())
    # torch's coupled weight decay 1e-6 (PyTorch exercise; none in the TF one) against the loss gradient it joins
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.binary_cross_entropy_with_logits(model(x), y), params)
    weight_norm = float(torch.sqrt(sum((p.detach() ** 2).sum() for p in params)))
    grad_norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
    values["weight_decay_ratio"] = 1e-6 * weight_norm / grad_norm
    # thresholds: logits > 0.5 is probability > 0.62
    values["threshold_probability"] = float(torch.sigmoid(torch.tensor(0.5)))
    return values


def bn_moving_fraction(momentum_torch: float, steps: int, recompute: bool) -> float:
    """The fraction of a constant batch mean a fresh BatchNorm's running mean reaches after ``steps`` training steps
    (twice as many updates when the skips are recomputed), measured with torch's layer."""
    layer = torch.nn.BatchNorm2d(1, momentum=momentum_torch).train()
    batch = torch.ones(2, 1, 4, 4)
    for _ in range(steps * (2 if recompute else 1)):
        layer(batch)
    return float(layer.running_mean[0])


def keras_moving_fraction(steps: int) -> float:
    """The same with Keras's own layer at its default momentum 0.99."""
    import keras

    layer = keras.layers.BatchNormalization()
    batch = np.ones((2, 4, 4, 1), np.float32)
    for _ in range(steps):
        layer(batch, training=True)
    return float(keras.ops.convert_to_numpy(layer.moving_mean)[0])


def test_switches_change_the_network_as_the_table_says(measured):
    """Each TF choice alone moves the PyTorch exercise's logits; the page quotes each measured change."""
    for choice in TF_CHOICES:
        assert measured[choice] > 1e-3, choice  # a real change, far above rounding
        assert_quoted(f"{measured[choice]:.2g}", choice)
    assert_quoted(f"{measured['all_four']:.2g}", "all_four")


def test_sigmoid_then_with_logits_loss(measured):
    """The PyTorch exercise's sigmoid before BCEWithLogitsLoss: a perfect prediction still scores log(1 + e^-1) on
    lesion pixels and log 2 on background, and the gradient through the second sigmoid is smaller."""
    assert measured["floor_foreground"] == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-6)
    assert measured["floor_background"] == pytest.approx(np.log(2.0), rel=1e-6)
    assert measured["floor_perfect"] == pytest.approx(measured["lesion_fraction"] * measured["floor_foreground"] +
                                                      (1 - measured["lesion_fraction"]) * measured["floor_background"],
                                                      rel=1e-5)
    assert measured["gradient_ratio"] < 0.5
    for key in ("floor_perfect", "gradient_ratio", "threshold_probability", "weight_decay_ratio"):
        assert_quoted(f"{measured[key]:.2g}", key)
    assert_quoted(f"log(1+e⁻¹) = {measured['floor_foreground']:.3f}", "floor_perfect")
    assert_quoted(f"log 2 = {measured['floor_background']:.3f}", "floor_perfect")
    assert_quoted(f"{100 * measured['lesion_fraction']:.0f} % lesion", "floor_perfect")


def test_batchnorm_statistics_move_as_the_table_says():
    """Keras's momentum 0.99 against torch's 0.1, and the recomputed skips' double update, with the layers
    themselves: the running mean's fraction of the batch mean after the exercises' first epoch on PH2 (6 steps of
    32 for 180 images; 3 of 64 for 160)."""
    torch_epoch = bn_moving_fraction(0.1, 6, recompute=False)
    keras_epoch = keras_moving_fraction(3)
    assert torch_epoch == pytest.approx(1 - 0.9 ** 6, rel=1e-5)
    assert keras_epoch == pytest.approx(1 - 0.99 ** 3, rel=1e-4)
    assert_quoted(f"{torch_epoch:.2g}", "bn_momentum")
    assert_quoted(f"{keras_epoch:.2g}", "bn_momentum")
    once, twice = bn_moving_fraction(0.1, 1, recompute=False), bn_moving_fraction(0.1, 1, recompute=True)
    assert (once, twice) == (pytest.approx(0.1), pytest.approx(0.19))
    assert_quoted(f"{twice:.2g}", "recompute_skips")
    keras_once, keras_twice = keras_moving_fraction(1), keras_moving_fraction(2)
    assert keras_twice == pytest.approx(1 - 0.99 ** 2, rel=1e-4)
    assert_quoted(f"{keras_twice:.3g} instead of {keras_once:.2g} (Keras)", "recompute_skips")


def test_set_up_numbers():
    """The splits of PH2's 200 images, the steps of each set-up, and what the legacy decay does over them."""
    from segparity.data.splits import split_keys
    from segparity.training.config import LESSON_TRAINING, decayed_lr

    keys = [f"IMD{i:03d}" for i in range(200)]
    counts = {}
    for preset in ("lesson-pytorch", "lesson-tf"):
        setup = LESSON_TRAINING[preset]
        split = split_keys(keys, setup["split"], setup["seed"])
        counts[preset] = (len(split["train"]), len(split["val"]),
                          -(-len(split["train"]) // setup["batch_size"]) * setup["epochs"])
    assert counts == {"lesson-pytorch": (180, 20, 180), "lesson-tf": (160, 40, 300)}
    steps = counts["lesson-tf"][2]
    change = 1 - decayed_lr(3e-4, 8e-9, steps - 1) / 3e-4
    assert change == pytest.approx(8e-9 * (steps - 1), rel=1e-3)
    assert_quoted(f"{change:.2g}", "lr_decay")
    for preset, (train, val, total) in counts.items():
        assert_quoted(f"{train} / {val}", "split")
        assert_quoted(f"{total} steps", "steps")


def test_macs_of_the_two_decoders():
    """Convolving before up-sampling (the TF exercise's SegNet) does its decoder convs at a quarter of the pixels."""
    from segparity.networks.flops import step_flops
    from segparity.networks.specs import make_spec

    macs = {exercise: step_flops(make_spec("segnet", preset=preset), 1, 256, 256, "forward") / 2e9
            for exercise, preset in (("pytorch", "lesson-pytorch"), ("tf", "lesson-tf"))}
    assert macs["tf"] < macs["pytorch"]
    assert_quoted(f"{macs['pytorch']:.2g} G", "conv_before_upsample")
    assert_quoted(f"{macs['tf']:.2g} G", "conv_before_upsample")


def test_training_runs_are_quoted_and_their_loss_falls():
    """The checked-in runs: every run's training loss falls, and the page's run table holds each run's lesion Dice
    and IoU (and the TF exercise's at logit 0)."""
    document = json.loads(RUNS.read_text())
    runs = document["runs"]
    assert len(runs) == 16
    text = PAGE.read_text()
    for run in runs:
        rows = run["rows"]
        assert rows[-1]["loss"] < rows[0]["loss"], (run["arch"], run["exercise"], run["variant"], run["framework"])
        line = _run_line(text, run)
        scores = run["lesion"]["run"]
        assert f"{scores['dice']:.3f}" in line and f"{scores['iou']:.3f}" in line, line
        if "logit 0" in run["lesion"]:
            assert f"{run['lesion']['logit 0']['dice']:.3f}" in line, line
        assert f"{run['lesion']['batch statistics']['dice']:.3f}" in line, line


def _run_line(text: str, run: dict) -> str:
    pattern = rf"^\| {run['arch']} \| {run['exercise']} \| {run['variant']} \| {run['framework']} \|.*$"
    found = re.search(pattern, text, flags=re.M)
    assert found, f"docs/lesson.md: no run-table line for {pattern}"
    return found.group(0)


def assert_quoted(value: str, key: str) -> None:
    """The page's table row tagged ``key`` (a ``<!-- key -->`` comment in it) quotes ``value``."""
    rows = [line for line in PAGE.read_text().splitlines() if f"<!-- {key} -->" in line]
    assert rows, f"docs/lesson.md: no row tagged <!-- {key} -->"
    assert any(value in row for row in rows), f"docs/lesson.md, row {key}: measured {value}, quoted: {rows[0]}"
