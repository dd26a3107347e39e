"""The PH2 lesson's exercise networks in Keras 3. Input ``(N, H, W, 3)`` float32, output ``(N, H, W, 1)``: logits,
or probabilities with ``output_sigmoid=True`` (the PyTorch exercise's quirk).

Layers, both exercises' differences and the quirks: ``segparity.networks.lesson``. Layer names are the exercise's
attribute names (``enc_conv0``, ``bn0``, ``relu0``, ``pool0``, ..., ``dec_bn2``, ``dec_relu2``, ``cat0`` for
``exercise="tf"``; ``act0``, ``dec_act0``, ``sigmoid`` for ``"pytorch"``), so weights copied layer by layer from the
TensorFlow exercise's model land where they belong. Twin of ``segmentation_torch/lesson.py``.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import batch_norm_layer, conv2d, upsample_bilinear_2x
from segparity.networks.layer_flavours import check_layers
from segparity.networks.lesson import BOTTLENECK, DECODER, ENCODER, LessonSegNetSpec, LessonUNetSpec
from segparity.validation import check_image_batch


class UpsampleBilinear2x(keras.layers.Layer):
    """x2 bilinear up-sampling as a named layer: half-pixel (``UpSampling2D(interpolation="bilinear")``, the TF
    exercise) or ``align_corners=True`` (torch's ``nn.UpsamplingBilinear2d``, the PyTorch exercise)."""

    def __init__(self, align_corners: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = align_corners

    def call(self, x):
        return upsample_bilinear_2x(x, align_corners=self.align_corners)

    def get_config(self):
        return {**super().get_config(), "align_corners": self.align_corners}


class _Lesson(keras.Model):
    """The layers both networks share, named as the exercise names them (attributes and layer names alike);
    ``block`` and ``activate`` apply them in the exercise's order. BatchNorm of flavour ``layers`` (stock:
    ``keras.layers.BatchNormalization``, the moving variance biased)."""

    def _build(self, spec, layers: str) -> None:
        self.spec = spec
        self.layer_flavour = check_layers(layers)
        eps, momentum, unbiased = spec.batch_norm()
        bn = dict(eps=eps, momentum=1.0 - momentum, layers=layers,  # Keras momentum = 1 - torch's
                  unbiased_running_var=unbiased)

        def add(name, layer):
            setattr(self, name, layer)

        cin = spec.in_channels
        for i, cout in enumerate(ENCODER):
            add(f"enc_conv{i}", conv2d(cin, cout, 3, padding=1, name=f"enc_conv{i}"))
            add(f"bn{i}", batch_norm_layer(cout, **bn, name=f"bn{i}"))
            cin = cout
        add("bottleneck_conv", conv2d(cin, BOTTLENECK, 3, padding=1, name="bottleneck_conv"))
        for i, (cin, cout) in enumerate(zip(spec.decoder_inputs(), DECODER)):
            add(f"dec_conv{i}", conv2d(cin, cout, 3, padding=1, name=f"dec_conv{i}"))
            add(f"dec_bn{i}", batch_norm_layer(cout, **bn, name=f"dec_bn{i}"))
        add("dec_conv3", conv2d(spec.decoder_inputs()[-1], spec.num_classes, 1, name="dec_conv3"))
        for i in range(4):  # the layers without weights, under the exercise's names
            add(spec.layer_name("act", i), keras.layers.ReLU(name=spec.layer_name("act", i)))
            add(f"pool{i}", keras.layers.MaxPooling2D(2, name=f"pool{i}"))
            add(f"upsample{i}", UpsampleBilinear2x(align_corners=spec.exercise == "pytorch", name=f"upsample{i}"))
        for i in range(3):
            add(spec.layer_name("dec_act", i), keras.layers.ReLU(name=spec.layer_name("dec_act", i)))
        if spec.output_sigmoid:
            add("sigmoid", keras.layers.Activation("sigmoid", name="sigmoid"))
        self.built = True

    def block(self, i: int, x, training=False):
        """Encoder block ``i`` before its pooling: conv, then ReLU and BN in the exercise's order."""
        x = getattr(self, f"enc_conv{i}")(x)
        act, bn = getattr(self, self.spec.layer_name("act", i)), getattr(self, f"bn{i}")
        return bn(act(x), training=training) if self.spec.exercise == "pytorch" else act(bn(x, training=training))

    def activate(self, i: int, x, training=False):
        """Decoder block ``i``'s ReLU and BN, in the exercise's order."""
        act, bn = getattr(self, self.spec.layer_name("dec_act", i)), getattr(self, f"dec_bn{i}")
        return bn(act(x), training=training) if self.spec.exercise == "pytorch" else act(bn(x, training=training))

    def finish(self, x):
        return self.sigmoid(x) if self.spec.output_sigmoid else x

    def check(self, x) -> None:
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")

    def get_config(self):
        return {"name": self.name, **self.spec.options(), "layers": self.layer_flavour}


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>LessonSegNet"
class LessonSegNet(_Lesson):
    """The lesson's "SegNet"; arguments as ``segparity.networks.lesson.LessonSegNetSpec``, and ``layers``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, exercise: str = "pytorch",
                 output_sigmoid: bool = False, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self._build(LessonSegNetSpec(in_channels, num_classes, exercise, output_sigmoid), layers)

    def call(self, x, training=False):
        self.check(x)
        for i in range(4):
            x = getattr(self, f"pool{i}")(self.block(i, x, training=training))
        x = self.bottleneck_conv(x)
        for i in range(3):
            conv, up = getattr(self, f"dec_conv{i}"), getattr(self, f"upsample{i}")
            x = self.activate(i, conv(up(x)) if self.spec.exercise == "pytorch" else up(conv(x)), training=training)
        return self.finish(self.dec_conv3(self.upsample3(x)))


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>LessonUNet"
class LessonUNet(_Lesson):
    """The lesson's U-Net; arguments as ``segparity.networks.lesson.LessonUNetSpec``, and ``layers``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, exercise: str = "pytorch",
                 output_sigmoid: bool = False, recompute_skips: bool = False, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self._build(LessonUNetSpec(in_channels, num_classes, exercise, output_sigmoid, recompute_skips), layers)
        if self.spec.layer_name("cat") is not None:  # the TF exercise's Concatenate layers (torch concatenates inline)
            for i in range(4):
                setattr(self, self.spec.layer_name("cat", i), keras.layers.Concatenate(axis=-1, name=f"cat{i}"))

    def concatenate(self, i: int, pair: list):
        """``[up-sampled, skip]`` along channels: the TF exercise's ``cat{i}`` layer, or a plain concatenation."""
        if self.spec.layer_name("cat") is None:
            return ops.concatenate(pair, axis=-1)
        return getattr(self, self.spec.layer_name("cat", i))(pair)

    def call(self, x, training=False):
        self.check(x)
        inputs, skips = [], []
        for i in range(4):
            inputs.append(x)
            skip = self.block(i, x, training=training)
            skips.append(skip)
            x = getattr(self, f"pool{i}")(skip)
        x = self.bottleneck_conv(x)
        for i in range(4):
            j = 3 - i  # the skip of the same side
            skip = self.block(j, inputs[j], training=training) if self.spec.recompute_skips else skips[j]
            x = getattr(self, f"dec_conv{i}")(self.concatenate(i, [getattr(self, f"upsample{i}")(x), skip]))
            if i < 3:
                x = self.activate(i, x, training=training)
        return self.finish(x)
