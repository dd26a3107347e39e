"""`segparity train` in both frameworks: run folder, same columns, exact resume, atomic checkpoints,
canonical optimiser state that moves between frameworks."""

import csv
import json

import numpy as np
import pytest
from skimage import io

import segmentation_tf.train as tf_train
import segmentation_torch.train as torch_train
from segparity.weights.checkpoint import read_checkpoint
from segparity.training.runs import RunError, RunFolder
from segparity.training.config import COLUMNS, TrainConfig, make_config

TRAINERS = {"torch": torch_train, "tf": tf_train}
TINY = dict(synthetic_samples=24, image_size=16, model_options={"base_channels": 4, "depth": 2}, batch_size=8)


def _config(framework, **kwargs):
    return make_config(framework, "unet", **{**TINY, **kwargs})


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_run_folder_holds_metrics_checkpoints_and_plots(tmp_path, framework):
    rows = TRAINERS[framework].train(_config(framework, epochs=2), tmp_path, progress=False)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        assert [float(r["epoch"]) for r in reader] == [1.0, 2.0]
    assert len(rows) == 2 and all(np.isfinite(rows[-1][c]) for c in COLUMNS)
    assert 0.0 <= rows[-1]["val_iou"] <= 1.0
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text()) == {"checkpoint": "epoch_0002"}
    state = json.loads((tmp_path / "checkpoints" / "epoch_0002" / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 2 * 3  # 19 train samples in batches of 8
    tensors, spec = read_checkpoint(tmp_path / "weights.safetensors")
    assert spec.name == "unet" and spec.base_channels == 4
    for picture in ("learning_curves.png", "predictions.png"):
        assert io.imread(tmp_path / picture).ndim == 3
    assert json.loads((tmp_path / "split.json").read_text())["val"]


# Keras's SGD resume is left out to keep the suite under 5 minutes (each Keras run here is ~3 s of
# tracing): its momentum buffer goes through the same canonical optimiser state that
# test_optimizer_state_moves_between_frameworks[sgd] loads into Keras and steps from.
# The Adam cases run in .ci/run's slow step (the README command's 300 s budget; Keras Adam's, about 14 s, was the
# slowest default test); in the default run Keras resumes Adam in test_a_run_resumes_in_the_other_framework.
@pytest.mark.parametrize("framework, optimizer", [pytest.param("torch", "adam", marks=pytest.mark.slow), ("torch", "sgd"),
                                                  pytest.param("tf", "adam", marks=pytest.mark.slow)])
def test_resume_continues_exactly(tmp_path, framework, optimizer):
    # Adam with Keras 2's legacy decay: the resumed schedule must start at the stored step, or the weights differ
    kwargs = dict(optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0, lr=0.01, weight_decay=1e-4,
                  lr_decay=0.05 if optimizer == "adam" else 0.0)
    trainer = TRAINERS[framework]
    whole = trainer.train(_config(framework, epochs=2, **kwargs), tmp_path / "whole", progress=False)
    trainer.train(_config(framework, epochs=1, **kwargs), tmp_path / "parts", progress=False)
    resumed = trainer.train(_config(framework, epochs=2, **kwargs), tmp_path / "parts", resume=True, progress=False)
    a, _ = read_checkpoint(tmp_path / "whole" / "weights.safetensors")
    b, _ = read_checkpoint(tmp_path / "parts" / "weights.safetensors")
    assert all(np.array_equal(a[key], b[key]) for key in a)  # bit for bit
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in whole]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed]


def test_a_run_killed_while_checkpointing_resumes_from_the_last_complete_epoch(tmp_path, monkeypatch):
    import segparity.training.runs

    config = _config("torch", epochs=3)
    whole = torch_train.train(config, tmp_path / "whole", progress=False)
    real_save = segparity.training.runs.save_file
    calls = []

    def dies_on_second_epoch(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(segparity.training.runs, "save_file", dies_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        torch_train.train(config, tmp_path / "killed", progress=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_0001", "latest.json"]  # no half-written folder
    assert len(list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))) == 1
    monkeypatch.setattr(segparity.training.runs, "save_file", real_save)
    resumed = torch_train.train(config, tmp_path / "killed", resume=True, progress=False)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]


def test_a_run_folder_is_never_overwritten_and_resume_checks_settings(tmp_path):
    torch_train.train(_config("torch", epochs=1), tmp_path, progress=False)
    with pytest.raises(RunError, match="already holds a training run"):
        torch_train.train(_config("torch", epochs=1), tmp_path, progress=False)
    with pytest.raises(RunError, match="lr: stored 0.001, now 0.1"):
        torch_train.train(_config("torch", epochs=2, lr=0.1), tmp_path, resume=True, progress=False)
    with pytest.raises(RunError, match="already finished 1 epochs"):
        torch_train.train(_config("torch", epochs=1), tmp_path, resume=True, progress=False)
    with pytest.raises(RunError, match="no run to resume"):
        RunFolder(tmp_path / "empty").start(_config("torch"), resume=True)


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="loss 'bce' needs a network with one output channel"):
        make_config("torch", "unet", loss="bce")
    with pytest.raises(TypeError, match="unknown option"):
        make_config("torch", "unet", model_options={"widht": 3})
    with pytest.raises(ValueError, match="data must be"):
        make_config("torch", "unet", data="ph3:/x")
    with pytest.raises(ValueError, match="batch_size"):
        make_config("torch", "unet", batch_size=0)
    with pytest.raises(ValueError, match="image_size 60 cannot go through unet.*nearest valid sizes: 48, 64"):
        make_config("torch", "unet", image_size=60)
    with pytest.raises(ValueError, match="training needs logits the size of the mask"):
        make_config("torch", "unet", image_size=572, model_options={"padding": "valid"})
    with pytest.raises(ValueError, match="momentum"):
        make_config("torch", "unet", optimizer="sgd", momentum=1.5)


def test_lesson_preset_sets_the_lessons_training():
    config = make_config("tf", "unet", preset="lesson-segparity", data="ph2:/data")
    assert (config.image_size, config.loss, config.optimizer, config.lr, config.weight_decay, config.batch_size,
            config.epochs, config.split, config.seed) == (256, "bce", "adam", 1e-3, 1e-6, 32, 30, (0.9, 0.1, 0.0), 42)
    assert config.outputs() == 1
    assert make_config("tf", "unet", preset="lesson-segparity", data="ph2:/data", epochs=3).epochs == 3  # explicit wins
    assert TrainConfig("torch", "unet").loss_name() == "ce"


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizer_state_moves_between_frameworks(optimizer):
    """Three torch steps, then weights and optimiser state to Keras: the fourth step agrees."""
    import keras
    import tensorflow as tf
    import torch

    from segmentation_tf.optimizers import load_optimizer_state as tf_load
    from segmentation_tf.optimizers import optimizer_state as tf_state
    from segmentation_tf.weights import from_canonical as tf_from
    from segmentation_tf.weights import to_canonical as tf_to
    from segmentation_torch.optimizers import optimizer_state as torch_state
    from segmentation_torch.weights import to_canonical as torch_to
    from segparity.data.dataset import synthetic_dataset

    config = _config("torch", optimizer=optimizer, momentum=0.9, lr=0.01, weight_decay=1e-3)
    data = synthetic_dataset(8, (16, 16), 3, seed=1)
    images, masks = data.images, data.masks
    model, opt, loss_fn = torch_train.build_run(config, 3)
    x, y = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(masks)
    for step in range(4):
        before_weights, before_state = torch_to(model), torch_state(model, opt, step=step)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    k_model, k_opt, k_loss = tf_train.build_run(config, 3)
    tf_from(k_model, before_weights)
    assert tf_load(k_model, k_opt, before_state) == 3
    with tf.GradientTape() as tape:
        loss = k_loss(tf.constant(masks), k_model(images, training=True))
    k_opt.apply_gradients(zip(tape.gradient(loss, k_model.trainable_variables), k_model.trainable_variables))
    after_torch, after_tf = torch_to(model), tf_to(k_model)
    worst = max(float(np.abs(after_tf[k] - after_torch[k]).max()) for k in after_torch)
    assert worst < 1e-5, worst
    exported = tf_state(k_model, k_opt, step=4)
    reference = torch_state(model, opt, step=4)
    assert sorted(exported) == sorted(reference)
    assert max(float(np.abs(exported[k] - reference[k]).max()) for k in reference) < 1e-5
    keras.backend.clear_session()


def test_damaged_checkpoint_and_compare_into_a_run_folder_are_named(tmp_path):
    from segparity.parity.compare_train import compare_train

    config = _config("torch", epochs=1)
    torch_train.train(config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="holds a training run"):
        compare_train(config, 2, tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 1  # untouched
    (tmp_path / "checkpoints" / "epoch_0001" / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunError, match="latest.json cannot be read"):
        torch_train.train(_config("torch", epochs=2), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("first, then, optimizer", [("torch", "tf", "sgd"), ("tf", "torch", "adam")])
def test_a_run_resumes_in_the_other_framework(tmp_path, first, then, optimizer):
    """Issue 26: one epoch in ``first``, the second in ``then`` (``--resume`` with the other ``--framework``): weights,
    BatchNorm statistics, optimiser state (SGD momentum; Adam moments and step count) and the batch order move
    through the canonical checkpoint, so the resumed run ends where an uninterrupted run in ``then`` ends, within the
    parity tolerance (rtol 1e-4, atol 1e-5; 3 steps an epoch). Both start from one canonical checkpoint, as
    compare-train does."""
    from segparity.comparison.tolerance import compare
    from segmentation_torch.weights import to_canonical
    from segparity.weights.checkpoint import write_checkpoint

    torch_model, _, _ = torch_train.build_run(_config("torch"), 3)
    init = tmp_path / "init.safetensors"
    write_checkpoint(init, to_canonical(torch_model), torch_model.spec)
    kwargs = dict(optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0, lr=0.01, init_weights=str(init))
    TRAINERS[first].train(_config(first, epochs=1, **kwargs), tmp_path / "run", progress=False)
    rows = TRAINERS[then].train(_config(then, epochs=2, **kwargs), tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["framework"] == then  # who wrote last
    assert [row["epoch"] for row in rows] == [1, 2]
    resumed, _ = read_checkpoint(tmp_path / "run" / "weights.safetensors")
    assert any(key.endswith(".var") for key in resumed)  # BatchNorm statistics (canonical names)
    TRAINERS[then].train(_config(then, epochs=2, **kwargs), tmp_path / "whole", progress=False)
    whole, _ = read_checkpoint(tmp_path / "whole" / "weights.safetensors")
    comparisons = [compare(resumed[key], whole[key], quantity=key) for key in whole]
    assert all(c.passed for c in comparisons), max(comparisons, key=lambda c: c.max_abs)
    with pytest.raises(RunError, match="lr: stored 0.01, now 0.02"):  # the other settings must still match
        TRAINERS[first].train(_config(first, epochs=3, **{**kwargs, "lr": 0.02}), tmp_path / "run", resume=True,
                              progress=False)
