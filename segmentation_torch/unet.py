"""U-Net in PyTorch. Input ``(N, C_in, H, W)`` float32, output ``(N, num_classes, H', W')`` logits.

``H' = H`` with ``padding="same"``; with ``padding="valid"`` see ``segparity.networks.geometry`` (572 -> 388).
Attribute paths (``encoder.0.conv1``) equal the Keras layer names in ``segmentation_tf/unet.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmentation_torch.layers import batch_norm_layer, center_crop, conv3x3, split_outputs, upsample_bilinear_2x
from segparity.networks.layer_flavours import check_layers
from segparity.networks.unet import UNetSpec

from segparity.validation import check_image_batch


class ConvBlock(nn.Module):
    """conv3x3 -> [BN] -> ReLU, then (``convs_per_block=2``) conv3x3 -> [BN] -> ReLU again; BN of flavour ``layers``."""

    def __init__(self, in_channels: int, out_channels: int, *, spec: UNetSpec, layers: str):
        super().__init__()
        bn = spec.batch_norm
        norm = dict(eps=spec.bn_eps, momentum=spec.bn_momentum, layers=layers)
        self.conv1 = conv3x3(in_channels, out_channels, padding=spec.padding, bias=not bn)
        self.bn1 = batch_norm_layer(out_channels, **norm) if bn else None
        two = spec.convs_per_block == 2
        self.conv2 = conv3x3(out_channels, out_channels, padding=spec.padding, bias=not bn) if two else None
        self.bn2 = batch_norm_layer(out_channels, **norm) if bn and two else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.bn1(x)
        x = F.relu(x)
        if self.conv2 is None:
            return x
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.bn2(x)
        return F.relu(x)


class UpBlock(ConvBlock):
    """Up-sample x2, concatenate ``[skip, up]`` on channels, then ConvBlock.

    ``"transpose"`` and ``"bilinear"`` halve the channels while up-sampling; ``"resize"`` keeps them.
    """

    def __init__(self, in_channels: int, out_channels: int, *, spec: UNetSpec, layers: str):
        up_channels = in_channels if spec.upsample == "resize" else out_channels
        super().__init__(out_channels + up_channels, out_channels, spec=spec, layers=layers)
        self.upsample = spec.upsample
        bias = not spec.batch_norm  # up -> concat -> conv1 -> BN: BN cancels a per-channel bias here
        if spec.upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=bias)
        elif spec.upsample == "bilinear":
            self.up = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)
        else:
            self.up = None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.upsample == "transpose":
            x = self.up(x)
        elif self.upsample == "bilinear":
            x = self.up(upsample_bilinear_2x(x))
        else:
            x = upsample_bilinear_2x(x)
        skip = center_crop(skip, x.shape[2], x.shape[3])
        return super().forward(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net; arguments as ``segparity.networks.unet.UNetSpec``, and ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 64, depth: int = 4,
                 padding: str = "same", upsample: str = "transpose", batch_norm: bool = True,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, convs_per_block: int = 2,
                 embedding_dim: int = 0, layers: str = "parity"):
        super().__init__()
        self.spec = UNetSpec(in_channels, num_classes, base_channels, depth, padding, upsample, batch_norm,
                             bn_eps, bn_momentum, convs_per_block, embedding_dim)
        self.layer_flavour = check_layers(layers)
        ch = self.spec.stage_channels()
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else ch[i - 1], ch[i], spec=self.spec, layers=layers) for i in range(depth)
        )
        self.bottleneck = ConvBlock(ch[depth - 1], ch[depth], spec=self.spec, layers=layers)
        self.decoder = nn.ModuleList(
            UpBlock(ch[depth - j], ch[depth - j - 1], spec=self.spec, layers=layers) for j in range(depth)
        )
        self.head = nn.Conv2d(ch[0], self.spec.out_channels(), kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(self.head.weight.dtype).removeprefix("torch."))
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = self.bottleneck(x)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x, skip)
        return split_outputs(self.head(x), self.spec)
