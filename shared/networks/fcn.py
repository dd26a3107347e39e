"""FCN (Long, Shelhamer, Darrell 2015): spec, layer table, size rule and crop offsets.

Twin model files: ``segmentation_torch/fcn.py`` and ``segmentation_tf/fcn.py``.

A VGG-style encoder (``encoder[i]``: the channels of stage ``i``'s 3x3 conv-ReLU layers, each stage
ending in a 2x2 max-pool with Caffe's ceil rounding), convolutionalised ``fc6`` (``fc_kernel_size``)
and ``fc7`` (1x1), a 1x1 ``score_fr``, then learned transposed-convolution up-sampling (kernel 2s,
stride s, no bias, initialised to bilinear interpolation) fused with 1x1 scores of the earlier
pooling outputs: ``"32s"`` up-samples ``score_fr`` x32 at once; ``"16s"`` first x2 (``upscore2``) and
adds ``score_pool4``; ``"8s"`` then x2 again (``upscore_pool4``) and adds ``score_pool3``. ``pool4``
and ``pool3`` mean the last-but-one and last-but-two pooling outputs (as in VGG-16's five stages).
The final up-sampling is named ``upscore`` in every variant (the paper's ``upscore``,
``upscore16``, ``upscore8``).

Cropping. ``padding="paper"`` is the paper's: ``conv1_1`` is padded by 100, ``fc6`` is unpadded and
every transposed conv is unpadded, so score maps are larger than their partners and are cropped at
offsets that align their pixel centres; Caffe computes those offsets from each layer's coordinate
map, and so does ``crop_offsets`` here (19 for VGG-16 FCN-32s; 5 and 27 for 16s; 5, 9 and 31 for
8s: the numbers in the paper's prototxts). ``padding="same"`` (the default) pads every conv to keep
its size, so H and W must be divisible by ``2**len(encoder)``; the transposed convs are still unpadded
and their outputs are cropped by s/2 on each side, which is exactly torch's ``padding=s/2``.

Deliberate differences from the paper, documented: no dropout after ``fc6``/``fc7`` (it would make
training-mode parity a comparison of random masks; add it outside the network if wanted); score layers
use the frameworks' default initialisers, not zeros; the at-once variant's 0.01/0.0001 scaling of
the pool4/pool3 scores is not applied; ``batch_norm=True`` adds BN after every conv (VGG-16-BN style).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from segparity.weights.layout import LayerEntry, conv_bn_entries, conv_stack_entries
from segparity.networks.checks import check_batch_norm, check_bool, check_choice, check_int, freeze, stages_tuple
from segparity.networks.segnet import VGG16_ENCODER

VARIANTS = ("32s", "16s", "8s")
PADDINGS = ("same", "paper")
PAPER_FIRST_PADDING = 100  # conv1_1's padding in the paper's networks


@dataclass(frozen=True)
class FCNSpec:
    """FCN-32s/16s/8s on a VGG-style encoder; ``preset="paper"`` is the paper's VGG-16 FCN-8s."""

    in_channels: int  # channels of the input image
    num_classes: int  # channels of the output logits
    variant: str = "8s"  # "32s" | "16s" | "8s": stride of the coarsest prediction, i.e. how many skips are fused
    encoder: tuple = VGG16_ENCODER  # per stage: output channels of its 3x3 conv-ReLU layers; a 2x2 max-pool ends each stage
    fc_channels: int = 4096  # channels of the convolutionalised fc6 and fc7
    fc_kernel_size: int = 7  # fc6's kernel (7: VGG-16's fc6 on a 7x7 pool5)
    padding: str = "same"  # "same": padded convs, output = input size; "paper": conv1_1 padded by 100, unpadded fc6, Caffe crops
    batch_norm: bool = False  # BN after every conv of the encoder and fc6/fc7 (the paper has none)
    bn_eps: float = 1e-5  # BatchNorm epsilon (used only with batch_norm=True)
    bn_momentum: float = 0.1  # torch convention; Keras momentum = 1 - bn_momentum
    embedding_dim: int = 0  # >0: a second output, the instance embedding; the head has num_classes + embedding_dim channels

    name = "fcn"

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("num_classes", self.num_classes, 1)
        check_choice("variant", self.variant, VARIANTS)
        freeze(self, "encoder", stages_tuple("encoder", self.encoder))
        check_int("fc_channels", self.fc_channels, 1)
        check_int("fc_kernel_size", self.fc_kernel_size, 1)
        check_choice("padding", self.padding, PADDINGS)
        check_bool("batch_norm", self.batch_norm)
        check_batch_norm(self.bn_eps, self.bn_momentum)
        check_int("embedding_dim", self.embedding_dim, 0)
        if len(self.encoder) < self.skips() + 1:
            raise ValueError(f"variant {self.variant!r} fuses {self.skips()} earlier pooling outputs, so the encoder "
                             f"needs at least {self.skips() + 1} stages; got {len(self.encoder)}")
        if self.padding == "same" and self.fc_kernel_size % 2 == 0:
            raise ValueError(f"fc_kernel_size must be odd with padding='same', got {self.fc_kernel_size}")

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def out_channels(self) -> int:
        """Channels of the head: the logits, then the embedding."""
        return self.num_classes + self.embedding_dim

    def skips(self) -> int:
        """Number of fused pooling outputs: 0 (32s), 1 (16s, pool4), 2 (8s, pool4 and pool3)."""
        return VARIANTS.index(self.variant)

    def final_stride(self) -> int:
        """Stride of the last transposed conv: 32, 16, 8 for VGG-16's five stages."""
        return 2 ** (len(self.encoder) - self.skips())

    def output_size(self, size: int) -> int | None:
        if self.padding == "same":
            return size if size >= 1 and size % 2 ** len(self.encoder) == 0 else None
        return size if size >= 1 and _paper_crops_fit(self, size) else None

    def size_rule(self) -> str:
        if self.padding == "same":
            return f"height and width divisible by 2**{len(self.encoder)} = {2 ** len(self.encoder)}"
        return "height and width for which every crop of the padding='paper' network fits (see segparity.networks.fcn)"

    def describe(self) -> str:
        return f"fcn(variant={self.variant!r}, {len(self.encoder)} stages, padding={self.padding!r})"

    def layer_table(self) -> list[LayerEntry]:
        return fcn_layer_table(self)

    def layer_sizes(self, size: int) -> dict[str, int]:
        return fcn_layer_sizes(self, size)


def fcn_layer_table(spec: FCNSpec) -> list[LayerEntry]:
    """Every FCN layer with weights, in execution order."""
    layers: list[LayerEntry] = []
    cin = spec.in_channels
    for i, stage in enumerate(spec.encoder):
        layers += conv_stack_entries(f"encoder.{i}", cin, stage, spec.batch_norm)
        cin = stage[-1]
    layers += conv_bn_entries("fc6", cin, spec.fc_channels, spec.fc_kernel_size, spec.batch_norm)
    layers += conv_bn_entries("fc7", spec.fc_channels, spec.fc_channels, 1, spec.batch_norm)
    c = spec.out_channels()
    layers.append(LayerEntry("score_fr", "conv2d", spec.fc_channels, c, 1))
    if spec.skips() >= 1:
        layers.append(LayerEntry("upscore2", "conv_transpose2d", c, c, 4, bias=False))
        layers.append(LayerEntry("score_pool4", "conv2d", spec.encoder[-2][-1], c, 1))
    if spec.skips() >= 2:
        layers.append(LayerEntry("upscore_pool4", "conv_transpose2d", c, c, 4, bias=False))
        layers.append(LayerEntry("score_pool3", "conv2d", spec.encoder[-3][-1], c, 1))
    layers.append(LayerEntry("upscore", "conv_transpose2d", c, c, 2 * spec.final_stride(), bias=False))
    return layers


def bilinear_kernel(channels: int, kernel_size: int) -> np.ndarray:
    """Canonical ``(I, O, k, k)`` transposed-conv weight that up-samples each channel bilinearly by
    ``kernel_size // 2`` (the FCN initialisation: channel i paints only channel i)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(kernel_size) - center) / factor
    weight = np.zeros((channels, channels, kernel_size, kernel_size), np.float32)
    weight[np.arange(channels), np.arange(channels)] = np.outer(ramp, ramp)
    return weight


# --- coordinate maps: x_input = scale * x_output + shift, as Caffe's crop layer computes them -----

def _conv_map(kernel: int, padding: int) -> tuple[Fraction, Fraction]:
    return Fraction(1), Fraction(kernel - 1, 2) - padding


def _pool_map() -> tuple[Fraction, Fraction]:  # 2x2, stride 2
    return Fraction(2), Fraction(1, 2)


def _deconv_map(kernel: int, stride: int) -> tuple[Fraction, Fraction]:  # unpadded transposed conv
    return Fraction(1, stride), -Fraction(kernel - 1, 2 * stride)


def _then(outer: tuple, inner: tuple) -> tuple[Fraction, Fraction]:
    """Map of a layer (``inner``) applied after the layers mapped by ``outer`` (both to the input)."""
    return outer[0] * inner[0], outer[0] * inner[1] + outer[1]


def _pool_maps(spec: FCNSpec) -> list[tuple[Fraction, Fraction]]:
    """Coordinate map of every pooling output (pool1..pooln) to the input image."""
    first = PAPER_FIRST_PADDING if spec.padding == "paper" else 1
    current = (Fraction(1), Fraction(0))
    maps = []
    for i, stage in enumerate(spec.encoder):
        for j in range(len(stage)):
            current = _then(current, _conv_map(3, first if (i, j) == (0, 0) else 1))
        current = _then(current, _pool_map())
        maps.append(current)
    return maps


def _offsets(bigger_than: tuple, reference: tuple, what: str) -> tuple[int, int]:
    """(offset into a, offset into b) that align two maps of equal scale; one of them is 0."""
    (scale_a, shift_a), (scale_b, shift_b) = bigger_than, reference
    if scale_a != scale_b:
        raise AssertionError(f"{what}: scales {scale_a} and {scale_b} differ")
    delta = (shift_b - shift_a) / scale_a
    if delta.denominator != 1:
        raise AssertionError(f"{what}: pixel centres do not align (offset {delta})")
    return (int(delta), 0) if delta >= 0 else (0, int(-delta))


def crop_offsets(spec: FCNSpec) -> dict[str, tuple[int, int]]:
    """Where each fusion crops its two inputs, and where the output is cropped to the input size.

    ``"pool4"``: (offset into the up-sampled scores, offset into ``score_pool4``); ``"pool3"`` likewise;
    ``"output"``: (offset into the final up-sampling, 0). With ``padding="paper"`` and VGG-16 these are
    (0, 5), (0, 9), (31, 0) for FCN-8s; with ``padding="same"`` the up-sampled side is cropped by s/2.
    """
    pools = _pool_maps(spec)
    fc_padding = 0 if spec.padding == "paper" else (spec.fc_kernel_size - 1) // 2
    current = _then(pools[-1], _conv_map(spec.fc_kernel_size, fc_padding))  # fc6; fc7 and score_fr are 1x1
    offsets = {}
    for name, pool in (("pool4", pools[-2] if spec.skips() >= 1 else None),
                       ("pool3", pools[-3] if spec.skips() >= 2 else None)):
        if pool is None:
            break
        current = _then(current, _deconv_map(4, 2))
        offsets[name] = _offsets(current, pool, f"fcn {name} fusion")
        if offsets[name][0]:  # the up-sampled side was cropped: the fused map has score_pool's frame
            current = pool
    stride = spec.final_stride()
    current = _then(current, _deconv_map(2 * stride, stride))
    offsets["output"] = _offsets(current, (Fraction(1), Fraction(0)), "fcn output")
    return offsets


def fcn_layer_sizes(spec: FCNSpec, size: int) -> dict[str, int]:
    """Per conv layer of ``fcn_layer_table``, the side of the map its multiply-adds run over for an
    input side ``size``: the output side of a conv, the input side of a transposed conv."""
    return _walk_sizes(spec, size)[0]


def _paper_crops_fit(spec: FCNSpec, size: int) -> bool:
    """Whether every crop of the ``padding="paper"`` network stays inside its tensor for ``size``."""
    return _walk_sizes(spec, size)[1]


def _walk_sizes(spec: FCNSpec, size: int) -> tuple[dict[str, int], bool]:
    """Layer sides as in ``fcn_layer_sizes``, and whether every crop fits (the walk stops where one does not)."""
    sizes: dict[str, int] = {}
    s = size
    pool_sizes = []
    for i, stage in enumerate(spec.encoder):
        for j in range(len(stage)):
            if spec.padding == "paper" and (i, j) == (0, 0):
                s = s + 2 * PAPER_FIRST_PADDING - 2  # conv1_1; the other 3x3 pad-1 convs keep the size
            sizes[f"encoder.{i}.{j}.conv"] = s
        s = math.ceil(s / 2)  # ceil-mode pooling
        pool_sizes.append(s)
    if spec.padding == "paper":
        s = s - spec.fc_kernel_size + 1  # unpadded fc6
    if s < 1:
        return sizes, False
    sizes.update({"fc6.conv": s, "fc7.conv": s, "score_fr": s})
    offsets = crop_offsets(spec)
    for name, up_layer, score_layer, pool_size in (
            ("pool4", "upscore2", "score_pool4", pool_sizes[-2] if spec.skips() >= 1 else None),
            ("pool3", "upscore_pool4", "score_pool3", pool_sizes[-3] if spec.skips() >= 2 else None)):
        if pool_size is None:
            break
        sizes[up_layer], sizes[score_layer] = s, pool_size
        up = (s + 1) * 2  # unpadded 4x4 stride-2 transposed conv
        up_offset, skip_offset = offsets[name]
        s = min(up - up_offset, pool_size - skip_offset)
        if s < 1:
            return sizes, False
    sizes["upscore"] = s
    stride = spec.final_stride()
    return sizes, (s + 1) * stride - offsets["output"][0] >= size
