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
