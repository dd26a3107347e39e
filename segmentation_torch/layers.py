"""Building blocks with every numeric convention explicit. Tensors are ``(N, C, H, W)``.

Twin of ``segmentation_tf/layers.py``: the same functions and classes, in the same order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from segparity.networks.layer_flavours import check_layers


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with epsilon and momentum required, never defaulted.

    ``momentum`` is torch's convention: running = (1 - momentum) * running + momentum * batch.
    torch updates ``running_var`` with the *unbiased* batch variance (n / (n - 1)); the Keras twin
    does the same on purpose. ``unbiased_running_var=False`` updates it with the biased variance, as
    ``keras.layers.BatchNormalization`` does (the lesson's TensorFlow exercise, ``segparity.networks.lesson``).
    ``synchronized=True``: in training mode under ``torch.distributed`` (``segparity train --distributed
    --sync-batchnorm``), the batch statistics are those of all processes' batches together.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float, unbiased_running_var: bool = True,
                 synchronized: bool = False):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.unbiased_running_var = unbiased_running_var
        self.synchronized = synchronized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.synchronized and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            return self._synchronized_forward(x)
        if not self.training or self.unbiased_running_var:
            return super().forward(x)
        with torch.no_grad():  # Keras's update: the biased batch variance, accumulated in float64 as torch's kernel
            wide = x.detach().double()
            mean, variance = wide.mean(dim=(0, 2, 3)), wide.var(dim=(0, 2, 3), unbiased=False)
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.to(x.dtype))
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * variance.to(x.dtype))
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    def _synchronized_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode with the batch statistics of every process's batch together (``synchronized``, in a
        ``torch.distributed`` process group): per-channel sums, sums of squares and counts in float64, summed over
        the processes by one all-reduce that autograd differentiates (``_SumOverProcesses``), so gradients flow
        through the other processes' statistics too. ``nn.SyncBatchNorm`` does the same on GPUs
        only (torch 2.13 refuses CPU tensors); this runs on both, and keeps ``unbiased_running_var``."""
        channels = x.shape[1]
        wide = x.double()
        count = torch.full((1,), x.numel() // channels, dtype=torch.float64, device=x.device)
        local = torch.cat([wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3)), count])
        total = _SumOverProcesses.apply(local)
        n = total[-1]
        mean = total[:channels] / n
        variance = (total[channels:2 * channels] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            running = variance * n / (n - 1).clamp_min(1.0) if self.unbiased_running_var else variance
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.to(x.dtype))
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * running.to(x.dtype))
            self.num_batches_tracked.add_(1)
        scale = torch.rsqrt(variance.to(x.dtype) + self.eps) * self.weight
        shift = self.bias - mean.to(x.dtype) * scale
        return x * scale.view(1, channels, 1, 1) + shift.view(1, channels, 1, 1)


class _SumOverProcesses(torch.autograd.Function):
    """``x`` summed over every process of the default group; its gradient is the upstream gradient summed over
    the processes too (each process's sum feeds every process's loss)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def batch_norm_layer(num_features: int, *, eps: float, momentum: float, layers: str,
                     unbiased_running_var: bool = True) -> nn.BatchNorm2d:
    """The BatchNorm of flavour ``layers`` (``segparity.networks.layer_flavours``), ``momentum`` in torch's convention.

    ``"parity"``: segparity's ``BatchNorm`` (``unbiased_running_var`` as given). ``"stock"``: ``nn.BatchNorm2d``
    itself, whose running variance is always updated unbiased (torch's own convention, whatever
    ``unbiased_running_var`` says). The same ``state_dict`` either way."""
    if check_layers(layers) == "stock":
        return nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
    return BatchNorm(num_features, eps=eps, momentum=momentum, unbiased_running_var=unbiased_running_var)


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """``nn.Conv2d``: ``padding`` zeros on every side, whatever the stride (the Keras twin matches this).

    The Keras twin computes an unpadded 1x1 conv at stride > 1 as a strided slice and a stride-1 conv, to
    avoid a TensorFlow weight-gradient bug (pitfall ``tf_onednn_strided_pointwise_weight_grad``); torch's
    strided 1x1 conv is right and stays one op here."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                     bias=bias)


def depthwise_conv2d(channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0, dilation: int = 1,
                     bias: bool = True) -> nn.Conv2d:
    """One ``kernel_size`` filter per channel: ``nn.Conv2d(groups=channels)`` (canonical kind
    ``depthwise_conv2d``; the Keras twin is a ``DepthwiseConv2D``)."""
    return nn.Conv2d(channels, channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                     groups=channels, bias=bias)


def conv3x3(in_channels: int, out_channels: int, *, padding: str, bias: bool) -> nn.Conv2d:
    """3x3 convolution, stride 1: ``padding="same"`` pads 1 on every side, ``"valid"`` pads nothing."""
    return conv2d(in_channels, out_channels, 3, padding=1 if padding == "same" else 0, bias=bias)


class ConvBNReLU(nn.Module):
    """``conv`` -> [``bn``] -> [ReLU]. The conv has a bias only without BN (BN would cancel it).

    ``padding`` defaults to ``dilation * (kernel_size - 1) // 2`` on every side (size kept at stride 1).
    ``bn_momentum`` is torch's convention; ``layers`` the BatchNorm's flavour (``batch_norm_layer``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, batch_norm: bool, bn_eps: float,
                 bn_momentum: float, relu: bool = True, layers: str = "parity"):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                           bias=not batch_norm)
        self.bn = batch_norm_layer(out_channels, eps=bn_eps, momentum=bn_momentum, layers=layers) if batch_norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


def max_pool_2x2(x: torch.Tensor, *, ceil_mode: bool = False) -> torch.Tensor:
    """2x2 max-pool, stride 2. ``ceil_mode=True`` keeps a last, partial row/column (Caffe's rounding)."""
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=ceil_mode)


def max_pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max-pool, stride 2 (odd sizes floored), and the argmax of each window.

    Indices ``(N, C, H//2, W//2)`` int64 are flat positions ``row * W + col`` within each image's channel
    plane; a tie goes to the first maximum in row-major order.
    """
    return F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)


def max_unpool(x: torch.Tensor, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Put each value of ``x (N, C, h, w)`` at its ``indices`` in a zero ``(N, C, height, width)`` map."""
    return F.max_unpool2d(x, indices, kernel_size=2, stride=2, output_size=(height, width))


def upsample_bilinear_2x(x: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """x2 bilinear resize with half-pixel centres (``align_corners=False``), edges clamped; ``align_corners=True``
    maps the corner pixels' centres onto each other (``nn.UpsamplingBilinear2d``, the lesson's PyTorch exercise)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)


def resize_bilinear(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize to ``height x width`` with half-pixel centres (``align_corners=False``), no antialiasing."""
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` of ``x``; the extra row/column, if odd, is cut at the bottom/right."""
    top = (x.shape[2] - height) // 2
    left = (x.shape[3] - width) // 2
    return x[:, :, top:top + height, left:left + width]


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``height x width`` window of ``x`` whose top-left pixel is ``(top, left)``."""
    return x[:, :, top:top + height, left:left + width]


def split_outputs(x: torch.Tensor, spec) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The head's ``(N, num_classes + embedding_dim, H, W)`` output as the model returns it: the logits
    alone when ``spec.embedding_dim`` is 0, else ``(logits (N, num_classes, H, W), embedding (N, E, H, W))``."""
    if spec.embedding_dim == 0:
        return x
    return x[:, :spec.num_classes], x[:, spec.num_classes:]
