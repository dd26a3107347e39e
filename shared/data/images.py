"""Reading one image or mask with scikit-image, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import io

from segparity.data.samples import DatasetError


def read_image(path: str | Path) -> np.ndarray:
    """RGB image ``(H, W, 3)`` float32 in [0, 1] (grey images are repeated, an alpha channel dropped)."""
    pixels = _read(path)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        raise DatasetError(f"image {path} has shape {pixels.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    return _unit_range(pixels[..., :3], path)


def read_mask(path: str | Path, threshold: int | None = None) -> np.ndarray:
    """Binary mask ``(H, W)`` uint8 0/1 from a file holding 0 and 1, or 0 and 255 (an RGB mask must have
    equal channels). Anything else is an error naming the file and the values found, unless
    ``threshold`` is given: then foreground is ``value > threshold`` (for masks saved lossily, e.g. JPEG)."""
    pixels = _read(path)
    if pixels.ndim == 3:
        if not (pixels[..., :3] == pixels[..., :1]).all():
            raise DatasetError(f"mask {path} is a colour image with differing channels; expected a grey 0/1 or 0/255 mask")
        pixels = pixels[..., 0]
    if threshold is not None:
        return (pixels > threshold).astype(np.uint8)
    values = np.unique(pixels)
    if values.dtype == bool or set(values.tolist()) <= {0, 1}:
        return pixels.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (pixels == 255).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
    raise DatasetError(f"mask {path} holds values {shown}; expected a binary mask of 0/1 or 0/255 "
                       f"(pass a threshold, --mask-threshold, for masks saved lossily)")


def _read(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file {path} does not exist")
    try:
        return np.asarray(io.imread(path))
    except Exception as error:  # skimage/imageio raise many types for unreadable files
        raise DatasetError(f"cannot read {path} as an image: {error}") from error


def _unit_range(pixels: np.ndarray, path) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    if pixels.dtype == bool:
        return pixels.astype(np.float32)
    raise DatasetError(f"image {path} has dtype {pixels.dtype}; expected 8- or 16-bit pixels")
