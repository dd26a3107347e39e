"""How close a forward pass runs to a ReLU or max-pool kink, in units of float32 rounding error.

ReLU and max-pooling are not differentiable where a ReLU input is 0 or two pooled values tie. When a
value sits closer to such a kink than float32's rounding error at that layer, torch and Keras can fall
on different sides, and their *gradients* differ by a whole path's contribution although both are
right (pitfall ``relu_kink_flip``). The margin of a layer is (distance of a value from its kink in
float64) / (largest float32 error in that layer); a parity run draws another batch when the smallest
margin is below ``KINK_MARGIN``, as gradient checkers avoid non-differentiable points.

The activations come from a framework's forward pass run twice, in float64 and in float32
(``segmentation_torch.harness.kink_margin`` records them), or from ``segparity.reference.unet``.
"""

from __future__ import annotations

import numpy as np

# Distance from a kink, in float32 errors of the probing run (whose summation order differs from the
# other framework's and oneDNN's: hence a factor 10, not 1).
KINK_MARGIN = 10.0


def pool_gap(x: np.ndarray) -> float:
    """Smallest gap between the two largest values of a 2x2, stride-2 window of ``x (N, C, H, W)``
    (partial windows at odd edges included, as ceil-mode pooling sees them), over windows whose maximum
    is positive: after a ReLU, all-zero windows tie harmlessly (the gradient is 0 wherever it goes)."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + h % 2, w + w % 2), -np.inf)
    padded[:, :, :h, :w] = x
    windows = padded.reshape(n, c, (h + 1) // 2, 2, (w + 1) // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    top2 = np.sort(windows.reshape(n, c, (h + 1) // 2, (w + 1) // 2, 4), axis=-1)[..., -2:]
    gaps = (top2[..., 1] - top2[..., 0])[top2[..., 1] > 0]
    return float(gaps.min()) if gaps.size else float("inf")


def kink_margin(relu_inputs: list[tuple[np.ndarray, np.ndarray]],
                pool_inputs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Smallest margin over layers, given ``(float64, float32)`` pairs of every ReLU and max-pool input."""
    margin = np.inf
    for z64, z32 in relu_inputs:
        error = float(np.max(np.abs(z32.astype(np.float64) - z64)))
        if error > 0:
            margin = min(margin, float(np.min(np.abs(z64))) / error)
    for x64, x32 in pool_inputs:
        error = float(np.max(np.abs(x32.astype(np.float64) - x64)))
        if error > 0:
            margin = min(margin, pool_gap(x64) / error)
    return margin
