"""Built-in synthetic data: images of filled shapes with exact label masks, drawn with skimage.draw.

Class 0 is background; each further class is one shape type (disk, rectangle, triangle, ellipse...)
with its own colour. Deterministic for a given seed.

Two entry points: ``synthetic_batch`` (channels-first batches for the parity report) and
``synthetic_sample`` (one channels-last image with semantic and instance masks: the built-in dataset
of ``segparity train --data synthetic``, sample ``i`` depending only on ``(seed, i)``).
"""

from __future__ import annotations

import numpy as np
from skimage.draw import disk, ellipse, polygon, rectangle


def _draw(kind: int, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    r = max(1.5, rng.uniform(0.12, 0.3) * min(h, w))
    shape = (h, w)
    if kind % 4 == 0:
        return disk((cy, cx), r, shape=shape)
    if kind % 4 == 1:
        return rectangle((cy - r, cx - r), (cy + r, cx + 0.6 * r), shape=shape)
    if kind % 4 == 2:
        return polygon([cy - r, cy + r, cy + r], [cx, cx - r, cx + r], shape=shape)
    return ellipse(cy, cx, r, 0.5 * r, shape=shape, rotation=rng.uniform(0, np.pi))


def synthetic_batch(n: int, in_channels: int, height: int, width: int, num_classes: int, seed: int,
                    ignore_index: int | None = None, ignore_fraction: float = 0.0):
    """Return ``images (N, C, H, W) float32 in [0, 1]`` and ``labels (N, H, W) int64``.

    Each image gets up to two shapes per foreground class over a noisy background. With
    ``ignore_index``, a random ``ignore_fraction`` of pixels is set to it.
    """
    rng = np.random.default_rng(seed)
    palette = rng.uniform(0.1, 1.0, size=(num_classes, in_channels)).astype(np.float32)
    images = rng.normal(0.0, 0.05, size=(n, in_channels, height, width)).astype(np.float32)
    labels = np.zeros((n, height, width), dtype=np.int64)
    for i in range(n):
        for cls in range(1, num_classes):
            for _ in range(int(rng.integers(1, 3))):
                rr, cc = _draw(cls - 1, rng, height, width)
                labels[i, rr, cc] = cls
        images[i] += palette[labels[i]].transpose(2, 0, 1)
    images = np.clip(images, 0.0, 1.0)
    if ignore_index is not None and ignore_fraction > 0:
        labels[rng.random(labels.shape) < ignore_fraction] = ignore_index
    return images, labels


def synthetic_sample(index: int, height: int, width: int, num_classes: int, seed: int, in_channels: int = 3):
    """Sample ``index`` of the synthetic dataset ``seed``.

    Returns ``image (H, W, in_channels) float32 in [0, 1]``, ``semantic (H, W) int64`` (0 = background,
    class ``k`` = shape type ``k - 1``: disk, rectangle, triangle, ellipse, ...) and ``instances (H, W)
    int32`` (0 = background, 1..K one id per visible shape, numbered in drawing order; a shape hidden
    entirely by later ones gets no id). Every shape gets a random colour at least 0.25 away from the
    image's background colour in some channel, and pixel noise (sd 0.08) is added: the class is told
    by shape, not by colour (unlike ``synthetic_batch``), so a network has to segment, not threshold.
    """
    if not 0 <= index:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, index])
    semantic = np.zeros((height, width), dtype=np.int64)
    instances = np.zeros((height, width), dtype=np.int32)
    background = rng.uniform(0.0, 1.0, size=in_channels)
    colours = [background]
    for cls in range(1, num_classes):
        for _ in range(int(rng.integers(1, 3))):
            rr, cc = _draw(cls - 1, rng, height, width)
            semantic[rr, cc] = cls
            instances[rr, cc] = len(colours)
            colour = rng.uniform(0.0, 1.0, size=in_channels)
            while np.abs(colour - background).max() < 0.25:
                colour = rng.uniform(0.0, 1.0, size=in_channels)
            colours.append(colour)
    image = np.asarray(colours)[instances] + rng.normal(0.0, 0.08, size=(height, width, in_channels))
    visible = np.union1d([0], instances)
    renumber = np.zeros(len(colours), dtype=np.int32)
    renumber[visible] = np.arange(len(visible), dtype=np.int32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), semantic, renumber[instances]


def standardize(images: np.ndarray) -> np.ndarray:
    """Per-channel zero mean and unit variance over the batch, ``(N, C, H, W)`` float32.

    Parity runs feed standardised images, as a real pipeline does: raw [0, 1] images through a
    narrow first layer can leave a BN channel with tiny batch variance, where float32 itself cannot
    resolve input gradients to 1e-5 (pitfall "bn_small_variance_conditioning").
    """
    mean = images.mean(axis=(0, 2, 3), keepdims=True)
    std = images.std(axis=(0, 2, 3), keepdims=True)
    return ((images - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def one_hot(labels: np.ndarray, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``(N, H, W)`` labels -> ``(N, C, H, W)`` float32 one-hot; ignored pixels are all zeros."""
    labels = np.asarray(labels)
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    out = (labels[:, None] == np.arange(num_classes)[None, :, None, None]) & keep[:, None]
    return out.astype(np.float32)
