"""SegNet in Keras 3. Input ``(N, H, W, C_in)`` float32, output ``(N, H, W, num_classes)`` logits.

Layers and options: ``segparity.networks.segnet``. Layer names (``encoder.0.1.conv``) equal the torch
attribute paths in ``segmentation_torch/segnet.py``. Keras has no unpooling layer: max-unpooling is
``tf.nn.max_pool_with_argmax`` and a scatter (``segmentation_tf.layers``).
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.layers import (ConvBNReLU, conv2d, max_pool_2x2, max_pool_with_indices, max_unpool,
                                    resize_bilinear, split_outputs)
from segparity.networks.layer_flavours import check_layers
from segparity.networks.segnet import SEGNET_DECODER, VGG16_ENCODER, SegNetSpec

from segparity.validation import check_image_batch


def conv_stack(in_channels: int, channels: tuple, *, spec: SegNetSpec, layers: str, name: str) -> list:
    """3x3 conv-BN-ReLU layers with the output ``channels``, one after the other (named ``name.0``, ...); BN of
    flavour ``layers``."""
    stack = []
    for j, cout in enumerate(channels):
        stack.append(ConvBNReLU(in_channels, cout, 3, batch_norm=spec.batch_norm, bn_eps=spec.bn_eps,
                                bn_momentum=spec.bn_momentum, layers=layers, name=f"{name}.{j}"))
        in_channels = cout
    return stack


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>SegNet"
class SegNet(keras.Model):
    """SegNet; arguments as ``segparity.networks.segnet.SegNetSpec`` (defaults: the paper's VGG-16 network), and
    ``layers`` (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, encoder: tuple = VGG16_ENCODER, bottleneck: tuple = (),
                 decoder: tuple = SEGNET_DECODER, upsample: str = "unpool", head_kernel_size: int = 3,
                 batch_norm: bool = True, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.spec = SegNetSpec(in_channels, num_classes, encoder, bottleneck, decoder, upsample, head_kernel_size,
                               batch_norm, bn_eps, bn_momentum, embedding_dim)
        self.layer_flavour = check_layers(layers)
        spec = self.spec
        self.encoder = []
        cin = in_channels
        for i, stage in enumerate(spec.encoder):
            self.encoder.append(conv_stack(cin, stage, spec=spec, layers=layers, name=f"encoder.{i}"))
            cin = stage[-1]
        self.bottleneck = conv_stack(cin, spec.bottleneck, spec=spec, layers=layers, name="bottleneck")
        self.decoder = []
        for k, stage in enumerate(spec.decoder):
            self.decoder.append(conv_stack(spec.decoder_input_channels(k), stage, spec=spec, layers=layers,
                                           name=f"decoder.{k}"))
        k = head_kernel_size
        self.head = conv2d(spec.decoder[-1][-1], spec.out_channels(), k, padding=(k - 1) // 2, name="head")
        self.built = True

    def call(self, x, training=False):
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")
        pooled = []  # (indices, height, width) of every encoder pooling, shallowest first
        for stage in self.encoder:
            for layer in stage:
                x = layer(x, training=training)
            height, width = ops.shape(x)[1], ops.shape(x)[2]
            if self.spec.upsample == "unpool":
                x, indices = max_pool_with_indices(x)
            else:  # bilinear up-sampling needs no indices (and the argmax pool is slower, XLA cannot compile it)
                x, indices = max_pool_2x2(x), None
            pooled.append((indices, height, width))
        for layer in self.bottleneck:
            x = layer(x, training=training)
        for stage, (indices, height, width) in zip(self.decoder, reversed(pooled)):
            if self.spec.upsample == "unpool":
                x = max_unpool(x, indices, height, width)
            else:
                x = resize_bilinear(x, height, width)
            for layer in stage:
                x = layer(x, training=training)
        return split_outputs(self.head(x), self.spec)

    def get_config(self):
        return {"name": self.name, **self.spec.options(), "layers": self.layer_flavour}
