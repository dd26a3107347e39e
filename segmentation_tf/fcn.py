"""FCN-32s/16s/8s in Keras 3. Input ``(N, H, W, C_in)`` float32, output ``(N, H, W, num_classes)`` logits.

Layers, options and crop offsets: ``segparity.networks.fcn``. Layer names (``encoder.0.1.conv``,
``score_pool4``) equal the torch attribute paths in ``segmentation_torch/fcn.py``. Transposed convs are
unpadded (``padding="valid"``: the same output as torch's ``padding=0``) and start as bilinear
up-sampling; every crop offset comes from ``crop_offsets``.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import ConvBNReLU, conv2d, crop, max_pool_2x2, split_outputs
from segparity.weights.layout import permute_axes
from segparity.networks.fcn import PAPER_FIRST_PADDING, FCNSpec, bilinear_kernel, crop_offsets
from segparity.networks.layer_flavours import check_layers

from segparity.networks.segnet import VGG16_ENCODER
from segparity.validation import check_image_batch


def upscore(channels: int, stride: int, *, name: str) -> keras.layers.Conv2DTranspose:
    """Unpadded transposed conv, kernel 2 * stride, no bias, initialised to bilinear x``stride``."""
    layer = keras.layers.Conv2DTranspose(channels, kernel_size=2 * stride, strides=stride, padding="valid",
                                         use_bias=False, name=name)
    layer.build((None, None, None, channels))
    layer.kernel.assign(permute_axes(bilinear_kernel(channels, 2 * stride), "IOHW", "HWOI"))
    return layer


def fuse(upsampled, score, offsets: tuple[int, int]):
    """Sum of the two maps, each cropped at its offset to the size they share."""
    height = ops.minimum(ops.shape(upsampled)[1] - offsets[0], ops.shape(score)[1] - offsets[1])
    width = ops.minimum(ops.shape(upsampled)[2] - offsets[0], ops.shape(score)[2] - offsets[1])
    return (crop(upsampled, offsets[0], offsets[0], height, width)
            + crop(score, offsets[1], offsets[1], height, width))


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>FCN"
class FCN(keras.Model):
    """FCN; arguments as ``segparity.networks.fcn.FCNSpec``, and ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, variant: str = "8s", encoder: tuple = VGG16_ENCODER,
                 fc_channels: int = 4096, fc_kernel_size: int = 7, padding: str = "same", batch_norm: bool = False,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.spec = FCNSpec(in_channels, num_classes, variant, encoder, fc_channels, fc_kernel_size, padding,
                            batch_norm, bn_eps, bn_momentum, embedding_dim)
        self.layer_flavour = check_layers(layers)
        spec, paper = self.spec, padding == "paper"
        bn = dict(batch_norm=batch_norm, bn_eps=bn_eps, bn_momentum=bn_momentum, layers=layers)
        self.encoder = []
        cin = in_channels
        for i, stage in enumerate(spec.encoder):
            stack = []
            for j, cout in enumerate(stage):
                first = paper and (i, j) == (0, 0)
                stack.append(ConvBNReLU(cin, cout, 3, padding=PAPER_FIRST_PADDING if first else 1, **bn,
                                        name=f"encoder.{i}.{j}"))
                cin = cout
            self.encoder.append(stack)
        self.fc6 = ConvBNReLU(cin, fc_channels, fc_kernel_size, padding=0 if paper else (fc_kernel_size - 1) // 2, **bn,
                              name="fc6")
        self.fc7 = ConvBNReLU(fc_channels, fc_channels, 1, **bn, name="fc7")
        outputs = self.spec.out_channels()  # logits, then the embedding channels (if any)
        self.score_fr = conv2d(fc_channels, outputs, 1, name="score_fr")
        if spec.skips() >= 1:
            self.upscore2 = upscore(outputs, 2, name="upscore2")
            self.score_pool4 = conv2d(spec.encoder[-2][-1], outputs, 1, name="score_pool4")
        if spec.skips() >= 2:
            self.upscore_pool4 = upscore(outputs, 2, name="upscore_pool4")
            self.score_pool3 = conv2d(spec.encoder[-3][-1], outputs, 1, name="score_pool3")
        self.upscore = upscore(outputs, spec.final_stride(), name="upscore")
        self.offsets = crop_offsets(spec)
        self.built = True

    def call(self, x, training=False):
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        pools = []
        for stage in self.encoder:
            for layer in stage:
                x = layer(x, training=training)
            x = max_pool_2x2(x, ceil_mode=True)  # Caffe rounds pooled sizes up; equal to floor at even sizes
            pools.append(x)
        x = self.score_fr(self.fc7(self.fc6(x, training=training), training=training))
        if self.spec.skips() >= 1:
            x = fuse(self.upscore2(x), self.score_pool4(pools[-2]), self.offsets["pool4"])
        if self.spec.skips() >= 2:
            x = fuse(self.upscore_pool4(x), self.score_pool3(pools[-3]), self.offsets["pool3"])
        top = self.offsets["output"][0]
        return split_outputs(crop(self.upscore(x), top, top, height, width), self.spec)

    def get_config(self):
        return {"name": self.name, **self.spec.options(), "layers": self.layer_flavour}
