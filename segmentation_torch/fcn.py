"""FCN-32s/16s/8s in PyTorch. Input ``(N, C_in, H, W)`` float32, output ``(N, num_classes, H, W)`` logits.

Layers, options and crop offsets: ``segparity.networks.fcn``. Attribute paths (``encoder.0.1.conv``,
``score_pool4``) equal the Keras layer names in ``segmentation_tf/fcn.py``. Transposed convs are
unpadded and start as bilinear up-sampling; every crop offset comes from ``crop_offsets``.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import ConvBNReLU, conv2d, crop, max_pool_2x2, split_outputs
from segparity.networks.fcn import PAPER_FIRST_PADDING, FCNSpec, bilinear_kernel, crop_offsets
from segparity.networks.layer_flavours import check_layers

from segparity.networks.segnet import VGG16_ENCODER
from segparity.validation import check_image_batch


def upscore(channels: int, stride: int) -> nn.ConvTranspose2d:
    """Unpadded transposed conv, kernel 2 * stride, no bias, initialised to bilinear x``stride``."""
    layer = nn.ConvTranspose2d(channels, channels, kernel_size=2 * stride, stride=stride, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(bilinear_kernel(channels, 2 * stride)))  # canonical IOHW = torch's
    return layer


def fuse(upsampled: torch.Tensor, score: torch.Tensor, offsets: tuple[int, int]) -> torch.Tensor:
    """Sum of the two maps, each cropped at its offset to the size they share."""
    height = min(upsampled.shape[2] - offsets[0], score.shape[2] - offsets[1])
    width = min(upsampled.shape[3] - offsets[0], score.shape[3] - offsets[1])
    return (crop(upsampled, offsets[0], offsets[0], height, width)
            + crop(score, offsets[1], offsets[1], height, width))


class FCN(nn.Module):
    """FCN; arguments as ``segparity.networks.fcn.FCNSpec``, and ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, variant: str = "8s", encoder: tuple = VGG16_ENCODER,
                 fc_channels: int = 4096, fc_kernel_size: int = 7, padding: str = "same", batch_norm: bool = False,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, layers: str = "parity"):
        super().__init__()
        self.spec = FCNSpec(in_channels, num_classes, variant, encoder, fc_channels, fc_kernel_size, padding,
                            batch_norm, bn_eps, bn_momentum, embedding_dim)
        self.layer_flavour = check_layers(layers)
        spec, paper = self.spec, padding == "paper"
        bn = dict(batch_norm=batch_norm, bn_eps=bn_eps, bn_momentum=bn_momentum, layers=layers)
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, stage in enumerate(spec.encoder):
            stack = nn.ModuleList()
            for j, cout in enumerate(stage):
                first = paper and (i, j) == (0, 0)
                stack.append(ConvBNReLU(cin, cout, 3, padding=PAPER_FIRST_PADDING if first else 1, **bn))
                cin = cout
            self.encoder.append(stack)
        self.fc6 = ConvBNReLU(cin, fc_channels, fc_kernel_size, padding=0 if paper else (fc_kernel_size - 1) // 2, **bn)
        self.fc7 = ConvBNReLU(fc_channels, fc_channels, 1, **bn)
        outputs = self.spec.out_channels()  # logits, then the embedding channels (if any)
        self.score_fr = conv2d(fc_channels, outputs, 1)
        if spec.skips() >= 1:
            self.upscore2 = upscore(outputs, 2)
            self.score_pool4 = conv2d(spec.encoder[-2][-1], outputs, 1)
        if spec.skips() >= 2:
            self.upscore_pool4 = upscore(outputs, 2)
            self.score_pool3 = conv2d(spec.encoder[-3][-1], outputs, 1)
        self.upscore = upscore(outputs, spec.final_stride())
        self.offsets = crop_offsets(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(self.score_fr.weight.dtype).removeprefix("torch."))
        height, width = x.shape[2], x.shape[3]
        pools = []
        for stage in self.encoder:
            for layer in stage:
                x = layer(x)
            x = max_pool_2x2(x, ceil_mode=True)  # Caffe rounds pooled sizes up; equal to floor at even sizes
            pools.append(x)
        x = self.score_fr(self.fc7(self.fc6(x)))
        if self.spec.skips() >= 1:
            x = fuse(self.upscore2(x), self.score_pool4(pools[-2]), self.offsets["pool4"])
        if self.spec.skips() >= 2:
            x = fuse(self.upscore_pool4(x), self.score_pool3(pools[-3]), self.offsets["pool3"])
        top = self.offsets["output"][0]
        return split_outputs(crop(self.upscore(x), top, top, height, width), self.spec)
