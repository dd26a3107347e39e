"""torchvision's ResNet (He et al. 2016, "v1.5": the stride of a bottleneck sits in its 3x3 conv), as a
framework-neutral description: the block type and count per depth, and where strides turn into dilations.

Twin model files: ``segmentation_torch/backbones/resnet.py`` and ``segmentation_tf/backbones/resnet.py``.
Module paths are torchvision's: ``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``.
``replace_stride_with_dilation`` (three booleans, for ``layer2..4``) is torchvision's argument: a stage whose
entry is true keeps stride 1 and multiplies the dilation by the stride it drops; its first block still uses
the dilation before that change (torchvision's ``previous_dilation``). The segmentation builders use
``(False, True, True)`` (output stride 8).
"""

from __future__ import annotations

from dataclasses import dataclass

# depth -> (block, blocks per stage), as torchvision's resnet18 ... resnet101
RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3))}
EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class BlockPlan:
    """One residual block: its stage and index, channels, stride and dilation, and whether it has a
    ``downsample`` (1x1 conv + BN on the shortcut)."""

    stage: int  # 1..4 (torchvision's layer1..layer4)
    index: int
    in_channels: int
    width: int  # channels of the block's inner convs (torchvision's planes)
    out_channels: int
    stride: int
    dilation: int
    downsample: bool

    @property
    def path(self) -> str:
        return f"layer{self.stage}.{self.index}"


def resnet_plan(depth: int, replace_stride_with_dilation: tuple = (False, False, False)) -> list[BlockPlan]:
    """Every block of torchvision's ``resnet<depth>``, in order, following its ``_make_layer``."""
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got {depth!r}")
    replace = tuple(bool(r) for r in replace_stride_with_dilation)
    if len(replace) != 3:
        raise ValueError(f"replace_stride_with_dilation must have 3 entries (layer2, layer3, layer4), got {replace!r}")
    block, counts = RESNET_DEPTHS[depth]
    if block == "basic" and any(replace):
        raise ValueError(f"resnet{depth} has basic blocks, which torchvision builds without dilation: "
                         "replace_stride_with_dilation needs resnet50 or resnet101")
    expansion = EXPANSION[block]
    plans, in_channels, dilation = [], 64, 1
    for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, counts), start=1):
        stride = 1 if stage == 1 else 2
        previous = dilation
        if stage > 1 and replace[stage - 2]:
            dilation *= stride
            stride = 1
        out_channels = width * expansion
        for index in range(count):
            first = index == 0
            plans.append(BlockPlan(stage, index, in_channels, width, out_channels, stride if first else 1,
                                   previous if first else dilation,
                                   first and (stride != 1 or in_channels != out_channels)))
            in_channels = out_channels
    return plans


def resnet_block_type(depth: int) -> str:
    """"basic" or "bottleneck"."""
    return RESNET_DEPTHS[depth][0]
