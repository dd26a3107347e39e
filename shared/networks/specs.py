"""The architecture registry: names, presets and spec construction.

Each network's spec (a frozen dataclass holding every option that changes its weights or maths,
with defaults) lives in ``segparity.networks``. Both framework packages build their models from the
same spec, and the canonical checkpoint stores it, so a checkpoint can be checked against the model
it is loaded into.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from segparity.networks.deeplab import DeepLabV3PlusSpec
from segparity.networks.fcn import FCNSpec
from segparity.networks.lesson import LessonSegNetSpec, LessonUNetSpec
from segparity.networks.segnet import SegNetSpec
from segparity.networks.torchvision_segmentation import TORCHVISION_SPECS, TorchvisionSegmentationSpec
from segparity.networks.unet import UNetSpec

# segparity's own networks, then torchvision's segmentation models under torchvision's builder names
MODEL_SPECS: dict[str, type] = {"deeplabv3plus": DeepLabV3PlusSpec, "fcn": FCNSpec, "segnet": SegNetSpec,
                                "unet": UNetSpec, "lesson_segnet": LessonSegNetSpec, "lesson_unet": LessonUNetSpec,
                                **TORCHVISION_SPECS}

# The PH2 lesson's two exercises' networks, exactly (segparity.networks.lesson): each exercise's quirks on.
LESSON_EXERCISES = {
    "lesson_segnet": {"lesson-pytorch": dict(exercise="pytorch", output_sigmoid=True),
                      "lesson-tf": dict(exercise="tf", output_sigmoid=False)},
    "lesson_unet": {"lesson-pytorch": dict(exercise="pytorch", output_sigmoid=True, recompute_skips=True),
                    "lesson-tf": dict(exercise="tf", output_sigmoid=False, recompute_skips=True)},
}

# Named option sets, as torchvision's weights enums and keras-hub's presets name configurations.
# Explicit keyword arguments to build_model override a preset's values. A preset with an "arch" entry builds
# that network instead: segnet's and unet's "lesson-pytorch" / "lesson-tf" are the exercises' own networks.
LESSON_ENCODER = ((16,), (32,), (64,), (128,))
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "unet": {
        # Ronneberger et al. 2015: 572x572 -> 388x388, 31,030,658 parameters.
        "paper": dict(in_channels=1, num_classes=2, base_channels=64, depth=4, padding="valid",
                      upsample="transpose", batch_norm=False, convs_per_block=2),
        # segparity's version of the PH2 lesson's network: 3->16->32->64->128 one conv per stage, bottleneck 256, bilinear x2 then
        # concatenate (decoder inputs 384, 192, 96, 48), conv-BN-ReLU order, 1x1 head to one logit.
        "lesson-segparity": dict(in_channels=3, num_classes=1, base_channels=16, depth=4, padding="same",
                       upsample="resize", batch_norm=True, convs_per_block=1),
        **{preset: dict(arch="lesson_unet", **values) for preset, values in LESSON_EXERCISES["lesson_unet"].items()},
    },
    "segnet": {
        # Badrinarayanan et al. 2017 on CamVid (11 classes): VGG-16 encoder, index unpooling.
        "paper": dict(in_channels=3, num_classes=11),
        # segparity's version of the PH2 lesson's "SegNet": the same layer list as its U-Net without skips, bilinear x2 (no indices).
        "lesson-segparity": dict(in_channels=3, num_classes=1, encoder=LESSON_ENCODER, bottleneck=(256,),
                       decoder=((128,), (64,), (32,), (16,)), upsample="bilinear", head_kernel_size=1,
                       batch_norm=True),
        **{preset: dict(arch="lesson_segnet", **values) for preset, values in LESSON_EXERCISES["lesson_segnet"].items()},
    },
    "fcn": {
        # Long et al. 2015, FCN-8s on PASCAL VOC (21 classes): VGG-16, conv1_1 padded by 100, Caffe crops.
        "paper": dict(in_channels=3, num_classes=21, variant="8s", padding="paper", batch_norm=False),
    },
    "deeplabv3plus": {},
    **LESSON_EXERCISES,
    **{name: {} for name in TORCHVISION_SPECS},
}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(MODEL_SPECS)


def list_presets(name: str) -> list[str]:
    """Preset names of model ``name``, sorted."""
    return sorted(PRESETS.get(name, {}))


def option_names(name: str) -> list[str]:
    """Constructor arguments of model ``name`` after ``in_channels`` and ``num_classes``, in order."""
    return [f.name for f in dataclasses.fields(MODEL_SPECS[name])][2:]


def required_options(name: str) -> list[str]:
    """Options of model ``name`` without a default (``in_channels`` and ``num_classes`` of segparity's own networks)."""
    return [f.name for f in dataclasses.fields(MODEL_SPECS[name]) if f.default is dataclasses.MISSING]


def builder_arguments(spec) -> dict[str, Any]:
    """The keyword arguments of the framework builder of ``spec``'s network (``build_model``'s last step): every
    option, or for torchvision's models torchvision's own arguments (``num_classes``, ``aux_loss``)."""
    if isinstance(spec, TorchvisionSegmentationSpec):
        return spec.builder_arguments()
    return spec.options()


def make_spec(name: str, *, in_channels: int | None = None, num_classes: int | None = None,
              preset: str | None = None, **options: Any):
    """Validate ``name``, ``preset`` and ``options`` and return the spec; errors list what is known.

    ``in_channels`` and ``num_classes`` are required unless the preset or the network gives them (torchvision's
    models default to 3 and 21, as torchvision); any explicit argument overrides the preset's value.
    """
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    values: dict[str, Any] = {}
    if preset is not None:
        if preset == "lesson" and name in ("unet", "segnet"):
            raise ValueError(f"preset 'lesson' of {name!r} is gone: 'lesson-segparity' is segparity's version of the "
                             "lesson's network (what 'lesson' built), 'lesson-pytorch' and 'lesson-tf' the exercises' own")
        if preset not in PRESETS.get(name, {}):
            raise ValueError(f"unknown preset {preset!r} for model {name!r}; known presets: "
                             f"{', '.join(list_presets(name)) or 'none'}")
        values.update(PRESETS[name][preset])
        name = values.pop("arch", name)  # segnet's "lesson-pytorch" is the network lesson_segnet
    known = option_names(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}"
            f"{f' (preset {preset!r})' if preset else ''}; known options: {', '.join(known)}"
        )
    explicit = dict(options, in_channels=in_channels, num_classes=num_classes)
    values.update({k: v for k, v in explicit.items() if v is not None})
    for required in required_options(name):
        if required not in values:
            raise TypeError(f"build_model({name!r}) needs {required}= (or a preset that sets it)")
    return MODEL_SPECS[name](**values)


def spec_to_dict(spec) -> dict[str, Any]:
    """``{"name": ..., "options": {...}}``: the spec as stored in a checkpoint's metadata."""
    return {"name": spec.name, "options": spec.options()}


def spec_from_dict(data: Any, *, source: str = "checkpoint"):
    """Inverse of ``spec_to_dict``; errors name ``source``."""
    try:
        name, options = data["name"], dict(data["options"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source}: architecture spec in metadata is malformed ({exc!r})") from None
    return make_spec(name, **options)


def spec_differences(expected, found) -> list[str]:
    """Human-readable ``option: expected X, found Y`` lines; empty when the specs are equal."""
    if expected.name != found.name:
        return [f"architecture: expected {expected.name!r}, found {found.name!r}"]
    a, b = expected.options(), found.options()
    return [f"{k}: expected {a[k]!r}, found {b[k]!r}" for k in a if a[k] != b[k]]
