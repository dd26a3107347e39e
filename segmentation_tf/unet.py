"""U-Net in Keras 3. Input ``(N, H, W, C_in)`` float32, output ``(N, H', W', num_classes)`` logits.

``H' = H`` with ``padding="same"``; with ``padding="valid"`` see ``segparity.networks.geometry`` (572 -> 388).
Layer names (``encoder.0.conv1``) equal the torch attribute paths in ``segmentation_torch/unet.py``;
every layer is built in ``__init__``, so weights exist before the first call, as in torch.
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import batch_norm_layer, center_crop, conv3x3, split_outputs, upsample_bilinear_2x
from segparity.networks.layer_flavours import check_layers
from segparity.networks.unet import UNetSpec
from segparity.validation import check_image_batch


class ConvBlock(keras.layers.Layer):
    """conv3x3 -> [BN] -> ReLU, then (``convs_per_block=2``) conv3x3 -> [BN] -> ReLU again; BN of flavour ``layers``."""

    def __init__(self, in_channels: int, out_channels: int, *, spec: UNetSpec, layers: str, name: str):
        super().__init__(name=name)
        bn = spec.batch_norm
        keras_momentum = 1.0 - spec.bn_momentum  # torch momentum 0.1 == Keras momentum 0.9
        norm = dict(eps=spec.bn_eps, momentum=keras_momentum, layers=layers)
        self.conv1 = conv3x3(in_channels, out_channels, padding=spec.padding, bias=not bn, name=f"{name}.conv1")
        self.bn1 = batch_norm_layer(out_channels, **norm, name=f"{name}.bn1") if bn else None
        two = spec.convs_per_block == 2
        self.conv2 = conv3x3(out_channels, out_channels, padding=spec.padding, bias=not bn,
                             name=f"{name}.conv2") if two else None
        self.bn2 = batch_norm_layer(out_channels, **norm, name=f"{name}.bn2") if bn and two else None
        self.built = True

    def call(self, x, training=False):
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.bn1(x, training=training)
        x = ops.relu(x)
        if self.conv2 is None:
            return x
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.bn2(x, training=training)
        return ops.relu(x)


class UpBlock(ConvBlock):
    """Up-sample x2, concatenate ``[skip, up]`` on channels, then ConvBlock.

    ``"transpose"`` and ``"bilinear"`` halve the channels while up-sampling; ``"resize"`` keeps them.
    """

    def __init__(self, in_channels: int, out_channels: int, *, spec: UNetSpec, layers: str, name: str):
        up_channels = in_channels if spec.upsample == "resize" else out_channels
        super().__init__(out_channels + up_channels, out_channels, spec=spec, layers=layers, name=name)
        self.upsample = spec.upsample
        bias = not spec.batch_norm  # up -> concat -> conv1 -> BN: BN cancels a per-channel bias here
        if spec.upsample == "transpose":
            self.up = keras.layers.Conv2DTranspose(out_channels, kernel_size=2, strides=2, padding="valid",
                                                   use_bias=bias, name=f"{name}.up")
        elif spec.upsample == "bilinear":
            self.up = keras.layers.Conv2D(out_channels, kernel_size=1, use_bias=bias, name=f"{name}.up")
        else:
            self.up = None
        if self.up is not None:
            self.up.build((None, None, None, in_channels))

    def call(self, x, skip, training=False):
        if self.upsample == "transpose":
            x = self.up(x)
        elif self.upsample == "bilinear":
            x = self.up(upsample_bilinear_2x(x))
        else:
            x = upsample_bilinear_2x(x)
        skip = center_crop(skip, ops.shape(x)[1], ops.shape(x)[2])
        return super().call(ops.concatenate([skip, x], axis=-1), training=training)


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>UNet"
class UNet(keras.Model):
    """U-Net; arguments as ``segparity.networks.unet.UNetSpec``, and ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 64, depth: int = 4,
                 padding: str = "same", upsample: str = "transpose", batch_norm: bool = True,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, convs_per_block: int = 2,
                 embedding_dim: int = 0, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.spec = UNetSpec(in_channels, num_classes, base_channels, depth, padding, upsample, batch_norm,
                             bn_eps, bn_momentum, convs_per_block, embedding_dim)
        self.layer_flavour = check_layers(layers)
        ch = self.spec.stage_channels()
        self.encoder = [
            ConvBlock(in_channels if i == 0 else ch[i - 1], ch[i], spec=self.spec, layers=layers, name=f"encoder.{i}")
            for i in range(depth)
        ]
        self.bottleneck = ConvBlock(ch[depth - 1], ch[depth], spec=self.spec, layers=layers, name="bottleneck")
        self.decoder = [
            UpBlock(ch[depth - j], ch[depth - j - 1], spec=self.spec, layers=layers, name=f"decoder.{j}")
            for j in range(depth)
        ]
        self.head = keras.layers.Conv2D(self.spec.out_channels(), kernel_size=1, name="head")
        self.head.build((None, None, None, ch[0]))
        self.built = True

    def call(self, x, training=False):
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")
        skips = []
        for stage in self.encoder:
            x = stage(x, training=training)
            skips.append(x)
            x = ops.max_pool(x, pool_size=2, strides=2, padding="valid")
        x = self.bottleneck(x, training=training)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x, skip, training=training)
        return split_outputs(self.head(x), self.spec)

    def get_config(self):
        return {"name": self.name, **self.spec.options(), "layers": self.layer_flavour}

