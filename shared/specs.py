"""Architecture specs: one frozen dataclass per network, the single source of its options.

A spec holds every option that changes the weights or the maths of a network, with its default.
Both framework packages build their models from the same spec, and the canonical checkpoint stores
it, so a checkpoint can be checked against the model it is loaded into.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

PADDINGS = ("same", "valid")
UPSAMPLES = ("transpose", "bilinear")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


@dataclass(frozen=True)
class UNetSpec:
    """U-Net (Ronneberger, Fischer, Brox 2015) and its common padded variant.

    The 2015 paper's network is ``UNetSpec(in_channels=1, num_classes=2, base_channels=64, depth=4,
    padding="valid", upsample="transpose", batch_norm=False)``: 572x572 in, 388x388 out.
    """

    in_channels: int  # channels of the input image
    num_classes: int  # channels of the output logits
    base_channels: int = 64  # channels of the first encoder stage; doubled after each pooling
    depth: int = 4  # number of 2x2 max-poolings, and of up-sampling stages
    padding: str = "same"  # "same": 3x3 convs padded by 1, output H, W = input H, W; "valid": unpadded, skips centre-cropped
    upsample: str = "transpose"  # "transpose": 2x2 stride-2 transposed conv; "bilinear": x2 bilinear resize (half-pixel centres) then 1x1 conv
    batch_norm: bool = True  # conv(no bias)-BN-ReLU instead of conv(bias)-ReLU
    bn_eps: float = 1e-5  # BatchNorm epsilon, the same number in both frameworks
    bn_momentum: float = 0.1  # torch convention (weight of the new batch statistic); Keras momentum = 1 - bn_momentum

    name = "unet"

    def __post_init__(self) -> None:
        _check_int("in_channels", self.in_channels, 1)
        _check_int("num_classes", self.num_classes, 1)
        _check_int("base_channels", self.base_channels, 1)
        _check_int("depth", self.depth, 1)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("upsample", self.upsample, UPSAMPLES)
        if not isinstance(self.batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(self.batch_norm).__name__} {self.batch_norm!r}")
        if not (isinstance(self.bn_eps, float) and self.bn_eps > 0):
            raise ValueError(f"bn_eps must be a positive float, got {self.bn_eps!r}")
        if not (isinstance(self.bn_momentum, float) and 0.0 < self.bn_momentum < 1.0):
            raise ValueError(f"bn_momentum must be a float in (0, 1) (torch convention), got {self.bn_momentum!r}")

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def stage_channels(self) -> list[int]:
        """Output channels of encoder stages 0..depth-1 followed by the bottleneck."""
        return [self.base_channels * 2**i for i in range(self.depth + 1)]


MODEL_SPECS: dict[str, type] = {"unet": UNetSpec}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(MODEL_SPECS)


def make_spec(name: str, *, in_channels: int, num_classes: int, **options: Any) -> UNetSpec:
    """Validate ``name`` and ``options`` and return the spec; errors list what is known."""
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    spec_cls = MODEL_SPECS[name]
    known = [f.name for f in dataclasses.fields(spec_cls)][2:]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"known options: {', '.join(known)}"
        )
    return spec_cls(in_channels=in_channels, num_classes=num_classes, **options)


def spec_to_dict(spec: UNetSpec) -> dict[str, Any]:
    """``{"name": ..., "options": {...}}``: the spec as stored in a checkpoint's metadata."""
    return {"name": spec.name, "options": spec.options()}


def spec_from_dict(data: Any, *, source: str = "checkpoint") -> UNetSpec:
    """Inverse of ``spec_to_dict``; errors name ``source``."""
    try:
        name, options = data["name"], dict(data["options"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source}: architecture spec in metadata is malformed ({exc!r})") from None
    return make_spec(name, **options)


def spec_differences(expected: UNetSpec, found: UNetSpec) -> list[str]:
    """Human-readable ``option: expected X, found Y`` lines; empty when the specs are equal."""
    if expected.name != found.name:
        return [f"architecture: expected {expected.name!r}, found {found.name!r}"]
    a, b = expected.options(), found.options()
    return [f"{k}: expected {a[k]!r}, found {b[k]!r}" for k in a if a[k] != b[k]]
