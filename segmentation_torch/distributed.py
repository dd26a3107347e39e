"""``segparity train --framework torch --distributed``: ``torchrun`` processes, ``DistributedDataParallel``.

Twin of ``segmentation_tf/distributed.py`` (``tf.distribute``). One process per replica, started by
``torchrun --nproc_per_node N`` (on several hosts, ``--nnodes`` and a rendezvous endpoint); each reads its
rank from the variables torchrun sets (``segparity.training.distributed.torchrun_process``) and joins the
process group: gloo on the CPU, nccl on GPUs, each process driving GPU ``LOCAL_RANK``. The global batch is
split by a ``DistributedSampler`` over the epoch's batch order, ``DistributedDataParallel`` averages the
gradients (so the learning rate is the single-process one), and only rank 0 writes the run folder.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from segmentation_torch.data import _EpochItems
from segmentation_torch.device import resolve_device
from segmentation_torch.layers import BatchNorm
from segparity.data.dataset import ArrayDataset, epoch_order
from segparity.training.distributed import DistributedError, Process, replica_batch, torchrun_process


def start(device: str, cpu_replicas: int = 1) -> tuple[Process, torch.device]:
    """Join the process group ``torchrun`` set up: gloo for ``device="cpu"``, nccl for ``"cuda"`` (this process
    drives GPU ``LOCAL_RANK``). Returns this process and its device. ``cpu_replicas`` is the TensorFlow twin's
    (logical CPU devices in one process); torch's replicas are processes, so it must stay 1."""
    if cpu_replicas != 1:
        raise DistributedError(f"cpu_replicas {cpu_replicas}: torch runs one replica per process; start "
                               f"{cpu_replicas} processes with torchrun --nproc_per_node {cpu_replicas}")
    process = torchrun_process(os.environ)
    target = resolve_device(device)
    if target.type == "cuda":
        if process.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {process.local_rank} but torch sees {torch.cuda.device_count()} GPUs "
                                   f"on this host; start at most that many processes per node")
        target = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return process, target


def synchronize_batchnorm(model: nn.Module) -> int:
    """Make every segparity ``BatchNorm`` of ``model`` use the batch statistics of all processes together in
    training mode (``BatchNorm(synchronized=True)``); returns how many there are. A ``layers="stock"`` model
    (``nn.BatchNorm2d``, which torch synchronises on GPUs only) is refused with the reason."""
    stock = [module for module in model.modules() if type(module) is nn.BatchNorm2d]
    if stock:
        raise ValueError(f"synchronize_batchnorm: {len(stock)} BatchNorm layers are torch.nn.BatchNorm2d (a model built "
                         "with layers='stock'); synchronised statistics need segparity's BatchNorm: build it with "
                         "layers='parity'")
    layers = [module for module in model.modules() if isinstance(module, BatchNorm)]

    for layer in layers:
        layer.synchronized = True
    return len(layers)


class _InEpochOrder(Dataset):
    """Position ``p`` of epoch ``epoch``'s batch order (``segparity.data.dataset.epoch_order``)."""

    def __init__(self, items: _EpochItems, order: np.ndarray):
        self.items, self.order = items, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int):
        return self.items[int(self.order[position])]


def make_loader(data: ArrayDataset, batch_size: int, epoch: int = 0, shuffle: bool = True, instances: bool = False,
                process: Process | None = None) -> DataLoader:
    """This process's part of one epoch, ``batch_size`` being the global batch: a ``DistributedSampler`` (no
    shuffling of its own) over the epoch's order (``shuffle``: drawn from ``(data.seed, epoch)``) gives process
    ``r`` of ``W`` positions ``r, r + W, r + 2W, ...``, batched ``batch_size / W`` at a time, so the processes'
    ``k``-th batches together are the single-process run's ``k``-th batch. Batches as
    ``segmentation_torch.data.make_loader``'s: ``images (B/W, C, H, W)`` float32, ``masks (B/W, H, W)`` int64.
    The caller checks the last batch splits evenly (``segparity.training.distributed.check_last_batch``)."""
    process = process or Process(0, 1, 0)
    order = epoch_order(len(data), epoch, data.seed, shuffle)
    positions = _InEpochOrder(_EpochItems(data, epoch, instances), order)
    sampler = DistributedSampler(positions, num_replicas=process.world_size, rank=process.rank, shuffle=False)
    return DataLoader(positions, batch_size=replica_batch(batch_size, process.world_size), sampler=sampler)
