"""torchvision's MobileNetV3-Large (Howard et al. 2019) as a framework-neutral description: every inverted
residual block of ``torchvision.models.mobilenet_v3_large``, with its channels, kernel, squeeze-excite,
activation, stride and dilation.

Twin model files: ``segmentation_torch/backbones/mobilenetv3.py`` and ``segmentation_tf/backbones/mobilenetv3.py``.
Module paths are torchvision's: ``features.0`` (3x3 stride-2 conv-BN-hardswish), ``features.1`` ...
``features.15`` (the blocks: ``block.0`` expand, ``block.1`` depthwise, ``block.2`` squeeze-excite with
``fc1``/``fc2`` where used, then the projection), ``features.16`` (1x1 conv-BN-hardswish to 960 channels),
``classifier.0`` and ``classifier.3``. BatchNorm is torchvision's ``eps=0.001, momentum=0.01`` throughout
the backbone. ``dilated=True`` (the segmentation builders) gives the last three blocks dilation 2, and a
block with dilation > 1 keeps stride 1: output stride 16.
"""

from __future__ import annotations

from dataclasses import dataclass

from segparity.weights.layout import LayerEntry

BN_EPS, BN_MOMENTUM = 0.001, 0.01  # torchvision's MobileNetV3 BatchNorm (torch momentum convention)


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, never 10% below ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class InvertedResidualPlan:
    """One block (torchvision's ``InvertedResidualConfig``), at ``features.<index>``."""

    index: int
    in_channels: int
    kernel_size: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hardswish)
    stride: int  # torchvision's configured stride (the depthwise conv's, unless dilated: depthwise_stride)
    dilation: int

    @property
    def depthwise_stride(self) -> int:
        """torchvision: ``stride = 1 if cnf.dilation > 1 else cnf.stride``."""
        return 1 if self.dilation > 1 else self.stride

    @property
    def path(self) -> str:
        return f"features.{self.index}"

    @property
    def expands(self) -> bool:
        return self.expanded_channels != self.in_channels

    @property
    def residual(self) -> bool:
        """torchvision's ``use_res_connect``: stride 1 and as many channels out as in."""
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def squeeze_channels(self) -> int:
        return make_divisible(self.expanded_channels // 4, 8)


# torchvision's mobilenet_v3_large setting: in, kernel, expanded, out, SE, activation, stride
LARGE_SETTING = ((16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
                 (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
                 (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
                 (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
                 (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1))
LAST_CONV_CHANNELS = 960  # features.16: 6 x 160
CLASSIFIER_CHANNELS = 1280  # classifier.0's output


def mobilenet_v3_large_plan(dilated: bool = False) -> list[InvertedResidualPlan]:
    """The 15 blocks of torchvision's ``mobilenet_v3_large(dilated=...)``, at ``features.1`` ... ``features.15``."""
    plans = []
    for i, (cin, k, expanded, cout, se, act, stride) in enumerate(LARGE_SETTING):
        dilation = 2 if dilated and i >= 12 else 1
        plans.append(InvertedResidualPlan(i + 1, cin, k, expanded, cout, se, act, stride, dilation))
    return plans


def stage_ends(plans: list[InvertedResidualPlan]) -> list[int]:
    """``features`` indices where torchvision's segmentation builders take features: 0, every block that
    reduces resolution in the undilated network (its ``_is_cn``), and the last (16)."""
    reducing = [p.index for p in plans if p.stride > 1]
    return [0] + reducing + [len(plans) + 1]


def segmentation_layers() -> tuple[str, str, int, int]:
    """Where torchvision's segmentation builders read the dilated ``features``: ``(out index, aux/low index, out
    channels, aux/low channels)`` = ``("16", "4", 960, 40)``: the last stage end and the fourth from last."""
    plans = mobilenet_v3_large_plan(dilated=True)
    ends = stage_ends(plans)
    aux = ends[-4]
    return str(ends[-1]), str(aux), LAST_CONV_CHANNELS, plans[aux - 1].out_channels



def _half(size: int) -> int:
    return (size - 1) // 2 + 1


def _layers_and_sides(dilated: bool, size: int, prefix: str) -> list[tuple[LayerEntry, int]]:
    """Every layer with weights of the features, in ``state_dict`` order, with its output side for a ``size``-wide
    input (the stem and each stride-2 depthwise conv halve it, rounding up; squeeze-excite works on 1x1)."""
    first = LARGE_SETTING[0][0]
    side = _half(size)
    layers = [(LayerEntry(f"{prefix}0.0", "conv2d", 3, first, 3, bias=False), side),
              (LayerEntry(f"{prefix}0.1", "batch_norm", first, first), side)]
    plans = mobilenet_v3_large_plan(dilated)
    for plan in plans:
        path, i, e = f"{prefix}{plan.index}.block", 0, plan.expanded_channels
        if plan.expands:
            layers += [(LayerEntry(f"{path}.0.0", "conv2d", plan.in_channels, e, 1, bias=False), side),
                       (LayerEntry(f"{path}.0.1", "batch_norm", e, e), side)]
            i += 1
        if plan.depthwise_stride == 2:
            side = _half(side)
        layers += [(LayerEntry(f"{path}.{i}.0", "depthwise_conv2d", e, e, plan.kernel_size, bias=False), side),
                   (LayerEntry(f"{path}.{i}.1", "batch_norm", e, e), side)]
        i += 1
        if plan.use_se:
            layers += [(LayerEntry(f"{path}.{i}.fc1", "conv2d", e, plan.squeeze_channels, 1), 1),
                       (LayerEntry(f"{path}.{i}.fc2", "conv2d", plan.squeeze_channels, e, 1), 1)]
            i += 1
        layers += [(LayerEntry(f"{path}.{i}.0", "conv2d", e, plan.out_channels, 1, bias=False), side),
                   (LayerEntry(f"{path}.{i}.1", "batch_norm", plan.out_channels, plan.out_channels), side)]
    last, cin = len(plans) + 1, plans[-1].out_channels
    layers += [(LayerEntry(f"{prefix}{last}.0", "conv2d", cin, LAST_CONV_CHANNELS, 1, bias=False), side),
               (LayerEntry(f"{prefix}{last}.1", "batch_norm", LAST_CONV_CHANNELS, LAST_CONV_CHANNELS), side)]
    return layers


def mobilenet_v3_large_layer_table(dilated: bool, prefix: str = "features.") -> list[LayerEntry]:
    """Every layer with weights of torchvision's ``mobilenet_v3_large`` features (no classifier), in ``state_dict``
    order, each path after ``prefix`` (``"backbone."`` in the segmentation models)."""
    return [entry for entry, _ in _layers_and_sides(dilated, 1, prefix)]


def mobilenet_v3_large_layer_sizes(dilated: bool, size: int, prefix: str = "features.") -> dict[str, int]:
    """Layer path -> output side for a ``size``-wide input; ``<prefix><index>.`` paths give each features index."""
    return {entry.path: side for entry, side in _layers_and_sides(dilated, size, prefix)}
