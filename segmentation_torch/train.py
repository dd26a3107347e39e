"""``segparity train --framework torch``: a plain PyTorch training loop over ``shared`` data.

Twin of ``segmentation_tf/train.py`` (which uses ``model.fit``). Per epoch: train in training mode
(BatchNorm batch statistics), evaluate on the validation set in eval mode, write a checkpoint and a
``metrics.csv`` row (``segparity.training.runs``). Loss and metric columns are means over pixels and batches
weighted by batch size, as Keras computes them.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from segmentation_torch import distributed as engine
from segmentation_torch import losses
from segmentation_torch.data import make_loader
from segmentation_torch.device import precision, resolve_device
from segmentation_torch.instance import DiscriminativeLoss
from segmentation_torch.metrics import ConfusionMatrix, predicted_labels
from segmentation_torch.optimizers import build_optimizer, legacy_decay, load_optimizer_state, optimizer_state
from segmentation_torch.registry import build_model
from segmentation_torch.weights import from_canonical, load_weights, to_canonical
from segparity.reference import metrics
from segparity.training.instance_report import finish_instance_run
from segparity.reference.losses import build
from segparity.reference.panoptic import default_bandwidth
from segparity.training.plots import plot_run
from segparity.training.distributed import Process, check_last_batch, replica_batch, torchrun_process
from segparity.training.runs import RunFolder
from segparity.training.config import (TrainConfig, TrainData, check_finite_loss, class_names, epoch_row,
                                       loss_description, prepare_data)


def build_run(config: TrainConfig, num_outputs: int) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module | tuple]:
    """Model (seeded by ``config.seed``, or ``config.init_weights``), optimiser and loss of a run; for the
    instance and panoptic tasks the loss is ``(semantic loss, DiscriminativeLoss())``, one per model output."""
    torch.manual_seed(config.seed)
    model = build_model(config.arch, in_channels=3, num_classes=num_outputs, preset=config.preset,
                        **config.build_options())
    if config.init_weights:
        load_weights(model, config.init_weights)
    if config.sync_batchnorm:
        engine.synchronize_batchnorm(model)
    model = model.to(resolve_device(config.device))
    optimizer = build_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    semantic = build(losses, *loss_description(config))
    return model, optimizer, semantic if config.task == "semantic" else (semantic, DiscriminativeLoss())


def _as_tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _loss(loss_fn, outputs, target) -> torch.Tensor:
    """One loss per model output, summed (as Keras sums the losses of a two-output model)."""
    if isinstance(loss_fn, tuple):
        return sum(fn(output, part) for fn, output, part in zip(loss_fn, outputs, target))
    return loss_fn(outputs, target)


def _run_epoch(model: nn.Module, loss_fn: nn.Module, loader, num_labels: int, threshold: float,
               optimizer: torch.optim.Optimizer | None = None, schedule=None, desc: str = "",
               guard: Callable[..., None] | None = None, replicas: int = 1) -> dict[str, float]:
    """One pass over ``loader``: training (with ``optimizer``, and ``schedule`` stepped after each of its steps)
    or evaluation (without); returns mean loss and ``segparity.training.config.METRICS`` over the pass (a
    one-channel output is label 1 above ``threshold``). ``guard(loss, batch[, cause])`` sees each batch's
    loss (NaN if the model's output is not finite) before its optimiser step, and may stop the run.
    ``replicas > 1`` (``model`` is ``DistributedDataParallel``, ``loader`` this process's part of each batch):
    losses, counts and metrics are summed over the processes, so every process returns the whole batch's."""
    device = next(model.parameters()).device
    model.train(optimizer is not None)
    counts = ConfusionMatrix(max(num_labels, 2), threshold=threshold)
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=optimizer is not None, file=sys.stderr, disable=not desc or None)
    for batch, (images, target) in enumerate(bar):
        images = images.to(device)
        target = [part.to(device) for part in target] if isinstance(target, list) else target.to(device)
        with torch.set_grad_enabled(optimizer is not None):
            outputs = model(images)
            finite = all(bool(torch.isfinite(o).all()) for o in _as_tuple(outputs))
            if replicas > 1:  # every process stops together, or none does
                finite = bool(_sum_over_processes(np.array([float(not finite)]))[0] == 0)
            if guard is not None and not finite:
                guard(float("nan"), batch, "the model's output holds NaN or infinity")  # the loss would refuse it
            loss = _loss(loss_fn, outputs, target)
        logits, masks = (outputs[0], target[0]) if isinstance(outputs, tuple) else (outputs, target)
        value, size = float(loss.detach()), len(images)
        if replicas > 1:  # the global batch's loss: the processes' losses weighted by their batch sizes
            value_sum, size = _sum_over_processes(np.array([value * size, size]))
            value, size = float(value_sum / size), int(size)
        if guard is not None:
            guard(value, batch)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        total += value * size
        seen += size
        counts.update(logits.detach().cpu(), masks.cpu())
        bar.set_postfix(loss=f"{total / seen:.4f}", iou=f"{metrics.mean_iou(counts.compute()):.3f}")
    cm = counts.compute()
    if replicas > 1:
        cm = _sum_over_processes(np.asarray(cm, dtype=np.float64)).round().astype(np.int64)
    return {"loss": total / seen, "iou": metrics.mean_iou(cm), "dice": metrics.mean_dice(cm),
            "accuracy": metrics.pixel_accuracy(cm)}


def _sum_over_processes(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) summed over every process of the distributed run."""
    total = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    if dist.get_backend() == "nccl":  # nccl reduces GPU tensors only
        total = total.cuda()
    dist.all_reduce(total)
    return total.cpu().numpy()


def _barrier() -> None:
    """Wait until every process gets here (nothing to wait for outside a process group)."""
    if dist.is_initialized():
        dist.barrier()


def train_steps(config: TrainConfig, data: TrainData, steps: int,
                dtype: str = "float32") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``steps`` optimiser steps over the run's batch order (epoch after epoch), from ``build_run``'s
    model built in ``dtype``; returns each step's training loss (before its update) and the final
    canonical weights (float32)."""
    with precision(dtype):
        model, optimizer, loss_fn = build_run(config, config.outputs())
    model.train()
    device = next(model.parameters()).device
    schedule = legacy_decay(optimizer, config.lr, config.lr_decay) if config.lr_decay else None
    step_losses = []
    for epoch in range(steps):  # at least one batch per epoch, so never more than `steps` epochs
        for images, masks in make_loader(data.train, config.batch_size, epoch, shuffle=True):
            if len(step_losses) == steps:
                return np.asarray(step_losses), to_canonical(model)
            loss = loss_fn(model(images.to(device, getattr(torch, dtype))), masks.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            step_losses.append(float(loss.detach()))
    return np.asarray(step_losses), to_canonical(model)


def _predict(model: nn.Module, images: np.ndarray):
    """Eval-mode outputs for channels-last ``images (N, H, W, C)``."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device))


def predict_labels(model: nn.Module, images: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Eval-mode labels ``(N, H, W)`` for channels-last ``images (N, H, W, C)`` (one output channel: label 1
    above ``threshold``)."""
    outputs = _predict(model, images)
    return predicted_labels(outputs[0] if isinstance(outputs, tuple) else outputs, threshold).cpu().numpy()


def predict_instances(model: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A two-headed model's eval-mode ``classes (N, H, W)`` and ``embedding (N, H, W, E)`` (channels last)."""
    logits, embedding = _predict(model, images)
    return predicted_labels(logits).cpu().numpy(), embedding.permute(0, 2, 3, 1).cpu().numpy()


def _guard(loss: float, batch: int, cause: str = "", *, epoch: int, first_step: int, epochs_saved: int,
           out: Path) -> None:
    check_finite_loss(loss, epoch=epoch, step=first_step + batch, epochs_saved=epochs_saved, out=out, cause=cause)


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          distributed: bool = False, cpu_replicas: int = 1) -> list[dict]:
    """Train as ``config`` says, writing everything to ``out`` (``segparity.training.runs``); returns the metric rows.
    A NaN or infinite training loss stops the run before that step (``NonFiniteLossError``); the last
    complete epoch's checkpoint stays, resumable.

    ``distributed``: this is one of the processes ``torchrun`` started (``segmentation_torch.distributed``):
    ``config.batch_size`` is the global batch, gradients are averaged by ``DistributedDataParallel``, every process
    returns the same rows, and only rank 0 writes to ``out``. ``cpu_replicas`` is the Keras twin's (torch's
    replicas are processes: ``torchrun --nproc_per_node``), 1 here."""
    if distributed:  # the launch's own checks first: a process that fails them never waits for the others
        replica_batch(config.batch_size, torchrun_process(os.environ).world_size)
    process, device = engine.start(config.device, cpu_replicas) if distributed else (Process(0, 1, 0), None)
    replicas = process.world_size
    try:
        run = RunFolder(out)
        checkpoint = run.start(config, resume)
        _barrier()  # every process has read the folder before rank 0 writes to it
        data: TrainData = prepare_data(config, run.split_file, resume, progress and process.writes,
                                       save=process.writes)
        check_last_batch(len(data.train), config.batch_size, replicas)
        return _train(config, run, checkpoint, data, progress, process, device)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(config: TrainConfig, run: RunFolder, checkpoint, data: TrainData, progress: bool, process: Process,
           device) -> list[dict]:
    model, optimizer, loss_fn = build_run(config, config.outputs())
    if process.writes:
        run.save_config(config)
    rows, step = [], 0
    instances = config.task != "semantic"
    if checkpoint is not None:
        from_canonical(model, checkpoint.weights)
        step = load_optimizer_state(model, optimizer, checkpoint.optimizer)
        rows = checkpoint.rows
    replicas = process.world_size
    # DDP: rank 0's weights and buffers are broadcast now, gradients averaged in each backward, and (torch's
    # default, kept) rank 0's buffers, BatchNorm running statistics among them, broadcast before each forward
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if replicas > 1 else model
    schedule = legacy_decay(optimizer, config.lr, config.lr_decay, step) if config.lr_decay else None
    threshold = config.label_threshold()
    show = progress and process.writes
    for epoch in range(len(rows), config.epochs):
        start = time.perf_counter()
        if replicas > 1:
            loader = engine.make_loader(data.train, config.batch_size, epoch, shuffle=True, instances=instances,
                                        process=process)
        else:
            loader = make_loader(data.train, config.batch_size, epoch, shuffle=True, instances=instances)
        guard = partial(_guard, epoch=epoch + 1, first_step=step + 1, epochs_saved=len(rows), out=run.out)
        train_scores = _run_epoch(net, loss_fn, loader, data.num_labels, threshold, optimizer, schedule,
                                  desc=f"epoch {epoch + 1}/{config.epochs}" if show else "", guard=guard,
                                  replicas=replicas)
        # every process evaluates the whole validation set with the same weights (no collectives needed)
        val_scores = _run_epoch(model, loss_fn, make_loader(data.val, config.batch_size, 0, shuffle=False,
                                                            instances=instances), data.num_labels, threshold)
        step += len(loader)
        lr = optimizer.param_groups[0]["lr"]  # what the next step will use, as Keras's LearningRateScheduler logs it
        rows.append(epoch_row(epoch, train_scores, val_scores, lr, time.perf_counter() - start))
        if process.writes:
            run.save_epoch(rows, step, to_canonical(model), optimizer_state(model, optimizer, step), model.spec)
        if show:
            print(f"epoch {epoch + 1}: val_loss {rows[-1]['val_loss']:.4f}, val_iou {rows[-1]['val_iou']:.4f}", file=sys.stderr)
    if not process.writes:
        return rows
    run.save_final(to_canonical(model), model.spec)
    title = f"{config.arch}, torch, {config.data}"
    plot_run(run.out, rows, data.val, lambda images: predict_labels(model, images, threshold), title,
             class_names=class_names(config))
    if instances:
        finish_instance_run(run.out, data, lambda images: predict_instances(model, images), f"{title}, {config.task}",
                            default_bandwidth(DiscriminativeLoss().delta_v))
    return rows
