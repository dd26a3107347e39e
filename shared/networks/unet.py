"""U-Net (Ronneberger, Fischer, Brox 2015): spec, layer table, size rule.

Twin model files: ``segmentation_torch/unet.py`` and ``segmentation_tf/unet.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segparity.networks.geometry import unet_output_size
from segparity.weights.layout import LayerEntry
from segparity.networks.checks import check_batch_norm, check_bool, check_choice, check_int

PADDINGS = ("same", "valid")
UPSAMPLES = ("transpose", "bilinear", "resize")


@dataclass(frozen=True)
class UNetSpec:
    """U-Net and its common padded variant.

    The 2015 paper's network is ``preset="paper"``: ``in_channels=1, num_classes=2, base_channels=64,
    depth=4, padding="valid", upsample="transpose", batch_norm=False``; 572x572 in, 388x388 out.
    The PH2 lesson's network is ``preset="lesson-segparity"`` (``segparity.networks.specs.PRESETS``).
    """

    in_channels: int  # channels of the input image
    num_classes: int  # channels of the output logits
    base_channels: int = 64  # channels of the first encoder stage; doubled after each pooling
    depth: int = 4  # number of 2x2 max-poolings, and of up-sampling stages
    padding: str = "same"  # "same": 3x3 convs padded by 1, output H, W = input H, W; "valid": unpadded, skips centre-cropped
    upsample: str = "transpose"  # "transpose": 2x2 stride-2 transposed conv halving channels; "bilinear": x2 bilinear (half-pixel) then 1x1 conv halving channels; "resize": x2 bilinear only, channels kept (the lesson's)
    batch_norm: bool = True  # conv(no bias)-BN-ReLU instead of conv(bias)-ReLU
    bn_eps: float = 1e-5  # BatchNorm epsilon, the same number in both frameworks
    bn_momentum: float = 0.1  # torch convention (weight of the new batch statistic); Keras momentum = 1 - bn_momentum
    convs_per_block: int = 2  # 3x3 convs per encoder/decoder block: 2 in the paper, 1 in the lesson
    embedding_dim: int = 0  # >0: a second output, the instance embedding; the head has num_classes + embedding_dim channels

    name = "unet"

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("num_classes", self.num_classes, 1)
        check_int("base_channels", self.base_channels, 1)
        check_int("depth", self.depth, 1)
        check_choice("padding", self.padding, PADDINGS)
        check_choice("upsample", self.upsample, UPSAMPLES)
        check_bool("batch_norm", self.batch_norm)
        check_batch_norm(self.bn_eps, self.bn_momentum)
        check_int("embedding_dim", self.embedding_dim, 0)
        check_choice("convs_per_block", self.convs_per_block, (1, 2))

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def out_channels(self) -> int:
        """Channels of the head: the logits, then the embedding."""
        return self.num_classes + self.embedding_dim

    def stage_channels(self) -> list[int]:
        """Output channels of encoder stages 0..depth-1 followed by the bottleneck."""
        return [self.base_channels * 2**i for i in range(self.depth + 1)]

    def up_channels(self, j: int) -> int:
        """Channels of decoder stage ``j``'s up-sampled tensor (before the skip is concatenated)."""
        ch = self.stage_channels()
        return ch[self.depth - j] if self.upsample == "resize" else ch[self.depth - j - 1]

    def output_size(self, size: int) -> int | None:
        return unet_output_size(size, self.depth, self.padding, self.convs_per_block)

    def size_rule(self) -> str:
        if self.padding == "same":
            return f"height and width divisible by 2**depth = {2**self.depth}"
        return "height and width for which every unpadded stage keeps an even, positive size (see segparity.networks.geometry)"

    def describe(self) -> str:
        return f"unet(depth={self.depth}, padding={self.padding!r})"

    def layer_table(self) -> list[LayerEntry]:
        return unet_layer_table(self)

    def layer_sizes(self, size: int) -> dict[str, int]:
        return unet_layer_sizes(self, size)


def _conv_block(prefix: str, cin: int, cout: int, spec: UNetSpec) -> list[LayerEntry]:
    """conv1 [bn1] (conv2 [bn2]): 3x3 convs, bias only without BatchNorm."""
    layers = []
    for i in range(1, spec.convs_per_block + 1):
        layers.append(LayerEntry(f"{prefix}.conv{i}", "conv2d", cin if i == 1 else cout, cout, 3,
                                 bias=not spec.batch_norm))
        if spec.batch_norm:
            layers.append(LayerEntry(f"{prefix}.bn{i}", "batch_norm", cout, cout))
    return layers


def unet_layer_table(spec: UNetSpec) -> list[LayerEntry]:
    """Every U-Net layer with weights, in execution order."""
    ch = spec.stage_channels()
    layers: list[LayerEntry] = []
    cin = spec.in_channels
    for i in range(spec.depth):
        layers += _conv_block(f"encoder.{i}", cin, ch[i], spec)
        cin = ch[i]
    layers += _conv_block("bottleneck", ch[spec.depth - 1], ch[spec.depth], spec)
    for j in range(spec.depth):
        deep, shallow = ch[spec.depth - j], ch[spec.depth - j - 1]
        if spec.upsample == "transpose":
            layers.append(LayerEntry(f"decoder.{j}.up", "conv_transpose2d", deep, shallow, 2,
                                     bias=not spec.batch_norm))
        elif spec.upsample == "bilinear":
            layers.append(LayerEntry(f"decoder.{j}.up", "conv2d", deep, shallow, 1, bias=not spec.batch_norm))
        layers += _conv_block(f"decoder.{j}", shallow + spec.up_channels(j), shallow, spec)
    layers.append(LayerEntry("head", "conv2d", ch[0], spec.out_channels(), 1))
    return layers


def unet_layer_sizes(spec: UNetSpec, size: int) -> dict[str, int]:
    """Per conv layer of ``unet_layer_table``, the side of the map its multiply-adds run over for an
    input side ``size``: the output side of a conv, the input side of a transposed conv."""
    shrink = 2 if spec.padding == "valid" else 0  # per unpadded 3x3 conv
    sizes: dict[str, int] = {}

    def block(prefix: str, side: int) -> int:
        for i in range(1, spec.convs_per_block + 1):
            side -= shrink
            sizes[f"{prefix}.conv{i}"] = side
        return side

    side = size
    for i in range(spec.depth):
        side = block(f"encoder.{i}", side) // 2
    side = block("bottleneck", side)
    for j in range(spec.depth):
        if spec.upsample == "transpose":
            sizes[f"decoder.{j}.up"] = side
        elif spec.upsample == "bilinear":
            sizes[f"decoder.{j}.up"] = 2 * side
        side = block(f"decoder.{j}", 2 * side)
    sizes["head"] = side
    return sizes
