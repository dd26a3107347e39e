"""DeepLabV3+ in PyTorch. Input ``(N, C_in, H, W)`` float32, output ``(N, num_classes, H, W)`` logits.

Layers and options: ``segparity.networks.deeplab``. Attribute paths (``encoder.2.0.conv1.conv``,
``aspp.branches.1``) equal the Keras layer names in ``segmentation_tf/deeplab.py``. Every resize is
bilinear with half-pixel centres (``align_corners=False``). With ``backbone="resnet34"`` (or 18, 50, 101) the
encoder is torchvision's ResNet (``segmentation_torch/backbones/resnet.py``) at ``encoder.conv1``, ``encoder.layer1``...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segmentation_torch.backbones.resnet import ResNet
from segmentation_torch.layers import ConvBNReLU, conv2d, resize_bilinear, split_outputs
from segparity.networks.deeplab import DeepLabV3PlusSpec
from segparity.networks.layer_flavours import check_layers
from segparity.validation import check_image_batch


class BasicBlock(nn.Module):
    """ReLU(conv1 -> conv2 + shortcut): two 3x3 conv-BN (ReLU after the first), 1x1 conv-BN shortcut if needed."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, dilation: int, spec: DeepLabV3PlusSpec, layers: str):
        super().__init__()
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        self.conv1 = ConvBNReLU(in_channels, out_channels, 3, stride=stride, dilation=dilation, **bn)
        self.conv2 = ConvBNReLU(out_channels, out_channels, 3, dilation=dilation, relu=False, **bn)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBNReLU(in_channels, out_channels, 1, stride=stride, relu=False, **bn)
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 and image pooling, concatenated, projected."""

    def __init__(self, in_channels: int, *, spec: DeepLabV3PlusSpec, layers: str):
        super().__init__()
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        a = spec.aspp_channels
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, a, 1, **bn)])
        for rate in spec.rates():
            self.branches.append(ConvBNReLU(in_channels, a, 3, dilation=rate, **bn))
        self.pool = ConvBNReLU(in_channels, a, 1, **bn)
        self.project = ConvBNReLU(5 * a, a, 1, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]
        pooled = self.pool(torch.mean(x, dim=(2, 3), keepdim=True))  # (N, a, 1, 1)
        outputs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))  # what a bilinear resize of 1x1 gives
        return self.project(torch.cat(outputs, dim=1))


class Decoder(nn.Module):
    """Resize the ASPP output to the low-level features' size, concatenate ``[aspp, reduced]``, two 3x3 convs."""

    def __init__(self, low_level_in: int, *, spec: DeepLabV3PlusSpec, layers: str):
        super().__init__()
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        d = spec.decoder_channels
        self.reduce = ConvBNReLU(low_level_in, spec.low_level_channels, 1, **bn)
        self.fuse = nn.ModuleList([ConvBNReLU(spec.aspp_channels + spec.low_level_channels, d, 3, **bn),
                                   ConvBNReLU(d, d, 3, **bn)])

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        x = resize_bilinear(x, low_level.shape[2], low_level.shape[3])
        x = torch.cat([x, self.reduce(low_level)], dim=1)
        for layer in self.fuse:
            x = layer(x)
        return x


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+; arguments as ``segparity.networks.deeplab.DeepLabV3PlusSpec``, and ``layers``
    (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, output_stride: int = 16, stem_channels: int = 64,
                 stage_channels: tuple = (64, 128, 256, 512), blocks_per_stage: tuple = (2, 2, 2, 2),
                 aspp_channels: int = 256, aspp_rates: tuple | None = None, low_level_channels: int = 48,
                 decoder_channels: int = 256, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, backbone: str | None = None, layers: str = "parity"):
        super().__init__()
        self.spec = DeepLabV3PlusSpec(in_channels, num_classes, output_stride, stem_channels, stage_channels,
                                      blocks_per_stage, aspp_channels, aspp_rates, low_level_channels,
                                      decoder_channels, bn_eps, bn_momentum, embedding_dim, backbone)
        self.layer_flavour = check_layers(layers)
        spec = self.spec
        low_level, cin = spec.encoder_channels()
        if backbone is not None:
            self.encoder = ResNet(spec.depth(), spec.replace_stride_with_dilation(), num_classes=None,
                                  dilation_rule="smp", in_channels=in_channels, layers=layers)
        else:
            self.stem = ConvBNReLU(in_channels, stem_channels, 3, stride=2, batch_norm=True, bn_eps=bn_eps,
                                   bn_momentum=bn_momentum, layers=layers)
            self.encoder = nn.ModuleList()
            channels = stem_channels
            for (stride, dilation), cout, blocks in zip(spec.stage_strides(), stage_channels, blocks_per_stage):
                stage = nn.ModuleList()
                for b in range(blocks):
                    stage.append(BasicBlock(channels, cout, stride=stride if b == 0 else 1, dilation=dilation,
                                            spec=spec, layers=layers))
                    channels = cout
                self.encoder.append(stage)
        self.aspp = ASPP(cin, spec=spec, layers=layers)
        self.decoder = Decoder(low_level, spec=spec, layers=layers)
        self.head = conv2d(decoder_channels, self.spec.out_channels(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(self.head.weight.dtype).removeprefix("torch."))
        height, width = x.shape[2], x.shape[3]
        x, low_level = self.encode(x)
        x = self.decoder(self.aspp(x), low_level)
        return split_outputs(resize_bilinear(self.head(x), height, width), self.spec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the ASPP's input, the output-stride-4 features the decoder reduces)."""
        if self.spec.backbone is not None:
            features = self.encoder.features(x)
            return features["layer4"], features["layer1"]
        x = self.stem(x)
        low_level = None
        for i, stage in enumerate(self.encoder):
            for block in stage:
                x = block(x)
            if i == 0:
                low_level = x  # output stride 4
        return x, low_level
