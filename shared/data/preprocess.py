"""One preprocessing path for both frameworks: resize, normalise, seeded augmentation; numpy in, numpy out.

Images are ``(H, W, 3)`` float32 in [0, 1], masks ``(H, W)`` integer labels (0/1 for PH2 and MADS).
The framework adapters only stack and transpose what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize

from segparity.data.samples import DatasetError


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` -> ``(size[0], size[1], 3)`` float32, bilinear with anti-aliasing (the lesson's call)."""
    out = resize(image, size + image.shape[2:], order=1, anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Integer label map resized without anti-aliasing or mixing labels: nearest neighbour (for a 0/1
    mask this equals the lesson's bilinear-then-``> 0.5`` up to boundary pixels)."""
    out = resize(mask, size, order=0, anti_aliasing=False, preserve_range=True)
    return out.astype(mask.dtype)


def normalize(image: np.ndarray, mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> np.ndarray:
    """``(image - mean) / std`` per channel; ``None`` leaves the image as it is (the lesson normalises nothing)."""
    if mean is None and std is None:
        return image
    mean = np.zeros(image.shape[-1]) if mean is None else np.asarray(mean)
    std = np.ones(image.shape[-1]) if std is None else np.asarray(std)
    if np.any(std <= 0):
        raise DatasetError(f"normalisation std must be positive, got {tuple(std)}")
    return ((image - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class Augment:
    """Seeded augmentation applied identically to image and mask: horizontal and vertical flips (each
    with probability 1/2), a rotation by a random multiple of 90° (square crops only) and a random crop
    to ``crop`` (None: no crop). ``Augment()`` with every switch off is the identity."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    crop: tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """Return the augmented ``(image, mask)``; ``rng`` decides everything (same rng state, same result)."""
        if self.crop is not None:
            h, w = self.crop
            if h > mask.shape[0] or w > mask.shape[1]:
                raise DatasetError(f"crop {self.crop} is larger than the image {mask.shape}")
            top = int(rng.integers(0, mask.shape[0] - h + 1))
            left = int(rng.integers(0, mask.shape[1] - w + 1))
            image, mask = image[top:top + h, left:left + w], mask[top:top + h, left:left + w]
        if self.hflip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.vflip and rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        if self.rot90:
            if mask.shape[0] != mask.shape[1]:
                raise DatasetError(f"rot90 needs square images, got {mask.shape}; crop or resize to a square first")
            turns = int(rng.integers(0, 4))
            image, mask = np.rot90(image, turns, axes=(0, 1)), np.rot90(mask, turns, axes=(0, 1))
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample's augmentation: a function of (seed, epoch, sample index) only, so
    both frameworks, any worker count and a resumed run draw the same augmentation."""
    return np.random.default_rng([seed, epoch, index])
