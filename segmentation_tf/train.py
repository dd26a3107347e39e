"""``segparity train --framework tf``: Keras ``model.fit`` over ``shared`` data, checkpoints from a callback.

Twin of ``segmentation_torch/train.py`` (a plain loop). ``fit`` trains in training mode (BatchNorm
batch statistics) and evaluates ``validation_data`` in inference mode after each epoch; the
``_SaveEpoch`` callback writes the checkpoint and the ``metrics.csv`` row (``segparity.training.runs``). Keras
averages loss and metrics over batches weighted by batch size, as the torch loop does.
``jit_compile=False``: XLA fuses operations differently from torch, which is not what a side-by-side
comparison wants.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from segmentation_tf import distributed as engine
from segmentation_tf import losses
from segmentation_tf.data import make_loader
from segmentation_tf.device import precision, resolve_device
from segmentation_tf.instance import DiscriminativeLoss
from segmentation_tf.metrics import MeanDice, MeanIoU, PixelAccuracy, predicted_labels
from segmentation_tf.optimizers import build_optimizer, legacy_decay, load_optimizer_state, optimizer_state
from segmentation_tf.registry import build_model
from segmentation_tf.weights import from_canonical, load_weights, to_canonical
from segparity.data.dataset import batch_indices
from segparity.training.instance_report import finish_instance_run
from segparity.reference.losses import build
from segparity.reference.panoptic import default_bandwidth
from segparity.training.plots import plot_run
from segparity.training.distributed import DistributedError, Process, check_last_batch, replica_batch
from segparity.training.runs import RunFolder
from segparity.training.config import (METRICS, TrainConfig, TrainData, check_finite_loss, class_names, epoch_row,
                                       loss_description, prepare_data)
from segparity.validation import nan_error


def build_run(config: TrainConfig, num_outputs: int) -> tuple[keras.Model, keras.optimizers.Optimizer, keras.losses.Loss | tuple]:
    """Model (seeded by ``config.seed``, or ``config.init_weights``), optimiser and loss of a run; for the
    instance and panoptic tasks the loss is ``(semantic loss, DiscriminativeLoss())``, one per model output."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.arch, in_channels=3, num_classes=num_outputs, preset=config.preset,
                        **config.build_options())
    if config.init_weights:
        load_weights(model, config.init_weights)
    if config.sync_batchnorm:
        engine.synchronize_batchnorm(model)
    optimizer = build_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    semantic = build(losses, *loss_description(config))
    return model, optimizer, semantic if config.task == "semantic" else (semantic, DiscriminativeLoss())


class _SaveEpoch(keras.callbacks.Callback):
    """After each epoch: a ``metrics.csv`` row from ``logs`` and a checkpoint with the optimiser state.
    After each batch: the guard against a NaN or infinite loss (``logs["loss"]`` is the epoch's running
    mean, non-finite from the first such batch on), which stops ``fit`` before the epoch is saved."""

    def __init__(self, run: RunFolder, rows: list[dict], config: TrainConfig, progress: bool, writes: bool,
                 network: keras.Model):
        super().__init__()
        self.run, self.rows, self.config, self.progress, self.writes = run, rows, config, progress, writes
        self.network = network  # the model fit trains, or the network inside it (_Replicated)

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        check_finite_loss(_scalar(logs["loss"]), epoch=self.epoch + 1, step=step, epochs_saved=len(self.rows),
                          out=self.run.out)

    def on_epoch_end(self, epoch, logs=None):
        train = {key: _scalar(logs[key]) for key in ("loss", *METRICS)}
        val = {key: _scalar(logs[f"val_{key}"]) for key in ("loss", *METRICS)}
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        # what the next step will use (the schedule at the optimiser's iterations), as LearningRateScheduler logs it;
        # without a schedule the configured Python float, not the optimiser's float32 copy of it
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate)) if self.config.lr_decay else self.config.lr
        self.rows.append(epoch_row(epoch, train, val, lr, time.perf_counter() - self.start))
        if self.writes:  # a distributed run's chief only
            self.run.save_epoch(self.rows, step, to_canonical(self.network),
                                optimizer_state(self.network, self.model.optimizer, step), self.network.spec)


def train_steps(config: TrainConfig, data: TrainData, steps: int,
                dtype: str = "float32") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``steps`` optimiser steps over the run's batch order (epoch after epoch), from ``build_run``'s
    model built in ``dtype``; returns each step's training loss (before its update) and the final
    canonical weights (float32). ``train_on_batch`` resets the loss tracker first, so it returns that
    batch's loss; the layers cast the float32 batches to their own dtype."""
    with tf.device(resolve_device(config.device)), precision(dtype):
        model, optimizer, loss_fn = build_run(config, config.outputs())
        model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False)
        if config.lr_decay:
            legacy_decay(optimizer, config.lr, config.lr_decay)
        step_losses = []
        for epoch in range(steps):  # at least one batch per epoch, so never more than `steps` epochs
            for images, masks in make_loader(data.train, config.batch_size, epoch, shuffle=True):
                if len(step_losses) == steps:
                    return np.asarray(step_losses), to_canonical(model)
                step_losses.append(float(model.train_on_batch(images, masks, return_dict=True)["loss"]))
    return np.asarray(step_losses), to_canonical(model)


def predict_labels(model: keras.Model, images: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Inference-mode labels ``(N, H, W)`` for channels-last ``images (N, H, W, C)`` (one output channel: label 1
    above ``threshold``)."""
    outputs = model(images, training=False)
    return np.asarray(predicted_labels(outputs[0] if isinstance(outputs, tuple) else outputs, threshold))


def predict_instances(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A two-headed model's inference-mode ``classes (N, H, W)`` and ``embedding (N, H, W, E)`` (channels last)."""
    logits, embedding = model(images, training=False)
    return np.asarray(predicted_labels(logits)), keras.ops.convert_to_numpy(embedding)


class _Replicated(keras.Model):
    """What ``fit`` trains under a strategy: the network (built inside ``strategy.scope()``, its variables mirrored),
    wrapped in a model made *outside* the scope, whose steps return each log as a 1-element vector. Both dodge
    Keras 3.15 bugs that stop ``fit`` under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585): a model made in
    the scope is first built on a batch reduced over the workers (which fails on the replicas' values, and turns
    int64 masks float64 under ``MirroredStrategy``), and each step's logs go through ``strategy.reduce("MEAN", log,
    axis=0)``, which fails for a scalar across workers. The epoch's logged numbers come from the metrics
    themselves, summed over every replica, as without the wrapper."""

    def __init__(self, network: keras.Model):
        super().__init__(name=f"replicated_{network.name}")
        self.network = network

    def call(self, x, training=False):
        return self.network(x, training=training)

    def train_step(self, data):
        return {key: ops.reshape(value, (1,)) for key, value in super().train_step(data).items()}

    def test_step(self, data):
        return {key: ops.reshape(value, (1,)) for key, value in super().test_step(data).items()}


def _barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker gets here: a sum over the replicas, a collective every worker must join."""
    ones = tf.function(lambda: strategy.run(lambda: tf.constant(1.0)))()
    strategy.reduce("SUM", ones, axis=None)


def _scalar(value) -> float:
    """A logged number as a float (``_Replicated`` logs 1-element vectors)."""
    return float(np.reshape(ops.convert_to_numpy(value), ()))


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          distributed: bool = False, cpu_replicas: int = 1) -> list[dict]:
    """Train as ``config`` says, writing everything to ``out`` (``segparity.training.runs``); returns the metric rows.
    A NaN or infinite training loss stops the run after that step (``NonFiniteLossError``; ``fit`` has
    applied it); the last complete epoch's checkpoint stays, resumable.

    ``distributed``: under a ``tf.distribute`` strategy (``segmentation_tf.distributed``: ``MirroredStrategy`` over
    this host's GPUs or ``cpu_replicas`` logical CPU devices; ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is
    set), training ``_Replicated(model)``: ``config.batch_size`` is the global batch, and only worker 0 writes to
    ``out``."""
    process, strategy = engine.start(config.device, cpu_replicas) if distributed else (Process(0, 1, 0), None)
    replicas = strategy.num_replicas_in_sync if distributed else 1
    replica_batch(config.batch_size, replicas)
    if replicas > 1 and config.task != "semantic":
        raise DistributedError(
            f"--task {config.task} with --framework tf --distributed on {replicas} replicas: TensorFlow 2.21 fails "
            "inside fit on these runs (\"You must feed a value for placeholder tensor\", on one replica it trains); "
            "train the instance and panoptic tasks distributed with --framework torch under torchrun")
    run = RunFolder(out)
    checkpoint = run.start(config, resume)
    if distributed:
        _barrier(strategy)  # every worker has read the folder before worker 0 writes to it
    data: TrainData = prepare_data(config, run.split_file, resume, progress and process.writes, save=process.writes)
    check_last_batch(len(data.train), config.batch_size, replicas)

    def place():  # where variables live: mirrored over the strategy's replicas, or on the one device
        return strategy.scope() if distributed else tf.device(resolve_device(config.device))

    with place():
        model, optimizer, loss_fn = build_run(config, config.outputs())
    trainer = _Replicated(model) if distributed else model  # made outside the scope (_Replicated)
    with place():
        labels = max(data.num_labels, 2)
        instances = config.task != "semantic"
        threshold = config.label_threshold()
        metrics = [MeanIoU(labels, threshold=threshold, name="iou"), MeanDice(labels, threshold=threshold, name="dice"),
                   PixelAccuracy(labels, threshold=threshold, name="accuracy")]
        # two outputs: a loss for each (Keras sums them) and the semantic metrics on the logits only
        trainer.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False,
                        metrics=(metrics, []) if instances else metrics)
        if process.writes:
            run.save_config(config)
        rows = []
        if checkpoint is not None:
            from_canonical(model, checkpoint.weights)
            load_optimizer_state(model, optimizer, checkpoint.optimizer)
            rows = checkpoint.rows
        if config.lr_decay:
            legacy_decay(optimizer, config.lr, config.lr_decay, int(ops.convert_to_numpy(optimizer.iterations)))
        first = len(rows)
        # fit reads one stream of all remaining epochs; epoch e's batches are those of batch_indices(..., e); a
        # strategy splits each (global) batch over its replicas
        stream = engine.make_loader(data.train, config.batch_size, first, shuffle=True, instances=instances,
                                    process=process)
        for epoch in range(first + 1, config.epochs):
            stream = stream.concatenate(engine.make_loader(data.train, config.batch_size, epoch, shuffle=True,
                                                           instances=instances, process=process))
        steps = len(batch_indices(len(data.train), config.batch_size, 0, config.seed))
        saver = _SaveEpoch(run, rows, config, progress, writes=process.writes, network=model)
        try:
            trainer.fit(stream, epochs=config.epochs, initial_epoch=first, steps_per_epoch=steps, shuffle=False,
                        validation_data=engine.make_loader(data.val, config.batch_size, 0, shuffle=False,
                                                           instances=instances, process=process),
                        callbacks=[saver], verbose=1 if progress and process.writes else 0)
        except tf.errors.InvalidArgumentError as error:  # the metrics' assert_all_finite inside fit's graph (metrics.py)
            if str(nan_error("y_pred")) not in str(error):
                raise
            step = int(ops.convert_to_numpy(optimizer.iterations))
            check_finite_loss(float("nan"), epoch=saver.epoch + 1, step=step, epochs_saved=len(rows), out=run.out,
                              cause="the model's output holds NaN or infinity")
        if not process.writes:
            return rows
        run.save_final(to_canonical(model), model.spec)
        title = f"{config.arch}, tf, {config.data}"
        plot_run(run.out, rows, data.val, lambda images: predict_labels(model, images, threshold), title,
                 class_names=class_names(config))
        if instances:
            finish_instance_run(run.out, data, lambda images: predict_instances(model, images),
                                f"{title}, {config.task}", default_bandwidth(DiscriminativeLoss().delta_v))
    return rows
