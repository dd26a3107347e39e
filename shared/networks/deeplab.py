"""DeepLabV3+ (Chen et al. 2018) on a small residual encoder: spec, layer table, size rule.

Twin model files: ``segmentation_torch/deeplab.py`` and ``segmentation_tf/deeplab.py``.

Encoder: ``stem`` (3x3 conv-BN-ReLU, stride 2), then four residual stages of basic blocks (two 3x3
conv-BN, ReLU after the sum; a 1x1 conv-BN ``shortcut`` where stride or width changes). Stages 0 and
1 have stride 2 (output stride 4, then 8). With ``output_stride=16`` stage 2 has stride 2 and stage 3
dilation 2; with ``output_stride=8`` stages 2 and 3 keep stride 1 and use dilation 2 and 4 (every conv
of a dilated stage uses the stage's dilation; no multi-grid).

ASPP on the last stage: ``branches.0`` a 1x1 conv-BN-ReLU, ``branches.1..3`` 3x3 atrous conv-BN-ReLU
with ``aspp_rates``, ``pool`` image pooling (global mean, 1x1 conv-BN-ReLU, broadcast back), then
``project`` (1x1 conv-BN-ReLU of the five concatenated). Decoder: ``reduce`` (1x1 conv-BN-ReLU of
stage 0's output, output stride 4), ASPP output resized to that size, ``[aspp, reduced]``
concatenated, ``fuse.0`` and ``fuse.1`` (3x3 conv-BN-ReLU), ``head`` (1x1 conv with bias), then a
bilinear resize to the input size.

``backbone="resnet18"`` (``"resnet34"``, ``"resnet50"``, ``"resnet101"``) replaces the encoder above by
torchvision's ResNet at the paths ``encoder.conv1``, ``encoder.layer1.0.conv1``, ... (segmentation_models_pytorch's
names), so a torchvision classification checkpoint fills it (``build_model(..., encoder_weights=PATH)``).
``layer1`` (output stride 4) feeds the decoder, ``layer4`` the ASPP; the output stride comes from dilating
``layer4`` (16) or ``layer3`` and ``layer4`` (8) as segmentation_models_pytorch's DeepLabV3+ does: every conv of a
dilated stage, its first block's included, uses the stage's dilation (2; or 2 and 4), basic blocks too
(``dilation_rule="smp"`` in ``segparity.networks.resnet``; torchvision's own DeepLabV3 keeps the first block at the
previous dilation, pitfall ``resnet_dilation_rules``). The encoder's BatchNorm is torchvision's (eps 1e-5,
momentum 0.1); ``stem_channels``, ``stage_channels`` and ``blocks_per_stage`` stay at their defaults.

Resizing: bilinear with half-pixel centres (torch ``align_corners=False``, Keras/TF
``resize(..., "bilinear")``, as torchvision's DeepLab), not the original TF DeepLab's
``align_corners=True``; pitfall ``align_corners`` shows the two differ. Dropout in ASPP and decoder
is left out (random masks cannot be compared). Training-mode BN in the image-pooling branch sees one
value per channel and image, so it needs batches of at least 2 (torch and this Keras port both
raise the same ValueError otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segparity.weights.layout import LayerEntry, conv_bn_entries
from segparity.networks.checks import check_batch_norm, check_choice, check_int, freeze, int_tuple
from segparity.networks.resnet import resnet_layer_sizes, resnet_layer_table

OUTPUT_STRIDES = (8, 16)
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
SMALL_ENCODER = {"stem_channels": 64, "stage_channels": (64, 128, 256, 512), "blocks_per_stage": (2, 2, 2, 2)}


@dataclass(frozen=True)
class DeepLabV3PlusSpec:
    """DeepLabV3+ with a ResNet-18-like encoder (four stages of basic blocks)."""

    in_channels: int  # channels of the input image
    num_classes: int  # channels of the output logits
    output_stride: int = 16  # input size / ASPP feature size: 16 or 8
    stem_channels: int = 64  # channels of the stride-2 stem conv
    stage_channels: tuple = (64, 128, 256, 512)  # output channels of the four residual stages
    blocks_per_stage: tuple = (2, 2, 2, 2)  # basic blocks in each stage (ResNet-18: 2, 2, 2, 2)
    aspp_channels: int = 256  # channels of every ASPP branch and of its projection
    aspp_rates: tuple | None = None  # dilations of the three atrous branches; None: (6, 12, 18) * 16 / output_stride
    low_level_channels: int = 48  # channels the decoder reduces stage 0's output to
    decoder_channels: int = 256  # channels of the decoder's two 3x3 convs
    bn_eps: float = 1e-5  # BatchNorm epsilon, the same number in both frameworks
    bn_momentum: float = 0.1  # torch convention; Keras momentum = 1 - bn_momentum
    embedding_dim: int = 0  # >0: a second output, the instance embedding; the head has num_classes + embedding_dim channels
    backbone: str | None = None  # None: the small encoder above; "resnet18" ... "resnet101": torchvision's ResNet

    name = "deeplabv3plus"

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("num_classes", self.num_classes, 1)
        check_choice("output_stride", self.output_stride, OUTPUT_STRIDES)
        check_int("stem_channels", self.stem_channels, 1)
        freeze(self, "stage_channels", int_tuple("stage_channels", self.stage_channels))
        freeze(self, "blocks_per_stage", int_tuple("blocks_per_stage", self.blocks_per_stage))
        for option in ("stage_channels", "blocks_per_stage"):
            if len(getattr(self, option)) != 4:
                raise ValueError(f"{option} must have 4 entries (one per residual stage), got {getattr(self, option)!r}")
        check_int("aspp_channels", self.aspp_channels, 1)
        if self.aspp_rates is not None:
            freeze(self, "aspp_rates", int_tuple("aspp_rates", self.aspp_rates))
            if len(self.aspp_rates) != 3:
                raise ValueError(f"aspp_rates must have 3 entries (the atrous branches), got {self.aspp_rates!r}")
        check_int("low_level_channels", self.low_level_channels, 1)
        check_int("decoder_channels", self.decoder_channels, 1)
        check_batch_norm(self.bn_eps, self.bn_momentum)
        check_int("embedding_dim", self.embedding_dim, 0)
        if self.backbone is not None:
            check_choice("backbone", self.backbone, BACKBONES)
            changed = [option for option, value in SMALL_ENCODER.items() if getattr(self, option) != value]
            if changed:
                raise ValueError(f"backbone={self.backbone!r} is torchvision's ResNet; {', '.join(changed)} describe "
                                 "the small encoder (backbone=None) and must keep their defaults")

    def depth(self) -> int:
        """The ResNet depth of ``backbone`` (18, 34, 50, 101)."""
        return int(self.backbone[len("resnet"):])

    def replace_stride_with_dilation(self) -> tuple[bool, bool, bool]:
        """torchvision's argument giving ``output_stride`` to a ResNet backbone."""
        return (False, False, True) if self.output_stride == 16 else (False, True, True)

    def encoder_channels(self) -> tuple[int, int]:
        """(channels of the output-stride-4 features the decoder reduces, channels the ASPP takes)."""
        if self.backbone is None:
            return self.stage_channels[0], self.stage_channels[-1]
        expansion = 4 if self.depth() >= 50 else 1
        return 64 * expansion, 512 * expansion

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def out_channels(self) -> int:
        """Channels of the head: the logits, then the embedding."""
        return self.num_classes + self.embedding_dim

    def rates(self) -> tuple[int, int, int]:
        """The atrous rates in use: ``aspp_rates``, or the paper's (6, 12, 18) scaled to the output stride."""
        if self.aspp_rates is not None:
            return self.aspp_rates
        return tuple(r * 16 // self.output_stride for r in (6, 12, 18))

    def stage_strides(self) -> list[tuple[int, int]]:
        """(stride, dilation) of stages 0..3."""
        if self.output_stride == 16:
            return [(2, 1), (2, 1), (2, 1), (1, 2)]
        return [(2, 1), (2, 1), (1, 2), (1, 4)]

    def output_size(self, size: int) -> int | None:
        return size if size >= 1 and size % self.output_stride == 0 else None

    def size_rule(self) -> str:
        return f"height and width divisible by output_stride = {self.output_stride}"

    def describe(self) -> str:
        backbone = "" if self.backbone is None else f", backbone={self.backbone!r}"
        return f"deeplabv3plus(output_stride={self.output_stride}{backbone})"

    def layer_table(self) -> list[LayerEntry]:
        return deeplab_layer_table(self)

    def layer_sizes(self, size: int) -> dict[str, int]:
        return deeplab_layer_sizes(self, size)


def deeplab_layer_table(spec: DeepLabV3PlusSpec) -> list[LayerEntry]:
    """Every DeepLabV3+ layer with weights, in execution order."""
    if spec.backbone is not None:
        layers = resnet_layer_table(spec.depth(), spec.replace_stride_with_dilation(), "encoder.", spec.in_channels,
                                    dilation_rule="smp")
    else:
        layers = small_encoder_layer_table(spec)
    low_level, cin = spec.encoder_channels()
    a = spec.aspp_channels
    layers += conv_bn_entries("aspp.branches.0", cin, a, 1, batch_norm=True)
    for r in range(1, 4):
        layers += conv_bn_entries(f"aspp.branches.{r}", cin, a, 3, batch_norm=True)
    layers += conv_bn_entries("aspp.pool", cin, a, 1, batch_norm=True)
    layers += conv_bn_entries("aspp.project", 5 * a, a, 1, batch_norm=True)
    layers += conv_bn_entries("decoder.reduce", low_level, spec.low_level_channels, 1, batch_norm=True)
    d = spec.decoder_channels
    layers += conv_bn_entries("decoder.fuse.0", a + spec.low_level_channels, d, 3, batch_norm=True)
    layers += conv_bn_entries("decoder.fuse.1", d, d, 3, batch_norm=True)
    layers.append(LayerEntry("head", "conv2d", d, spec.out_channels(), 1))
    return layers


def small_encoder_layer_table(spec: DeepLabV3PlusSpec) -> list[LayerEntry]:
    """The layers with weights of the small encoder (``backbone=None``): ``stem``, then ``encoder.<stage>.<block>``."""
    layers = conv_bn_entries("stem", spec.in_channels, spec.stem_channels, 3, batch_norm=True)
    cin = spec.stem_channels
    for i, (cout, blocks) in enumerate(zip(spec.stage_channels, spec.blocks_per_stage)):
        stride = spec.stage_strides()[i][0]
        for b in range(blocks):
            prefix = f"encoder.{i}.{b}"
            layers += conv_bn_entries(f"{prefix}.conv1", cin, cout, 3, batch_norm=True)
            layers += conv_bn_entries(f"{prefix}.conv2", cout, cout, 3, batch_norm=True)
            if b == 0 and (stride != 1 or cin != cout):
                layers += conv_bn_entries(f"{prefix}.shortcut", cin, cout, 1, batch_norm=True)
            cin = cout
    return layers


def deeplab_layer_sizes(spec: DeepLabV3PlusSpec, size: int) -> dict[str, int]:
    """Per conv layer of ``deeplab_layer_table``, its output side for an input side ``size`` (a
    padded stride-s conv gives ``ceil(side / s)``; the image-pooling conv runs on 1x1)."""
    if spec.backbone is not None:
        sizes, stages = resnet_layer_sizes(spec.depth(), spec.replace_stride_with_dilation(), size, "encoder.",
                                           dilation_rule="smp")
        side, low_level = stages["layer4"], stages["layer1"]
        return {**sizes, **_head_sizes(side, low_level)}
    side = -(-size // 2)
    sizes = {"stem.conv": side}
    low_level = side
    for i, blocks in enumerate(spec.blocks_per_stage):
        stride = spec.stage_strides()[i][0]
        for b in range(blocks):
            if b == 0:
                side = -(-side // stride)
                if stride != 1 or (spec.stage_channels[i - 1] if i else spec.stem_channels) != spec.stage_channels[i]:
                    sizes[f"encoder.{i}.{b}.shortcut.conv"] = side
            sizes[f"encoder.{i}.{b}.conv1.conv"] = side
            sizes[f"encoder.{i}.{b}.conv2.conv"] = side
        if i == 0:
            low_level = side
    return {**sizes, **_head_sizes(side, low_level)}


def _head_sizes(side: int, low_level: int) -> dict[str, int]:
    """Output sides of the ASPP (on the encoder's ``side``) and of the decoder (at the ``low_level`` side)."""
    sizes = {f"aspp.branches.{r}.conv": side for r in range(4)}
    sizes.update({"aspp.pool.conv": 1, "aspp.project.conv": side, "decoder.reduce.conv": low_level,
                  "decoder.fuse.0.conv": low_level, "decoder.fuse.1.conv": low_level, "head": low_level})
    return sizes
