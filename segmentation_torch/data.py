"""``segparity.data`` datasets as a torch ``DataLoader``: ``(N, C, H, W)`` float32 images, ``(N, H, W)`` int64 masks.

Twin of ``segmentation_tf/data.py``. The pairs come from ``ArrayDataset.item`` and the order from
``segparity.data.dataset.batch_indices``, so both frameworks see the same batches in the same order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from segparity.data.dataset import ArrayDataset, batch_indices


class _EpochItems(Dataset):
    """``ArrayDataset`` items of one epoch, transposed to channels first."""

    def __init__(self, data: ArrayDataset, epoch: int, instances: bool = False):
        self.data, self.epoch, self.instances = data, epoch, instances

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        if self.instances:
            image, mask, ids = self.data.instance_item(index, self.epoch)
            return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), (torch.from_numpy(mask),
                                                                                      torch.from_numpy(ids))
        image, mask = self.data.item(index, self.epoch)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(mask)


class _EpochBatches(Sampler):
    """Yields the index batches of ``segparity.data.dataset.batch_indices`` (a batch sampler)."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter([batch.tolist() for batch in self.batches])


def make_loader(data: ArrayDataset, batch_size: int, epoch: int = 0, shuffle: bool = True,
                drop_last: bool = False, instances: bool = False) -> DataLoader:
    """One epoch of ``data`` in batches: ``images (B, C, H, W)`` float32, ``masks (B, H, W)`` int64; with
    ``instances``, ``images, (masks, instance ids (B, H, W) int64)``, the targets of a two-headed model.

    The order is a permutation drawn from ``(data.seed, epoch)`` when ``shuffle``, else the stored order.
    """
    batches = batch_indices(len(data), batch_size, epoch, data.seed, shuffle, drop_last)
    return DataLoader(_EpochItems(data, epoch, instances), batch_sampler=_EpochBatches(batches))
