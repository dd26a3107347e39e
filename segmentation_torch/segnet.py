"""SegNet in PyTorch. Input ``(N, C_in, H, W)`` float32, output ``(N, num_classes, H, W)`` logits.

Layers and options: ``segparity.networks.segnet``. Attribute paths (``encoder.0.1.conv``) equal the
Keras layer names in ``segmentation_tf/segnet.py``. Max-unpooling uses ``nn.functional.max_unpool2d``
with the indices of ``max_pool2d(return_indices=True)``.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import (ConvBNReLU, conv2d, max_pool_2x2, max_pool_with_indices, max_unpool,
                                       resize_bilinear, split_outputs)
from segparity.networks.layer_flavours import check_layers
from segparity.networks.segnet import SEGNET_DECODER, VGG16_ENCODER, SegNetSpec

from segparity.validation import check_image_batch


def conv_stack(in_channels: int, channels: tuple, *, spec: SegNetSpec, layers: str) -> nn.ModuleList:
    """3x3 conv-BN-ReLU layers with the output ``channels``, one after the other; BN of flavour ``layers``."""
    stack = nn.ModuleList()
    for cout in channels:
        stack.append(ConvBNReLU(in_channels, cout, 3, batch_norm=spec.batch_norm, bn_eps=spec.bn_eps,
                                bn_momentum=spec.bn_momentum, layers=layers))
        in_channels = cout
    return stack


class SegNet(nn.Module):
    """SegNet; arguments as ``segparity.networks.segnet.SegNetSpec`` (defaults: the paper's VGG-16 network), and
    ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, encoder: tuple = VGG16_ENCODER, bottleneck: tuple = (),
                 decoder: tuple = SEGNET_DECODER, upsample: str = "unpool", head_kernel_size: int = 3,
                 batch_norm: bool = True, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, layers: str = "parity"):
        super().__init__()
        self.spec = SegNetSpec(in_channels, num_classes, encoder, bottleneck, decoder, upsample, head_kernel_size,
                               batch_norm, bn_eps, bn_momentum, embedding_dim)
        self.layer_flavour = check_layers(layers)
        spec = self.spec
        self.encoder = nn.ModuleList()
        cin = in_channels
        for stage in spec.encoder:
            self.encoder.append(conv_stack(cin, stage, spec=spec, layers=layers))
            cin = stage[-1]
        self.bottleneck = conv_stack(cin, spec.bottleneck, spec=spec, layers=layers)
        self.decoder = nn.ModuleList()
        for k, stage in enumerate(spec.decoder):
            self.decoder.append(conv_stack(spec.decoder_input_channels(k), stage, spec=spec, layers=layers))
        k = head_kernel_size
        self.head = conv2d(spec.decoder[-1][-1], spec.out_channels(), k, padding=(k - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(self.head.weight.dtype).removeprefix("torch."))
        pooled = []  # (indices, height, width) of every encoder pooling, shallowest first
        for stage in self.encoder:
            for layer in stage:
                x = layer(x)
            height, width = x.shape[2], x.shape[3]
            if self.spec.upsample == "unpool":
                x, indices = max_pool_with_indices(x)
            else:  # bilinear up-sampling needs no indices (and the argmax pool costs more)
                x, indices = max_pool_2x2(x), None
            pooled.append((indices, height, width))
        for layer in self.bottleneck:
            x = layer(x)
        for stage, (indices, height, width) in zip(self.decoder, reversed(pooled)):
            if self.spec.upsample == "unpool":
                x = max_unpool(x, indices, height, width)
            else:
                x = resize_bilinear(x, height, width)
            for layer in stage:
                x = layer(x)
        return split_outputs(self.head(x), self.spec)
