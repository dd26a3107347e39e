"""A dataset held as numpy arrays, and the order its batches come in: the one source both adapters read.

``ArrayDataset.item(index, epoch)`` is the only place a training pair is made (augmentation and
normalisation included); ``batch_indices(n, batch_size, epoch, seed, ...)`` the only place batch
order is decided. Both depend on ``(seed, epoch, index)`` alone, so the torch ``DataLoader`` and the
``tf.data`` pipeline built on them deliver the same arrays in the same order, and a resumed run sees
exactly the batches the interrupted one would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from segparity.data.images import read_image, read_mask
from segparity.data.preprocess import Augment, normalize, resize_image, resize_mask, sample_rng
from segparity.data.samples import DatasetError, Sample, Skipped
from segparity.data.synthetic import synthetic_instance_sample, synthetic_sample, task_classes


@dataclass(frozen=True)
class ArrayDataset:
    """``images (N, H, W, C)`` float32, ``masks (N, H, W)`` int64 labels, one ``key`` per sample.

    ``augment``, ``mean``/``std`` and ``seed`` are applied by ``item``; the arrays stay as loaded.
    ``instances (N, H, W)`` int32 instance ids when the source has them (synthetic data), else None.
    """

    images: np.ndarray
    masks: np.ndarray
    keys: tuple[str, ...]
    augment: Augment = field(default_factory=Augment)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    seed: int = 0
    instances: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.masks.shape != self.images.shape[:3] or len(self.keys) != len(self.images):
            raise DatasetError(f"ArrayDataset needs images (N, H, W, C), masks (N, H, W) and N keys; got images "
                               f"{self.images.shape}, masks {self.masks.shape}, {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.images)

    def item_size(self) -> tuple[int, int]:
        """``(H, W)`` of the items ``item`` returns: the crop size when cropping, else the stored size."""
        return self.augment.crop if self.augment.crop is not None else self.masks.shape[1:]

    def item(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as seen in ``epoch``: ``image (H, W, C)`` float32, ``mask (H, W)`` int64."""
        image, mask = self.augment(self.images[index], self.masks[index], sample_rng(self.seed, epoch, index))
        return normalize(image, self.mean, self.std).astype(np.float32), mask.astype(np.int64)

    def instance_item(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``item`` plus the instance ids ``(H, W)`` int64, augmented with the mask (same image and mask as ``item``)."""
        if self.instances is None:
            raise DatasetError("this dataset has no instance masks (the synthetic instance and panoptic sets have)")
        target = np.stack([self.masks[index], self.instances[index].astype(self.masks.dtype)], axis=-1)
        image, target = self.augment(self.images[index], target, sample_rng(self.seed, epoch, index))
        image = normalize(image, self.mean, self.std).astype(np.float32)
        return image, target[..., 0].astype(np.int64), target[..., 1].astype(np.int64)

    def batch(self, indices: np.ndarray, epoch: int, instances: bool = False) -> tuple[np.ndarray, ...]:
        """Stacked items: ``images (B, H, W, C)`` float32, ``masks (B, H, W)`` int64 (channels last), and with
        ``instances`` the instance ids ``(B, H, W)`` int64 too."""
        items = [self.instance_item(int(i), epoch) if instances else self.item(int(i), epoch) for i in indices]
        return tuple(np.stack(parts) for parts in zip(*items))

    def subset(self, keys: list[str]) -> ArrayDataset:
        """The samples named by ``keys``, in that order (same augmentation and normalisation)."""
        position = {key: i for i, key in enumerate(self.keys)}
        missing = [key for key in keys if key not in position]
        if missing:
            raise DatasetError(f"{len(missing)} key(s) not in the dataset, e.g. {missing[0]!r}")
        rows = np.asarray([position[key] for key in keys], dtype=np.int64)
        return replace(self, images=self.images[rows], masks=self.masks[rows], keys=tuple(keys),
                       instances=None if self.instances is None else self.instances[rows])


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """Sample indices in the order epoch ``epoch`` visits them: a permutation drawn from ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, epoch: int, seed: int, shuffle: bool = True,
                  drop_last: bool = False) -> list[np.ndarray]:
    """The index batches of one epoch; the last one is shorter unless ``drop_last``."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = epoch_order(n, epoch, seed, shuffle)
    stop = n - n % batch_size if drop_last else n
    return [order[start:start + batch_size] for start in range(0, stop, batch_size)]


def load_samples(samples: list[Sample], size: tuple[int, int], skipped: Skipped,
                 mask_threshold: int | None = None, progress: bool = True) -> ArrayDataset:
    """Read, check and resize every pair (images bilinear with anti-aliasing, masks nearest).

    A pair whose image or mask cannot be read, or whose mask values are not binary, or whose image
    and mask sizes differ, goes to ``skipped.report`` (an error naming the file unless skipping).
    """
    images, masks, keys = [], [], []
    for sample in tqdm(samples, desc="reading images", unit="image", disable=not progress or None):
        try:
            image, mask = read_image(sample.image), read_mask(sample.mask, mask_threshold)
            if image.shape[:2] != mask.shape:
                raise DatasetError(f"image {sample.image} is {image.shape[:2]} but its mask {sample.mask} is {mask.shape}")
        except DatasetError as error:
            skipped.report(str(error))
            continue
        images.append(resize_image(image, size))
        masks.append(resize_mask(mask, size).astype(np.int64))
        keys.append(sample.key)
    if not keys:
        raise DatasetError(f"every one of the {len(samples)} pairs was bad; nothing left to train on")
    return ArrayDataset(np.stack(images), np.stack(masks), tuple(keys))


def synthetic_dataset(n: int, size: tuple[int, int], num_classes: int, seed: int = 0,
                      in_channels: int = 3, task: str = "semantic") -> ArrayDataset:
    """``n`` samples (keys ``shape00000``...), instance masks included: ``segparity.data.synthetic.synthetic_sample``
    for ``task="semantic"``, ``synthetic_instance_sample`` (touching shapes; with the ground band for
    ``"panoptic"``) otherwise. ``num_classes`` counts every label class, background (and ground) included."""
    if n < 1:
        raise DatasetError(f"the synthetic dataset needs at least one sample, got n={n}")
    if task == "semantic":
        triples = [synthetic_sample(i, size[0], size[1], num_classes, seed, in_channels) for i in range(n)]
    else:
        things, _ = task_classes(task, num_classes)
        triples = [synthetic_instance_sample(i, size[0], size[1], len(things), seed, in_channels,
                                             ground=task == "panoptic") for i in range(n)]
    return ArrayDataset(np.stack([t[0] for t in triples]), np.stack([t[1] for t in triples]),
                        tuple(f"shape{i:05d}" for i in range(n)), instances=np.stack([t[2] for t in triples]))
