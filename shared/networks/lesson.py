"""The PH2 lesson's two exercises' networks, exactly: a "SegNet" and a U-Net, as the PyTorch exercise and as the
TensorFlow exercise build them (``../lesson-notes.md``; docs/architectures.md, "The PH2 lesson's networks").

Twin model files: ``segmentation_torch/lesson.py`` and ``segmentation_tf/lesson.py``. ``build_model("segnet",
preset="lesson-pytorch")`` (or ``"lesson-tf"``, and the same for ``"unet"``) builds these networks
(``lesson_segnet`` / ``lesson_unet``, ``exercise=...``).

Both exercises: 256x256 RGB in, one output channel; 3x3 same-padded convs with bias, 2x2 max-pools, x2 bilinear
up-sampling. Encoder: four blocks 3 -> 16 -> 32 -> 64 -> 128, each a conv, a ReLU and a BatchNorm, then a max-pool;
``bottleneck_conv`` 128 -> 256 (no activation, no BatchNorm). SegNet decoder 256 -> 128 -> 64 -> 32 (conv, ReLU, BN),
then a 1x1 conv 32 -> 1; U-Net decoder convs take ``[up-sampled, skip]`` (384, 192, 96 -> 128, 64, 32; 1x1 48 -> 1).
780,865 (SegNet) and 974,417 (U-Net) trainable parameters in both. Where they differ, ``exercise`` picks:

| | ``"pytorch"`` | ``"tf"`` |
|---|---|---|
| encoder block | conv -> ReLU -> BN -> pool | conv -> BN -> ReLU -> pool |
| BatchNorm | eps 1e-5, momentum 0.1 (torch's defaults); running variance unbiased | eps 1e-3, Keras momentum 0.99 (torch 0.01); moving variance biased (Keras's) |
| x2 up-sampling | ``nn.UpsamplingBilinear2d``: ``align_corners=True`` | ``UpSampling2D(interpolation="bilinear")``: half-pixel |
| SegNet decoder block | up-sample -> conv -> ReLU -> BN | conv -> up-sample -> BN -> ReLU |
| U-Net decoder block | up-sample -> concat -> conv -> ReLU -> BN | up-sample -> concat -> conv -> BN -> ReLU |
| layer names | ``enc_conv0``, ``act0``, ``bn0``, ``pool0``, ``upsample0``, ``dec_conv0``, ``dec_act0``, ``dec_bn0``, ``sigmoid`` | ``enc_conv0``, ``bn0``, ``relu0``, ``pool0``, ``upsample0``, ``dec_conv0``, ``dec_bn0``, ``dec_relu0``, ``cat0`` |

The layers with weights have the same names and shapes in both (``enc_conv0..3``, ``bn0..3``, ``bottleneck_conv``,
``dec_conv0..3``, ``dec_bn0..2``), so one canonical layout serves both. Two quirks of the exercises are options,
named for what they do, on in the presets and documented as quirks:

- ``output_sigmoid``: the PyTorch exercise ends in ``nn.Sigmoid()`` and then applies ``BCEWithLogitsLoss`` to the
  probabilities (a sigmoid twice). The TensorFlow exercise's output is linear.
- ``recompute_skips`` (U-Net): both exercises compute each skip by running the encoder block's conv, activation
  and BatchNorm a second time on the block's input, so in training mode every encoder BatchNorm updates its
  running statistics twice per step. Off, the skip is the block's pre-pool output, computed once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from segparity.networks.checks import check_bool, check_choice, check_int
from segparity.weights.layout import LayerEntry

EXERCISES = ("pytorch", "tf")
ENCODER = (16, 32, 64, 128)  # output channels of the four encoder blocks
BOTTLENECK = 256
DECODER = (128, 64, 32)  # output channels of dec_conv0..2 (dec_conv3 gives the classes)
# exercise -> (BatchNorm epsilon, torch-convention momentum, running variance updated unbiased)
BATCH_NORM = {"pytorch": (1e-5, 0.1, True), "tf": (1e-3, 0.01, False)}
# exercise -> names of the layers without weights, by role (the layers with weights share their names)
NAMES = {"pytorch": {"act": "act", "dec_act": "dec_act", "cat": None, "sigmoid": "sigmoid"},
         "tf": {"act": "relu", "dec_act": "dec_relu", "cat": "cat", "sigmoid": None}}


@dataclass(frozen=True)
class _LessonSpec:
    in_channels: int = 3  # channels of the input image (RGB in both exercises)
    num_classes: int = 1  # channels of the output (one: lesion or background)
    exercise: str = "pytorch"  # "pytorch" | "tf": whose network (module docstring's table)
    output_sigmoid: bool = False  # end in a sigmoid (the PyTorch exercise's quirk: it then applies a with-logits loss)

    embedding_dim = 0  # no instance head

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("num_classes", self.num_classes, 1)
        check_choice("exercise", self.exercise, EXERCISES)
        check_bool("output_sigmoid", self.output_sigmoid)

    def options(self) -> dict[str, Any]:
        """Every constructor argument, in declaration order."""
        return dataclasses.asdict(self)

    def out_channels(self) -> int:
        return self.num_classes

    def batch_norm(self) -> tuple[float, float, bool]:
        """(epsilon, torch-convention momentum, running variance unbiased) of every BatchNorm."""
        return BATCH_NORM[self.exercise]

    def layer_name(self, role: str, index: int | None = None) -> str | None:
        """The exercise's name of a layer without weights (``role``: act, dec_act, cat, sigmoid); None if it has none."""
        base = NAMES[self.exercise][role]
        return None if base is None else (base if index is None else f"{base}{index}")

    def output_size(self, size: int) -> int | None:
        return size if size >= 16 and size % 16 == 0 else None

    def size_rule(self) -> str:
        return "height and width divisible by 16 (four 2x2 poolings)"

    def decoder_inputs(self) -> tuple[int, ...]:
        """Input channels of dec_conv0..3."""
        return (BOTTLENECK,) + DECODER

    def layer_table(self) -> list[LayerEntry]:
        """Every layer with weights, in execution order: the same names in both exercises."""
        layers, cin = [], self.in_channels
        for i, cout in enumerate(ENCODER):
            layers += [LayerEntry(f"enc_conv{i}", "conv2d", cin, cout, 3), LayerEntry(f"bn{i}", "batch_norm", cout, cout)]
            cin = cout
        layers.append(LayerEntry("bottleneck_conv", "conv2d", cin, BOTTLENECK, 3))
        for i, (cin, cout) in enumerate(zip(self.decoder_inputs(), DECODER)):
            layers += [LayerEntry(f"dec_conv{i}", "conv2d", cin, cout, 3), LayerEntry(f"dec_bn{i}", "batch_norm", cout, cout)]
        layers.append(LayerEntry("dec_conv3", "conv2d", self.decoder_inputs()[-1], self.num_classes, 1))
        return layers


@dataclass(frozen=True)
class LessonSegNetSpec(_LessonSpec):
    """The lesson's "SegNet" (no pooling indices: bilinear up-sampling), as either exercise builds it."""

    name = "lesson_segnet"

    def describe(self) -> str:
        return f"lesson_segnet(exercise={self.exercise!r})"

    def layer_sizes(self, size: int) -> dict[str, int]:
        """Output side of every layer with weights for an input side ``size``. The TF exercise's SegNet convolves
        before it up-samples, so its decoder convs run at half the side of the PyTorch exercise's."""
        sizes = {f"enc_conv{i}": size // 2**i for i in range(4)}
        sizes.update({f"bn{i}": size // 2**i for i in range(4)})
        sizes["bottleneck_conv"] = size // 16
        for i in range(4):
            side = size // 2 ** (3 - i) if self.exercise == "pytorch" or i == 3 else size // 2 ** (4 - i)
            sizes[f"dec_conv{i}"] = side
            if i < 3:
                sizes[f"dec_bn{i}"] = size // 2 ** (3 - i)
        return sizes


@dataclass(frozen=True)
class LessonUNetSpec(_LessonSpec):
    """The lesson's U-Net, as either exercise builds it."""

    recompute_skips: bool = False  # run each encoder block again for its skip (both exercises): BN statistics move twice

    name = "lesson_unet"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool("recompute_skips", self.recompute_skips)

    def describe(self) -> str:
        return f"lesson_unet(exercise={self.exercise!r})"

    def decoder_inputs(self) -> tuple[int, ...]:
        """Input channels of dec_conv0..3: the up-sampled map and the skip of the same side."""
        return tuple(up + skip for up, skip in zip((BOTTLENECK,) + DECODER, ENCODER[::-1]))

    def call_counts(self) -> dict[str, int]:
        """Layers called more than once per forward pass: with ``recompute_skips`` every encoder conv and BN twice."""
        if not self.recompute_skips:
            return {}
        return {f"{kind}{i}": 2 for kind in ("enc_conv", "bn") for i in range(len(ENCODER))}

    def layer_sizes(self, size: int) -> dict[str, int]:
        sizes = {f"enc_conv{i}": size // 2**i for i in range(4)}
        sizes.update({f"bn{i}": size // 2**i for i in range(4)})
        sizes["bottleneck_conv"] = size // 16
        sizes.update({f"dec_conv{i}": size // 2 ** (3 - i) for i in range(4)})
        sizes.update({f"dec_bn{i}": size // 2 ** (3 - i) for i in range(3)})
        return sizes
