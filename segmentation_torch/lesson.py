"""The PH2 lesson's exercise networks in PyTorch. Input ``(N, 3, H, W)`` float32, output ``(N, 1, H, W)``: logits,
or probabilities with ``output_sigmoid=True`` (the PyTorch exercise's quirk).

Layers, both exercises' differences and the quirks: ``segparity.networks.lesson``. Attributes carry the exercise's
names (``enc_conv0``, ``act0``, ``bn0``, ``pool0``, ..., ``dec_bn2``, ``sigmoid``; ``relu0``/``dec_relu0``/``cat0`` for
``exercise="tf"``), so a ``state_dict`` saved from the PyTorch exercise's own ``SegNet()`` / ``UNet()`` loads with
``strict=True``. The Keras twin, ``segmentation_tf/lesson.py``, uses the same names as layer names.
"""

from __future__ import annotations

import torch
from torch import nn

from segmentation_torch.layers import batch_norm_layer, conv2d, upsample_bilinear_2x
from segparity.networks.layer_flavours import check_layers
from segparity.networks.lesson import BOTTLENECK, DECODER, ENCODER, LessonSegNetSpec, LessonUNetSpec
from segparity.validation import check_image_batch


class UpsampleBilinear2x(nn.Module):
    """x2 bilinear up-sampling as a module: ``align_corners=True`` is ``nn.UpsamplingBilinear2d(scale_factor=2)`` (the
    PyTorch exercise), ``False`` the half-pixel ``UpSampling2D(interpolation="bilinear")`` of the TF exercise."""

    def __init__(self, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_bilinear_2x(x, align_corners=self.align_corners)


class _Lesson(nn.Module):
    """The layers both networks share, named as the exercise names them; ``block`` and ``activate`` apply them in the
    exercise's order. BatchNorm of flavour ``layers`` (stock: ``nn.BatchNorm2d``, the running variance unbiased)."""

    def _build(self, spec, layers: str) -> None:
        self.spec = spec
        self.layer_flavour = check_layers(layers)
        eps, momentum, unbiased = spec.batch_norm()
        bn = dict(eps=eps, momentum=momentum, layers=layers, unbiased_running_var=unbiased)
        cin = spec.in_channels
        for i, cout in enumerate(ENCODER):
            setattr(self, f"enc_conv{i}", conv2d(cin, cout, 3, padding=1))
            setattr(self, f"bn{i}", batch_norm_layer(cout, **bn))
            cin = cout
        self.bottleneck_conv = conv2d(cin, BOTTLENECK, 3, padding=1)
        for i, (cin, cout) in enumerate(zip(spec.decoder_inputs(), DECODER)):
            setattr(self, f"dec_conv{i}", conv2d(cin, cout, 3, padding=1))
            setattr(self, f"dec_bn{i}", batch_norm_layer(cout, **bn))
        self.dec_conv3 = conv2d(spec.decoder_inputs()[-1], spec.num_classes, 1)
        for i in range(4):  # the layers without weights, under the exercise's names
            setattr(self, spec.layer_name("act", i), nn.ReLU())
            setattr(self, f"pool{i}", nn.MaxPool2d(2, 2))
            setattr(self, f"upsample{i}", UpsampleBilinear2x(align_corners=spec.exercise == "pytorch"))
        for i in range(3):
            setattr(self, spec.layer_name("dec_act", i), nn.ReLU())
        if spec.output_sigmoid:
            self.sigmoid = nn.Sigmoid()

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Encoder block ``i`` before its pooling: conv, then ReLU and BN in the exercise's order."""
        x = getattr(self, f"enc_conv{i}")(x)
        act, bn = getattr(self, self.spec.layer_name("act", i)), getattr(self, f"bn{i}")
        return bn(act(x)) if self.spec.exercise == "pytorch" else act(bn(x))

    def activate(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Decoder block ``i``'s ReLU and BN, in the exercise's order."""
        act, bn = getattr(self, self.spec.layer_name("dec_act", i)), getattr(self, f"dec_bn{i}")
        return bn(act(x)) if self.spec.exercise == "pytorch" else act(bn(x))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(x) if self.spec.output_sigmoid else x

    def check(self, x: torch.Tensor) -> None:
        check_image_batch(tuple(x.shape), str(x.dtype).removeprefix("torch."), spec=self.spec, layout="NCHW",
                          model_dtype=str(self.dec_conv3.weight.dtype).removeprefix("torch."))


class LessonSegNet(_Lesson):
    """The lesson's "SegNet"; arguments as ``segparity.networks.lesson.LessonSegNetSpec``, and ``layers``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, exercise: str = "pytorch",
                 output_sigmoid: bool = False, layers: str = "parity"):
        super().__init__()
        self._build(LessonSegNetSpec(in_channels, num_classes, exercise, output_sigmoid), layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        for i in range(4):
            x = getattr(self, f"pool{i}")(self.block(i, x))
        x = self.bottleneck_conv(x)
        for i in range(3):
            conv = getattr(self, f"dec_conv{i}")
            up = getattr(self, f"upsample{i}")
            x = self.activate(i, conv(up(x)) if self.spec.exercise == "pytorch" else up(conv(x)))
        return self.finish(self.dec_conv3(self.upsample3(x)))


class LessonUNet(_Lesson):
    """The lesson's U-Net; arguments as ``segparity.networks.lesson.LessonUNetSpec``, and ``layers``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, exercise: str = "pytorch",
                 output_sigmoid: bool = False, recompute_skips: bool = False, layers: str = "parity"):
        super().__init__()
        self._build(LessonUNetSpec(in_channels, num_classes, exercise, output_sigmoid, recompute_skips), layers)

    def concatenate(self, i: int, pair: list) -> torch.Tensor:
        """``[up-sampled, skip]`` along channels (the TF exercise's ``cat{i}`` layers hold nothing: no module here)."""
        return torch.cat(pair, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        inputs, skips = [], []
        for i in range(4):
            inputs.append(x)
            skip = self.block(i, x)
            skips.append(skip)
            x = getattr(self, f"pool{i}")(skip)
        x = self.bottleneck_conv(x)
        for i in range(4):
            j = 3 - i  # the skip of the same side
            skip = self.block(j, inputs[j]) if self.spec.recompute_skips else skips[j]
            x = getattr(self, f"dec_conv{i}")(self.concatenate(i, [getattr(self, f"upsample{i}")(x), skip]))
            if i < 3:
                x = self.activate(i, x)
        return self.finish(x)
