"""torchvision's ResNet (He et al. 2016, "v1.5": the stride of a bottleneck sits in its 3x3 conv), as a
framework-neutral description: the block type and count per depth, and where strides turn into dilations.

Twin model files: ``segmentation_torch/backbones/resnet.py`` and ``segmentation_tf/backbones/resnet.py``.
Module paths are torchvision's: ``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``.
``replace_stride_with_dilation`` (three booleans, for ``layer2..4``) is torchvision's argument: a stage whose
entry is true keeps stride 1 and multiplies the dilation by the stride it drops; its first block still uses
the dilation before that change (torchvision's ``previous_dilation``). The segmentation builders use
``(False, True, True)`` (output stride 8), and refuse dilation in basic blocks (ResNet-18/34).

``dilation_rule="smp"`` is segmentation_models_pytorch's ``make_dilated`` instead (segparity's DeepLabV3+ on a
ResNet encoder): every block of a dilated stage, its first included, uses the stage's new dilation, and basic
blocks are dilated too (both of their 3x3 convs). The two rules give the same weights and different outputs
(pitfall ``resnet_dilation_rules``).
"""

from __future__ import annotations

from dataclasses import dataclass

from segparity.weights.layout import LayerEntry

# depth -> (block, blocks per stage), as torchvision's resnet18 ... resnet101
RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3))}
EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_WIDTHS = (64, 128, 256, 512)
DILATION_RULES = ("torchvision", "smp")  # where a dilated stage's first block takes its dilation from


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


def resnet_plan(depth: int, replace_stride_with_dilation: tuple = (False, False, False),
                dilation_rule: str = "torchvision") -> list[BlockPlan]:
    """Every block of torchvision's ``resnet<depth>``, in order, following its ``_make_layer`` (or, with
    ``dilation_rule="smp"``, segmentation_models_pytorch's dilation of whole stages)."""
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got {depth!r}")
    if dilation_rule not in DILATION_RULES:
        raise ValueError(f"dilation_rule must be one of {', '.join(DILATION_RULES)}, got {dilation_rule!r}")
    replace = tuple(bool(r) for r in replace_stride_with_dilation)
    if len(replace) != 3:
        raise ValueError(f"replace_stride_with_dilation must have 3 entries (layer2, layer3, layer4), got {replace!r}")
    block, counts = RESNET_DEPTHS[depth]
    if block == "basic" and any(replace) and dilation_rule == "torchvision":
        raise ValueError(f"resnet{depth} has basic blocks, which torchvision builds without dilation: "
                         "replace_stride_with_dilation needs resnet50 or resnet101 (or dilation_rule='smp')")
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
            first_dilation = previous if dilation_rule == "torchvision" else dilation
            plans.append(BlockPlan(stage, index, in_channels, width, out_channels, stride if first else 1,
                                   first_dilation if first else dilation,
                                   first and (stride != 1 or in_channels != out_channels)))
            in_channels = out_channels
    return plans


def resnet_block_type(depth: int) -> str:
    """"basic" or "bottleneck"."""
    return RESNET_DEPTHS[depth][0]


def half(size: int) -> int:
    """Output size of a stride-2 conv or pool padded as torchvision pads (``(k - 1) // 2 * dilation``)."""
    return (size - 1) // 2 + 1


def resnet_layer_table(depth: int, replace_stride_with_dilation: tuple, prefix: str = "", in_channels: int = 3,
                       dilation_rule: str = "torchvision") -> list[LayerEntry]:
    """Every layer with weights of torchvision's ``resnet<depth>`` without ``fc``, in ``state_dict`` order, each
    path after ``prefix`` (``"backbone."`` in the segmentation models); ``conv1`` takes ``in_channels``."""
    layers = [LayerEntry(f"{prefix}conv1", "conv2d", in_channels, 64, 7, bias=False),
              LayerEntry(f"{prefix}bn1", "batch_norm", 64, 64)]
    block = resnet_block_type(depth)
    for plan in resnet_plan(depth, replace_stride_with_dilation, dilation_rule):
        path = f"{prefix}{plan.path}"
        if block == "bottleneck":
            convs = [(plan.in_channels, plan.width, 1), (plan.width, plan.width, 3), (plan.width, plan.out_channels, 1)]
        else:
            convs = [(plan.in_channels, plan.out_channels, 3), (plan.out_channels, plan.out_channels, 3)]
        for i, (cin, cout, k) in enumerate(convs, start=1):
            layers += [LayerEntry(f"{path}.conv{i}", "conv2d", cin, cout, k, bias=False),
                       LayerEntry(f"{path}.bn{i}", "batch_norm", cout, cout)]
        if plan.downsample:
            layers += [LayerEntry(f"{path}.downsample.0", "conv2d", plan.in_channels, plan.out_channels, 1, bias=False),
                       LayerEntry(f"{path}.downsample.1", "batch_norm", plan.out_channels, plan.out_channels)]
    return layers


def resnet_layer_sizes(depth: int, replace_stride_with_dilation: tuple, size: int, prefix: str = "",
                       dilation_rule: str = "torchvision") -> tuple[dict[str, int], dict[str, int]]:
    """``(layer path -> output side, stage -> output side)`` for a ``size``-wide input: ``conv1`` and the max-pool
    halve it (rounding up), a stride-2 block halves it again; stages are ``"layer1"`` ... ``"layer4"``."""
    sizes = {f"{prefix}conv1": half(size), f"{prefix}bn1": half(size)}
    side = half(half(size))
    stages = {}
    block = resnet_block_type(depth)
    for plan in resnet_plan(depth, replace_stride_with_dilation, dilation_rule):
        path, out = f"{prefix}{plan.path}", (half(side) if plan.stride == 2 else side)
        strided = 2 if block == "bottleneck" else 1  # the conv that carries the stride (v1.5: the 3x3)
        for i in range(1, 4 if block == "bottleneck" else 3):
            sizes[f"{path}.conv{i}"] = sizes[f"{path}.bn{i}"] = side if i < strided else out
        sizes[f"{path}.downsample.0"] = sizes[f"{path}.downsample.1"] = out
        side = stages[f"layer{plan.stage}"] = out
    return sizes, stages
