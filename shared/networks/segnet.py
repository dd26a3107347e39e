"""SegNet (Badrinarayanan, Kendall, Cipolla 2017): spec, layer table, size rule.

Twin model files: ``segmentation_torch/segnet.py`` and ``segmentation_tf/segnet.py``.

Encoder stage ``i``: 3x3 conv-BN-ReLU layers with the channels ``encoder[i]``, then a 2x2 max-pool
that keeps its argmax indices. Optional ``bottleneck`` convs at the lowest resolution. Decoder stage
``k`` (deepest first) up-samples x2, with the indices of encoder stage ``n - 1 - k``
(``upsample="unpool"``) or bilinearly, then applies 3x3 conv-BN-ReLU layers with the channels
``decoder[k]``. A ``head_kernel_size`` conv (with bias, no BN or ReLU) gives the logits.

The paper's network (VGG-16 encoder, 13 + 13 convs) is the default: the paper's last decoder conv,
64 -> classes without BN/ReLU, is the head. ``preset="lesson-segparity"`` is the PH2 lesson's small network,
which up-samples bilinearly without indices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segparity.weights.layout import LayerEntry, conv_stack_entries
from segparity.networks.checks import (check_batch_norm, check_bool, check_choice, check_int, freeze, int_tuple,
                                    stages_tuple)

VGG16_ENCODER = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
SEGNET_DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))
UPSAMPLES = ("unpool", "bilinear")


@dataclass(frozen=True)
class SegNetSpec:
    """SegNet; the defaults are the paper's VGG-16 network."""

    in_channels: int  # channels of the input image
    num_classes: int  # channels of the output logits
    encoder: tuple = VGG16_ENCODER  # per stage: output channels of its 3x3 conv-BN-ReLU layers; a 2x2 max-pool ends each stage
    bottleneck: tuple = ()  # output channels of 3x3 conv-BN-ReLU layers at the lowest resolution (the paper has none)
    decoder: tuple = SEGNET_DECODER  # per decoder stage, deepest first: 3x3 conv-BN-ReLU channels after its x2 up-sampling
    upsample: str = "unpool"  # "unpool": max-unpool with the encoder's argmax indices; "bilinear": x2 bilinear (half-pixel), no indices
    head_kernel_size: int = 3  # kernel of the final conv to num_classes (bias, no BN/ReLU): 3 in the paper, 1 in the lesson
    batch_norm: bool = True  # conv(no bias)-BN-ReLU instead of conv(bias)-ReLU
    bn_eps: float = 1e-5  # BatchNorm epsilon, the same number in both frameworks
    bn_momentum: float = 0.1  # torch convention; Keras momentum = 1 - bn_momentum
    embedding_dim: int = 0  # >0: a second output, the instance embedding; the head has num_classes + embedding_dim channels

    name = "segnet"

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("num_classes", self.num_classes, 1)
        freeze(self, "encoder", stages_tuple("encoder", self.encoder))
        freeze(self, "bottleneck", int_tuple("bottleneck", self.bottleneck, allow_empty=True))
        freeze(self, "decoder", stages_tuple("decoder", self.decoder))
        check_choice("upsample", self.upsample, UPSAMPLES)
        check_int("head_kernel_size", self.head_kernel_size, 1)
        if self.head_kernel_size % 2 == 0:
            raise ValueError(f"head_kernel_size must be odd (padded to keep the size), got {self.head_kernel_size}")
        check_bool("batch_norm", self.batch_norm)
        check_batch_norm(self.bn_eps, self.bn_momentum)
        check_int("embedding_dim", self.embedding_dim, 0)
        if len(self.decoder) != len(self.encoder):
            raise ValueError(f"decoder must have one stage per encoder stage ({len(self.encoder)}), "
                             f"got {len(self.decoder)}: {self.decoder!r}")
        if self.upsample == "unpool":
            for k in range(len(self.decoder)):
                pooled = self.encoder[len(self.encoder) - 1 - k][-1]
                if self.decoder_input_channels(k) != pooled:
                    raise ValueError(
                        f"upsample='unpool': decoder stage {k} receives {self.decoder_input_channels(k)} channels but "
                        f"the indices of encoder stage {len(self.encoder) - 1 - k} have {pooled}; max-unpooling needs "
                        f"them equal (use upsample='bilinear' or change encoder/bottleneck/decoder)")

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def out_channels(self) -> int:
        """Channels of the head: the logits, then the embedding."""
        return self.num_classes + self.embedding_dim

    def decoder_input_channels(self, k: int) -> int:
        """Channels entering decoder stage ``k`` (the tensor that is up-sampled)."""
        if k > 0:
            return self.decoder[k - 1][-1]
        return self.bottleneck[-1] if self.bottleneck else self.encoder[-1][-1]

    def output_size(self, size: int) -> int | None:
        stride = 2 ** len(self.encoder)
        return size if size >= 1 and size % stride == 0 else None

    def size_rule(self) -> str:
        return f"height and width divisible by 2**{len(self.encoder)} = {2 ** len(self.encoder)} (one 2x2 pooling per encoder stage)"

    def describe(self) -> str:
        return f"segnet({len(self.encoder)} stages, upsample={self.upsample!r})"

    def layer_table(self) -> list[LayerEntry]:
        return segnet_layer_table(self)

    def layer_sizes(self, size: int) -> dict[str, int]:
        return segnet_layer_sizes(self, size)


def segnet_layer_table(spec: SegNetSpec) -> list[LayerEntry]:
    """Every SegNet layer with weights, in execution order."""
    layers: list[LayerEntry] = []
    cin = spec.in_channels
    for i, stage in enumerate(spec.encoder):
        layers += conv_stack_entries(f"encoder.{i}", cin, stage, spec.batch_norm)
        cin = stage[-1]
    layers += conv_stack_entries("bottleneck", cin, spec.bottleneck, spec.batch_norm)
    for k, stage in enumerate(spec.decoder):
        layers += conv_stack_entries(f"decoder.{k}", spec.decoder_input_channels(k), stage, spec.batch_norm)
    layers.append(LayerEntry("head", "conv2d", spec.decoder[-1][-1], spec.out_channels(), spec.head_kernel_size))
    return layers


def segnet_layer_sizes(spec: SegNetSpec, size: int) -> dict[str, int]:
    """Per conv layer of ``segnet_layer_table``, its output side for an input side ``size`` (every
    conv is padded; stage ``i`` runs at ``size / 2**i``, the bottleneck at ``size / 2**n``)."""
    n = len(spec.encoder)
    sizes: dict[str, int] = {}
    for i, stage in enumerate(spec.encoder):
        sizes.update({f"encoder.{i}.{j}.conv": size // 2**i for j in range(len(stage))})
    sizes.update({f"bottleneck.{j}.conv": size // 2**n for j in range(len(spec.bottleneck))})
    for k, stage in enumerate(spec.decoder):
        sizes.update({f"decoder.{k}.{j}.conv": size // 2 ** (n - 1 - k) for j in range(len(stage))})
    sizes["head"] = size
    return sizes
