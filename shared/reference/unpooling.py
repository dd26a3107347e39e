"""Max-pooling with argmax indices and max-unpooling in numpy: the reference both frameworks meet.

torch returns per-plane indices ``row * W + col`` with shape ``(N, C, h, w)``; TensorFlow's
``max_pool_with_argmax(include_batch_in_index=True)`` returns ``((n * H + row) * W + col) * C + c``
with shape ``(N, h, w, C)``. ``tf_to_torch_indices`` maps the second to the first, so tests can
compare the two conventions element for element. Ties go to the first maximum in row-major order.
"""

from __future__ import annotations

import numpy as np


def max_pool_with_indices(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2, stride 2, odd sizes floored. ``x (N, C, H, W)`` -> values and torch-style indices ``(N, C, h, w)``."""
    n, c, height, width = x.shape
    h, w = height // 2, width // 2
    windows = x[:, :, :2 * h, :2 * w].reshape(n, c, h, 2, w, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w, 4)
    first_max = np.argmax(windows, axis=-1)  # np.argmax returns the first maximum: row-major tie rule
    rows = 2 * np.arange(h)[:, None] + first_max // 2
    cols = 2 * np.arange(w)[None, :] + first_max % 2
    return np.take_along_axis(windows, first_max[..., None], axis=-1)[..., 0], rows * width + cols


def max_unpool(x: np.ndarray, indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero ``(N, C, height, width)`` map with each value of ``x (N, C, h, w)`` at its torch-style index."""
    n, c = x.shape[:2]
    out = np.zeros((n, c, height * width), x.dtype)
    np.put_along_axis(out, indices.reshape(n, c, -1), x.reshape(n, c, -1), axis=-1)
    return out.reshape(n, c, height, width)


def tf_to_torch_indices(indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """TensorFlow's batch-flat NHWC argmax ``(N, h, w, C)`` -> torch's per-plane ``(N, C, h, w)``."""
    channels = indices.shape[-1]
    return np.transpose((indices // channels) % (height * width), (0, 3, 1, 2))
