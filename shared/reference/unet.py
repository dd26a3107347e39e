"""U-Net forward pass in plain numpy (float64): a third implementation of the network.

Reads canonical weights (``segparity.weights.layout``) and ``(N, C, H, W)`` images; mirrors
``segmentation_torch/unet.py`` step by step. The logits of torch and Keras are also checked against
this reference (``tests/parity/test_unet.py``), and its ``kink_margin`` (``segparity.comparison.kinks``) is the
framework-free cross-check of the torch harness's probe.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from segparity.comparison import kinks


def conv2d(x, weight, bias, padding: str):
    """``x (N, I, H, W)``, ``weight (O, I, k, k)`` -> ``(N, O, H', W')``; "same" pads (k-1)/2."""
    k = weight.shape[-1]
    pad = (k - 1) // 2 if padding == "same" else 0
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, (k, k), axis=(2, 3))  # (N, I, H', W', k, k)
    out = np.einsum("nihwab,oiab->nohw", windows, weight, optimize=True)
    return out if bias is None else out + bias[None, :, None, None]


def conv_transpose_2x2(x, weight, bias):
    """Stride-2, 2x2 transposed conv: ``weight (I, O, 2, 2)``; every input pixel paints a 2x2 block."""
    n, _, h, w = x.shape
    out = np.einsum("nihw,ioab->nohawb", x, weight).reshape(n, weight.shape[1], 2 * h, 2 * w)
    return out if bias is None else out + bias[None, :, None, None]


def upsample_bilinear_2x(x):
    """x2 bilinear, half-pixel centres, source coordinates clamped at the edges (align_corners=False)."""
    for axis in (2, 3):
        size = x.shape[axis]
        src = np.maximum((np.arange(2 * size) + 0.5) / 2 - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        frac = (src - lo).reshape([-1 if a == axis else 1 for a in range(4)])
        x = np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac
    return x


def max_pool_2x2(x):
    """2x2 max-pool, stride 2 (sizes are even in the U-Net)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def batch_norm(x, weights, prefix, eps, training):
    if training:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = weights[f"{prefix}.mean"], weights[f"{prefix}.var"]
    shape = (1, -1, 1, 1)
    return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * weights[f"{prefix}.scale"].reshape(shape)
            + weights[f"{prefix}.bias"].reshape(shape))


def center_crop(x, height, width):
    top, left = (x.shape[2] - height) // 2, (x.shape[3] - width) // 2
    return x[:, :, top:top + height, left:left + width]


class _Probe:
    """Records every ReLU input and max-pool input, in execution order."""

    def __init__(self):
        self.relu_inputs: list[np.ndarray] = []
        self.pool_inputs: list[np.ndarray] = []

    def relu(self, z):
        self.relu_inputs.append(z)
        return np.maximum(z, 0.0)

    def pool(self, x):
        self.pool_inputs.append(x)
        return max_pool_2x2(x)


def _conv_block(x, w, prefix, spec, training, probe):
    bn = spec.batch_norm
    for i in range(1, spec.convs_per_block + 1):
        x = conv2d(x, w[f"{prefix}.conv{i}.weight"], None if bn else w[f"{prefix}.conv{i}.bias"], spec.padding)
        if bn:
            x = batch_norm(x, w, f"{prefix}.bn{i}", spec.bn_eps, training)
        x = probe.relu(x)
    return x


def unet_forward(spec, weights: dict, images: np.ndarray, *, training: bool, probe: _Probe | None = None,
                 dtype=np.float64):
    """Logits ``(N, num_classes, H', W')`` for canonical ``weights`` and ``images (N, C, H, W)``."""
    probe = probe or _Probe()
    w = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
    x = np.asarray(images, dtype=dtype)
    skips = []
    for i in range(spec.depth):
        x = _conv_block(x, w, f"encoder.{i}", spec, training, probe)
        skips.append(x)
        x = probe.pool(x)
    x = _conv_block(x, w, "bottleneck", spec, training, probe)
    for j, skip in enumerate(reversed(skips)):
        up_bias = None if spec.batch_norm or spec.upsample == "resize" else w[f"decoder.{j}.up.bias"]
        if spec.upsample == "transpose":
            x = conv_transpose_2x2(x, w[f"decoder.{j}.up.weight"], up_bias)
        elif spec.upsample == "bilinear":
            x = conv2d(upsample_bilinear_2x(x), w[f"decoder.{j}.up.weight"], up_bias, "valid")
        else:
            x = upsample_bilinear_2x(x)
        x = np.concatenate([center_crop(skip, x.shape[2], x.shape[3]), x], axis=1)
        x = _conv_block(x, w, f"decoder.{j}", spec, training, probe)
    return conv2d(x, w["head.weight"], w["head.bias"], "valid")


def kink_margin(spec, weights: dict, images: np.ndarray) -> float:
    """Smallest (distance from a kink in float64) / (float32 error of that layer), training mode."""
    exact, rounded = _Probe(), _Probe()
    unet_forward(spec, weights, images, training=True, probe=exact, dtype=np.float64)
    unet_forward(spec, weights, images, training=True, probe=rounded, dtype=np.float32)
    return kinks.kink_margin(list(zip(exact.relu_inputs, rounded.relu_inputs)),
                             list(zip(exact.pool_inputs, rounded.pool_inputs)))
