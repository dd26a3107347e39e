"""Building blocks with every numeric convention explicit. Tensors are ``(N, C, H, W)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with epsilon and momentum required, never defaulted.

    ``momentum`` is torch's convention: running = (1 - momentum) * running + momentum * batch.
    torch updates ``running_var`` with the *unbiased* batch variance (n / (n - 1)); the Keras twin
    does the same on purpose.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float):
        super().__init__(num_features, eps=eps, momentum=momentum)


def conv3x3(in_channels: int, out_channels: int, *, padding: str, bias: bool) -> nn.Conv2d:
    """3x3 convolution, stride 1: ``padding="same"`` pads 1 on every side, ``"valid"`` pads nothing."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1 if padding == "same" else 0, bias=bias)


def upsample_bilinear_2x(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear resize with half-pixel centres (``align_corners=False``), edges clamped."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` of ``x``; the extra row/column, if odd, is cut at the bottom/right."""
    top = (x.shape[2] - height) // 2
    left = (x.shape[3] - width) // 2
    return x[:, :, top:top + height, left:left + width]
