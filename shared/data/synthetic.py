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
from skimage.measure import label as connected_components


def _draw(kind: int, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns of a shape of type ``kind`` at a random place and size."""
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    r = max(1.5, rng.uniform(0.12, 0.3) * min(h, w))
    return _shape(kind, cy, cx, r, rng, (h, w))


def _shape(kind: int, cy: float, cx: float, r: float, rng: np.random.Generator,
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Disk, rectangle, triangle or (randomly rotated) ellipse of size ``r`` centred at ``(cy, cx)``."""
    if kind % 4 == 0:
        return disk((cy, cx), r, shape=shape)
    if kind % 4 == 1:
        return rectangle((cy - r, cx - r), (cy + r, cx + 0.6 * r), shape=shape)
    if kind % 4 == 2:
        return polygon([cy - r, cy + r, cy + r], [cx, cx - r, cx + r], shape=shape)
    return ellipse(cy, cx, r, 0.5 * r, shape=shape, rotation=rng.uniform(0, np.pi))


SHAPE_NAMES = ("disk", "rectangle", "triangle", "ellipse")  # shape kind k is SHAPE_NAMES[k % 4] (``_shape``)


def synthetic_class_names(num_classes: int, task: str = "semantic") -> list[str]:
    """Names of the synthetic labels 0..num_classes-1: background, then the shape of each class (kinds past
    the fourth repeat, numbered), and for the panoptic task the ground band last."""
    shapes = num_classes - 1 - (task == "panoptic")
    names = ["background"] + [SHAPE_NAMES[k % 4] + (f" {k // 4 + 1}" if k >= 4 else "") for k in range(shapes)]
    return names + ["ground"] * (task == "panoptic")


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


TASKS = ("semantic", "instance", "panoptic")


def task_classes(task: str, num_classes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(things, stuffs)`` of the synthetic data for ``task`` with ``num_classes`` label classes.

    ``"instance"``: background (0) is stuff, every shape class a thing. ``"panoptic"``: background and
    the ground band (the last class) are stuff, the shape classes between them things. ``"semantic"``
    has no instances: every class is stuff.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    least = 3 if task == "panoptic" else 2
    if num_classes < least:
        raise ValueError(f"the {task} task needs at least {least} classes (background, "
                         f"{'one shape and the ground band' if task == 'panoptic' else 'one shape'}), got {num_classes}")
    if task == "semantic":
        return (), tuple(range(num_classes))
    if task == "instance":
        return tuple(range(1, num_classes)), (0,)
    return tuple(range(1, num_classes - 1)), (0, num_classes - 1)


def _distinct_colour(rng: np.random.Generator, taken: list[np.ndarray], in_channels: int) -> np.ndarray:
    """A random colour at least 0.25 away (in some channel) from each of ``taken``, when one is found in 50 draws."""
    for _ in range(50):
        colour = rng.uniform(0.0, 1.0, size=in_channels)
        if all(np.abs(colour - other).max() >= 0.25 for other in taken):
            break
    return colour


def _instance_attempt(rng: np.random.Generator, height: int, width: int, num_things: int, in_channels: int,
                      ground: bool):
    """One try at an instance sample; None when a shape is mostly hidden or no same-class shapes touch."""
    semantic = np.zeros((height, width), dtype=np.int64)
    instances = np.zeros((height, width), dtype=np.int32)
    background = rng.uniform(0.0, 1.0, size=in_channels)
    colours, areas = [background], [0]
    if ground:  # a wavy band along the bottom, striped, behind the shapes
        rows, cols = np.mgrid[:height, :width]
        level = rng.uniform(0.65, 0.8) * height
        wave = rng.uniform(0.03, 0.08) * height * np.sin(2 * np.pi * cols / (width * rng.uniform(0.5, 1.0))
                                                        + rng.uniform(0, 2 * np.pi))
        semantic[rows > level + wave] = num_things + 1
        stripes = 0.8 + 0.2 * np.sin(np.pi * rows / 2.0)
        ground_colour = _distinct_colour(rng, [background], in_channels)
    pair_class = int(rng.integers(1, num_things + 1))
    side = min(height, width)
    for cls in range(1, num_things + 1):
        for j in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            r = max(2.0, rng.uniform(0.1, 0.2) * side)
            placed = [(cy, cx, r)]
            if cls == pair_class and j == 0:  # a second shape of the class, overlapping or touching the first
                r2 = max(2.0, rng.uniform(0.1, 0.2) * side)
                angle, gap = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 0.85) * (r + r2)
                placed.append((cy + gap * np.sin(angle), cx + gap * np.cos(angle), r2))
            for y, x, size in placed:
                rr, cc = _shape(cls - 1, y, x, size, rng, (height, width))
                semantic[rr, cc] = cls
                instances[rr, cc] = len(colours)
                colours.append(_distinct_colour(rng, colours, in_channels))
                areas.append(len(rr))
    visible = np.bincount(instances.ravel(), minlength=len(colours))
    if any(visible[k] < max(12, 0.4 * areas[k]) for k in range(1, len(colours))):
        return None
    merged = any(connected_components(semantic == c, connectivity=2).max() < len(np.unique(instances[semantic == c]))
                 for c in range(1, num_things + 1))
    if not merged:
        return None
    palette = np.asarray(colours)
    image = palette[instances]
    if ground:  # the band's visible pixels only: shapes in front of it keep their plain colour
        band = semantic == num_things + 1
        image[band] = ground_colour * stripes[band, None]
    image += rng.normal(0.0, 0.08, size=image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), semantic, instances


def synthetic_instance_sample(index: int, height: int, width: int, num_things: int, seed: int,
                              in_channels: int = 3, ground: bool = False):
    """Sample ``index`` of the synthetic instance (``ground=False``) or panoptic (``ground=True``) set ``seed``.

    Classes: 0 background (stuff); 1..``num_things`` shape types (things: disk, rectangle, triangle,
    ellipse, ...), one or two shapes each; with ``ground``, class ``num_things + 1`` is a striped wavy
    band along the bottom (stuff) in front of the background and behind the shapes. In every image
    one class gets an extra shape overlapping or touching one of its own, and the sample is redrawn
    until some class has fewer 8-connected regions than instances: a semantic map, however exact,
    cannot separate them (``segparity.reference.panoptic.panoptic_from_components`` merges them). Every shape keeps
    at least 40 % (and 12 pixels) of itself visible and gets a random colour at least 0.25 away from the
    background, the ground and every other shape; pixel noise sd 0.08.

    Returns ``image (H, W, in_channels) float32 in [0, 1]``, ``semantic (H, W) int64`` and ``instances
    (H, W) int32`` (0 = no instance, 1..K in drawing order). Depends only on ``(seed, index)``.
    """
    if not 0 <= index:
        raise ValueError(f"index must be >= 0, got {index}")
    if num_things < 1:
        raise ValueError(f"num_things must be >= 1, got {num_things}")
    rng = np.random.default_rng([seed, index, 1])  # a stream apart from synthetic_sample's
    for _ in range(200):
        sample = _instance_attempt(rng, height, width, num_things, in_channels, ground)
        if sample is not None:
            return sample
    raise ValueError(f"no synthetic instance sample with touching shapes found at {height}x{width}; "
                     f"use images of at least 32x32")


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
